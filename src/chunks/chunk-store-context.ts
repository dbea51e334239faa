// What the parts of the chunk store share, and the index queries more than one of them runs.
import type { DataSource, EntityManager } from 'typeorm';
import { In } from 'typeorm';

import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ChunkEntity } from '../entities/chunk.entity';
import { type PrebuiltSelect, prebuiltSelect } from '../entities/prebuilt-select';
import { BlobRanges, BlobStore } from '../storage/blob-store';
import { BlobNotFoundError } from '../storage/errors';
import { ChunkWorkerPool } from './chunk-worker-pool';
import { ChunkIntegrityError } from './errors';
import { packKey } from './pack-format';
import { TenantChunkKeys } from './tenant-chunk-keys';

export interface ChunkStoreContext {
  blobs: BlobStore;
  db: DataSource;
  keys: TenantChunkKeys;
  pool: ChunkWorkerPool;
  packTargetBytes: number;
  /** Epoch ms; tests move it to pass grace periods. */
  clock: () => number;
  /** How often a writer tells collection that its unfinished packs are still being written (touchedAt). */
  heartbeatMs: number;
}

/** A chunk's index row, as readers and writers use it. */
export type ChunkLocation = Pick<ChunkEntity, 'id' | 'packId' | 'offset' | 'length' | 'plainLength'>;

/** Rows per statement: well under the bound-parameter limits of SQLite (32766) and PostgreSQL (65535). */
export const BATCH = 500;

export function batches<T>(items: T[], size = BATCH): T[][] {
  const result: T[][] = [];
  for (let start = 0; start < items.length; start += size) result.push(items.slice(start, start + size));
  return result;
}

/** Index rows of `ids` (those that exist). */
export async function locateChunks(manager: EntityManager, tenantId: string, ids: string[]): Promise<Map<string, ChunkLocation>> {
  const found = new Map<string, ChunkLocation>();
  for (const batch of batches(ids)) {
    const rows = await manager.find(ChunkEntity, {
      select: { id: true, packId: true, offset: true, length: true, plainLength: true },
      where: { tenantId, id: In(batch) },
    });
    for (const row of rows) found.set(row.id, row);
  }
  return found;
}

/** The lookup of one chunk's row, per database (see findChunk). */
const findStatements = new WeakMap<DataSource, PrebuiltSelect<ChunkEntity>>();

/**
 * The index row of one chunk, or null: the deduplication lookup of every chunk a snapshot puts. One prebuilt statement
 * rather than a repository findOne, whose query building took 0.3–0.5 ms a chunk, a tenth of the main thread while
 * a 600 MiB base was stored (2,400 chunks).
 */
export async function findChunk(db: DataSource, tenantId: string, id: string): Promise<ChunkLocation | null> {
  let find = findStatements.get(db);
  if (!find) {
    find = prebuiltSelect(db, ChunkEntity, { select: ['id', 'packId', 'offset', 'length', 'plainLength'], where: ['tenantId', 'id'] });
    findStatements.set(db, find);
  }
  const [row] = await find(tenantId, id);
  return row ?? null;
}

/** Adds index rows; a chunk that already has one keeps it (another writer stored the same data at the same time). */
export async function insertChunkRows(manager: EntityManager, rows: ChunkEntity[]): Promise<void> {
  for (const batch of batches(rows, 100)) {
    await manager.createQueryBuilder().insert().into(ChunkEntity).values(batch).orIgnore().execute();
  }
}

/**
 * Pack rows, locked until the transaction ends on PostgreSQL ('write' against all, 'share' against writers only).
 * SQLite needs no row locks: its transactions run one at a time (see SqliteTransactionGate).
 */
export async function lockPacks(manager: EntityManager, tenantId: string, ids: string[], mode: 'write' | 'share'): Promise<ChunkPackEntity[]> {
  const rows: ChunkPackEntity[] = [];
  for (const batch of batches([...ids].sort())) {
    const query = manager
      .getRepository(ChunkPackEntity)
      .createQueryBuilder('pack')
      .where('pack.tenantId = :tenantId', { tenantId })
      .andWhere('pack.id IN (:...batch)', { batch })
      .orderBy('pack.id'); // one order for everyone: transactions locking the same packs never wait for each other in a ring
    if (manager.connection.options.type === 'postgres') query.setLock(mode === 'write' ? 'pessimistic_write' : 'pessimistic_read');
    rows.push(...(await query.getMany()));
  }
  return rows;
}

