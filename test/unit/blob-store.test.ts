import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';

import { BlobIntegrityError, createEncryptStream, encryptedSize, Keyring, MasterKey, UnknownKeyError } from '../../src/crypto';
import { createHash } from 'node:crypto';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand, type S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { assertValidBlobKey, type BlobStore, moveByCopy, TEMP_FILE_MARKER } from '../../src/storage/blob-store';
import { MIN_PART_BYTES, S3BlobStore, type S3BlobStoreOptions } from '../../src/storage/s3-blob-store';
import { createS3Client } from '../../src/storage/s3-client';
import { createTestBucket, describeS3, testS3Client } from '../support/s3';
import { eventually, within } from '../support/wait';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { ByteRange } from '../../src/storage/byte-range';
import { BlobNotFoundError, InvalidBlobKeyError } from '../../src/storage/errors';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';

const KEY = 'tenants/t-1/snapshots/0b9f3c52-6f7e-4c1a-9d7e-3a1f2b4c5d6e.blob';

async function drain(stream: Readable): Promise<{ output: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk as Buffer);
  } catch (error) {
    return { output: Buffer.concat(chunks), error: error as Error };
  }
  return { output: Buffer.concat(chunks) };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const { output, error } = await drain(stream);
  if (error) throw error;
  return output;
}

/** A stream that yields `bytes`, then fails the way a dropped upload or a full disk does. */
function failingAfter(bytes: Buffer, message = 'client went away'): Readable {
  return Readable.from(
    (async function* () {
      yield bytes;
      await new Promise((resolve) => setImmediate(resolve));
      throw new Error(message);
    })(),
    { objectMode: false },
  );
}

/** Every file under `dir`, relative to it. */
async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const relative = prefix + entry.name;
    if (entry.isDirectory()) files.push(...(await listFiles(join(dir, entry.name), `${relative}/`)));
    else files.push(relative);
  }
  return files.sort();
}

/** A filesystem store that records the ranges asked of it. */
class RecordingBlobStore extends FilesystemBlobStore {
  readonly ranges: ByteRange[] = [];

  override read(key: string, range?: ByteRange): Promise<Readable> {
    this.ranges.push(range ?? {});
    return super.read(key, range);
  }
}

/** An S3 answer, read whole, as a proxy in front of the endpoint passes it on. */
interface ProxiedAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A backend under test: the store, and what it really holds underneath (temp files, unfinished uploads). */
interface Backend {
  store: BlobStore;
  /** Every object or file it holds, temp files included, sorted. */
  stored(): Promise<string[]>;
  /** Writes not finished: temp files (filesystem), multipart uploads not completed or aborted (S3). */
  unfinishedWrites(): Promise<number>;
  /** Leaves what a crash mid-write leaves behind, `count` times. */
  plantCrashLeftovers(count: number): Promise<void>;
  /** Puts a file (an object) named `name`, which need not be a valid key, as someone other than the store would. */
  plantForeignFile(name: string): Promise<void>;
  /** Blobs enough that a listing reads them in several pieces (each written to S3 is a request: fewer there). */
  manyBlobs: number;
}

