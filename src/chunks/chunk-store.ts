// Content-addressed, encrypted, deduplicated chunk storage per tenant, on any BlobStore, indexed in the metadata
// database. Snapshots store their data as chunks through a ChunkWriter and keep the refs in their manifest.
import { addAbortSignal, Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ChunkEntity } from '../entities/chunk.entity';
import { BlobStore } from '../storage/blob-store';
import type { ChunkCompression } from './chunk-codec';
import { ChunkCollector, CollectOptions, CollectResult, LiveChunkSet } from './chunk-collector';
import { ChunkReader, readPackEntries, ReadOptions, VerifyReport } from './chunk-reader';
import { ChunkStoreContext, insertChunkRows, PackReader } from './chunk-store-context';
import { DEFAULT_CHUNK_WORKERS, ChunkWorkerPool } from './chunk-worker-pool';
import { ChunkRef, ChunkWriter } from './chunk-writer';
import { ChunkIntegrityError } from './errors';
import { PACK_ID_PATTERN, packsPrefix } from './pack-format';
import { TenantChunkKeys } from './tenant-chunk-keys';

export const DEFAULT_PACK_TARGET_BYTES = 16 * 1024 * 1024;
const DEFAULT_COLLECT_GRACE_MS = 3_600_000;

/** How often a writer refreshes its unfinished packs: a minute, or a quarter of a shorter grace period. */
function writerHeartbeatMs(collectGraceMs: number): number {
  return Math.min(60_000, Math.floor(collectGraceMs / 4));
}

export interface ChunkStoreOptions {
  /** A pack is sealed once its chunks reach this many stored bytes. Default 16 MiB. */
  packTargetBytes?: number;
  /** Worker threads that hash, seal and open chunks (SNAPGRAPH_CHUNK_WORKERS); 0 runs them inline. Default 2. */
  workers?: number;
  /** How new chunks are compressed (SNAPGRAPH_CHUNK_COMPRESSION); both kinds are read. Default brotli. */
  compression?: ChunkCompression;
  /** Epoch ms; tests move it to pass grace periods. */
  clock?: () => number;
  /**
   * The grace period collections give (SNAPGRAPH_COLLECT_GRACE_MS): a writer tells them its unfinished packs live well
   * within it. Default one hour.
   */
  collectGraceMs?: number;
}

export interface ChunkUsage {
  /** Bytes of the tenant's pack blobs in the store (everything but packs still being written). */
  storedBytes: number;
  /** Of storedBytes, packs no chunk is indexed in any more: freed by a collection once their grace period is over. */
  reclaimableBytes: number;
  packs: number;
}

export interface RebuildResult {
  packs: number;
  chunks: number;
  /** Pack blobs whose footer or trailer is damaged: not indexed (their chunks read as missing). */
  damage: ChunkIntegrityError[];
}

export class ChunkStore {
  readonly #context: ChunkStoreContext;
  readonly #reader: ChunkReader;
  readonly #collector: ChunkCollector;