/** Packs a PackReader keeps open at most: far more than a read's few segments ahead, each in one pack, can need. */
const MAX_OPEN_PACKS = 32;

interface OpenPack {
  ranges: Promise<BlobRanges>;
  reading: number;
  /** Set once it is to be closed: it is, when its last read under way is done. */
  closed: Promise<void> | null;
  release: () => void;
}

/**
 * Ranged reads of the packs that one pass reads (a restore's chunks, a verification, repacking), each pack opened once
 * where the store can keep it open (BlobStore.openRanges), instead of an open, a stat and a close for every read; from
 * other stores (S3), a ranged read each. The least recently read pack is closed past `maxOpen` open, once its reads
 * under way are done. close() when the pass ends: until then, a pack deleted meanwhile is still read whole.
 */
export class PackReader {
  readonly #open = new Map<string, OpenPack>();
  #closed = false;

  constructor(
    private readonly blobs: BlobStore,
    private readonly tenantId: string,
    private readonly maxOpen = MAX_OPEN_PACKS,
  ) {}

  /**
   * The stored bytes `[start, end)` of a pack.
   * @throws ChunkIntegrityError naming the pack when it is missing or shorter than that.
   */
  async read(packId: string, start: number, end: number): Promise<Buffer> {
    if (this.#closed) throw new Error('this pack reader is closed');
    const pack = this.#acquire(packId);
    pack.reading += 1;
    let bytes: Buffer;
    try {
      bytes = await (await pack.ranges).read(start, end);
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw new ChunkIntegrityError(packId, null, 'the pack is missing');
      throw error;
    } finally {
      pack.reading -= 1;
      if (pack.reading === 0) pack.release();
    }
    if (bytes.length !== end - start) throw new ChunkIntegrityError(packId, null, 'the pack is truncated');
    return bytes;
  }

  /** The pack's stored size, or null when it is missing. */
  size(packId: string): Promise<number | null> {
    return this.blobs.size(packKey(this.tenantId, packId));
  }

  /** Closes every pack, once its reads under way are done; later reads fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const packs = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(packs.map(closeWhenDone));
  }

  #acquire(packId: string): OpenPack {
    let pack = this.#open.get(packId);
    if (pack) {
      this.#open.delete(packId); // most recently read last
    } else {
      const key = packKey(this.tenantId, packId);
      const opened: OpenPack = {
        ranges: this.blobs.openRanges ? this.blobs.openRanges(key) : Promise.resolve(rangesByRead(this.blobs, key)),
        reading: 0,
        closed: null,
        release: () => undefined,
      };
      // An open that failed is forgotten: the next read of that pack tries again.
      opened.ranges.catch(() => {
        if (this.#open.get(packId) === opened) this.#open.delete(packId);
      });
      if (this.#open.size >= this.maxOpen) {
        const [oldestId, oldest] = this.#open.entries().next().value!;
        this.#open.delete(oldestId);
        void closeWhenDone(oldest);
      }
      pack = opened;
    }
    this.#open.set(packId, pack);
    return pack;
  }
}

/** Closing a file only read from loses nothing if it fails, so a failure is not an error of the pass. */
function closeWhenDone(pack: OpenPack): Promise<void> {
  pack.closed ??= new Promise<void>((resolve) => {
    pack.release = resolve;
    if (pack.reading === 0) resolve();
  }).then(() => pack.ranges.then((ranges) => ranges.close()).catch(() => undefined));
  return pack.closed;
}

/** A blob's ranges read one by one, for a store that cannot keep a blob open. */
function rangesByRead(blobs: BlobStore, key: string): BlobRanges {
  return {
    read: async (start, end) => {
      const parts: Buffer[] = [];
      for await (const part of await blobs.read(key, { start, end })) parts.push(part as Buffer);
      return parts.length === 1 ? parts[0] : Buffer.concat(parts);
    },
    close: async () => undefined,
  };
}