/** The BlobStore contract, for every backend. */
function behavesAsBlobStore(makeBackend: () => Promise<Backend>): void {
  let backend: Backend;
  let store: BlobStore;
  beforeEach(async function () {
    this.timeout(20_000);
    backend = await makeBackend();
    store = backend.store;
    await store.init?.();
  });

  it('stores a stream under a nested key and reads it back', async () => {
    const data = randomBytes(300_000);
    assert.deepEqual(await store.write(KEY, Readable.from([data.subarray(0, 1), data.subarray(1)])), { sizeBytes: data.length });
    assert.deepEqual(await readAll(await store.read(KEY)), data);
    assert.equal(await store.size(KEY), data.length);
    assert.equal(await store.exists(KEY), true);
    assert.deepEqual(await backend.stored(), [KEY]);
  });

  it('stores an empty blob', async () => {
    assert.deepEqual(await store.write('empty.blob', Readable.from([])), { sizeBytes: 0 });
    assert.deepEqual(await readAll(await store.read('empty.blob')), Buffer.alloc(0));
    assert.equal(await store.size('empty.blob'), 0);
  });

  it('replaces an existing blob whole', async () => {
    await store.write(KEY, Readable.from([Buffer.from('old contents')]));
    await store.write(KEY, Readable.from([Buffer.from('new')]));
    assert.equal((await readAll(await store.read(KEY))).toString(), 'new');
  });

  it('leaves neither the blob nor an unfinished write when the input stream fails', async () => {
    await assert.rejects(store.write(KEY, failingAfter(randomBytes(2 * 1024 * 1024))), /client went away/);
    assert.equal(await store.exists(KEY), false);
    assert.deepEqual(await backend.stored(), []);
    assert.equal(await backend.unfinishedWrites(), 0);
  });

  it('keeps the previous blob when replacing it fails', async () => {
    await store.write(KEY, Readable.from([Buffer.from('old contents')]));
    await assert.rejects(store.write(KEY, failingAfter(Buffer.from('partial'))));
    assert.equal((await readAll(await store.read(KEY))).toString(), 'old contents');
    assert.deepEqual(await backend.stored(), [KEY]);
  });

  it('never shows a partly written blob under its key', async () => {
    const input = new PassThrough();
    const writing = store.write(KEY, input);
    input.write(randomBytes(1000));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await store.exists(KEY), false);
    input.end(randomBytes(1000));
    assert.deepEqual(await writing, { sizeBytes: 2000 });
    assert.equal(await store.size(KEY), 2000);
  });

  it('reads a byte range [start, end)', async () => {
    const data = randomBytes(1000);
    await store.write(KEY, Readable.from([data]));
    for (const [start, end] of [[0, 1000], [10, undefined], [999, 1000], [500, 501], [0, 0], [700, 700], [990, 5000], [2000, undefined]] as const) {
      assert.deepEqual(await readAll(await store.read(KEY, { start, end })), data.subarray(start, end), `${start}..${end}`);
    }
    await assert.rejects(store.read(KEY, { start: 5, end: 4 }), RangeError);
    await assert.rejects(store.read(KEY, { start: -1 }), RangeError);
  });

  it('reports a missing blob', async () => {
    await assert.rejects(store.read(KEY), BlobNotFoundError);
    await assert.rejects(store.read(KEY, { start: 10, end: 20 }), BlobNotFoundError);
    await assert.rejects(store.read(KEY, { start: 10, end: 10 }), BlobNotFoundError);
    assert.equal(await store.size(KEY), null);
    assert.equal(await store.exists(KEY), false);
  });

  it('treats a folder as no blob', async () => {
    await store.write(KEY, Readable.from([Buffer.from('x')]));
    assert.equal(await store.exists('tenants/t-1'), false);
    await assert.rejects(store.read('tenants/t-1'), BlobNotFoundError);
  });

  it('deletes idempotently', async () => {
    await store.write(KEY, Readable.from([Buffer.from('x')]));
    await store.delete(KEY);
    await store.delete(KEY);
    await store.delete('never/written.blob');
    assert.equal(await store.exists(KEY), false);
  });

  it('lists the blobs under a folder at any depth, and only those', async () => {
    const keys = ['tenants/t-1/a.blob', 'tenants/t-1/packs/00/b.pack', 'tenants/t-1/packs/01/c.pack', 'tenants/t-10/d.blob', 'tenants/t-2/e.blob'];
    for (const key of keys) await store.write(key, Readable.from([Buffer.from(key)]));
    const listed = async (prefix: string) => {
      const found: string[] = [];
      for await (const key of store.list(prefix)) found.push(key);
      return found.sort();
    };
    assert.deepEqual(await listed('tenants/t-1'), keys.slice(0, 3));
    assert.deepEqual(await listed('tenants/t-1/packs'), keys.slice(1, 3));
    assert.deepEqual(await listed('tenants'), keys);
    assert.deepEqual(await listed('tenants/t-3'), []);
    assert.deepEqual(await listed('tenants/t-1/a.blob'), []);
  });

  // A collection removes what it lists while the listing goes on (the filesystem's reads a folder a few entries at a time).
  it('lists every blob once when they are deleted as they are listed', async function () {
    this.timeout(60_000);
    const keys = Array.from({ length: backend.manyBlobs }, (_, i) => `tenants/t-1/log/${i % 2}/${String(i).padStart(6, '0')}.seg`);
    for (let i = 0; i < keys.length; i += 60) await Promise.all(keys.slice(i, i + 60).map((key) => store.write(key, Readable.from([Buffer.from(key)]))));
    const listed: string[] = [];
    // In batches, as a collection removes what it found (and as S3 would take 300 deletes one at a time for seconds),
    // several of them while the listing goes on.
    const deleteTogether = Math.min(50, Math.ceil(backend.manyBlobs / 6));
    const batch: string[] = [];
    for await (const key of store.list('tenants/t-1')) {
      listed.push(key);
      batch.push(key);
      if (batch.length === deleteTogether) await Promise.all(batch.splice(0).map((listedKey) => store.delete(listedKey)));
    }
    await Promise.all(batch.map((listedKey) => store.delete(listedKey)));
    assert.deepEqual(listed.sort(), [...keys].sort());
    for await (const key of store.list('tenants/t-1')) assert.fail(`${key} is left`);
  });

  it('lists only blob keys, not the files someone else put there (.DS_Store, a name with a space, an editor backup)', async () => {
    await store.write(KEY, Readable.from([Buffer.from('x')]));
    for (const name of ['tenants/.DS_Store', 'tenants/t-1/notes about it.txt', `${KEY}~`, 'tenants/t-1/.git/config']) await backend.plantForeignFile(name);
    const listed: string[] = [];
    for await (const key of store.list('tenants')) listed.push(key);
    assert.deepEqual(listed, [KEY]);
  });

  it('refuses unsafe keys before touching the storage', async () => {
    const badKeys = [
      '', '/etc/passwd', '../outside.blob', 'a/../../outside.blob', 'a/./b', 'a//b', 'a/', '.hidden', 'a/..',
      '-rf', 'a\\b', 'C:evil', 'a b', 'tenants/t1/snap\u0000.blob', 'ünïcode', 'x.blob.tmp-0123456789abcdef',
      'a'.repeat(201), `${'a/'.repeat(256)}a`,
    ];
    for (const key of badKeys) {
      assert.throws(() => assertValidBlobKey(key), InvalidBlobKeyError, JSON.stringify(key));
      await assert.rejects(store.write(key, Readable.from([Buffer.from('x')])), InvalidBlobKeyError);
      await assert.rejects(store.read(key), InvalidBlobKeyError);
      await assert.rejects(store.size(key), InvalidBlobKeyError);
      await assert.rejects(store.exists(key), InvalidBlobKeyError);
      await assert.rejects(store.delete(key), InvalidBlobKeyError);
    }
    assert.deepEqual(await backend.stored(), []);
    for (const key of [KEY, 'a', 'exports/2024-01-01T00_00_00Z.backup', 'A_b-c.d/e.F']) assertValidBlobKey(key);
  });

  it('releases the input stream when the write fails before reading it', async () => {
    const input = new PassThrough();
    await assert.rejects(store.write('../escape.blob', input), InvalidBlobKeyError);
    assert.equal(input.destroyed, true);
  });

  it('removes what a crash left mid-write, and only that', async () => {
    await store.write(KEY, Readable.from([Buffer.from('keep me')]));
    await backend.plantCrashLeftovers(2);
    assert.equal(await store.removeTemporaryFiles!(), 2);
    assert.deepEqual(await backend.stored(), [KEY]);
    assert.equal(await backend.unfinishedWrites(), 0);
    assert.equal(await store.removeTemporaryFiles!(), 0);
  });

  it('spares recent leftovers when asked to (another replica may be writing them)', async () => {
    await backend.plantCrashLeftovers(1);
    assert.equal(await store.removeTemporaryFiles!({ olderThanMs: 3_600_000 }), 0);
    assert.equal(await backend.unfinishedWrites(), 1);
    assert.equal(await store.removeTemporaryFiles!(), 1);
  });

  it('spares the writes still in progress', async () => {
    const input = new PassThrough();
    const writing = store.write(KEY, input);
    input.write(Buffer.from('first half '));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await store.removeTemporaryFiles!(), 0);
    input.end(Buffer.from('second half'));
    await writing;
    assert.equal((await readAll(await store.read(KEY))).toString(), 'first half second half');
  });
}

