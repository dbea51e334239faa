// The chunk store against a real FilesystemBlobStore in a temp dir and the product's SQLite metadata database.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { ChunkIntegrityError, ChunkNotFoundError, ChunkRef, ChunkStore, ChunkStoreOptions, TenantChunkKeys } from '../../src/chunks';
import { Keyring, MasterKey } from '../../src/crypto';
import { ChunkKeyEntity } from '../../src/entities/chunk-key.entity';
import { ChunkPackEntity } from '../../src/entities/chunk-pack.entity';
import { ChunkEntity } from '../../src/entities/chunk.entity';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { BlobStore } from '../../src/storage/blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { createMigratedTestDatabase, describePostgres, TestDatabase } from '../support/postgres';

const KIB = 1024;
const MIB = 1024 * KIB;
const HOUR = 3_600_000;

/** Text-like data that compression shrinks, different for every seed. */
function compressible(bytes: number, seed: number): Buffer {
  const words = ['node', 'relationship', 'label', 'Person', 'KNOWS', '{"name":"', 'since', '2024', 'id'];
  let text = '';
  let state = seed * 7919 + 1;
  while (text.length < bytes) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    text += `${words[state % words.length]}:${state % 1000} `;
  }
  return Buffer.from(text.slice(0, bytes));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** Where a suite's metadata lives: the embedded SQLite database, or a fresh PostgreSQL database. */
type MetadataBackend = { name: 'SQLite' } | { name: 'PostgreSQL'; adminUrl: () => string };

describe('ChunkStore on SQLite metadata', function () {
  this.timeout(120_000);
  chunkStoreSuite({ name: 'SQLite' });
});

describePostgres('ChunkStore on PostgreSQL metadata', (postgres) => {
  chunkStoreSuite({ name: 'PostgreSQL', adminUrl: postgres.adminUrl });
});

