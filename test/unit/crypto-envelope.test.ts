import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

import {
  BlobIntegrityError,
  CHUNK_TAG_BYTES,
  chunkOffset,
  CryptoError,
  createDecryptStream,
  createEncryptStream,
  DecryptStreamOptions,
  DEFAULT_CHUNK_SIZE,
  ENVELOPE_HEADER_BYTES,
  encryptedSize,
  Keyring,
  MasterKey,
  parseEnvelopeHeader,
  planRangeRead,
  plaintextSize,
  rewrapEnvelopeHeader,
  UnknownKeyError,
} from '../../src/crypto';

const C = DEFAULT_CHUNK_SIZE;
const keyring = new Keyring(MasterKey.generate());

/** Splits `bytes` into pieces of varying sizes, as a network or file stream would. */
function piecesOf(bytes: Buffer, sizes: number[] = [bytes.length || 1]): Buffer[] {
  const pieces: Buffer[] = [];
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length];
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}

/** Everything the stream emits before it ends or fails. */
async function drain(stream: Readable): Promise<{ output: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk as Buffer);
  } catch (error) {
    return { output: Buffer.concat(chunks), error: error as Error };
  }
  return { output: Buffer.concat(chunks) };
}

async function through(input: Buffer, transform: NodeJS.ReadWriteStream & Readable, sizes?: number[]) {
  Readable.from(piecesOf(input, sizes), { objectMode: false }).pipe(transform);
  return drain(transform);
}

async function encrypt(plain: Buffer, options: { chunkSize?: number; keys?: Keyring; sizes?: number[] } = {}) {
  const { output, error } = await through(plain, createEncryptStream(options.keys ?? keyring, options), options.sizes);
  if (error) throw error;
  return output;
}

async function decrypt(stored: Buffer, options: DecryptStreamOptions & { keys?: Keyring; sizes?: number[] } = {}) {
  const { output, error } = await through(stored, createDecryptStream(options.keys ?? keyring, options), options.sizes);
  if (error) throw error;
  return output;
}

/** Asserts that decryption fails with a CryptoError having released no byte that is not genuine. */
async function assertRejected(stored: Buffer, plain: Buffer, chunkSize: number, errorType: typeof CryptoError = CryptoError) {
  const { output, error } = await through(stored, createDecryptStream(keyring));
  assert.ok(error instanceof errorType, `expected a ${errorType.name}, got ${String(error)}`);
  assert.equal(output.length % chunkSize, 0, 'released part of a chunk');
  assert.deepEqual(output, plain.subarray(0, output.length), 'released bytes that were not written');
}

function record(stored: Buffer, index: number, chunkSize: number): Buffer {
  return stored.subarray(chunkOffset(index, chunkSize), chunkOffset(index + 1, chunkSize));
}