describe('FilesystemBlobStore', () => {
  let root: string;
  let store: FilesystemBlobStore;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'snapgraph-blobs-'));
    store = new FilesystemBlobStore(join(root, 'blobs'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  behavesAsBlobStore(async () => ({
    store,
    // Past the directory buffer the store reads a folder with (256 entries).
    manyBlobs: 300,
    stored: () => listFiles(store.rootDir),
    unfinishedWrites: async () => (await listFiles(store.rootDir)).filter((file) => file.includes(TEMP_FILE_MARKER)).length,
    plantCrashLeftovers: async (count) => {
      for (let i = 0; i < count; i++) {
        const leftover = join(store.rootDir, 'tenants', `t-${i}`, `snapshots/a.blob.tmp-${randomBytes(8).toString('hex')}`);
        await mkdir(join(leftover, '..'), { recursive: true });
        await writeFile(leftover, 'half a blob');
      }
    },
    plantForeignFile: async (name) => {
      await mkdir(join(store.rootDir, name, '..'), { recursive: true });
      await writeFile(join(store.rootDir, name), 'not a blob');
    },
  }));

  it('reads many ranges of one blob through one open file, as stored, fewer bytes past its end', async () => {
    await store.init();
    const bytes = randomBytes(300_000);
    await store.write(KEY, Readable.from([bytes]));
    const ranges = await store.openRanges(KEY);
    try {
      for (const [start, end] of [[0, 1], [1000, 250_000], [299_999, 300_000], [7, 7]]) {
        assert.deepEqual(await ranges.read(start, end), bytes.subarray(start, end));
      }
      assert.deepEqual(await ranges.read(299_000, 310_000), bytes.subarray(299_000));
      await assert.rejects(ranges.read(10, 5), RangeError);
    } finally {
      await ranges.close();
    }
    await assert.rejects(store.openRanges('tenants/t-1/snapshots/missing.blob'), BlobNotFoundError);
  });

  it('writes files readable only by their owner', async () => {
    await store.init();
    await store.write(KEY, Readable.from([Buffer.from('x')]));
    assert.equal((await stat(join(store.rootDir, KEY))).mode & 0o077, 0);
  });

  it('never lets a key reach outside its root', async () => {
    await store.init();
    const outside = join(root, 'outside.blob');
    await writeFile(outside, 'must survive');
    for (const key of ['../outside.blob', 'a/../../outside.blob']) await assert.rejects(store.delete(key), InvalidBlobKeyError);
    assert.equal(await readFile(outside, 'utf8'), 'must survive');
  });

  it('finds nothing to clean in a store that does not exist yet', async () => {
    assert.equal(await new FilesystemBlobStore(join(root, 'missing')).removeTemporaryFiles(), 0);
  });

  it('fails a copy-in (another file system) of a file it cannot open with that error, and stores nothing', async () => {
    // The file was opened by the stream handed to write(), whose error came while the store made its directories,
    // with nothing listening yet: an uncaught exception (mocha fails the test on it), which ended the server.
    await store.init();
    const unreadable = join(root, 'upload-without-read-permission');
    await writeFile(unreadable, 'bytes', { mode: 0o200 });
    const missing = join(root, 'upload-gone');
    for (const path of process.getuid?.() === 0 ? [missing] : [missing, unreadable]) {
      await assert.rejects(moveByCopy(store, `tenants/t/uploads/${randomBytes(4).toString('hex')}.blob`, path), /ENOENT|EACCES/);
    }
    assert.deepEqual(await listFiles(store.rootDir), []);
  });
});

