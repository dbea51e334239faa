// The stored form of a chunk: what this release writes, and what earlier releases wrote, read back alike.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { ChunkDamage, chunkId, type ChunkKeyMaterial, open, openChunk, seal, sealChunk } from '../../src/chunks/chunk-codec';

const keys: ChunkKeyMaterial = { dataKey: randomBytes(32), idKey: randomBytes(32) };
const text = Buffer.from('{"name":"Ada","city":"Lisbon","since":2024}\n'.repeat(6_000));

describe('chunk codec', () => {
  it('compresses with Brotli what shrinks, stores the rest raw, and opens both', () => {
    for (const [plaintext, flags] of [[text, 2], [randomBytes(256 * 1024), 0]] as const) {
      const id = chunkId(keys, plaintext);
      const sealed = sealChunk(keys, id, plaintext);
      assert.equal(open(keys.dataKey, sealed, Buffer.from(id, 'hex'))![0], flags);
      assert.deepEqual(openChunk(keys, id, sealed, plaintext.length, true), plaintext);
    }
    assert.ok(sealChunk(keys, chunkId(keys, text), text).length < text.length / 10);
  });

  it('opens the deflated chunks of earlier releases', () => {
    const id = chunkId(keys, text);
    const earlier = seal(keys.dataKey, [Buffer.of(1), deflateRawSync(text, { level: 1 })], Buffer.from(id, 'hex'));
    assert.deepEqual(openChunk(keys, id, earlier, text.length, true), text);
  });

  it('refuses a body that does not decompress to its length, and unknown flags', () => {
    const id = chunkId(keys, text);
    const sealed = sealChunk(keys, id, text);
    assert.throws(() => openChunk(keys, id, sealed, text.length - 1, false), ChunkDamage);
    const garbled = seal(keys.dataKey, [Buffer.of(2), randomBytes(1000)], Buffer.from(id, 'hex'));
    assert.throws(() => openChunk(keys, id, garbled, text.length, false), /does not decompress/);
    const unknown = seal(keys.dataKey, [Buffer.of(9), text], Buffer.from(id, 'hex'));
    assert.throws(() => openChunk(keys, id, unknown, text.length, false), /unknown flags 9/);
  });
});