  constructor(blobs: BlobStore, db: DataSource, keys: TenantChunkKeys, options: ChunkStoreOptions = {}) {
    this.#context = {
      blobs,
      db,
      keys,
      pool: new ChunkWorkerPool(options.workers ?? DEFAULT_CHUNK_WORKERS, undefined, options.compression),
      packTargetBytes: options.packTargetBytes ?? DEFAULT_PACK_TARGET_BYTES,
      clock: options.clock ?? Date.now,
      heartbeatMs: writerHeartbeatMs(options.collectGraceMs ?? DEFAULT_COLLECT_GRACE_MS),
    };
    this.#collector = new ChunkCollector(this.#context);
    this.#reader = new ChunkReader(this.#context, this.#collector);
  }

  /** A writer for one snapshot. Finish it (or abort it) within the collection grace period. */
  writer(tenantId: string): ChunkWriter {
    return new ChunkWriter(this.#context, tenantId);
  }

  /**
   * The plaintext of `refs`, in order, as a stream. Damage fails the stream with a ChunkIntegrityError naming the
   * pack and chunk, a ref without an index row with ChunkNotFoundError; no wrong byte is ever emitted. Finish reading
   * within the collection grace period.
   */
  read(tenantId: string, refs: ChunkRef[], options: ReadOptions = {}): Readable {
    const stream = Readable.from(this.#reader.plaintext(tenantId, refs, options), { objectMode: false });
    if (!options.signal) return stream;
    // A signal aborted already (a cancel while a restore or an export prepared) destroys the stream at once, before
    // anyone reads it, and addAbortSignal then listens for nothing: its reader sees the AbortError where it reads, and
    // until then it must not be an 'error' nobody hears, which ends the process.
    stream.on('error', () => undefined);
    return addAbortSignal(options.signal, stream);
  }

  /** A JSON document stored with ChunkWriter.putJson. */
  async readJson<T>(tenantId: string, refs: ChunkRef[]): Promise<T> {
    const parts: Buffer[] = [];
    for await (const part of this.read(tenantId, refs, { verifyIds: true })) parts.push(part as Buffer);
    return JSON.parse(Buffer.concat(parts).toString('utf8')) as T;
  }

  /**
   * See ChunkReader.verify: reads back every pack `refs` use, and reports what is damaged (a damaged chunk leaves the
   * index, so that the next writer holding its data stores it again; the sound chunks of a pack whose trailer is damaged
   * move into a new pack, so that the next writer deduplicates against a sound one); stops when `signal` aborts.
   */
  verify(tenantId: string, refs: ChunkRef[], signal?: AbortSignal): Promise<VerifyReport> {
    return this.#reader.verify(tenantId, refs, signal);
  }

  /** What the tenant's chunk store takes in the blob store (summed by the database: a tenant may have 100,000s of packs). */
  async usage(tenantId: string): Promise<ChunkUsage> {
    const row = await this.#context.db
      .getRepository(ChunkPackEntity)
      .createQueryBuilder('k')
      .select('COUNT(*)', 'packs')
      .addSelect('COALESCE(SUM(k."sizeBytes"), 0)', 'storedBytes')
      .addSelect(`COALESCE(SUM(CASE WHEN k.state <> 'SEALED' THEN k."sizeBytes" ELSE 0 END), 0)`, 'reclaimableBytes')
      .where('k."tenantId" = :tenantId', { tenantId })
      .andWhere('k.state IN (:...states)', { states: ['SEALED', 'CONDEMNED', 'DELETING'] })
      .getRawOne<Record<keyof ChunkUsage, string | number>>();
    // PostgreSQL's sums and counts are numeric and bigint, which pg returns as strings.
    return { storedBytes: Number(row?.storedBytes ?? 0), reclaimableBytes: Number(row?.reclaimableBytes ?? 0), packs: Number(row?.packs ?? 0) };
  }

  /**
   * Mark and sweep: every indexed chunk of the tenant that `live` does not name (the caller walks the manifests of
   * the snapshots it keeps) and that no writer touched within the grace period is removed; see ChunkCollector.
   */
  collect(tenantId: string, live: ReadonlySet<string> | ((id: string) => boolean) | LiveChunkSet, options: CollectOptions): Promise<CollectResult> {
    const set: LiveChunkSet =
      'liveAmong' in live
        ? live
        : { liveAmong: async (ids) => new Set(ids.filter(typeof live === 'function' ? live : (id) => live.has(id))) };
    return this.#collector.collect(tenantId, set, options);
  }

  /**
   * Replaces the tenant's index with what its pack blobs say (after the metadata database was lost or damaged). The
   * keys come from their blob copy when the database has none. Run it while no writer or collection of the tenant
   * runs; packs whose trailer is damaged are reported and left out.
   */
  async rebuildIndex(tenantId: string): Promise<RebuildResult> {
    const keys = await this.#context.keys.get(tenantId);
    const { db, blobs } = this.#context;
    const result: RebuildResult = { packs: 0, chunks: 0, damage: [] };
    await db.transaction(async (manager) => {
      await manager.delete(ChunkEntity, { tenantId });
      await manager.delete(ChunkPackEntity, { tenantId });
    });
    for await (const key of blobs.list(packsPrefix(tenantId))) {
      const packId = key.slice(packsPrefix(tenantId).length + 1);
      if (!PACK_ID_PATTERN.test(packId)) continue;
      let read;
      const packs = new PackReader(blobs, tenantId);
      try {
        read = await readPackEntries(packs, keys, packId);
      } catch (error) {
        if (!(error instanceof ChunkIntegrityError)) throw error;
        result.damage.push(error);
        continue;
      } finally {
        await packs.close();
      }
      const { entries, sizeBytes } = read;
      const now = this.#context.clock();
      await db.transaction(async (manager) => {
        await manager.insert(ChunkPackEntity, { tenantId, id: packId, state: 'SEALED', sizeBytes, chunkCount: entries.length, createdAt: now, touchedAt: now });
        await insertChunkRows(manager, entries.map((entry) => ({ tenantId, packId, ...entry, touchedAt: now })));
      });
      result.packs += 1;
      result.chunks += entries.length;
    }
    return result;
  }

  /** Ends the worker threads. */
  async close(): Promise<void> {
    await this.#context.pool.close();
  }
}
