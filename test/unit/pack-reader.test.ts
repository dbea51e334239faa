// The packs one pass reads, each opened once (PackReader): reads as stored, each pack opened once however many reads,
// the least recently read closed past the bound (after its read under way) and opened again when read again, every
// pack closed at the end (after reads under way), none read after; a missing or short pack named as damage; a store
// that cannot keep a blob open read range by range.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { PackReader } from '../../src/chunks/chunk-store-context';
import { ChunkIntegrityError } from '../../src/chunks/errors';
import { packKey } from '../../src/chunks/pack-format';
import type { BlobRanges, BlobStore } from '../../src/storage/blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';

const TENANT = 't-1';
const packId = (n: number) => n.toString(16).padStart(32, '0');

/** The file store, counting the blobs it opens for ranges and those closed. */
function counted(store: FilesystemBlobStore) {
  const opened: string[] = [];
  const closed: string[] = [];
  const blobs = {
    ...readsOf(store),
    openRanges: async (key: string): Promise<BlobRanges> => {
      const ranges = await store.openRanges(key);
      opened.push(key.split('/').pop()!);
      // Each read waits a little before it starts, as a busy disk would: closes must wait for it.
      const read = async (start: number, end: number) => (await new Promise((resolve) => setTimeout(resolve, 20)), ranges.read(start, end));
      return { read, close: async () => (closed.push(key.split('/').pop()!), ranges.close()) };
    },
  } as BlobStore;
  return { blobs, opened, closed };
}

/** What a PackReader asks of a store, without openRanges (as the S3 store). */
function readsOf(store: FilesystemBlobStore): BlobStore {
  return { read: (key, range) => store.read(key, range), size: (key) => store.size(key) } as BlobStore;
}

describe('PackReader: the packs of one pass, each opened once', () => {
  let root: string;
  let store: FilesystemBlobStore;
  const packs = new Map<string, Buffer>();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'snapgraph-pack-reader-'));
    store = new FilesystemBlobStore(join(root, 'blobs'));
    await store.init();
    for (let n = 0; n < 4; n++) {
      const bytes = randomBytes(100_000 + n);
      packs.set(packId(n), bytes);
      await store.write(packKey(TENANT, packId(n)), Readable.from([bytes]));
    }
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads ranges as stored, opening each pack once and closing each at the end', async () => {
    const { blobs, opened, closed } = counted(store);
    const reader = new PackReader(blobs, TENANT);
    const reads = [];
    for (let i = 0; i < 40; i++) {
      const id = packId(i % 2);
      const start = i * 2_000;
      reads.push(reader.read(id, start, start + 1_500).then((bytes) => assert.deepEqual(bytes, packs.get(id)!.subarray(start, start + 1_500))));
    }
    await Promise.all(reads);
    assert.deepEqual(opened.sort(), [packId(0), packId(1)]);
    assert.deepEqual(closed, []);
    await reader.close();
    assert.deepEqual(closed.sort(), [packId(0), packId(1)]);
  });

  it('closes the least recently read pack past its bound, after the read under way, and opens it again when read again', async () => {
    const { blobs, opened, closed } = counted(store);
    const reader = new PackReader(blobs, TENANT, 2);
    // Pack 2 puts pack 0 past the bound while pack 0's read has not even started.
    const reads = [0, 1, 2].map((n) => reader.read(packId(n), 0, 90_000));
    for (const [n, read] of reads.entries()) assert.deepEqual(await read, packs.get(packId(n))!.subarray(0, 90_000));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(closed, [packId(0)]);
    assert.deepEqual(await reader.read(packId(0), 5, 15), packs.get(packId(0))!.subarray(5, 15));
    assert.deepEqual(opened.sort(), [packId(0), packId(0), packId(1), packId(2)], 'pack 0 opened again');
    await reader.close();
    assert.deepEqual(closed.sort(), [packId(0), packId(0), packId(1), packId(2)]);
  });

  it('closes a pack with a read under way once that read is done, and refuses reads once closed', async () => {
    const { blobs, closed } = counted(store);
    const reader = new PackReader(blobs, TENANT);
    const underWay = reader.read(packId(3), 10, 20);
    const closing = reader.close();
    assert.deepEqual(await underWay, packs.get(packId(3))!.subarray(10, 20));
    await closing;
    assert.deepEqual(closed, [packId(3)]);
    await assert.rejects(reader.read(packId(3), 0, 1), /closed/);
  });

  it('names a missing pack and one shorter than the range as damage', async () => {
    const reader = new PackReader(store, TENANT);
    await assert.rejects(reader.read(packId(9), 0, 10), (error: Error) => error instanceof ChunkIntegrityError && /the pack is missing/.test(error.message));
    await assert.rejects(reader.read(packId(3), 100_000, 100_010), (error: Error) => error instanceof ChunkIntegrityError && /the pack is truncated/.test(error.message));
    await reader.close();
  });

  it('reads range by range from a store that cannot keep a blob open', async () => {
    const reader = new PackReader(readsOf(store), TENANT);
    assert.deepEqual(await reader.read(packId(2), 50, 60_050), packs.get(packId(2))!.subarray(50, 60_050));
    await assert.rejects(reader.read(packId(9), 0, 10), /the pack is missing/);
    await reader.close();
  });
});