function chunkStoreSuite(backend: MetadataBackend) {
  let database: TestDatabase | undefined;
  let dir: string;
  let db: DataSource;
  let fsBlobs: FilesystemBlobStore;
  let keyring: Keyring;
  let now: number;
  const stores: ChunkStore[] = [];
  const tenant = randomUUID();

  const open = (blobs: BlobStore = fsBlobs, options: ChunkStoreOptions = {}) => {
    const store = new ChunkStore(blobs, db, new TenantChunkKeys(blobs, db, keyring), {
      packTargetBytes: 256 * KIB,
      workers: 2,
      clock: () => now,
      ...options,
    });
    stores.push(store);
    return store;
  };

  async function writeAll(store: ChunkStore, tenantId: string, pieces: Buffer[]) {
    const writer = store.writer(tenantId);
    const refs: ChunkRef[] = [];
    for (const piece of pieces) refs.push(await writer.put(piece));
    return { refs, result: await writer.finish() };
  }

  // Temp files of writes still in flight are not packs (after a crash, boot's removeTemporaryFiles deletes them).
  const packFiles = async (tenantId: string) =>
    (await readdir(join(dir, 'blobs', 'tenants', tenantId, 'chunks', 'packs')).catch(() => [] as string[]))
      .filter((name) => !name.includes('.tmp-'))
      .sort();
  const packPath = (tenantId: string, packId: string) => join(dir, 'blobs', 'tenants', tenantId, 'chunks', 'packs', packId);
  const bytesOnDisk = async (tenantId: string) => {
    let total = 0;
    for (const name of await packFiles(tenantId)) total += (await stat(packPath(tenantId, name))).size;
    return total;
  };
  const packRows = (tenantId: string) => db.getRepository(ChunkPackEntity).find({ where: { tenantId }, order: { id: 'ASC' } });
  const chunkRows = (tenantId: string) => db.getRepository(ChunkEntity).findBy({ tenantId });

  /** Every pack blob has a SEALED row and every row a blob: nothing a crash left behind. */
  async function assertTidy(tenantId: string) {
    const rows = await packRows(tenantId);
    assert.deepEqual(rows.map((row) => row.state), rows.map(() => 'SEALED'));
    assert.deepEqual(await packFiles(tenantId), rows.map((row) => row.id));
    assert.equal((await open().usage(tenantId)).storedBytes, await bytesOnDisk(tenantId));
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-chunks-'));
    database = backend.name === 'PostgreSQL' ? await createMigratedTestDatabase(backend.adminUrl()) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    fsBlobs = new FilesystemBlobStore(join(dir, 'blobs'));
    await fsBlobs.init();
    keyring = new Keyring(MasterKey.generate());
    now = Date.parse('2026-01-01T00:00:00Z');
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('round trip', () => {
    it('gives back random and compressible data exactly, across several packs, compressing only what shrinks', async () => {
      const store = open();
      const random = Array.from({ length: 12 }, () => randomBytes(64 * KIB));
      const text = Array.from({ length: 12 }, (_, index) => compressible(64 * KIB, index));
      const a = await writeAll(store, tenant, random);
      const b = await writeAll(store, tenant, text);
      assert.deepEqual(await readAll(store.read(tenant, a.refs)), Buffer.concat(random));
      assert.deepEqual(await readAll(store.read(tenant, b.refs, { verifyIds: true })), Buffer.concat(text));
      assert.ok((await packFiles(tenant)).length >= 3, 'several packs');
      assert.ok(a.result.addedBytes > 12 * 64 * KIB, 'random data is stored raw (plus overhead)');
      assert.ok(b.result.addedBytes < (12 * 64 * KIB) / 2, `text is compressed (${b.result.addedBytes})`);
      assert.deepEqual([a.result.newChunks, b.result.newChunks], [12, 12]);
      await assertTidy(tenant);
    });

    it('reads refs in the order given, repeats included, and stores JSON documents', async () => {
      const store = open();
      const pieces = [randomBytes(1000), randomBytes(70 * KIB), Buffer.alloc(0)];
      const { refs } = await writeAll(store, tenant, pieces);
      const order = [refs[1], refs[0], refs[1], refs[2], refs[0]];
      assert.deepEqual(await readAll(store.read(tenant, order)), Buffer.concat([pieces[1], pieces[0], pieces[1], pieces[2], pieces[0]]));
      const writer = store.writer(tenant);
      const manifest = { format: 1, refs, note: 'x'.repeat(3 * MIB) };
      const manifestRefs = await writer.putJson(manifest);
      await writer.finish();
      assert.equal(manifestRefs.length, 4, '1 MiB pieces');
      assert.deepEqual(await store.readJson(tenant, manifestRefs), manifest);
    });

    it('runs the same with no worker threads', async () => {
      const store = open(fsBlobs, { workers: 0 });
      const pieces = [randomBytes(100 * KIB), compressible(100 * KIB, 3)];
      const { refs } = await writeAll(store, tenant, pieces);
      assert.deepEqual(await readAll(open().read(tenant, refs, { verifyIds: true })), Buffer.concat(pieces));
    });

    it('looks a read\'s refs up in the index a window at a time, not all of them before its first byte', async () => {
      const store = open();
      const piece = randomBytes(64 * KIB);
      const { refs: [ref] } = await writeAll(store, tenant, [piece]);
      // A base lists a ref per 256 KiB of its store (100,000: 25 GiB); past the first windows, refs the index lacks.
      const unknown = { id: 'cd'.repeat(32), plainLength: 1 };
      const stream = store.read(tenant, [...Array<ChunkRef>(1_200).fill(ref), ...Array<ChunkRef>(100_000).fill(unknown)]);
      const pieces = stream[Symbol.asyncIterator]();
      assert.deepEqual((await pieces.next()).value, piece, 'the first chunk comes before the last refs are looked up');
      await assert.rejects(
        (async () => {
          for (let result = await pieces.next(); !result.done; result = await pieces.next());
        })(),
        (error: ChunkNotFoundError) => error instanceof ChunkNotFoundError && error.message.includes(unknown.id),
      );
    });

    it('fails a read of a chunk the store does not hold', async () => {
      const store = open();
      await assert.rejects(readAll(store.read(tenant, [{ id: 'ab'.repeat(32), plainLength: 1 }])), ChunkNotFoundError);
    });
  });

  describe('deduplication', () => {
    it('stores the same data once, within a writer and across writers', async () => {
      const store = open();
      const pieces = Array.from({ length: 6 }, () => randomBytes(64 * KIB));
      const first = await writeAll(store, tenant, [...pieces, pieces[0], pieces[1]]);
      assert.deepEqual([first.result.newChunks, first.result.dedupedChunks], [6, 2]);
      const before = await bytesOnDisk(tenant);
      const second = await writeAll(store, tenant, pieces);
      assert.deepEqual(second.result, { addedBytes: 0, newChunks: 0, dedupedChunks: 6 });
      assert.deepEqual(second.refs, first.refs.slice(0, 6));
      assert.equal(await bytesOnDisk(tenant), before);
      assert.equal((await chunkRows(tenant)).length, 6);
    });

    it('never shares chunks, packs or ids between tenants', async () => {
      const store = open();
      const other = randomUUID();
      const pieces = [randomBytes(64 * KIB), compressible(64 * KIB, 1)];
      const mine = await writeAll(store, tenant, pieces);
      const theirs = await writeAll(store, other, pieces);
      assert.equal(theirs.result.newChunks, 2, 'the other tenant stores its own copy');
      for (const index of [0, 1]) assert.notEqual(mine.refs[index].id, theirs.refs[index].id);
      const myPacks = await packFiles(tenant);
      const theirPacks = await packFiles(other);
      assert.ok(myPacks.length > 0 && theirPacks.length > 0);
      assert.deepEqual(myPacks.filter((id) => theirPacks.includes(id)), []);
      // The ids are keyed: one tenant's refs mean nothing in the other's store.
      await assert.rejects(readAll(store.read(other, mine.refs)), ChunkNotFoundError);
      assert.deepEqual(await readAll(store.read(other, theirs.refs)), Buffer.concat(pieces));
    });
  });

  describe('damage', () => {
    async function onePack(store: ChunkStore) {
      const pieces = Array.from({ length: 3 }, () => randomBytes(40 * KIB));
      const { refs } = await writeAll(store, tenant, pieces);
      const [packId] = await packFiles(tenant);
      return { pieces, refs, packId, path: packPath(tenant, packId) };
    }

    /** Flips the bits of `mask` in the byte of the file at `path` that `at` picks from its length. */
    async function flip(path: string, at: (length: number) => number, mask: number): Promise<void> {
      const bytes = await readFile(path);
      bytes[at(bytes.length)] ^= mask;
      await writeFile(path, bytes);
    }

    it('finds a flipped byte in a chunk on read and on verify, naming the pack and the chunk', async () => {
      const store = open();
      const { refs, packId, path } = await onePack(store);
      await flip(path, () => 50 * KIB, 0x01);
      // Chunks land in a pack in the order their sealing finishes: the index says which one holds that byte.
      const hit = (await chunkRows(tenant)).find((row) => row.offset <= 50 * KIB && 50 * KIB < row.offset + row.length)!;
      const damaged = refs.findIndex((ref) => ref.id === hit.id);
      await assert.rejects(readAll(store.read(tenant, refs)), (error: ChunkIntegrityError) => {
        assert.ok(error instanceof ChunkIntegrityError);
        assert.equal(error.packId, packId);
        assert.equal(error.chunkId, refs[damaged].id);
        assert.match(error.message, new RegExp(`pack ${packId}`));
        return true;
      });
      const report = await store.verify(tenant, refs);
      assert.deepEqual(report.damage.map((damage) => [damage.packId, damage.chunkId]), [[packId, refs[damaged].id]]);
      assert.equal(report.chunks, 3);
    });

    // The refs are looked up a window at a time: a chunk listed in several windows, gone from the index, is one damage.
    it('reports on verify a ref the index lacks, once however often it is listed, and an index row the trailer contradicts', async () => {
      const store = open();
      const { refs, packId } = await onePack(store);
      const [gone, moved] = [refs[0], refs[1]];
      await db.getRepository(ChunkEntity).delete({ tenantId: tenant, id: gone.id });
      await db.getRepository(ChunkEntity).update({ tenantId: tenant, id: moved.id }, { plainLength: moved.plainLength + 1 });
      const listed = [...refs, ...Array.from({ length: 2_500 }, (_, i) => refs[i % 3])];
      const report = await store.verify(tenant, listed);
      const damage = report.damage.map((found) => [found.packId, found.chunkId, /not in the index|does not match the pack trailer/.exec(found.message)?.[0]]);
      assert.deepEqual(damage, [
        [null, gone.id, 'not in the index'],
        [packId, moved.id, 'does not match the pack trailer'],
      ]);
    });

    it('finds a flipped byte in the trailer or footer on verify, even when no chunk read needs it', async () => {
      const store = open();
      // A pack each (of a tenant each): verification moves the sound chunks of a pack it found so into a new one.
      for (const fromEnd of [40, 5]) {
        const tenantId = randomUUID();
        const { refs } = await writeAll(store, tenantId, Array.from({ length: 3 }, () => randomBytes(40 * KIB)));
        const [packId] = await packFiles(tenantId);
        const path = packPath(tenantId, packId);
        await flip(path, (length) => length - fromEnd, 0x80);
        const report = await store.verify(tenantId, refs);
        assert.equal(report.damage.length, 1, `byte ${fromEnd} from the end`);
        assert.equal(report.damage[0].packId, packId);
        assert.deepEqual((await store.verify(tenantId, refs)).damage, [], `byte ${fromEnd} from the end, once repacked`);
      }
    });

    it('moves the sound chunks of a pack whose trailer is damaged into a new pack: later snapshots of that data verify clean', async () => {
      const store = open();
      const { pieces, refs, packId, path } = await onePack(store);
      await flip(path, (length) => length - 40, 0x80); // in the trailer: every chunk is still sound
      const report = await store.verify(tenant, refs);
      assert.deepEqual(report.damage.map((damage) => [damage.packId, damage.chunkId]), [[packId, null]]);
      assert.match(report.damage[0].message, /trailer/);
      // None of its chunks is damaged, so none is stored again: the next snapshot of the same data deduplicates against
      // them, and must not name the damaged pack once more (as every later one would, for ever).
      const again = await writeAll(store, tenant, pieces);
      assert.equal(again.result.newChunks, 0);
      assert.deepEqual((await store.verify(tenant, again.refs)).damage, []);
      assert.ok((await chunkRows(tenant)).every((row) => row.packId !== packId), 'no chunk is indexed in the damaged pack');
      // The snapshot that found the damage reads its data, from the new pack, and verifies clean now too.
      assert.deepEqual(await readAll(store.read(tenant, refs, { verifyIds: true })), Buffer.concat(pieces));
      assert.deepEqual((await store.verify(tenant, refs)).damage, []);
      // The damaged pack goes with collection, once its grace period is over.
      now += 2 * HOUR;
      await store.collect(tenant, new Set(refs.map((ref) => ref.id)), { graceMs: HOUR });
      now += 2 * HOUR;
      await store.collect(tenant, new Set(refs.map((ref) => ref.id)), { graceMs: HOUR });
      assert.ok(!(await packFiles(tenant)).includes(packId));
      await assertTidy(tenant);
      assert.deepEqual(await readAll(store.read(tenant, again.refs, { verifyIds: true })), Buffer.concat(pieces));
    });

    it('reports a damaged trailer when moving the sound chunks out fails, and moves them at the next verification', async () => {
      const { pieces, refs, packId, path } = await onePack(open());
      await flip(path, (length) => length - 40, 0x80);
      const full: BlobStore = {
        write: async (key, data) => {
          if (!key.includes('/packs/')) return fsBlobs.write(key, data);
          data.destroy();
          throw new Error(`no space left for ${key}`);
        },
        read: (key, range) => fsBlobs.read(key, range),
        openRanges: (key) => fsBlobs.openRanges(key),
        size: (key) => fsBlobs.size(key),
        delete: (key) => fsBlobs.delete(key),
        exists: (key) => fsBlobs.exists(key),
        list: (prefix) => fsBlobs.list(prefix),
      };
      const failed = await open(full).verify(tenant, refs);
      assert.deepEqual(failed.damage.map((damage) => [damage.packId, damage.chunkId]), [[packId, null]]);
      assert.match(failed.repairFailure?.message ?? '', /no space left/);
      assert.ok((await chunkRows(tenant)).every((row) => row.packId === packId), 'the chunks stay where they were');
      const store = open();
      const again = await store.verify(tenant, refs);
      assert.deepEqual([again.damage.map((damage) => damage.packId), again.repairFailure], [[packId], null]);
      assert.deepEqual((await store.verify(tenant, (await writeAll(store, tenant, pieces)).refs)).damage, []);
    });

    it('reads a chunk where it is now when collections repacked and removed its pack during the verification', async () => {
      const { refs, packId } = await onePack(open());
      const [kept] = refs;
      const live = new Set([kept.id]);
      // The pack's other chunks are dead: a collection moves the kept one into a new pack, and a later one removes the
      // old pack; both run as the verification comes to that pack, a verification longer than two grace periods.
      let collecting: Promise<void> | null = null;
      const collections = async () => {
        const collector = open();
        now += 2 * HOUR;
        await collector.collect(tenant, live, { graceMs: HOUR });
        now += 2 * HOUR;
        await collector.collect(tenant, live, { graceMs: HOUR });
      };
      const slow: BlobStore = {
        ...fsBlobs,
        write: (key, data) => fsBlobs.write(key, data),
        read: (key, range) => fsBlobs.read(key, range),
        openRanges: (key) => fsBlobs.openRanges(key),
        size: async (key) => {
          if (key.includes(packId)) await (collecting ??= collections());
          return fsBlobs.size(key);
        },
        delete: (key) => fsBlobs.delete(key),
        exists: (key) => fsBlobs.exists(key),
        list: (prefix) => fsBlobs.list(prefix),
      };
      const report = await open(slow).verify(tenant, [kept]);
      assert.ok(collecting, 'the collections ran during the verification');
      assert.ok(!(await packFiles(tenant)).includes(packId), 'the old pack is gone');
      assert.deepEqual(report.damage, []);
      assert.equal(report.chunks, 1, 'the kept chunk was read, in its new pack');
    });

    it('passes refs whose chunks are sound when only a collected chunk of their pack is damaged', async () => {
      const store = open();
      const { refs, path } = await onePack(store);
      const [dead, ...kept] = refs;
      const row = (await chunkRows(tenant)).find((candidate) => candidate.id === dead.id)!;
      // Collected, but its pack stays: most of it is live, not worth a repack.
      now += 2 * HOUR;
      await store.collect(tenant, new Set(kept.map((ref) => ref.id)), { graceMs: HOUR });
      assert.deepEqual((await chunkRows(tenant)).map((candidate) => candidate.id).sort(), kept.map((ref) => ref.id).sort());
      await flip(path, () => row.offset + Math.floor(row.length / 2), 0x01);
      assert.deepEqual((await store.verify(tenant, kept)).damage, []);
      assert.equal((await readAll(store.read(tenant, kept))).length, 80 * KIB);
    });

    it('stores a chunk again once verify found its copy damaged, instead of deduplicating against it', async () => {
      const store = open();
      const { pieces, refs, path } = await onePack(store);
      await flip(path, () => 50 * KIB, 0x01);
      const damaged = (await store.verify(tenant, refs)).damage.map((damage) => damage.chunkId);
      assert.equal(damaged.length, 1);
      // The same data again (the next base of a store whose pages did not change): stored anew, readable.
      const again = await writeAll(store, tenant, pieces);
      assert.equal(again.result.newChunks, 1);
      assert.deepEqual(await readAll(store.read(tenant, again.refs)), Buffer.concat(pieces));
      // Chunks are named by their content, so the earlier refs read the new copy too.
      assert.deepEqual(await readAll(store.read(tenant, refs)), Buffer.concat(pieces));
      assert.deepEqual((await store.verify(tenant, refs)).damage, []);
    });

    it('never puts back a damaged copy that verify dropped while a writer had deduplicated against it', async () => {
      const store = open();
      const pieces = Array.from({ length: 3 }, () => randomBytes(40 * KIB));
      const { refs } = await writeAll(store, tenant, pieces);
      // A base under way (the instance's own background base) deduplicates against the earlier base's chunks...
      const running = store.writer(tenant);
      for (const piece of pieces) await running.put(piece);
      // ...while a verification finds one of them damaged and drops it from the index.
      const [packId] = await packFiles(tenant);
      await flip(packPath(tenant, packId), () => 50 * KIB, 0x01);
      const damaged = (await store.verify(tenant, refs)).damage.map((damage) => damage.chunkId);
      assert.equal(damaged.length, 1);
      // The running writer cannot store that data again (it no longer holds it): its snapshot fails rather than list a
      // damaged chunk, and above all it does not put the damaged copy back in the index.
      await assert.rejects(running.finish(), (error: ChunkIntegrityError) => {
        assert.ok(error instanceof ChunkIntegrityError, String(error));
        assert.equal(error.chunkId, damaged[0]);
        return true;
      });
      // So the next base stores it anew, and every snapshot listing it reads the sound copy.
      const again = await writeAll(store, tenant, pieces);
      assert.equal(again.result.newChunks, 1);
      assert.deepEqual(await readAll(store.read(tenant, refs)), Buffer.concat(pieces));
    });

    it('stores chunks again once verify found their pack missing, instead of deduplicating against it', async () => {
      const store = open();
      const pieces = Array.from({ length: 3 }, () => randomBytes(40 * KIB));
      const { refs } = await writeAll(store, tenant, pieces);
      const [packId] = await packFiles(tenant);
      await rm(packPath(tenant, packId));
      const report = await store.verify(tenant, refs);
      assert.equal(report.damage[0].packId, packId);
      // The base a verification starts of the store holding that data: a sound one, not refs into the missing pack.
      const again = await writeAll(store, tenant, pieces);
      assert.equal(again.result.newChunks, 3);
      assert.deepEqual(await readAll(store.read(tenant, again.refs)), Buffer.concat(pieces));
      assert.deepEqual((await store.verify(tenant, refs)).damage, []);
    });

    it('stores again the chunks a truncation cut, and keeps those it left whole', async () => {
      const store = open();
      const pieces = Array.from({ length: 3 }, () => randomBytes(40 * KIB));
      const { refs } = await writeAll(store, tenant, pieces);
      const [packId] = await packFiles(tenant);
      const path = packPath(tenant, packId);
      await truncate(path, 100 * KIB);
      const cut = (await chunkRows(tenant)).filter((row) => row.offset + row.length > 100 * KIB);
      assert.equal(cut.length, 1);
      assert.ok((await store.verify(tenant, refs)).damage.length > 0);
      const again = await writeAll(store, tenant, pieces);
      assert.equal(again.result.newChunks, 1);
      assert.deepEqual(await readAll(store.read(tenant, again.refs)), Buffer.concat(pieces));
      // Those left whole were moved out of the cut pack: the new refs do not name it.
      assert.deepEqual((await store.verify(tenant, again.refs)).damage, []);
    });

    it('reports a truncated pack on read and verify', async () => {
      const store = open();
      const { refs, packId, path } = await onePack(store);
      await truncate(path, 100 * KIB);
      await assert.rejects(readAll(store.read(tenant, refs)), (error: ChunkIntegrityError) => {
        assert.equal(error.packId, packId);
        assert.match(error.message, /truncated/);
        return true;
      });
      const report = await store.verify(tenant, refs);
      assert.equal(report.damage[0].packId, packId);
      assert.match(report.damage[0].message, /truncated/);
    });
  });

  describe('abort', () => {
    it('a read whose signal was aborted already fails its reader, and nothing else (no unheard error)', async () => {
      const store = open();
      const { refs } = await writeAll(store, tenant, [randomBytes(64 * KIB)]);
      const controller = new AbortController();
      controller.abort(new Error('cancelled on request'));
      const unheard: unknown[] = [];
      const onUncaught = (error: unknown) => unheard.push(error);
      process.prependListener('uncaughtException', onUncaught);
      let stream;
      try {
        stream = store.read(tenant, refs, { signal: controller.signal });
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off('uncaughtException', onUncaught);
      }
      assert.deepEqual(unheard, []);
      await assert.rejects(readAll(stream), { name: 'AbortError' });
    });

    it('a verification stops once its signal aborts, before reading the packs left (a cancelled VERIFY)', async () => {
      // 16 chunks of 64 KiB in packs of 256 KiB: several packs, several windows of reads.
      const { refs } = await writeAll(open(), tenant, Array.from({ length: 16 }, () => randomBytes(64 * KIB)));
      const packs = (await packFiles(tenant)).length;
      assert.ok(packs >= 3, `${packs} packs`);
      const controller = new AbortController();
      let reads = 0;
      // A blob store that cancels the verification at its first read (whole or of a range of an open blob), as
      // cancelOperation would mid-way.
      const cancel = () => {
        reads += 1;
        controller.abort(new DOMException('cancelled on request', 'AbortError'));
      };
      const cancelling = new Proxy(fsBlobs, {
        get(target, name) {
          const value = Reflect.get(target, name, target);
          if (name === 'read') {
            return (...args: Parameters<BlobStore['read']>) => {
              cancel();
              return target.read(...args);
            };
          }
          if (name === 'openRanges') {
            return async (key: string) => {
              const ranges = await target.openRanges(key);
              return { read: (start: number, end: number) => (cancel(), ranges.read(start, end)), close: () => ranges.close() };
            };
          }
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      await assert.rejects(open(cancelling).verify(tenant, refs, controller.signal), { name: 'AbortError' });
      // The footer and trailer of the first pack (at most two reads); without the signal, every chunk of every pack.
      assert.ok(reads <= 2, `${reads} reads after the cancel`);
      reads = 0;
      assert.deepEqual((await open(cancelling).verify(tenant, refs)).damage, []);
      assert.ok(reads > packs, `${reads} reads for ${packs} packs`);
    });

    it('keeps its packs when the commit went through but its answer was lost (a connection cut), and succeeds', async () => {
      const store = open();
      const writer = store.writer(tenant);
      const pieces = Array.from({ length: 6 }, () => randomBytes(64 * KIB));
      const refs: ChunkRef[] = [];
      for (const piece of pieces) refs.push(await writer.put(piece));
      const transaction = db.transaction.bind(db) as (...args: unknown[]) => Promise<unknown>;
      db.transaction = (async (...args: unknown[]) => {
        await transaction(...args);
        throw new Error('Connection terminated unexpectedly');
      }) as typeof db.transaction;
      try {
        assert.equal((await writer.finish()).newChunks, 6);
      } finally {
        db.transaction = transaction as typeof db.transaction;
      }
      // The rows were committed: the packs they name must still be there.
      assert.deepEqual(await readAll(store.read(tenant, refs)), Buffer.concat(pieces));
      await assertTidy(tenant);
    });

    it('removes its packs when the commit failed, and says why', async () => {
      const store = open();
      const writer = store.writer(tenant);
      for (let index = 0; index < 6; index++) await writer.put(randomBytes(64 * KIB));
      const transaction = db.transaction.bind(db);
      db.transaction = (async () => {
        throw new Error('Connection terminated unexpectedly');
      }) as typeof db.transaction;
      try {
        await assert.rejects(writer.finish(), /Connection terminated/);
      } finally {
        db.transaction = transaction;
      }
      assert.deepEqual(await packFiles(tenant), []);
      assert.deepEqual(await packRows(tenant), []);
      assert.deepEqual(await chunkRows(tenant), []);
    });

    it('leaves no pack blob and no index row, even after several packs were written', async () => {
      const store = open();
      const writer = store.writer(tenant);
      for (let index = 0; index < 10; index++) await writer.put(randomBytes(64 * KIB));
      await writer.abort();
      assert.deepEqual(await packFiles(tenant), []);
      assert.deepEqual(await packRows(tenant), []);
      assert.deepEqual(await chunkRows(tenant), []);
      await assert.rejects(writer.put(randomBytes(10)), /aborted/);
    });
  });

  describe('collect', () => {
    it('frees exactly the dead data, repacks mostly-dead packs, and keeps the rest readable', async () => {
      const store = open();
      const shared = Array.from({ length: 2 }, () => randomBytes(60 * KIB));
      const onlyA = Array.from({ length: 6 }, () => randomBytes(60 * KIB));
      // A's packs: shared chunks and A-only chunks mixed, so that deleting A leaves packs under half live.
      const a = await writeAll(store, tenant, [shared[0], ...onlyA.slice(0, 3), shared[1], ...onlyA.slice(3)]);
      const onlyB = [randomBytes(60 * KIB)];
      const b = await writeAll(store, tenant, [...shared, ...onlyB]);
      const liveB = new Set(b.refs.map((ref) => ref.id));
      now += HOUR;

      const result = await store.collect(tenant, liveB, { graceMs: 0 });
      assert.equal(result.removedChunks, onlyA.length);
      assert.ok(result.repackedPacks >= 1, 'a pack holding one live chunk of four is repacked');
      assert.ok(result.removedPacks >= 2 && result.freedBytes > 0);
      assert.deepEqual((await chunkRows(tenant)).map((row) => row.id).sort(), [...liveB].sort());
      assert.deepEqual(await readAll(store.read(tenant, b.refs, { verifyIds: true })), Buffer.concat([...shared, ...onlyB]));
      await assertTidy(tenant);
      // What remains is the live data and pack overhead: nothing dead is still stored.
      const liveStored = (await chunkRows(tenant)).reduce((sum, row) => sum + row.length, 0);
      assert.ok((await bytesOnDisk(tenant)) - liveStored < 1 * KIB, 'only trailers and footers besides live chunks');
      await assert.rejects(readAll(store.read(tenant, a.refs.slice(1, 2))), ChunkNotFoundError);

      now += HOUR;
      const all = await store.collect(tenant, new Set(), { graceMs: 0 });
      assert.equal(all.removedChunks, 3);
      assert.deepEqual(await packFiles(tenant), []);
      assert.deepEqual(await store.usage(tenant), { storedBytes: 0, reclaimableBytes: 0, packs: 0 });
    });

    it('spares chunks and packs touched within the grace period, and keeps condemned packs for it', async () => {
      const store = open();
      const { refs } = await writeAll(store, tenant, [randomBytes(10 * KIB)]);
      assert.equal((await store.collect(tenant, new Set(), { graceMs: HOUR })).removedChunks, 0);
      now += 2 * HOUR;
      const first = await store.collect(tenant, new Set(), { graceMs: HOUR });
      assert.deepEqual([first.removedChunks, first.removedPacks], [1, 0], 'the pack is condemned, not deleted yet');
      assert.equal((await store.usage(tenant)).reclaimableBytes, await bytesOnDisk(tenant));
      now += 2 * HOUR;
      const second = await store.collect(tenant, new Set(), { graceMs: HOUR });
      assert.equal(second.removedPacks, 1);
      assert.deepEqual(await packFiles(tenant), []);
      await assert.rejects(readAll(store.read(tenant, refs)), ChunkNotFoundError);
    });

    it("never breaks a concurrent writer's dedup: finish puts back rows collected since put", async () => {
      const store = open();
      const old = [randomBytes(50 * KIB), randomBytes(50 * KIB)];
      await writeAll(store, tenant, old); // snapshot A, deleted below
      now += 10 * HOUR;
      const writer = store.writer(tenant);
      const refs = [await writer.put(old[0]), await writer.put(randomBytes(20 * KIB))];
      // A is deleted and collected while the writer runs: its chunks look dead to the caller's live set.
      const collected = await store.collect(tenant, new Set(), { graceMs: HOUR });
      assert.equal(collected.removedChunks, 2);
      assert.equal(collected.removedPacks, 0, 'a condemned pack is kept for the grace period');
      now += 10 * 60_000;
      assert.equal((await writer.finish()).dedupedChunks, 1);
      assert.deepEqual(await readAll(store.read(tenant, refs)), Buffer.concat([old[0], await readAll(store.read(tenant, [refs[1]]))]));
      // Later collections keep it while it is live: the pack went back to SEALED.
      now += 5 * HOUR;
      const live = new Set(refs.map((ref) => ref.id));
      const later = await store.collect(tenant, live, { graceMs: HOUR });
      assert.deepEqual([later.removedChunks, later.repackedPacks], [0, 1], "A's pack holds one live chunk of two");
      now += 2 * HOUR;
      await store.collect(tenant, live, { graceMs: HOUR });
      assert.deepEqual(await readAll(store.read(tenant, refs.slice(0, 1), { verifyIds: true })), old[0]);
      await assertTidy(tenant);
    });

    (backend.name === 'PostgreSQL' ? it : it.skip)('puts rows back into a condemned pack while another writer does the same, without a deadlock', async () => {
      const store = open();
      const old = [randomBytes(50 * KIB), randomBytes(50 * KIB)];
      await writeAll(store, tenant, old); // snapshot A, deleted below
      const [packId] = await packFiles(tenant);
      now += 10 * HOUR;
      const writer = store.writer(tenant);
      const refs = [await writer.put(old[0])];
      assert.equal((await store.collect(tenant, new Set(), { graceMs: HOUR })).removedChunks, 2);
      assert.equal((await packRows(tenant))[0].state, 'CONDEMNED');
      // Another writer (old[1]'s) finishing at the same moment: it has locked the pack as keepDeduped does, and puts it
      // back to SEALED once this writer waits for it.
      const other = db.createQueryRunner();
      await other.connect();
      try {
        await other.startTransaction();
        await other.query(`SELECT "id" FROM "chunk_packs" WHERE "tenantId" = $1 AND "id" = $2 FOR SHARE`, [tenant, packId]);
        const finishing = writer.finish();
        finishing.catch(() => undefined);
        const waiting = async () =>
          Number((await db.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`))[0].n) > 0;
        const deadline = Date.now() + 10_000;
        while (!(await waiting()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
        assert.ok(await waiting(), 'the writer waits for the other one');
        await other.query(`UPDATE "chunk_packs" SET "state" = 'SEALED' WHERE "tenantId" = $1 AND "id" = $2`, [tenant, packId]);
        await other.commitTransaction();
        assert.equal((await finishing).dedupedChunks, 1);
      } finally {
        if (other.isTransactionActive) await other.rollbackTransaction();
        await other.release();
      }
      assert.deepEqual(await readAll(store.read(tenant, refs)), old[0]);
    });

    it('spares chunks a finished writer deduplicated against until its manifest can be recorded as live', async () => {
      const store = open();
      const data = randomBytes(30 * KIB);
      await writeAll(store, tenant, [data]);
      now += 10 * HOUR;
      const { refs } = await writeAll(store, tenant, [data]); // dedups; its manifest is not yet live
      assert.equal((await store.collect(tenant, new Set(), { graceMs: HOUR })).removedChunks, 0);
      assert.deepEqual(await readAll(store.read(tenant, refs)), data);
    });

    it('spares a chunk that another writer stored too, and indexed first, as long as one it deduplicated against', async () => {
      const store = open();
      const old = randomBytes(30 * KIB);
      await writeAll(store, tenant, [old]);
      now += 10 * HOUR;
      const data = randomBytes(30 * KIB);
      const writer = store.writer(tenant);
      // Not in the index when put: this writer stores it. A concurrent writer stores the same data and finishes first
      // (its snapshot is deleted later, or never recorded); its row is the one kept.
      const refs = [await writer.put(data), await writer.put(old)];
      await writeAll(store, tenant, [data]);
      now += 30 * 60_000;
      const { newChunks, dedupedChunks } = await writer.finish();
      assert.deepEqual([newChunks, dedupedChunks], [1, 1]);
      // A collection listing the restore points before this writer's is recorded: what the writer uses is spared for
      // the grace period from its finish, whether it deduplicated against it or stored it.
      now += 45 * 60_000;
      assert.equal((await store.collect(tenant, new Set(), { graceMs: HOUR })).removedChunks, 0);
      assert.deepEqual(await readAll(store.read(tenant, refs)), Buffer.concat([data, old]));
    });

    it('loses nothing and leaves nothing when a collection dies between steps', async () => {
      let failDelete = true;
      let failWriteAfterStoring = true;
      // Dies after a repacked pack's blob is stored but before its rows move, and before a condemned blob is deleted.
      const crashing: BlobStore = Object.assign(Object.create(fsBlobs) as FilesystemBlobStore, {
        write: async (key: string, data: Readable) => {
          const stored = await fsBlobs.write(key, data);
          if (failWriteAfterStoring && key.includes('/packs/')) throw new Error('killed after the blob was written');
          return stored;
        },
        delete: async (key: string) => {
          if (failDelete) throw new Error('killed before the blob was deleted');
          return fsBlobs.delete(key);
        },
        list: (prefix: string) => fsBlobs.list(prefix),
        size: (key: string) => fsBlobs.size(key),
        read: (key: string, range?: { start?: number; end?: number }) => fsBlobs.read(key, range),
        openRanges: (key: string) => fsBlobs.openRanges(key),
      });
      const store = open();
      const keep = Array.from({ length: 2 }, () => randomBytes(60 * KIB));
      const drop = Array.from({ length: 6 }, () => randomBytes(60 * KIB));
      const { refs } = await writeAll(store, tenant, [keep[0], ...drop.slice(0, 3), keep[1], ...drop.slice(3)]);
      const live = new Set([refs[0].id, refs[4].id]);
      now += HOUR;

      const dying = open(crashing);
      // The repack's own clean-up dies too (it would delete the blob): the new pack is left WRITING, as by kill -9.
      await assert.rejects(dying.collect(tenant, live, { graceMs: 0 }), /killed/);
      assert.ok((await packRows(tenant)).some((row) => row.state === 'WRITING'));
      assert.deepEqual(await readAll(store.read(tenant, [refs[0], refs[4]])), Buffer.concat(keep));
      failWriteAfterStoring = false;
      await assert.rejects(dying.collect(tenant, live, { graceMs: 0 }), /killed before the blob was deleted/);
      assert.deepEqual(await readAll(store.read(tenant, [refs[0], refs[4]])), Buffer.concat(keep));

      failDelete = false;
      now += HOUR;
      await store.collect(tenant, live, { graceMs: 0 });
      assert.deepEqual(await readAll(store.read(tenant, [refs[0], refs[4]], { verifyIds: true })), Buffer.concat(keep));
      assert.deepEqual((await chunkRows(tenant)).map((row) => row.id).sort(), [...live].sort());
      await assertTidy(tenant);
    });

    it('keeps the packs of a writer that goes on putting for longer than a grace period of less than a minute', async () => {
      // An operator's short SNAPGRAPH_COLLECT_GRACE_MS (a test's): the writer says its packs live well within it.
      // The clock jumps a third of it after each put, whatever work is in flight. With workers, puts run ahead of the
      // packs being opened, and a pack's row (inserted with the clock of its start) could still be on its way to
      // PostgreSQL three jumps later: an insert slower than the grace period, which no heartbeat covers (a CI run saw
      // that pack collected). Inline, each put waits for the one before it to be in a pack the writer beats for.
      const grace = 3_000;
      const store = open(fsBlobs, { collectGraceMs: grace, workers: 0 });
      const writer = store.writer(tenant);
      const pieces: Buffer[] = [];
      const refs: ChunkRef[] = [];
      for (let index = 0; index < 12; index++) {
        pieces.push(randomBytes(64 * KIB));
        refs.push(await writer.put(pieces[index]));
        now += grace / 3;
        await store.collect(tenant, new Set(refs.map((ref) => ref.id)), { graceMs: grace });
      }
      await writer.finish();
      assert.deepEqual(await readAll(store.read(tenant, refs, { verifyIds: true })), Buffer.concat(pieces));
    });

    it('keeps the open pack of a writer that puts only chunks the tenant has for longer than the grace period', async () => {
      // A base of a store that barely changed: one new chunk, then chunks deduplicated against what is stored, for
      // longer than the grace period. Its open pack stayed WRITING with the time of its one new chunk, was collected,
      // and the writer's finish failed, every retry alike.
      const grace = 3_000;
      const store = open(fsBlobs, { collectGraceMs: grace, workers: 0 });
      const known = Array.from({ length: 12 }, () => randomBytes(16 * KIB));
      const earlier = await writeAll(store, tenant, known);
      const writer = store.writer(tenant);
      const fresh = randomBytes(16 * KIB);
      const refs = [await writer.put(fresh)];
      for (const piece of known) {
        refs.push(await writer.put(piece));
        now += grace / 3;
        await store.collect(tenant, new Set([...earlier.refs, ...refs].map((ref) => ref.id)), { graceMs: grace });
      }
      await writer.finish();
      assert.deepEqual(await readAll(store.read(tenant, refs, { verifyIds: true })), Buffer.concat([fresh, ...known]));
    });

    it("deletes a crashed writer's packs once its heartbeat is older than the grace period", async () => {
      const store = open();
      const writer = store.writer(tenant);
      for (let index = 0; index < 6; index++) await writer.put(randomBytes(64 * KIB));
      // The process dies: the writer is never finished nor aborted. Its full packs are sealed in the background (puts
      // do not wait for that): waited for, rather than for a fixed time a loaded machine may overrun.
      // Both packs must exist before the clock moves: the sealed one (chunks 1-4 fill its 256 KiB) and the open one
      // (chunks 5-6), whose row a late append would otherwise create after the move, inside the grace period.
      const deadline = Date.now() + 10_000;
      const settled = async () => (await packFiles(tenant)).length >= 1 && (await packRows(tenant)).length >= 2;
      while (!(await settled()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.ok(await settled(), 'the writer did not seal its first pack and open its second');
      await store.collect(tenant, new Set(), { graceMs: HOUR });
      assert.ok((await packRows(tenant)).length >= 1, 'spared within the grace period');
      now += 2 * HOUR;
      await store.collect(tenant, new Set(), { graceMs: HOUR });
      assert.deepEqual(await packRows(tenant), []);
      assert.deepEqual(await packFiles(tenant), []);
      await writer.abort();
    });
  });

  describe('rebuildIndex', () => {
    it('rebuilds the index (and adopts the key copy) from the pack blobs alone', async () => {
      const store = open();
      const pieces = Array.from({ length: 8 }, (_, index) => (index % 2 ? randomBytes(64 * KIB) : compressible(64 * KIB, index)));
      const { refs } = await writeAll(store, tenant, pieces);
      const rowsBefore = (await chunkRows(tenant)).map(({ touchedAt: _touched, ...row }) => row);
      await db.getRepository(ChunkEntity).delete({ tenantId: tenant });
      await db.getRepository(ChunkPackEntity).delete({ tenantId: tenant });
      await db.getRepository(ChunkKeyEntity).delete({ tenantId: tenant });

      const fresh = open(); // a new process: no cached keys
      const result = await fresh.rebuildIndex(tenant);
      assert.deepEqual([result.packs, result.chunks, result.damage], [(await packFiles(tenant)).length, 8, []]);
      const sortById = <T extends { id: string }>(rows: T[]) => rows.sort((x, y) => x.id.localeCompare(y.id));
      assert.deepEqual(sortById((await chunkRows(tenant)).map(({ touchedAt: _touched, ...row }) => row)), sortById(rowsBefore));
      assert.deepEqual(await readAll(fresh.read(tenant, refs, { verifyIds: true })), Buffer.concat(pieces));
      await assertTidy(tenant);
    });

    it('reports a pack whose trailer is damaged and indexes the others', async () => {
      const store = open();
      await writeAll(store, tenant, Array.from({ length: 8 }, () => randomBytes(64 * KIB)));
      const [first] = await packFiles(tenant);
      const bytes = await readFile(packPath(tenant, first));
      bytes[bytes.length - 30] ^= 0x01;
      await writeFile(packPath(tenant, first), bytes);
      const result = await store.rebuildIndex(tenant);
      assert.deepEqual(result.damage.map((damage) => damage.packId), [first]);
      assert.equal(result.packs, (await packFiles(tenant)).length - 1);
    });
  });

  describe('keys', () => {
    it('creates one key set per tenant even when asked concurrently, and reads it back after a master key rotation', async () => {
      const store = open();
      const keys = new TenantChunkKeys(fsBlobs, db, keyring);
      const racing = new TenantChunkKeys(fsBlobs, db, keyring);
      const [a, b] = await Promise.all([keys.get(tenant), racing.get(tenant)]);
      assert.deepEqual([a.dataKey, a.idKey], [b.dataKey, b.idKey]);
      const { refs } = await writeAll(store, tenant, [compressible(10 * KIB, 9)]);

      const rotated = new Keyring(MasterKey.generate(), [keyring.current]);
      const after = new TenantChunkKeys(fsBlobs, db, rotated);
      assert.deepEqual((await after.get(tenant)).dataKey, a.dataKey);
      const row = await db.getRepository(ChunkKeyEntity).findOneByOrFail({ tenantId: tenant });
      assert.equal(row.masterKeyId, rotated.current.keyId, 'rewrapped under the current master key');
      const copy = JSON.parse(await readFile(join(dir, 'blobs', 'tenants', tenant, 'chunks', 'keys'), 'utf8'));
      assert.equal(copy.masterKeyId, rotated.current.keyId);
      const later = new ChunkStore(fsBlobs, db, new TenantChunkKeys(fsBlobs, db, new Keyring(rotated.current)), { workers: 0 });
      stores.push(later);
      assert.deepEqual(await readAll(later.read(tenant, refs)), compressible(10 * KIB, 9));
    });
  });

  // Memory does not depend on where the metadata lives.
  (backend.name === 'SQLite' ? describe : describe.skip)('memory', () => {
    it('stays flat while 200 MB are written', async () => {
      const store = open(fsBlobs, { packTargetBytes: 16 * MIB });
      const writer = store.writer(tenant);
      const rss = () => process.memoryUsage().rss;
      // The first 50 MiB start the workers and let the garbage collector settle on a heap size.
      let warm = 0;
      let peak = 0;
      for (let index = 0; index < 800; index++) {
        await writer.put(randomBytes(256 * KIB));
        if (index < 200) warm = Math.max(warm, rss());
        else peak = Math.max(peak, rss());
      }
      const result = await writer.finish();
      assert.equal(result.newChunks, 800);
      // Buffering what is written would add 150 MiB over the last 150 MiB.
      assert.ok(peak - warm < 48 * MIB, `RSS grew by ${((peak - warm) / MIB).toFixed(1)} MiB over the last 150 MiB`);
    });
  });
}
