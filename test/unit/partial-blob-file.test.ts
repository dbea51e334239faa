import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';

import { BlobIntegrityError, createDecryptStream, ENVELOPE_HEADER_BYTES, Keyring, MasterKey, parseEnvelopeHeader } from '../../src/crypto';
import { PartialBlobFile, PartialBlobOffsetError } from '../../src/storage/partial-blob-file';

const CHUNK = 1000;
const keyring = new Keyring(MasterKey.generate());

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** What a stream gave before it ended, and the error it ended with, if any. */
async function drain(stream: Readable): Promise<{ output: Buffer; error: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const part of stream) parts.push(part as Buffer);
  } catch (error) {
    return { output: Buffer.concat(parts), error };
  }
  return { output: Buffer.concat(parts), error: null };
}

async function plaintextOf(path: string, ring = keyring): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of createReadStream(path).pipe(createDecryptStream(ring))) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** A body that sends `bytes`, then fails as a dropped connection does. */
function droppedAfter(bytes: Buffer): Readable {
  return Readable.from(
    (async function* () {
      yield bytes.subarray(0, 1000);
      yield bytes.subarray(1000);
      throw new Error('connection reset');
    })(),
  );
}

describe('PartialBlobFile (a resumable upload kept encrypted)', () => {
  let dir: string;
  let file: PartialBlobFile;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-partial-'));
    file = new PartialBlobFile(join(dir, 'upload'), keyring);
    await file.create(CHUNK);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('grows by writes of any size, and is a whole envelope blob of those bytes once completed', async () => {
    const data = randomBytes(5 * CHUNK + 321);
    let size = 0;
    for (const end of [1, 999, 1000, 1001, 2500, 4000, 5000, data.length]) {
      const written = await file.append(size, Readable.from([data.subarray(size, end)]));
      assert.deepEqual(written, { size: end, interrupted: null });
      assert.equal(await file.size(), end);
      size = end;
    }
    assert.equal(await file.complete(), data.length);
    assert.deepEqual(await plaintextOf(file.path), data);
  });

  it('completes a blob whose size is a multiple of the chunk size, and an empty one', async () => {
    const data = randomBytes(3 * CHUNK);
    await file.append(0, Readable.from([data]));
    assert.equal(await file.complete(), data.length);
    assert.deepEqual(await plaintextOf(file.path), data);

    const empty = new PartialBlobFile(join(dir, 'empty'), keyring);
    await empty.create(CHUNK);
    assert.equal(await empty.complete(), 0);
    assert.deepEqual(await plaintextOf(empty.path), Buffer.alloc(0));
  });

  it('keeps no byte in plaintext: neither in the file nor in its tail', async () => {
    const marker = Buffer.from('a recognisable plaintext marker that must not be on disk '.repeat(40));
    await file.append(0, Readable.from([marker.subarray(0, 1500)]));
    for (const name of readdirSync(dir)) {
      const stored = readFileSync(join(dir, name));
      assert.equal(stored.includes(marker.subarray(0, 32)), false, `${name} holds plaintext`);
      assert.equal(stored.includes(marker.subarray(1000, 1032)), false, `${name} holds the tail in plaintext`);
    }
  });

  it('keeps what a write received before its body failed, and tells the failure', async () => {
    const data = randomBytes(2 * CHUNK + 500);
    const written = await file.append(0, droppedAfter(data.subarray(0, 1700)));
    assert.equal(written.size, 1700);
    assert.match(String(written.interrupted), /connection reset/);
    assert.equal(await file.size(), 1700);
    await file.append(1700, Readable.from([data.subarray(1700)]));
    await file.complete();
    assert.deepEqual(await plaintextOf(file.path), data);
  });

  it('keeps what a body brought before it failed while the file was still being opened', async () => {
    const data = randomBytes(1500);
    const body = new PassThrough();
    body.write(data);
    const appending = file.append(0, body);
    await new Promise(setImmediate);
    body.destroy(new Error('connection reset'));
    const written = await appending;
    assert.equal(written.size, data.length);
    assert.match(String(written.interrupted), /connection reset/);
    await file.complete();
    assert.deepEqual(await plaintextOf(file.path), data);
  });

  it('refuses a write at any offset but its size', async () => {
    await file.append(0, Readable.from([randomBytes(1200)]));
    await assert.rejects(file.append(1000, Readable.from([randomBytes(10)])), PartialBlobOffsetError);
    await assert.rejects(file.append(1300, Readable.from([randomBytes(10)])), PartialBlobOffsetError);
    assert.equal(await file.size(), 1200);
  });

  it('counts only whole chunks and the tail that follows them after a crash tore a chunk, and resumes there', async () => {
    const data = randomBytes(4 * CHUNK);
    await file.append(0, Readable.from([data.subarray(0, 2300)]));
    // A crash while chunk 2 was written: part of it is on disk, the tail still follows chunk 1.
    appendFileSync(file.path, randomBytes(600));
    assert.equal(await file.size(), 2300);
    await file.append(2300, Readable.from([data.subarray(2300)]));
    await file.complete();
    assert.deepEqual(await plaintextOf(file.path), data);
  });

  it('drops a tail that an appended chunk already holds (a crash before the new tail was written)', async () => {
    const data = randomBytes(3 * CHUNK);
    await file.append(0, Readable.from([data.subarray(0, 1500)]));
    const tail = readFileSync(`${file.path}.tail`);
    await file.append(1500, Readable.from([data.subarray(1500, 2200)]));
    // Put the old tail (which follows chunk 0) back: chunk 1 holds its bytes now.
    truncateSync(`${file.path}.tail`, 0);
    appendFileSync(`${file.path}.tail`, tail);
    assert.equal(await file.size(), 2 * CHUNK);
    await file.append(2 * CHUNK, Readable.from([data.subarray(2 * CHUNK)]));
    await file.complete();
    assert.deepEqual(await plaintextOf(file.path), data);
  });

  it('counts a tail too short to be one as none', async () => {
    await file.append(0, Readable.from([randomBytes(CHUNK + 100)]));
    truncateSync(`${file.path}.tail`, 20);
    assert.equal(await file.size(), CHUNK);
  });

  it('may complete again (a replica taking over a completion) with the same result', async () => {
    const data = randomBytes(CHUNK + 10);
    await file.append(0, Readable.from([data]));
    await file.complete();
    const size = statSync(file.path).size;
    assert.equal(await file.complete(), data.length);
    assert.equal(statSync(file.path).size, size);
    assert.deepEqual(await plaintextOf(file.path), data);
  });

  it('detects a damaged tail instead of storing wrong bytes', async () => {
    await file.append(0, Readable.from([randomBytes(CHUNK + 100)]));
    const tail = readFileSync(`${file.path}.tail`);
    tail[tail.length - 1] ^= 1;
    truncateSync(`${file.path}.tail`, 0);
    appendFileSync(`${file.path}.tail`, tail);
    await assert.rejects(file.append(CHUNK + 100, Readable.from([randomBytes(10)])), BlobIntegrityError);
    await assert.rejects(file.complete(), BlobIntegrityError);
  });

  it('is created under the current master key, and resumed and read after a rotation', async () => {
    const data = randomBytes(2500);
    await file.append(0, Readable.from([data.subarray(0, 1200)]));
    assert.equal(parseEnvelopeHeader(readFileSync(file.path).subarray(0, ENVELOPE_HEADER_BYTES)).keyId, keyring.current.keyId);
    const rotated = new Keyring(MasterKey.generate(), [keyring.current]);
    const resumed = new PartialBlobFile(file.path, rotated);
    await resumed.append(1200, Readable.from([data.subarray(1200)]));
    await resumed.complete();
    assert.deepEqual(await plaintextOf(file.path, rotated), data);
  });

  it('is bound to the blob it becomes: it opens under that name only, and files bound to none still open', async () => {
    const name = 'tenants/t1/uploads/tus-a.blob';
    const bound = new PartialBlobFile(join(dir, 'bound'), keyring, { name });
    await bound.create(CHUNK);
    const data = randomBytes(2500);
    await bound.append(0, Readable.from([data.subarray(0, 1200)]));
    assert.equal(readFileSync(bound.path)[6], 2, 'a version-2 header, bound to its name');
    // The same file under another upload's name (another tenant's) does not open, to be written or read.
    const elsewhere = new PartialBlobFile(bound.path, keyring, { name: 'tenants/t2/uploads/tus-b.blob' });
    await assert.rejects(elsewhere.append(1200, Readable.from([data.subarray(1200)])), BlobIntegrityError);
    await assert.rejects(elsewhere.complete(), BlobIntegrityError);
    await bound.append(1200, Readable.from([data.subarray(1200)]));
    assert.equal(await bound.complete(), data.length);
    assert.deepEqual(await readAll(bound.read()), data);
    const { error } = await drain(elsewhere.read());
    assert.ok(error instanceof BlobIntegrityError, String(error));
    // What the blob store reads it as once adopted: the same name.
    const parts: Buffer[] = [];
    for await (const part of createReadStream(bound.path).pipe(createDecryptStream(keyring, { name }))) parts.push(part as Buffer);
    assert.deepEqual(Buffer.concat(parts), data);
    // A file of an earlier release (bound to no name; `file` here) opens under any, and bindName: false writes one.
    await file.append(0, Readable.from([data]));
    await file.complete();
    assert.deepEqual(await readAll(new PartialBlobFile(file.path, keyring, { name }).read()), data);
    const unbound = new PartialBlobFile(join(dir, 'unbound'), keyring, { name, bindName: false });
    await unbound.create(CHUNK);
    assert.equal(readFileSync(unbound.path)[6], 1);
  });

  it('removes itself and its tail, and may be removed again', async () => {
    await file.append(0, Readable.from([randomBytes(1500)]));
    await file.remove();
    await file.remove();
    assert.deepEqual(readdirSync(dir), []);
  });
});
