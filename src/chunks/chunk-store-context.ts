// What the parts of the chunk store share, and the index queries more than one of them runs.
import type { DataSource, EntityManager } from 'typeorm';
import { In } from 'typeorm';

import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ChunkEntity } from '../entities/chunk.entity';
import { type PrebuiltSelect, prebuiltSelect } from '../entities/prebuilt-select';
import { BlobStore } from '../storage/blob-store';
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
  for (const batch of batches(ids)) {
    const query = manager
      .getRepository(ChunkPackEntity)
      .createQueryBuilder('pack')
      .where('pack.tenantId = :tenantId', { tenantId })
      .andWhere('pack.id IN (:...batch)', { batch });
    if (manager.connection.options.type === 'postgres') query.setLock(mode === 'write' ? 'pessimistic_write' : 'pessimistic_read');
    rows.push(...(await query.getMany()));
  }
  return rows;
}

/**
 * The stored bytes `[start, end)` of a pack.
 * @throws ChunkIntegrityError naming the pack when it is missing or shorter than that.
 */
export async function readPackRange(blobs: BlobStore, tenantId: string, packId: string, start: number, end: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const part of await blobs.read(packKey(tenantId, packId), { start, end })) parts.push(part as Buffer);
  } catch (error) {
    if (error instanceof BlobNotFoundError) throw new ChunkIntegrityError(packId, null, 'the pack is missing');
    throw error;
  }
  const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  if (bytes.length !== end - start) throw new ChunkIntegrityError(packId, null, 'the pack is truncated');
  return bytes;
}
