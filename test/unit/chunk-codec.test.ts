// The stored form of a chunk: what this release writes, and what earlier releases wrote, read back alike.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { brotliCompressSync, constants as zlib, deflateRawSync } from 'node:zlib';
import { ChunkDamage, chunkId, type ChunkKeyMaterial, open, openChunk, seal, sealChunk } from '../../src/chunks/chunk-codec';
import { ChunkWorkerPool } from '../../src/chunks/chunk-worker-pool';

const keys: ChunkKeyMaterial = { dataKey: randomBytes(32), idKey: randomBytes(32) };
const text = Buffer.from('{"name":"Ada","city":"Lisbon","since":2024}\n'.repeat(6_000));

describe('chunk codec', () => {
  it('compresses with Brotli what shrinks, stores the rest raw, and opens both', () => {
    for (const [plaintext, flags] of [[text, 2], [randomBytes(256 * 1024), 0]] as const) {
      const id = chunkId(keys, plaintext);
      const sealed = sealChunk(keys, id, plaintext, 'brotli');
      assert.equal(open(keys.dataKey, sealed, Buffer.from(id, 'hex'))![0], flags);
      assert.deepEqual(openChunk(keys, id, sealed, plaintext.length, true), plaintext);
    }
    assert.ok(sealChunk(keys, chunkId(keys, text), text, 'brotli').length < text.length / 10);
  });

  it('opens the deflated chunks of earlier releases, and writes them with SNAPGRAPH_CHUNK_COMPRESSION=deflate', () => {
    const id = chunkId(keys, text);
    const earlier = seal(keys.dataKey, [Buffer.of(1), deflateRawSync(text, { level: 1 })], Buffer.from(id, 'hex'));
    assert.deepEqual(openChunk(keys, id, earlier, text.length, true), text);
    const deflated = sealChunk(keys, id, text, 'deflate');
    assert.equal(open(keys.dataKey, deflated, Buffer.from(id, 'hex'))![0], 1);
    assert.deepEqual(openChunk(keys, id, deflated, text.length, true), text);
  });

  it('seals with the compression the worker pool was given, on its threads and inline', async () => {
    const id = chunkId(keys, text);
    for (const size of [0, 1]) {
      for (const [compression, flags] of [['deflate', 1], ['brotli', 2]] as const) {
        const pool = new ChunkWorkerPool(size, undefined, compression);
        try {
          assert.equal(open(keys.dataKey, await pool.seal(keys, id, text), Buffer.from(id, 'hex'))![0], flags, `${compression}, ${size} workers`);
        } finally {
          await pool.close();
        }
      }
    }
  });

  it('refuses a body of either kind that decompresses to more than its length, without decompressing it all', () => {
    const id = chunkId(keys, text);
    const bomb = Buffer.alloc(16 * 1024 * 1024);
    for (const [flags, body] of [
      [2, brotliCompressSync(bomb, { params: { [zlib.BROTLI_PARAM_QUALITY]: 1 } })],
      [1, deflateRawSync(bomb)],
    ] as const) {
      const sealed = seal(keys.dataKey, [Buffer.of(flags), body], Buffer.from(id, 'hex'));
      assert.throws(() => openChunk(keys, id, sealed, 256 * 1024, false), /does not decompress/, `flags ${flags}`);
    }
  });

  it('refuses a body that does not decompress to its length, and unknown flags', () => {
    const id = chunkId(keys, text);
    const sealed = sealChunk(keys, id, text, 'brotli');
    assert.throws(() => openChunk(keys, id, sealed, text.length - 1, false), ChunkDamage);
    // Not random bytes: 1 in 25 of those is a brotli stream of nothing, a damage found by its length instead.
    const garbled = seal(keys.dataKey, [Buffer.of(2), Buffer.alloc(1000, 0xaa)], Buffer.from(id, 'hex'));
    assert.throws(() => openChunk(keys, id, garbled, text.length, false), /does not decompress/);
    const unknown = seal(keys.dataKey, [Buffer.of(9), text], Buffer.from(id, 'hex'));
    assert.throws(() => openChunk(keys, id, unknown, text.length, false), /unknown flags 9 \(written by a newer release\?\)/);
  });
});