describeS3('S3BlobStore (on the local S3 endpoint)', ({ s3 }) => {
  let bucket: string;
  let client: S3Client;
  let location: { bucket: string; prefix: string };
  const newStore = (options?: S3BlobStoreOptions) => new S3BlobStore(testS3Client(s3(), s3().blobs), location, options);
  before(async function () {
    this.timeout(20_000);
    bucket = await createTestBucket(s3(), s3().blobs);
    client = testS3Client(s3(), s3().blobs);
  });
  after(() => client?.destroy());
  beforeEach(() => {
    location = { bucket, prefix: `run-${randomBytes(6).toString('hex')}/blobs` };
  });

  const unfinishedUploads = async () => (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${location.prefix}/` }))).Uploads ?? [];

  behavesAsBlobStore(async () => {
    const store = newStore({ listPageSize: 2 });
    return {
      store,
      manyBlobs: 30,
      stored: async () => {
        const { Contents = [] } = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${location.prefix}/` }));
        return Contents.map((object) => object.Key!.slice(location.prefix.length + 1)).sort();
      },
      unfinishedWrites: async () => (await unfinishedUploads()).length,
      plantCrashLeftovers: async (count) => {
        for (let i = 0; i < count; i++) {
          const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${location.prefix}/tenants/t-${i}/a.blob` }));
          await client.send(new UploadPartCommand({ Bucket: bucket, Key: `${location.prefix}/tenants/t-${i}/a.blob`, UploadId, PartNumber: 1, Body: Buffer.from('half a blob') }));
        }
      },
      plantForeignFile: async (name) => {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${location.prefix}/${name}`, Body: Buffer.from('not a blob') }));
      },
    };
  });

  it('streams a large blob in checked parts and reads ranges across part boundaries', async function () {
    this.timeout(60_000);
    const store = newStore({ partBytes: MIN_PART_BYTES, partConcurrency: 2 });
    const data = randomBytes(2 * MIN_PART_BYTES + 12_345);
    // Pieces that do not line up with parts.
    const pieces = Array.from({ length: Math.ceil(data.length / 777_777) }, (_, i) => data.subarray(i * 777_777, (i + 1) * 777_777));
    assert.deepEqual(await store.write(KEY, Readable.from(pieces)), { sizeBytes: data.length });
    assert.equal(await store.size(KEY), data.length);
    assert.ok(createHash('sha256').update(await readAll(await store.read(KEY))).digest().equals(createHash('sha256').update(data).digest()));
    for (const [start, end] of [[MIN_PART_BYTES - 10, MIN_PART_BYTES + 10], [2 * MIN_PART_BYTES, undefined], [data.length - 1, data.length]] as const) {
      assert.deepEqual(await readAll(await store.read(KEY, { start, end })), data.subarray(start, end), `${start}..${end}`);
    }
    assert.equal((await unfinishedUploads()).length, 0);
  });

  it('aborts the multipart upload when the input fails after some parts', async function () {
    this.timeout(60_000);
    const store = newStore({ partBytes: MIN_PART_BYTES, partConcurrency: 2 });
    await assert.rejects(store.write(KEY, failingAfter(randomBytes(MIN_PART_BYTES * 2 + 1))), /client went away/);
    assert.equal(await store.exists(KEY), false);
    assert.equal((await unfinishedUploads()).length, 0);
  });

  // A boot's clean-up beside other replicas aborts uploads nobody has written to for a while: judged by their start, a
  // write still going long after it began (a 4 GiB upload at a client's pace) was aborted, and failed.
  it('spares an unfinished upload started long ago whose last part is recent, and aborts it once that is old too', async function () {
    this.timeout(30_000);
    const key = `${location.prefix}/tenants/t/slow.blob`;
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: randomBytes(MIN_PART_BYTES) }));
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 2, Body: Buffer.from('still writing') }));
    assert.equal(await newStore().removeTemporaryFiles({ olderThanMs: 2_000 }), 0, 'a write still going was aborted');
    assert.equal((await unfinishedUploads()).length, 1);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(await newStore().removeTemporaryFiles({ olderThanMs: 2_000 }), 1);
    assert.equal((await unfinishedUploads()).length, 0);
  });

  it("tells a multipart upload's id before its first part, so that what a dead writer left can be aborted", async function () {
    this.timeout(60_000);
    const store = newStore({ partBytes: MIN_PART_BYTES, partConcurrency: 2 });
    let heard: string | undefined;
    let resume: () => void = () => undefined;
    // A writer that stops after starting its upload, as a killed process does: only the id it told is left.
    const dead = new Promise<void>((resolve) => (resume = resolve));
    const writing = store.write(KEY, Readable.from([randomBytes(MIN_PART_BYTES * 2 + 1)]), {
      onMultipartStarted: async (uploadId) => {
        heard = uploadId;
        await dead;
        throw new Error('killed');
      },
    });
    await eventually(() => heard !== undefined, { what: 'the upload id' });
    assert.deepEqual((await unfinishedUploads()).map((upload) => upload.UploadId), [heard]);
    await store.abortWrite(KEY, heard!);
    assert.equal((await unfinishedUploads()).length, 0);
    await store.abortWrite(KEY, heard!); // already ended: no error
    resume();
    await assert.rejects(writing, /killed/);
    assert.equal(await store.exists(KEY), false);
  });

  it('runs beforeCommit once every byte is sent, before the object is visible: a throw there leaves nothing', async function () {
    this.timeout(60_000);
    const store = newStore({ partBytes: MIN_PART_BYTES, partConcurrency: 2 });
    for (const [size, parts] of [[1_000, 0], [2 * MIN_PART_BYTES + 1, 3]]) {
      const data = randomBytes(size);
      let inputEnded = false;
      const input = () =>
        Readable.from(
          (async function* () {
            yield data;
            inputEnded = true;
          })(),
        );
      let uploadId: string | undefined;
      let seen: { inputEnded: boolean; visible: boolean; partsSent: number } | undefined;
      const refused = store.write(KEY, input(), {
        onMultipartStarted: (id) => void (uploadId = id),
        beforeCommit: async () => {
          const sent = uploadId ? await client.send(new ListPartsCommand({ Bucket: bucket, Key: `${location.prefix}/${KEY}`, UploadId: uploadId })) : undefined;
          seen = { inputEnded, visible: await store.exists(KEY), partsSent: sent?.Parts?.length ?? 0 };
          throw new Error('cancelled on request');
        },
      });
      await assert.rejects(refused, /cancelled on request/);
      assert.deepEqual(seen, { inputEnded: true, visible: false, partsSent: parts }, `${size} bytes`);
      assert.equal(await store.exists(KEY), false);
      assert.equal((await unfinishedUploads()).length, 0);

      let calls = 0;
      inputEnded = false;
      await store.write(KEY, input(), { beforeCommit: () => void (calls += 1) });
      assert.equal(calls, 1);
      assert.equal(await store.size(KEY), size);
      await store.delete(KEY);
    }
  });

  /**
   * Runs `body` with a store (parts of 5 MiB, two at a time) in front of the endpoint: every request passes, but part
   * uploads are held and never answered (`held`).
   */
  // The SDK sends a completion again when its answer is lost; a service done with it may answer NoSuchUpload (Swift
  // answers it again; the proxy answers as such a service would).
  it('takes a completion whose answer was lost, once the object is there with the parts sent (the SDK sent it again)', async function () {
    this.timeout(60_000);
    let lost = 0;
    const proxy = createHttpServer((request, response) => {
      const completing = request.method === 'POST' && /[?&]uploadId=/.test(request.url ?? '') && !/[?&]partNumber=/.test(request.url ?? '');
      if (completing && lost > 0) {
        request.resume();
        response.writeHead(404, { 'content-type': 'application/xml' });
        response.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>');
        return;
      }
      const target = new URL(request.url ?? '/', s3().endpoint);
      const forwarded = httpRequest(target, { method: request.method, headers: request.headers }, (answer) => {
        if (completing && lost === 0) {
          lost += 1;
          answer.resume();
          answer.on('end', () => response.socket?.destroy()); // done by the service, its answer lost on the way
          return;
        }
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      });
      forwarded.on('error', () => response.destroy());
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const store = new S3BlobStore(testS3Client({ ...s3(), endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }, s3().blobs), location, {
        partBytes: MIN_PART_BYTES,
      });
      const bytes = randomBytes(MIN_PART_BYTES * 2 + 7);
      assert.deepEqual(await store.write(KEY, Readable.from([bytes])), { sizeBytes: bytes.length });
      assert.equal(lost, 1, 'no completion answer was lost');
      const read: Buffer[] = [];
      for await (const piece of await newStore().read(KEY)) read.push(piece as Buffer);
      assert.deepEqual(Buffer.concat(read), bytes);
    } finally {
      proxy.closeAllConnections();
      proxy.close();
    }
  });

  async function withPartsHeld(body: (stalled: S3BlobStore, held: ServerResponse[]) => Promise<void>): Promise<void> {
    const held: ServerResponse[] = [];
    const proxy = createHttpServer((request, response) => {
      if (/[?&]partNumber=/.test(request.url ?? '')) {
        request.resume();
        held.push(response);
        return;
      }
      const target = new URL(request.url ?? '/', s3().endpoint);
      const forwarded = httpRequest(target, { method: request.method, headers: request.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      });
      forwarded.on('error', () => response.destroy());
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const stalled = new S3BlobStore(
      testS3Client({ ...s3(), endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }, s3().blobs),
      location,
      { partBytes: MIN_PART_BYTES, partConcurrency: 2 },
    );
    try {
      await body(stalled, held);
    } finally {
      for (const response of held) response.destroy();
      proxy.closeAllConnections();
      proxy.close();
    }
  }

  it('gives up the parts on their way when its input fails, rather than waiting for a stalled service', async function () {
    this.timeout(60_000);
    await withPartsHeld(async (stalled, held) => {
      // The input fails while both part slots wait on parts the service does not answer (as a cancel does).
      const input = new PassThrough();
      input.write(randomBytes(MIN_PART_BYTES * 2 + 1));
      const writing = stalled.write(KEY, input);
      await eventually(() => held.length === 2, { what: 'both parts to be on their way' });
      input.destroy(new Error('cancelled on request'));
      await within(assert.rejects(writing, /cancelled on request/), 20_000, 'the write to give up');
      assert.equal(await stalled.exists(KEY), false);
      assert.equal((await unfinishedUploads()).length, 0, 'the multipart upload is aborted');
    });
  });

  it("fails with its input's error when the input fails while it waits for a part slot, not with an abandoned part's", async function () {
    this.timeout(60_000);
    // With both slots taken by parts never answered, the write waits to add its third part.
    await withPartsHeld(async (stalled, held) => {
      const input = new PassThrough();
      input.write(randomBytes(MIN_PART_BYTES * 3 + 1));
      const writing = stalled.write(KEY, input);
      await eventually(() => held.length === 2, { what: 'both parts to be on their way' });
      // The disk under the input fails: that is why the write failed (an EIO, say, which its caller tells apart).
      const failure = Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      input.destroy(failure);
      await within(
        assert.rejects(writing, (error) => {
          assert.equal(error, failure);
          return true;
        }),
        20_000,
        'the write to give up',
      );
      assert.equal(await stalled.exists(KEY), false);
      assert.equal((await unfinishedUploads()).length, 0, 'the multipart upload is aborted');
    });
  });

  it('keeps encrypted blobs that read back through EncryptedBlobStore, by range too', async () => {
    const encrypted = new EncryptedBlobStore(newStore(), new Keyring(MasterKey.generate()), { chunkSize: 1000 });
    const plain = randomBytes(12_345);
    await encrypted.write(KEY, Readable.from([plain]));
    assert.deepEqual(await readAll(await encrypted.read(KEY)), plain);
    assert.deepEqual(await readAll(await encrypted.read(KEY, { start: 4321, end: 9876 })), plain.subarray(4321, 9876));
    assert.equal(await encrypted.plainSize(KEY), plain.length);
  });

  /**
   * A store whose requests reach the endpoint through `answer`, which may forward each (`forward()`: the endpoint's
   * answer, read whole) and change what comes back, or answer it itself: a service configured otherwise than Swift here.
   */
  const storeBehind = async (answer: (request: { method: string; url: string; body: Buffer }, forward: () => Promise<ProxiedAnswer>) => Promise<ProxiedAnswer>) => {
    const proxy = createHttpServer(async (request, response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      const forward = () =>
        new Promise<ProxiedAnswer>((resolve, reject) => {
          const forwarded = httpRequest(new URL(request.url ?? '/', s3().endpoint), { method: request.method, headers: request.headers }, async (incoming) => {
            const parts: Buffer[] = [];
            for await (const part of incoming) parts.push(part as Buffer);
            resolve({ status: incoming.statusCode ?? 502, headers: { ...incoming.headers }, body: Buffer.concat(parts) });
          });
          forwarded.on('error', reject);
          forwarded.end(body);
        });
      try {
        const answered = await answer({ method: request.method ?? 'GET', url: request.url ?? '/', body }, forward);
        delete answered.headers['transfer-encoding'];
        if (request.method !== 'HEAD') answered.headers['content-length'] = String(answered.body.length);
        response.writeHead(answered.status, answered.headers).end(answered.body);
      } catch {
        response.destroy();
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const store = new S3BlobStore(
      testS3Client({ ...s3(), endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }, s3().blobs),
      location,
      { partBytes: MIN_PART_BYTES, partConcurrency: 2, listPageSize: 2 },
    );
    return {
      store,
      close: async () => {
        await store.destroy();
        proxy.closeAllConnections();
        await new Promise((resolve) => proxy.close(resolve));
      },
    };
  };

  it('writes to a bucket encrypted under KMS keys, whose ETags are not MD5s of the bytes (AWS SSE-KMS)', async function () {
    this.timeout(60_000);
    // As S3 answers under SSE-KMS (a bucket's default encryption, often): every ETag is opaque, and the parts of a
    // multipart upload are completed by theirs. Swift's own ETags stay behind the proxy.
    const opaque = new Map<string, string>();
    const opaqueEtag = (etag: string) => {
      const made = `"${randomBytes(16).toString('hex')}${/-\d+/.exec(etag)?.[0] ?? ''}"`;
      opaque.set(made, etag);
      return made;
    };
    const { store, close } = await storeBehind(async (request, forward) => {
      const query = new URL(request.url, 'http://s3').searchParams;
      if (request.method === 'POST' && query.has('uploadId')) {
        const parts = [...request.body.toString('utf8').matchAll(/<Part>(.*?)<\/Part>/gs)].map(([, part]) => ({
          ETag: opaque.get(/<ETag>(.*?)<\/ETag>/s.exec(part)![1].replaceAll('&quot;', '"')),
          PartNumber: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(part)![1]),
        }));
        const [, bucketName, ...key] = new URL(request.url, 'http://s3').pathname.split('/');
        const { ETag } = await client.send(
          new CompleteMultipartUploadCommand({ Bucket: bucketName, Key: decodeURIComponent(key.join('/')), UploadId: query.get('uploadId')!, MultipartUpload: { Parts: parts } }),
        );
        const body = `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult><ETag>${opaqueEtag(ETag!)}</ETag></CompleteMultipartUploadResult>`;
        return { status: 200, headers: { 'x-amz-server-side-encryption': 'aws:kms' }, body: Buffer.from(body) };
      }
      const answered = await forward();
      if (answered.status < 300 && typeof answered.headers.etag === 'string') {
        answered.headers.etag = opaqueEtag(answered.headers.etag);
        answered.headers['x-amz-server-side-encryption'] = 'aws:kms';
      }
      return answered;
    });
    try {
      for (const size of [1_000, 2 * MIN_PART_BYTES + 1]) {
        const data = randomBytes(size);
        assert.deepEqual(await store.write(KEY, Readable.from([data])), { sizeBytes: size }, `${size} bytes`);
        assert.deepEqual(await readAll(await store.read(KEY)), data);
      }
      assert.equal((await unfinishedUploads()).length, 0);
    } finally {
      await close();
    }
  });

  it('fails a write whose check after completing cannot be made, and leaves the complete object (it may have replaced the previous one)', async function () {
    this.timeout(60_000);
    // A service whose completion answers no ETag (the size is checked then), and that does not answer the HEAD.
    const { store, close } = await storeBehind(async (request, forward) => {
      if (request.method === 'HEAD') return { status: 503, headers: {}, body: Buffer.alloc(0) };
      const answered = await forward();
      if (request.method === 'POST' && /[?&]uploadId=/.test(request.url)) {
        answered.body = Buffer.from(answered.body.toString('utf8').replace(/<ETag>.*?<\/ETag>/s, ''));
      }
      return answered;
    });
    try {
      await newStore().write(KEY, Readable.from([Buffer.from('the previous blob')]));
      const data = randomBytes(2 * MIN_PART_BYTES + 1);
      await assert.rejects(store.write(KEY, Readable.from([data])), (error: unknown) => (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 503);
      assert.ok((await readAll(await newStore().read(KEY))).equals(data));
      assert.equal((await unfinishedUploads()).length, 0);
    } finally {
      await close();
    }
  });

  it('writes a blob of many parts with keys that may not read (no s3:GetObject: every HEAD and GET is 403)', async function () {
    this.timeout(60_000);
    const { store, close } = await storeBehind(async (request, forward) =>
      request.method === 'HEAD' || request.method === 'GET' ? { status: 403, headers: {}, body: Buffer.alloc(0) } : forward(),
    );
    try {
      assert.deepEqual(await store.write(KEY, Readable.from([randomBytes(2 * MIN_PART_BYTES + 1)])), { sizeBytes: 2 * MIN_PART_BYTES + 1 });
      assert.equal(await newStore().size(KEY), 2 * MIN_PART_BYTES + 1);
      assert.equal((await unfinishedUploads()).length, 0);
    } finally {
      await close();
    }
  });

  /**
   * A store whose GETs reach the endpoint through a proxy that cuts the connection after `cutAfter(n)` bytes of the
   * n-th GET's body (undefined: passes it whole), as a reset connection does; `beforeGet(n)` runs before the n-th GET
   * is forwarded. The headers of every GET are recorded.
   */
  const storeCuttingReads = async (
    cutAfter: (n: number) => number | undefined,
    { beforeGet, options }: { beforeGet?: (n: number) => Promise<void>; options?: S3BlobStoreOptions } = {},
  ) => {
    const gets: Record<string, string | string[] | undefined>[] = [];
    const proxy = createHttpServer(async (request, response) => {
      const n = request.method === 'GET' ? gets.push(request.headers) : 0;
      if (n > 0) await beforeGet?.(n);
      const forwarded = httpRequest(new URL(request.url ?? '/', s3().endpoint), { method: request.method, headers: request.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        const limit = n > 0 && (answer.statusCode ?? 500) < 300 ? cutAfter(n) : undefined;
        if (limit === undefined) return void answer.pipe(response);
        let passed = 0;
        answer.on('data', (chunk: Buffer) => {
          if (passed >= limit) return;
          const last = passed + chunk.length >= limit;
          // The bytes up to the limit are sent, then the connection closes in the middle of the body.
          response.write(chunk.subarray(0, limit - passed), () => last && response.socket?.destroy());
          passed += chunk.length;
          if (last) answer.destroy();
        });
      });
      forwarded.on('error', () => response.destroy());
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const store = new S3BlobStore(
      testS3Client({ ...s3(), endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }, s3().blobs),
      location,
      { readRetryDelayMs: 10, ...options },
    );
    return {
      store,
      gets,
      close: async () => {
        await store.destroy();
        proxy.closeAllConnections();
        await new Promise((resolve) => proxy.close(resolve));
      },
    };
  };

  it('resumes a read whose connection is reset mid-body from the next byte, whole and by range', async function () {
    this.timeout(30_000);
    const data = randomBytes(1024 * 1024);
    await newStore().write(KEY, Readable.from([data]));
    for (const [start, end] of [[undefined, undefined], [1000, 900_000], [5000, undefined]] as const) {
      const { store, gets, close } = await storeCuttingReads((n) => (n === 1 ? 100_000 : undefined));
      try {
        const stream = await store.read(KEY, { start, end });
        // Read slowly: what waits for the reader stays a buffer's worth, not the rest of the object.
        let mostBuffered = 0;
        const chunks: Buffer[] = [];
        for await (const chunk of stream) {
          chunks.push(chunk as Buffer);
          await new Promise((resolve) => setTimeout(resolve, 2));
          mostBuffered = Math.max(mostBuffered, stream.readableLength);
        }
        const output = Buffer.concat(chunks);
        assert.ok(mostBuffered <= 128 * 1024, `${mostBuffered} bytes buffered`);
        assert.ok(output.equals(data.subarray(start, end)), `${start}..${end}: the bytes are the object's`);
        assert.equal(gets.length, 2);
        const resumedAt = (start ?? 0) + 100_000;
        assert.equal(gets[1].range, `bytes=${resumedAt}-${(end ?? data.length) - 1}`);
        assert.match(String(gets[1]['if-match']), /^"?[0-9a-f]{32}"?$/, 'the resumed GET is bound to the ETag first answered');
      } finally {
        await close();
      }
    }
  });

  it('resumes a read of an object written in parts (its ETag is not an MD5)', async function () {
    this.timeout(60_000);
    const data = randomBytes(2 * MIN_PART_BYTES + 1);
    await newStore({ partBytes: MIN_PART_BYTES }).write(KEY, Readable.from([data]));
    const { store, gets, close } = await storeCuttingReads((n) => (n === 1 ? MIN_PART_BYTES + 7 : undefined));
    try {
      assert.ok((await readAll(await store.read(KEY))).equals(data));
      assert.equal(gets.length, 2);
      assert.match(String(gets[1]['if-match']), /-3"?$/);
    } finally {
      await close();
    }
  });

  it('resumes a read cut several times, up to its retry budget, then fails naming the blob', async function () {
    this.timeout(30_000);
    const data = randomBytes(1024 * 1024);
    await newStore().write(KEY, Readable.from([data]));
    const withinBudget = await storeCuttingReads((n) => (n <= 3 ? 50_000 : undefined), { options: { readRetries: 3 } });
    try {
      assert.ok((await readAll(await withinBudget.store.read(KEY))).equals(data));
      assert.equal(withinBudget.gets.length, 4);
    } finally {
      await withinBudget.close();
    }
    const beyondBudget = await storeCuttingReads(() => 50_000, { options: { readRetries: 3 } });
    try {
      const { output, error } = await drain(await beyondBudget.store.read(KEY));
      assert.ok(error, 'the read fails');
      assert.match(error.message, new RegExp(`${KEY}.*(3 retries|retried 3 times)`));
      assert.equal(beyondBudget.gets.length, 4);
      assert.ok(output.equals(data.subarray(0, output.length)), 'what was delivered is the start of the object');
      assert.equal(output.length, 4 * 50_000);
    } finally {
      await beyondBudget.close();
    }
  });

  it('never stitches a changed object together: a read resumed after the object was replaced fails naming the blob', async function () {
    this.timeout(30_000);
    const data = randomBytes(1024 * 1024);
    await newStore().write(KEY, Readable.from([data]));
    const { store, gets, close } = await storeCuttingReads((n) => (n === 1 ? 100_000 : undefined), {
      beforeGet: async (n) => {
        if (n === 2) await newStore().write(KEY, Readable.from([randomBytes(data.length)]));
      },
    });
    try {
      const { output, error } = await drain(await store.read(KEY));
      assert.ok(error, 'the read fails');
      assert.ok(!(error instanceof BlobNotFoundError));
      assert.match(error.message, new RegExp(`${KEY}.*changed`));
      assert.ok(output.equals(data.subarray(0, 100_000)));
      assert.equal(gets.length, 2);
    } finally {
      await close();
    }
  });

  it('fails a read at once, naming the blob, when the object is gone by the time it resumes', async function () {
    this.timeout(30_000);
    await newStore().write(KEY, Readable.from([randomBytes(1024 * 1024)]));
    const { store, gets, close } = await storeCuttingReads((n) => (n === 1 ? 100_000 : undefined), {
      beforeGet: async (n) => {
        if (n === 2) await newStore().delete(KEY);
      },
    });
    try {
      const { output, error } = await drain(await store.read(KEY));
      assert.match(String(error), new RegExp(`${KEY}.*(NoSuchKey|HTTP 404)`));
      assert.equal(output.length, 100_000);
      assert.equal(gets.length, 2, 'not retried');
    } finally {
      await close();
    }
  });

  it('fails a read whose connection goes silent mid-body, and a write whose part is never answered, instead of hanging', async function () {
    this.timeout(60_000);
    await newStore().write(KEY, Readable.from([randomBytes(1024 * 1024)]));
    // Passes everything on, except that a GET's answer stops after its first bytes and a part is never answered: the
    // connections stay open and silent, as behind a NAT that dropped them or a service that froze.
    const silent: ServerResponse[] = [];
    const proxy = createHttpServer((request, response) => {
      if (/[?&]partNumber=/.test(request.url ?? '')) {
        request.resume();
        silent.push(response);
        return;
      }
      const forwarded = httpRequest(new URL(request.url ?? '/', s3().endpoint), { method: request.method, headers: request.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        if (request.method !== 'GET') return void answer.pipe(response);
        silent.push(response);
        answer.once('data', (first: Buffer) => {
          response.write(first);
          answer.destroy();
        });
      });
      forwarded.on('error', () => response.destroy());
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const client = createS3Client(
      { endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, credentials: s3().blobs },
      { maxAttempts: 2, idleTimeoutMs: 1_000 },
    );
    // Each resumed read stops again: the read fails once it has resumed as often as it may.
    const stalled = new S3BlobStore(client, location, { partBytes: MIN_PART_BYTES, readRetries: 2, readRetryDelayMs: 10 });
    try {
      const { output, error } = await within(drain(await stalled.read(KEY)), 15_000, 'the read to fail');
      assert.ok(error, 'the read fails');
      assert.ok(output.length < 1024 * 1024);
      await within(assert.rejects(stalled.write('other.blob', Readable.from([randomBytes(2 * MIN_PART_BYTES)]))), 15_000, 'the write to fail');
      assert.equal((await unfinishedUploads()).length, 0);
    } finally {
      client.destroy();
      for (const response of silent) response.destroy();
      proxy.closeAllConnections();
      proxy.close();
    }
  });

  it('fails a listing that the service cut short (truncated, with no token to go on) rather than yield only its start', async function () {
    this.timeout(20_000);
    // As a service answers that ignores list-type=2 (and answers a version 1 listing): truncated, and no token.
    const { store, close } = await storeBehind(async (request, forward) => {
      const answered = await forward();
      if (request.method === 'GET' && /[?&]list-type=2/.test(request.url)) {
        answered.body = Buffer.from(answered.body.toString('utf8').replace(/<NextContinuationToken>.*?<\/NextContinuationToken>/s, ''));
      }
      return answered;
    });
    try {
      for (const name of ['a', 'b', 'c']) await store.write(`tenants/t-1/${name}.blob`, Readable.from([Buffer.from(name)]));
      const listing = (async () => {
        const found: string[] = [];
        for await (const key of store.list('tenants')) found.push(key);
        return found;
      })();
      await assert.rejects(listing, /listing .* cut short|no continuation token/i);
    } finally {
      await close();
    }
  });

  it("lists only blobs, not the folder objects a console or a sync tool puts in a bucket", async () => {
    const store = newStore();
    await store.write(KEY, Readable.from([Buffer.from('x')]));
    // What the S3 console's "Create folder" makes, and a name no blob can have.
    for (const name of ['tenants/', 'tenants/t-1/', 'tenants/t-1/notes about it.txt']) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${location.prefix}/${name}`, Body: Buffer.alloc(0) }));
    }
    const listed: string[] = [];
    for await (const key of store.list('tenants')) listed.push(key);
    assert.deepEqual(listed, [KEY]);
  });

  it('never takes a missing bucket for missing blobs: reads and sizes fail instead', async () => {
    // A bucket removed (or renamed) under a running server: a blob reported missing is recorded as damage (a change-log
    // segment, a pack); an outage is not.
    const store = new S3BlobStore(testS3Client(s3(), s3().blobs), { bucket: 'snapgraph-no-such-bucket', prefix: 'blobs' });
    const outage = (error: unknown) => !(error instanceof BlobNotFoundError) && /snapgraph-no-such-bucket/.test(String(error));
    await assert.rejects(store.read(KEY), outage);
    await assert.rejects(store.read(KEY, { start: 10, end: 20 }), outage);
    await assert.rejects(store.size(KEY), outage);
    await assert.rejects(store.exists(KEY), outage);
    await assert.rejects(store.metadata(KEY), outage);
  });

  it('says which bucket it cannot reach at init', async () => {
    const store = new S3BlobStore(testS3Client(s3(), s3().blobs), { bucket: 'snapgraph-no-such-bucket', prefix: '' });
    await assert.rejects(store.init(), /cannot reach the blob bucket snapgraph-no-such-bucket: NoSuchBucket/);
  });

  it('says at init what the service has against the credentials', async () => {
    const wrongSecret = new S3BlobStore(testS3Client(s3(), { ...s3().blobs, secretAccessKey: 'not-the-secret' }), location);
    await assert.rejects(wrongSecret.init(), /cannot reach the blob bucket .*: SignatureDoesNotMatch \(HTTP 403\)/);
    const otherAccount = new S3BlobStore(testS3Client(s3(), s3().second), location);
    await assert.rejects(otherAccount.init(), /cannot reach the blob bucket .*: (AccessDenied \(HTTP 403\)|NoSuchBucket \(HTTP 404\))/);
  });
});

describe('EncryptedBlobStore', () => {
  const chunkSize = 1000;
  const keyring = new Keyring(MasterKey.generate());
  let root: string;
  let files: FilesystemBlobStore;
  let store: EncryptedBlobStore;
  const rawPath = () => join(files.rootDir, KEY);

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'snapgraph-encrypted-blobs-'));
    files = new FilesystemBlobStore(join(root, 'blobs'));
    store = new EncryptedBlobStore(files, keyring, { chunkSize });
    await store.init();
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('round-trips plaintext and reports plain and stored sizes', async () => {
    const plain = randomBytes(12_345);
    const result = await store.write(KEY, Readable.from([plain]));
    assert.deepEqual(result, { plainBytes: plain.length, storedBytes: encryptedSize(plain.length, chunkSize) });
    assert.equal(await files.size(KEY), result.storedBytes);
    assert.equal(await store.plainSize(KEY), plain.length);
    assert.deepEqual(await readAll(await store.read(KEY)), plain);
  });

  it('stores no recognisable plaintext', async () => {
    const phrase = 'MATCH (n:Customer {ssn: "123-45-6789"}) ';
    await store.write(KEY, Readable.from([Buffer.from(phrase.repeat(2000))]));
    const raw = await readFile(rawPath());
    for (let offset = 0; offset + 12 <= phrase.length; offset += 4) {
      assert.equal(raw.indexOf(phrase.slice(offset, offset + 12)), -1, 'plaintext visible in the stored file');
    }
  });

  it('reads plaintext ranges [start, end) equal to slices', async () => {
    const plain = randomBytes(5555);
    await store.write(KEY, Readable.from([plain]));
    for (const start of [0, 1, 999, 1000, 1001, 2500, 5554, 5555, 9000]) {
      for (const end of [start, start + 1, start + 999, start + 1000, start + 3001, undefined]) {
        const output = await readAll(await store.read(KEY, { start, end }));
        assert.deepEqual(output, plain.subarray(start, end), `${start}..${end}`);
      }
    }
  });

  it('fetches only the header and the chunks a range needs', async () => {
    const recording = new RecordingBlobStore(files.rootDir);
    const ranged = new EncryptedBlobStore(recording, keyring, { chunkSize });
    await ranged.write(KEY, Readable.from([randomBytes(100_000)]));
    assert.equal((await readAll(await ranged.read(KEY, { start: 50_500, end: 50_600 }))).length, 100);
    const [header, body] = recording.ranges;
    assert.deepEqual(header, { start: 0, end: 79 });
    assert.equal(body.end! - body.start!, chunkSize + 16);
  });

  it('detects a flipped byte anywhere in the stored file, whole or by range', async () => {
    const plain = randomBytes(4321);
    await store.write(KEY, Readable.from([plain]));
    const original = await readFile(rawPath());
    for (let offset = 0; offset < original.length; offset += 37) {
      const tampered = Buffer.from(original);
      tampered[offset] ^= 0x04;
      await writeFile(rawPath(), tampered);
      const whole = await drain(await store.read(KEY));
      assert.ok(whole.error instanceof BlobIntegrityError || whole.error instanceof UnknownKeyError, `offset ${offset}`);
      assert.deepEqual(whole.output, plain.subarray(0, whole.output.length));
      const chunk = Math.max(0, Math.floor((offset - 79) / (chunkSize + 16)));
      const ranged = await drain(await store.read(KEY, { start: chunk * chunkSize + 1, end: chunk * chunkSize + 2 }));
      assert.ok(ranged.error instanceof BlobIntegrityError || ranged.error instanceof UnknownKeyError, `range, offset ${offset}`);
      assert.equal(ranged.output.length, 0);
    }
  });

  it('detects a truncated file', async () => {
    const plain = randomBytes(4321);
    await store.write(KEY, Readable.from([plain]));
    const storedBytes = (await files.size(KEY))!;
    for (const length of [storedBytes - 1, storedBytes - 16, 79 + 4 * (chunkSize + 16), 79 + 2 * (chunkSize + 16) + 500, 100, 10, 0]) {
      await truncate(rawPath(), length);
      const { error } = await drain(await store.read(KEY));
      assert.ok(error instanceof BlobIntegrityError, `length ${length}: ${String(error)}`);
      const ranged = await drain(await store.read(KEY, { start: 3000 }));
      assert.ok(ranged.error instanceof BlobIntegrityError, `range, length ${length}: ${String(ranged.error)}`);
    }
  });

  it('detects a file cut 16 bytes into a chunk, where it looks like a whole shorter blob, also by a range that stops before the cut', async () => {
    const plain = randomBytes(4321);
    await store.write(KEY, Readable.from([plain]));
    // Three whole chunks and 16 bytes of the fourth: the length of a 3000-byte blob, whose final chunk is its tag alone.
    await truncate(rawPath(), 79 + 3 * (chunkSize + 16) + 16);
    for (const range of [{}, { start: 2500 }, { start: 0, end: plain.length }, { start: 2999, end: 5000 }]) {
      const { output, error } = await drain(await store.read(KEY, range));
      assert.ok(error instanceof BlobIntegrityError, `${JSON.stringify(range)}: ${String(error)}, after ${output.length} bytes`);
      assert.deepEqual(output, plain.subarray(range.start ?? 0, (range.start ?? 0) + output.length));
    }
  });

  it("refuses a blob copied over another's name: one tenant's, snapshot's or instance's data never reads as another's", async () => {
    const other = 'tenants/t2/exports/s2.archive';
    await store.write(KEY, Readable.from([Buffer.from('the data of the first')]));
    await store.write(other, Readable.from([Buffer.from('the data of another')]));
    await files.write(other, await files.read(KEY));
    for (const range of [{}, { start: 4, end: 8 }]) {
      const { output, error } = await drain(await store.read(other, range));
      assert.ok(error instanceof BlobIntegrityError, `${JSON.stringify(range)}: ${String(error)}`);
      assert.equal(output.length, 0);
    }
    assert.deepEqual(await readAll(await store.read(KEY)), Buffer.from('the data of the first'));
  });

  it('reads the blobs earlier releases wrote bound to no name, whole and by range', async () => {
    const plain = randomBytes(4321);
    await files.write(KEY, Readable.from([plain]).pipe(createEncryptStream(keyring, { chunkSize })));
    assert.deepEqual(await readAll(await store.read(KEY)), plain);
    assert.deepEqual(await readAll(await store.read(KEY, { start: 1500, end: 3500 })), plain.subarray(1500, 3500));
    // And writes them so with bindNames off, for replicas of those releases that share the store.
    const unbound = new EncryptedBlobStore(files, keyring, { chunkSize, bindNames: false });
    await unbound.write(KEY, Readable.from([plain]));
    assert.equal((await readFile(rawPath()))[6], 1);
    assert.deepEqual(await readAll(await store.read(KEY)), plain);
  });

  it('fails the stream with UnknownKeyError without the right master key', async () => {
    await store.write(KEY, Readable.from([randomBytes(100)]));
    const stranger = new EncryptedBlobStore(files, new Keyring(MasterKey.generate()));
    const { output, error } = await drain(await stranger.read(KEY));
    assert.ok(error instanceof UnknownKeyError);
    assert.equal(output.length, 0);
  });

  it('leaves nothing behind when the plaintext stream fails', async () => {
    await assert.rejects(store.write(KEY, failingAfter(randomBytes(50_000), 'upload aborted')), /upload aborted/);
    assert.equal(await store.exists(KEY), false);
    assert.deepEqual(await listFiles(files.rootDir), []);
  });

  it('releases the plaintext stream when the write fails before reading it', async () => {
    const input = new PassThrough();
    await assert.rejects(store.write('/etc/passwd', input), InvalidBlobKeyError);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(input.destroyed, true);
  });

  it('reports a missing blob and deletes idempotently', async () => {
    await assert.rejects(store.read(KEY), BlobNotFoundError);
    await assert.rejects(store.read(KEY, { start: 10 }), BlobNotFoundError);
    assert.equal(await store.plainSize(KEY), null);
    await store.write(KEY, Readable.from([Buffer.from('x')]));
    await store.delete(KEY);
    await store.delete(KEY);
    assert.equal(await store.exists(KEY), false);
  });
});