describe('envelope encryption', () => {
  describe('round trip', () => {
    for (const size of [0, 1, C - 1, C, C + 1, 2 * C, 3 * 1024 * 1024 + 17]) {
      it(`restores a ${size}-byte blob exactly`, async () => {
        const plain = randomBytes(size);
        const stored = await encrypt(plain);
        assert.equal(stored.length, encryptedSize(size));
        assert.deepEqual(await decrypt(stored), plain);
      });
    }

    it('works whatever the sizes of the incoming pieces', async () => {
      const plain = randomBytes(5 * 1024 + 3);
      const stored = await encrypt(plain, { chunkSize: 1000, sizes: [1, 999, 1000, 1001, 7, 4096] });
      for (const sizes of [[1], [7, 13], [1016], [1017, 3], [65536]]) {
        assert.deepEqual(await decrypt(stored, { sizes }), plain);
      }
    });

    it('encrypts the same plaintext differently every time (a fresh data key per blob)', async () => {
      const plain = Buffer.alloc(1000, 'a');
      const [first, second] = [await encrypt(plain), await encrypt(plain)];
      assert.notDeepEqual(first.subarray(ENVELOPE_HEADER_BYTES), second.subarray(ENVELOPE_HEADER_BYTES));
    });

    it('does not leave the plaintext readable in the stored bytes', async () => {
      const plain = Buffer.from('SECRET-GRAPH-PAYLOAD '.repeat(10_000));
      const stored = await encrypt(plain);
      assert.equal(stored.indexOf('SECRET-GRAPH'), -1);
    });

    it('reports the bytes it consumed and produced', async () => {
      const stream = createEncryptStream(keyring, { chunkSize: 100 });
      const { output } = await through(randomBytes(250), stream);
      assert.equal(stream.plainBytes, 250);
      assert.equal(stream.storedBytes, output.length);
      assert.equal(output.length, encryptedSize(250, 100));
    });

    it('rejects chunk sizes outside 1 byte .. 16 MiB', () => {
      for (const chunkSize of [0, -1, 1.5, 16 * 1024 * 1024 + 1]) {
        assert.throws(() => createEncryptStream(keyring, { chunkSize }), RangeError);
      }
    });
  });

  describe('keys', () => {
    it('stores the id of the master key the data key is sealed under', async () => {
      const stored = await encrypt(randomBytes(10));
      assert.equal(parseEnvelopeHeader(stored).keyId, keyring.current.keyId);
    });

    it('decrypts old blobs with a previous key after rotation', async () => {
      const oldKey = MasterKey.generate();
      const plain = randomBytes(3000);
      const stored = await encrypt(plain, { keys: new Keyring(oldKey) });
      const rotated = new Keyring(MasterKey.generate(), [oldKey]);
      assert.deepEqual(await decrypt(stored, { keys: rotated }), plain);
      const fresh = await encrypt(plain, { keys: rotated });
      assert.equal(parseEnvelopeHeader(fresh).keyId, rotated.current.keyId);
    });

    it('re-wraps a blob under the current key by rewriting only its header', async () => {
      const oldKey = MasterKey.generate();
      const plain = randomBytes(3000);
      const stored = await encrypt(plain, { keys: new Keyring(oldKey) });
      const newKey = MasterKey.generate();
      const header = rewrapEnvelopeHeader(stored.subarray(0, ENVELOPE_HEADER_BYTES), new Keyring(newKey, [oldKey]));
      const rewrapped = Buffer.concat([header, stored.subarray(ENVELOPE_HEADER_BYTES)]);
      assert.equal(parseEnvelopeHeader(rewrapped).keyId, newKey.keyId);
      assert.deepEqual(await decrypt(rewrapped, { keys: new Keyring(newKey) }), plain);
    });

    it('fails with UnknownKeyError, naming the key id, under the wrong master key', async () => {
      const stored = await encrypt(randomBytes(100));
      const { output, error } = await through(stored, createDecryptStream(new Keyring(MasterKey.generate())));
      assert.ok(error instanceof UnknownKeyError);
      assert.equal(error.keyId, keyring.current.keyId);
      assert.match(error.message, new RegExp(keyring.current.keyId));
      assert.equal(output.length, 0);
    });
  });

  describe('tamper detection', () => {
    const chunkSize = 16;
    const plain = randomBytes(100); // 6 full chunks and a final 4-byte one
    let stored: Buffer;
    before(async () => {
      stored = await encrypt(plain, { chunkSize });
    });

    it('detects every flipped bit position of every byte of a small blob', async () => {
      for (let offset = 0; offset < stored.length; offset++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const tampered = Buffer.from(stored);
          tampered[offset] ^= mask;
          await assertRejected(tampered, plain, chunkSize);
        }
      }
    });

    it('detects flipped bytes throughout a multi-chunk blob', async () => {
      const big = randomBytes(3 * C + 123);
      const bigStored = await encrypt(big);
      const offsets = new Set<number>();
      for (let offset = 0; offset < ENVELOPE_HEADER_BYTES + 2 * CHUNK_TAG_BYTES; offset++) offsets.add(offset);
      for (let offset = 0; offset < bigStored.length; offset += 997) offsets.add(offset);
      for (let index = 1; index <= 3; index++) {
        for (const delta of [-17, -16, -1, 0, 1]) offsets.add(chunkOffset(index, C) + delta);
      }
      offsets.add(bigStored.length - 1);
      for (const offset of offsets) {
        const tampered = Buffer.from(bigStored);
        tampered[offset] ^= 0x20;
        await assertRejected(tampered, big, C);
      }
    });

    it('detects truncation at every length', async () => {
      for (let length = 0; length < stored.length; length++) {
        await assertRejected(stored.subarray(0, length), plain, chunkSize, BlobIntegrityError);
      }
    });

    it('detects truncation at a chunk boundary of a blob whose size is a multiple of the chunk size', async () => {
      const even = randomBytes(4 * chunkSize);
      const evenStored = await encrypt(even, { chunkSize });
      for (let index = 0; index <= 4; index++) {
        await assertRejected(evenStored.subarray(0, chunkOffset(index, chunkSize)), even, chunkSize, BlobIntegrityError);
      }
    });

    it('detects reordered, dropped and duplicated chunks', async () => {
      const chunk = (index: number) => record(stored, index, chunkSize);
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      const arrangements = [
        [1, 0, 2, 3, 4, 5, 6],
        [0, 1, 2, 3, 5, 4, 6],
        [0, 2, 3, 4, 5, 6],
        [0, 1, 2, 3, 4, 6],
        [0, 1, 2, 3, 4, 5],
        [0, 1, 1, 2, 3, 4, 5, 6],
        [0, 1, 2, 3, 4, 5, 6, 6],
      ];
      for (const order of arrangements) {
        await assertRejected(Buffer.concat([header, ...order.map(chunk)]), plain, chunkSize, BlobIntegrityError);
      }
    });

    it('detects trailing bytes after the final chunk', async () => {
      for (const extra of [Buffer.from([0]), randomBytes(CHUNK_TAG_BYTES), randomBytes(chunkSize + CHUNK_TAG_BYTES)]) {
        await assertRejected(Buffer.concat([stored, extra]), plain, chunkSize, BlobIntegrityError);
      }
    });

    it('detects chunks or a header spliced in from another blob under the same key', async () => {
      const other = await encrypt(randomBytes(100), { chunkSize });
      const otherHeader = Buffer.concat([other.subarray(0, ENVELOPE_HEADER_BYTES), stored.subarray(ENVELOPE_HEADER_BYTES)]);
      await assertRejected(otherHeader, plain, chunkSize, BlobIntegrityError);
      const otherChunk = Buffer.concat([
        stored.subarray(0, chunkOffset(2, chunkSize)),
        record(other, 2, chunkSize),
        stored.subarray(chunkOffset(3, chunkSize)),
      ]);
      await assertRejected(otherChunk, plain, chunkSize, BlobIntegrityError);
    });

    it('detects a changed chunk size in the header', async () => {
      const tampered = Buffer.from(stored);
      tampered.writeUInt32BE(32, 15);
      await assertRejected(tampered, plain, chunkSize, BlobIntegrityError);
    });

    it('rejects input that is not an encrypted blob with a clear message', async () => {
      const { error } = await through(Buffer.from('PK\u0003\u0004 definitely a zip file, not a blob....'.repeat(4)), createDecryptStream(keyring));
      assert.ok(error instanceof BlobIntegrityError);
      assert.match(error.message, /not a Snapgraph encrypted blob/i);
    });
  });

  describe('range reads', () => {
    const chunkSize = 100;
    const plain = randomBytes(1234);
    let stored: Buffer;
    before(async () => {
      stored = await encrypt(plain, { chunkSize });
    });

    const ranges: Array<[number, number | undefined]> = [];
    for (const start of [0, 1, 99, 100, 101, 250, 999, 1200, 1233, 1234, 1300]) {
      for (const length of [0, 1, 2, 99, 100, 101, 350, 5000]) ranges.push([start, start + length]);
      ranges.push([start, undefined]);
    }

    it('returns exactly the requested slice when reading the whole stored blob', async () => {
      for (const [start, end] of ranges) {
        assert.deepEqual(await decrypt(stored, { start, end }), plain.subarray(start, end), `range ${start}..${end}`);
      }
    });

    it('returns exactly the requested slice when starting at the planned raw offset', async () => {
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      for (const [start, end] of ranges) {
        const plan = planRangeRead(header, stored.length, { start, end });
        const raw = stored.subarray(plan.rawStart, plan.rawEnd);
        const output = await decrypt(raw, { header, start: plan.start, end: plan.decryptEnd, sizes: [37] });
        assert.deepEqual(output, plain.subarray(start, end), `range ${start}..${end}`);
      }
    });

    it('plans to read only the chunks that hold the range', () => {
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      assert.deepEqual(planRangeRead(header, stored.length, { start: 150, end: 250 }), {
        start: 150,
        end: 250,
        rawStart: chunkOffset(1, chunkSize),
        rawEnd: chunkOffset(3, chunkSize),
        decryptEnd: 250,
      });
      const tail = planRangeRead(header, stored.length, { start: 5000 });
      assert.deepEqual(tail, { start: 1234, end: 1234, rawStart: chunkOffset(12, chunkSize), rawEnd: stored.length, decryptEnd: undefined });
    });

    it('plans a range that reaches the end of the blob through its final chunk, which alone proves the size', () => {
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      for (const end of [1234, 5000, undefined]) {
        assert.deepEqual(planRangeRead(header, stored.length, { start: 1150, end }), {
          start: 1150,
          end: 1234,
          rawStart: chunkOffset(11, chunkSize),
          rawEnd: stored.length,
          decryptEnd: undefined,
        });
      }
      // Cut 16 bytes into chunk 12: the length of a whole 1200-byte blob, whose empty final chunk is those 16 bytes.
      const cut = chunkOffset(12, chunkSize) + 16;
      assert.deepEqual(planRangeRead(header, cut, { start: 1150 }), { start: 1150, end: 1200, rawStart: chunkOffset(11, chunkSize), rawEnd: cut, decryptEnd: undefined });
    });

    it('detects a blob cut where it has the length of a whole shorter one, by a range that reaches its end', async () => {
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      const cut = stored.subarray(0, chunkOffset(12, chunkSize) + 16);
      for (const start of [0, 1150, 1199, 1200]) {
        const plan = planRangeRead(header, cut.length, { start });
        const { output, error } = await through(cut.subarray(plan.rawStart, plan.rawEnd), createDecryptStream(keyring, { header, start: plan.start, end: plan.decryptEnd }));
        assert.ok(error instanceof BlobIntegrityError, `start ${start}: ${String(error)}`);
        assert.deepEqual(output, plain.subarray(start, start + output.length));
      }
    });

    it('detects tampering inside the range it reads', async () => {
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      const plan = planRangeRead(header, stored.length, { start: 150, end: 250 });
      const raw = Buffer.from(stored.subarray(plan.rawStart, plan.rawEnd));
      raw[raw.length - 1] ^= 1;
      const { output, error } = await through(raw, createDecryptStream(keyring, { header, start: 150, end: 250 }));
      assert.ok(error instanceof BlobIntegrityError);
      assert.deepEqual(output, plain.subarray(150, 150 + output.length));
      assert.ok(output.length <= 50, 'released bytes of the tampered chunk');
    });

    it('detects a blob truncated before the end of the range', async () => {
      const header = stored.subarray(0, ENVELOPE_HEADER_BYTES);
      const raw = stored.subarray(chunkOffset(1, chunkSize), chunkOffset(3, chunkSize));
      const { error } = await through(raw, createDecryptStream(keyring, { header, start: 150, end: 450 }));
      assert.ok(error instanceof BlobIntegrityError);
    });

    it('rejects negative, fractional and reversed ranges at once', () => {
      for (const range of [{ start: -1 }, { end: 1.5 }, { start: 10, end: 9 }, { start: Number.NaN }]) {
        assert.throws(() => createDecryptStream(keyring, range), RangeError);
      }
    });
  });

  describe('layout arithmetic', () => {
    it('recovers the plaintext size from the stored size', () => {
      for (const chunkSize of [1, 16, 100, C]) {
        for (const size of [0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 10 * chunkSize, 12345]) {
          assert.equal(plaintextSize(encryptedSize(size, chunkSize), chunkSize), size);
        }
      }
    });

    it('rejects stored sizes that no whole blob can have', () => {
      for (const storedBytes of [0, ENVELOPE_HEADER_BYTES, ENVELOPE_HEADER_BYTES + 15, chunkOffset(2, 100)]) {
        assert.throws(() => plaintextSize(storedBytes, 100), BlobIntegrityError);
      }
    });
  });
});
