// Backup storage: restore points over the tenant's chunk store and the instances' change logs. A snapshot is a
// position on its instance's change log (a LOG point, recorded once the log up to it is shipped); base images of the
// store are taken by policy in the background (BASE points), so that a restore writes the newest base before its
// point back at disk speed and replays only the log after it. This service takes bases, writes and reads manifests,
// materialises restore points and moments in time into stores (restores, exports, verification), and collects what
// no snapshot and no restore window needs any more.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Readable, Transform } from 'node:stream';
import { In, IsNull, MoreThan, type DataSource, type EntityManager, type Repository } from 'typeorm';
import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ExportTokenEntity } from '../entities/export-token.entity';
import { createArchiveWriter, isArchiveError, openArchive } from '../archive';
import { ChunkStoreError, type ChunkIntegrityError, type ChunkRef, type ChunkStore, type ChunkWriter } from '../chunks';
import type { InstanceEntity } from '../entities/instance.entity';
import { OperationEntity } from '../entities/operation.entity';
import { logRestorePoint, newestBase, RestorePointEntity } from '../entities/restore-point.entity';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { StoreEpochEntity } from '../entities/store-epoch.entity';
import { BlobIntegrityError, CryptoError, UnknownKeyError } from '../crypto/errors';
import { AppError, isAppError } from '../errors/app-error';
import { isStorageFull } from '../errors/storage-full';
import { assertMayStillFit, type BaseCapture, type GraphReadView, type GraphStoreProvider, type SealedStore, type WriteLimits } from '../graph/graph-store';
import type { GraphFileFormat, GraphFileKind, GraphFileSource } from '../graph-files/graph-file-format';
import { GRAPH_FILE_FORMATS } from '../graph-files/graph-file-formats';
import { decodedBatches } from '../graph-files/decoded-batches';
import { batchesOfLines, lineBatches } from '../graph/line-batches';
import type { DeltaBatch, GraphStats } from '../graph/records';
import type { JobContext } from '../jobs/operation-handler';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../observability/metrics';
import { heapGrowth } from '../runtime/heap-growth';
import type { ByteRange } from '../storage/byte-range';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { BlobNotFoundError } from '../storage/errors';
import type { ChangeLogService } from './change-log.service';
import { ChunkMarks, MemoryChunkMarks } from './chunk-marks';
import type { InstanceService } from './instance.service';

/** Plain bytes of one chunk of a base image: a whole number of SQLite pages (pages are at most 64 KiB). */
export const BASE_CHUNK_BYTES = 256 * 1024;
/** Blob keys a collection asks about at once, whether anything names them (see removeOrphans): one statement each. */
const ORPHAN_CHECK_KEYS = 500;
/**
 * A new base of an instance's store once the log since its newest base (or its anchor) holds this share of the
 * store's bytes, or lines for this share of its records: a restore replays that log, and at 1M nodes a replay of a
 * quarter of the records costs about as much as writing the base back.
 */
export const BASE_POLICY = {
  maxLogShare: 0.25,
  maxLogLineShare: 0.25,
  minStoreBytes: 4 * 1024 * 1024,
  minRecords: 10_000,
  /** At most one base per instance this often (a bulk load would otherwise take one at every quarter of growth)... */
  minIntervalMs: 5 * 60_000,
  /** ...unless the log since the newest base has outgrown the store itself. */
  urgentLogShare: 1,
  /** A base the policy asked for and could not take is tried again, at most this much later. */
  maxRetryMs: 5 * 60_000,
};

const MANIFEST_VERSION = 1;

/** What a BASE or DELTA restore point's manifest blob holds. */
export interface Manifest {
  version: typeof MANIFEST_VERSION;
  id: string;
  tenantId: string;
  instanceId: string;
  kind: 'BASE' | 'DELTA';
  parentId: string | null;
  epoch: number;
  seq: number;
  stats: GraphStats;
  /** BASE: the store file, in order. */
  base: { sizeBytes: number; pageSize: number; chunks: ChunkRef[] } | null;
  /** DELTA (written by the previous release): tuple lines, newline-separated, in order. */
  delta: { lines: number; chunks: ChunkRef[] } | null;
}

/** How to build a restore point: a base (or an empty store), legacy deltas, then stretches of change log, in order. */
interface MaterialisePlan {
  base: Manifest | null;
  deltas: Manifest[];
  logs: { epoch: StoreEpochEntity; afterSeq: number; untilSeq: number }[];
}

/** What is known of a base found damaged: from its manifest, or from its row when the manifest is what is damaged. */
type DamagedBase = Pick<Manifest, 'id' | 'tenantId' | 'instanceId' | 'epoch'>;

/** A manifest that is missing, or whose bytes are not the manifest of its restore point: damage to that point. */
class ManifestDamage extends AppError {
  constructor(
    readonly point: RestorePointEntity,
    message: string,
  ) {
    super('INVALID_BACKUP_FILE', message);
  }
}

export interface CapturedPoint {
  restorePoint: RestorePointEntity;
  stats: GraphStats;
}

export class BackupService {
  private readonly points: Repository<RestorePointEntity>;
  /** Tenants whose collection waits its turn, and when it is over. */
  private readonly collectionsWaiting = new Map<string, Promise<void>>();
  /** Collections run one after the other: this one's end. */
  private collectionLane: Promise<void> = Promise.resolve();
  /** The periodic pass through every tenant, while one is under way. */
  private collectingAll?: Promise<void>;
  /** Bases being taken by this process in the background, by instance (one at a time each). */
  private readonly basing = new Map<string, Promise<unknown>>();
  /** Instances a snapshot is being captured of (it decides on a base itself). */
  private readonly capturing = new Set<string>();
  /** Segment and manifest blobs no row will ever name, and since when collections have found them so (see removeOrphans). */
  private readonly orphansSince = new Map<string, number>();
  /** Instances whose base the policy could not decide on while one was under way, with the epoch it looked at. */
  private readonly reconsidering = new Map<string, number>();
  /** Instances whose base the policy put off until BASE_POLICY.minIntervalMs after the last one. */
  private readonly deferredBases = new Map<string, NodeJS.Timeout>();
  /** Instances whose policy base failed, and how many times in a row (see takeBaseOrRetry). */
  private readonly failedBases = new Map<string, number>();
  /**
   * Instances whose base a verification asked for (it found their base damaged) while another base or a snapshot's
   * capture of them was under way, with the store generation it was for: taken as soon as that ends (rebaseWhenDone).
   */
  private readonly rebases = new Map<string, number>();
  /**
   * Export copies being produced by this process, by blob key: a caller that comes while one is under way waits for it
   * rather than producing a second copy that is renamed over the first while downloads read it.
   */
  private readonly exportsUnderWay = new Map<string, SharedProduction>();
  private closed = false;

  constructor(
    private readonly db: DataSource,
    private readonly chunks: ChunkStore,
    private readonly blobs: EncryptedBlobStore,
    private readonly stores: GraphStoreProvider,
    private readonly instances: InstanceService,
    private readonly log: ChangeLogService,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly options: { scratchDir: string; collectGraceMs: number; listBlobs: (prefix: string) => AsyncIterable<string> },
  ) {
    this.points = db.getRepository(RestorePointEntity);
    log.onShipped((instance, epoch) => this.considerBaseInBackground(instance.id, epoch));
    log.onDamaged((instanceId, epoch) => this.considerBaseInBackground(instanceId, epoch));
  }

  /**
   * A snapshot's restore point: the instance's position on its change log, once the log up to it is shipped (a
   * second or so, whatever the size of the store). A store whose history before its first base is unknown (written
   * before the change log existed) gets that base now instead. A store whose log since its newest base has outgrown
   * BASE_POLICY (a bulk load the background policy has not caught up with) gets a base too, unless `logOnly` (a
   * restore's safety point, which must cost only what changed), and the base is the snapshot's point when nothing was
   * written since the position: restoring it would otherwise replay that log record by record. The row is
   * returned, not inserted: the caller records it together with the snapshot's COMPLETED.
   */
  async capture(instance: InstanceEntity, context: JobContext, { logOnly = false } = {}): Promise<CapturedPoint> {
    if (logOnly) return this.capturePoint(instance, context, { mayTakeBase: false });
    // One base of a store at a time (each needs a copy of the store in room): while a snapshot decides on one, the
    // background policy takes none.
    this.capturing.add(instance.id);
    try {
      return await this.capturePoint(instance, context, { mayTakeBase: true });
    } finally {
      this.capturing.delete(instance.id);
      this.rebaseWhenDone(instance.id, false);
      this.reconsiderAfter(instance.id);
    }
  }

  private async capturePoint(instance: InstanceEntity, context: JobContext, { mayTakeBase }: { mayTakeBase: boolean }): Promise<CapturedPoint> {
    context.progress({ phase: 'capturing', bytesDone: 0, bytesTotal: null });
    // The position first, at once: a write acknowledged after the snapshot started is not in it.
    const { position, epoch } = await this.log.flush(instance, {
      signal: context.signal,
      progress: (bytesDone, bytesTotal) => context.progress({ bytesDone, bytesTotal }),
    });
    let base = await newestBase(this.points, epoch.epoch, position.seq);
    if (!base && epoch.anchor === 'NONE') return this.captureBase(instance, context);
    if (mayTakeBase) {
      // A base the background policy began before this snapshot is waited for: it may be this point's base.
      const inFlight = this.basing.get(instance.id);
      if (inFlight) {
        await inFlight.catch(() => undefined);
        base = await newestBase(this.points, epoch.epoch, position.seq);
      }
      const taken = await this.baseIfDue(instance, epoch, context);
      // Nothing written since the position: the base is exactly that point. Otherwise it serves later points, and
      // this one stays a position on the log (a base holds the store as it is when copied, not as it was).
      if (taken?.restorePoint.epoch === epoch.epoch && taken.restorePoint.seq === position.seq) return taken;
      if (taken) await this.points.insert(taken.restorePoint);
    }
    const addedBytes = await this.addedByPoint(epoch.epoch, base, position.seq);
    const restorePoint = logRestorePoint({
      tenantId: instance.tenantId,
      instanceId: instance.id,
      baseId: base?.id ?? null,
      epoch: epoch.epoch,
      seq: position.seq,
      at: position.at,
      addedBytes,
      stats: position.stats,
    });
    return { restorePoint, stats: position.stats };
  }

  /**
   * What a point at `seq` on `base` adds that no earlier snapshot holds (Snapshot.addedBytes): the log since the newest
   * point an earlier snapshot of the epoch refers to and, when its base came after that point (the background policy
   * took it since), the base as well. Counted from the newest point of any kind, the first snapshot after a base the
   * policy took of a bulk load added 0 bytes, though no snapshot held any of that data before.
   */
  private async addedByPoint(epoch: number, base: RestorePointEntity | null, seq: number): Promise<number> {
    const previous = await this.points
      .createQueryBuilder('p')
      .innerJoin(SnapshotEntity, 's', "s.restorePointId = p.id AND s.status = 'COMPLETED'")
      .where('p.epoch = :epoch AND p.seq <= :seq', { epoch, seq })
      .orderBy('p.seq', 'DESC')
      .getOne();
    if (base && (previous === null || previous.seq < base.seq)) {
      return (base.addedBytes ?? 0) + (await this.log.storedBytesBetween(epoch, base.seq, seq));
    }
    return this.log.storedBytesBetween(epoch, previous?.seq ?? 0, seq);
  }

  /**
   * A base for a snapshot when the log since the store's newest base has outgrown BASE_POLICY (a bulk load the
   * background policy has not caught up with), else null. Its bytes are not counted in progress: the log's were, and a
   * total that grew now would move progress back.
   */
  private async baseIfDue(instance: InstanceEntity, epoch: StoreEpochEntity, context: JobContext): Promise<CapturedPoint | null> {
    const newest = await newestBase(this.points, epoch.epoch, Number.MAX_SAFE_INTEGER);
    if ((await this.logShareSince(instance, epoch, newest)) <= BASE_POLICY.maxLogShare) return null;
    return this.captureBase(instance, { ...context, progress: ({ phase }) => phase && context.progress({ phase }) });
  }

  /**
   * The base policy, after each shipped segment and each damage recorded: a new base once the log since the newest one
   * (or since the epoch's anchor) outgrows BASE_POLICY, or at once for a store whose earlier history is unknown (or was
   * restored from a moment whose log or base is damaged: see ChangeLogService.anchorDamage) or whose log or newest base
   * is damaged with no base after the damage (nothing from the damage on can be restored without one). Taken in the
   * background.
   */
  private async considerBase(instanceId: string, epoch: StoreEpochEntity): Promise<void> {
    const instance = await this.instances.reload(instanceId);
    if (!instance || instance.status !== 'RUNNING') return;
    if (this.baseUnderWay(instance.id)) {
      // Looked at again once that ends (reconsiderAfter): a bulk load shipped meanwhile and followed by silence would
      // otherwise wait for the next shipped segment for its base.
      this.reconsidering.set(instance.id, epoch.epoch);
      return;
    }
    const base = await newestBase(this.points, epoch.epoch, Number.MAX_SAFE_INTEGER);
    // Without a base of its own, a store restored from a moment that damage to a log or base cut off cannot be built either.
    const unreachableStart =
      !base && (epoch.anchor === 'NONE' || (epoch.anchor === 'ORIGIN' && epoch.endedAt === null && (await this.log.anchorDamage(epoch)) !== null));
    // Only the current store can be copied: an ended epoch's damage stays (its window ends with it). A base inside the
    // damaged stretch is no way past it, nor is a base found damaged itself.
    const damagedThrough = epoch.endedAt === null ? await this.log.damagedThroughSeq(epoch) : null;
    const damagedSinceBase = (damagedThrough !== null && (base?.seq ?? -1) < damagedThrough) || (epoch.endedAt === null && !!base?.damage);
    if (unreachableStart || damagedSinceBase) return this.takeBaseOrRetry(instance, epoch);
    const share = await this.logShareSince(instance, epoch, base);
    if (share <= BASE_POLICY.maxLogShare) return;
    const wait = base === null ? 0 : base.createdAt + BASE_POLICY.minIntervalMs - Date.now();
    if (wait <= 0 || share > BASE_POLICY.urgentLogShare) return this.takeBaseOrRetry(instance, epoch);
    // Too soon after the last base: look again once the interval is over, so that a bulk load followed by silence
    // (no segment shipped to bring this back) still gets its base.
    this.considerLater(instance.id, epoch.epoch, wait);
  }

  /**
   * The policy's base, looked at again later when it could not be taken (the blob store full or away for a moment): a
   * bulk load followed by silence would otherwise keep its whole log to replay until the next write. The first look is
   * a second later, each next one twice as late, up to BASE_POLICY.maxRetryMs.
   */
  private async takeBaseOrRetry(instance: InstanceEntity, epoch: StoreEpochEntity): Promise<void> {
    if (!(await this.takeBase(instance))) this.retryBase(instance.id, epoch.epoch);
  }

  /** The policy looks at the instance again in `waitMs`, unless a look is already due; not if the epoch ended meanwhile. */
  private considerLater(instanceId: string, epoch: number, waitMs: number): void {
    if (this.closed || this.deferredBases.has(instanceId)) return;
    const timer = setTimeout(() => {
      this.deferredBases.delete(instanceId);
      void this.log.epoch(epoch).then(
        // A restore meanwhile ended the epoch: the new store's history starts from a base of its own.
        (current) => current && current.endedAt === null && this.considerBaseInBackground(instanceId, current),
        (err: unknown) => this.logger.warn({ err, instanceId }, 'deciding on a base of the store failed'),
      );
    }, waitMs);
    timer.unref();
    this.deferredBases.set(instanceId, timer);
  }

  /** After a base or a snapshot's capture of the instance: the policy's decision it put off, if any, is made now. */
  private reconsiderAfter(instanceId: string): void {
    const epoch = this.reconsidering.get(instanceId);
    if (epoch === undefined) return;
    this.reconsidering.delete(instanceId);
    void this.log.epoch(epoch).then(
      (current) => current && current.endedAt === null && this.considerBaseInBackground(instanceId, current),
      (err: unknown) => this.logger.warn({ err, instanceId }, 'deciding on a base of the store failed'),
    );
  }

  /** considerBase for work nobody awaits: a failure is logged (an unhandled rejection would end the server). */
  private considerBaseInBackground(instanceId: string, epoch: StoreEpochEntity): void {
    this.considerBase(instanceId, epoch).catch((err: unknown) => this.logger.warn({ err, instanceId }, 'deciding on a base of the store failed'));
  }

  /** Whether a base of the instance's store is being taken, or a snapshot of it is deciding on one (one at a time). */
  private baseUnderWay(instanceId: string): boolean {
    return this.basing.has(instanceId) || this.capturing.has(instanceId);
  }

  /**
   * How far the log since `base` (or since the epoch's anchor) has grown, as a share of the store as it is now (what a
   * restore writes back): the larger of its bytes over the store's and its lines over the store's records.
   */
  private async logShareSince(instance: InstanceEntity, epoch: StoreEpochEntity, base: RestorePointEntity | null): Promise<number> {
    const since = await this.log.sizeAfter(epoch.epoch, base?.seq ?? 0);
    const current = await this.instances.stats(instance);
    // Small stores count as a few MiB and 10,000 records: their log replays in no time, and a base per write is churn.
    const bytes = Math.max(current.storeSizeBytes, BASE_POLICY.minStoreBytes);
    const records = Math.max(current.nodeCount + current.relationshipCount, BASE_POLICY.minRecords);
    return Math.max(since.plainBytes / bytes, since.lines / records);
  }

  /** Drops the bases put off for later (the server is closing). */
  close(): void {
    this.closed = true;
    for (const timer of this.deferredBases.values()) clearTimeout(timer);
    this.deferredBases.clear();
  }

  /** Takes a base of the instance's store and records it as a BASE point (nothing else refers to it yet). */
  async takeBase(instance: InstanceEntity, context: JobContext = quietContext()): Promise<RestorePointEntity | null> {
    if (this.baseUnderWay(instance.id)) return null;
    const taking = this.baseNow(instance, context);
    this.basing.set(instance.id, taking);
    let taken: RestorePointEntity | null = null;
    try {
      taken = await taking;
      return taken;
    } finally {
      this.basing.delete(instance.id);
      this.rebaseWhenDone(instance.id, taken !== null);
      this.reconsiderAfter(instance.id);
    }
  }

  /**
   * Waits for a background base of the instance in flight, and forgets what the policy kept of it: a base put off, one
   * it could not take and would try again (its store is about to be removed, and the instance with it).
   */
  async settle(instanceId: string): Promise<void> {
    this.forget(instanceId);
    await this.basing.get(instanceId)?.catch(() => undefined);
    // A base that failed meanwhile has counted the failure and put off its next try (takeBaseOrRetry) before this goes
    // on: forgotten too.
    this.forget(instanceId);
  }

  private forget(instanceId: string): void {
    clearTimeout(this.deferredBases.get(instanceId));
    this.deferredBases.delete(instanceId);
    this.reconsidering.delete(instanceId);
    this.failedBases.delete(instanceId);
    this.rebases.delete(instanceId);
  }

  private async baseNow(instance: InstanceEntity, context: JobContext): Promise<RestorePointEntity | null> {
    try {
      const { restorePoint } = await this.captureBase(instance, context);
      await this.points.insert(restorePoint);
      this.failedBases.delete(instance.id);
      this.logger.info({ instanceId: instance.id, epoch: restorePoint.epoch, seq: restorePoint.seq, addedBytes: restorePoint.addedBytes }, 'took a base of the store');
      return restorePoint;
    } catch (err) {
      this.logger.warn({ err, instanceId: instance.id }, 'taking a base of the store failed; it is tried again');
      return null;
    }
  }

  /** Copies the instance's current store into the chunk store as a BASE point, returned, not inserted. */
  async captureBase(instance: InstanceEntity, context: JobContext): Promise<CapturedPoint> {
    const id = randomUUID();
    await mkdir(this.options.scratchDir, { recursive: true, mode: 0o700 });
    const copy = join(this.options.scratchDir, `base-${id}.sqlite`);
    try {
      context.progress({ phase: 'capturing', bytesDone: 0, bytesTotal: null });
      // A live store changes under a reader: SQLite's backup makes a copy that is one point in time.
      const base = await this.stores.use(instance.id, instance.storeGeneration, (store) => store.captureBase(copy));
      return await this.storeBase(instance, id, base, createReadStream(copy, { highWaterMark: BASE_CHUNK_BYTES }), context);
    } finally {
      await rm(copy, { force: true });
    }
  }

  /**
   * Stores a store its loader has just sealed (a restore's shadow) as a BASE point, returned, not inserted: read
   * straight from its file, which nothing writes until the swap, so without a copy (which took as long as the load's
   * own writing, and as much scratch space as the store).
   */
  captureSealed(instance: InstanceEntity, sealed: SealedStore, context: JobContext): Promise<CapturedPoint> {
    return this.storeBase(instance, randomUUID(), sealed.base, sealed.read(BASE_CHUNK_BYTES), context);
  }

  /** Writes a base's bytes into the chunk store, then its manifest; on failure the chunks written are let go. */
  private async storeBase(instance: InstanceEntity, id: string, base: BaseCapture, bytes: Readable, context: JobContext): Promise<CapturedPoint> {
    const writer = this.chunks.writer(instance.tenantId);
    const manifestKey = manifestKeyOf(instance.tenantId, id);
    try {
      // Bounded (unlike a base read back: see build): a snapshot stored 15% faster with the bound lifted, but the heap's
      // limit stays high until the next full collection, and snapshots run all the time (bench:snapshot's whole-run peak
      // RSS rose from 381–410 to 472–490 MiB).
      const manifest = await this.writeBase(instance, id, base, bytes, writer, context);
      context.signal.throwIfAborted();
      const { storedBytes: manifestBytes } = await this.blobs.write(manifestKey, Readable.from([JSON.stringify(manifest)]));
      const { addedBytes: chunkBytes } = await writer.finish();
      const restorePoint = Object.assign(new RestorePointEntity(), {
        id,
        tenantId: instance.tenantId,
        instanceId: instance.id,
        kind: 'BASE',
        parentId: null,
        baseId: id,
        epoch: manifest.epoch,
        seq: manifest.seq,
        at: manifest.at,
        chainLength: 0,
        chainDeltaLines: 0,
        chainDeltaBytes: 0,
        addedBytes: chunkBytes + manifestBytes,
        manifestBytes,
        manifestKey,
        stats: manifest.stats,
        damage: null,
        createdAt: Date.now(),
      } satisfies RestorePointEntity);
      this.metrics.storeBases.inc();
      return { restorePoint, stats: manifest.stats };
    } catch (error) {
      await writer.abort().catch(() => undefined);
      await this.blobs.delete(manifestKey).catch(() => undefined);
      throw error;
    }
  }

  /** A base's bytes, in BASE_CHUNK_BYTES pieces, into chunks; its manifest. */
  private async writeBase(
    instance: InstanceEntity,
    id: string,
    base: BaseCapture,
    bytes: Readable,
    writer: ChunkWriter,
    context: JobContext,
  ): Promise<Manifest & { at: number | null }> {
    context.progress({ bytesDone: 0, bytesTotal: base.sizeBytes });
    const chunks: ChunkRef[] = [];
    let done = 0;
    try {
      for await (const piece of bytes) {
        context.signal.throwIfAborted();
        chunks.push(await writer.put(piece as Buffer));
        done += (piece as Buffer).length;
        context.progress({ bytesDone: done });
      }
    } finally {
      bytes.destroy();
    }
    return {
      version: MANIFEST_VERSION,
      id,
      tenantId: instance.tenantId,
      instanceId: instance.id,
      kind: 'BASE',
      parentId: null,
      epoch: base.epoch,
      seq: base.seq,
      at: base.at,
      stats: base.stats,
      base: { sizeBytes: base.sizeBytes, pageSize: base.pageSize, chunks },
      delta: null,
    };
  }

  /** The manifests from the base to `restorePointId`, in that order. */
  async chainOf(restorePointId: string): Promise<Manifest[]> {
    const chain: Manifest[] = [];
    let next: string | null = restorePointId;
    while (next) {
      const point: RestorePointEntity | null = await this.points.findOneBy({ id: next });
      if (!point) throw new AppError('INVALID_BACKUP_FILE', `restore point ${next} of this snapshot's chain is missing`);
      chain.unshift(await this.readManifest(point));
      next = point.parentId;
    }
    return chain;
  }

  private async readManifest(point: RestorePointEntity): Promise<Manifest> {
    if (!point.manifestKey) throw new AppError('INVALID_BACKUP_FILE', `restore point ${point.id} has no manifest`);
    let manifest: Manifest;
    try {
      // Decoded whole: a piece may end inside a character of a label's name.
      const pieces: Buffer[] = [];
      for await (const piece of await this.blobs.read(point.manifestKey)) pieces.push(piece as Buffer);
      manifest = JSON.parse(Buffer.concat(pieces).toString('utf8')) as Manifest;
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw new ManifestDamage(point, `the manifest of restore point ${point.id} is missing`);
      const message = `the manifest of restore point ${point.id} is damaged: ${(error as Error).message}`;
      if (error instanceof BlobIntegrityError || error instanceof SyntaxError) throw new ManifestDamage(point, message);
      // A master key not configured now, or backup storage out of reach, says nothing about the bytes: said as it is
      // (as INVALID_BACKUP_FILE, a verification recorded a sound snapshot as damaged, and a restore said so).
      throw error;
    }
    if (manifest.version !== MANIFEST_VERSION || manifest.id !== point.id || manifest.tenantId !== point.tenantId) {
      throw new ManifestDamage(point, `the manifest of restore point ${point.id} does not describe it`);
    }
    return manifest;
  }

  /** How to build a restore point: see MaterialisePlan. */
  private async planOf(point: RestorePointEntity): Promise<MaterialisePlan> {
    if (point.kind !== 'LOG') {
      const [base, ...deltas] = await this.chainOf(point.id);
      if (!base.base) throw new AppError('INVALID_BACKUP_FILE', `restore point ${point.id} has no base`);
      return { base, deltas, logs: [] };
    }
    const epoch = await this.log.epoch(point.epoch);
    if (!epoch) throw new AppError('INVALID_BACKUP_FILE', `the change log restore point ${point.id} is on is gone`);
    return this.planAt(epoch, point.seq);
  }

  /**
   * The newest base of the epoch at or before seq (or its anchor), then the log up to seq. Refused when that log is no
   * longer stored from its start: the base or anchor alone would be older data, not the point.
   */
  private async planAt(epoch: StoreEpochEntity, seq: number, known?: RestorePointEntity | null): Promise<MaterialisePlan> {
    const base = known !== undefined ? known : await newestBase(this.points, epoch.epoch, seq);
    const afterSeq = base?.seq ?? 0;
    if (seq > afterSeq && !(await this.log.holdsLogAfter(epoch, afterSeq))) {
      throw new AppError('INVALID_BACKUP_FILE', `the change log of instance ${epoch.instanceId} after seq ${afterSeq} of epoch ${epoch.epoch} is no longer stored`);
    }
    let plan: MaterialisePlan;
    if (base) plan = await this.planOf(base);
    else if (epoch.anchor === 'EMPTY') plan = { base: null, deltas: [], logs: [] };
    else if (epoch.anchor === 'ORIGIN' && epoch.originPointId) {
      const origin = await this.points.findOneBy({ id: epoch.originPointId });
      if (!origin) throw new AppError('INVALID_BACKUP_FILE', `the restore point store epoch ${epoch.epoch} was built from is gone`);
      plan = await this.planOf(origin);
    } else {
      throw new AppError('INVALID_BACKUP_FILE', `no base of instance ${epoch.instanceId}'s store reaches seq ${seq} of epoch ${epoch.epoch}`);
    }
    if (seq > afterSeq) plan.logs.push({ epoch, afterSeq, untilSeq: seq });
    return plan;
  }

  /**
   * Builds the restore point's data into a new store generation: its base written back (or an empty store), legacy
   * deltas and the change log after it applied in order; checked against the recorded stats. The generation is
   * removed on any failure. Returns what the store holds and the plain bytes it was built from.
   */
  async materialise(
    restorePointId: string,
    target: { instanceId: string; generation: number; limits: WriteLimits },
    context: JobContext,
  ): Promise<{ stats: GraphStats; bytesRead: number }> {
    const point = await this.points.findOneBy({ id: restorePointId });
    if (!point) throw new AppError('INVALID_BACKUP_FILE', `restore point ${restorePointId} is missing`);
    return this.build(await this.planOf(point), point.stats, target, context);
  }

  /**
   * Builds the instance's data exactly as it was at `at` (every write committed at or before it) into a new store
   * generation, and returns it with a LOG point for that moment (not inserted: the new store's epoch is built from it).
   */
  async materialiseAt(
    source: Pick<InstanceEntity, 'id' | 'tenantId'>,
    at: number,
    target: { instanceId: string; generation: number; limits: WriteLimits },
    context: JobContext,
  ): Promise<{ stats: GraphStats; bytesRead: number; point: RestorePointEntity }> {
    const epoch = await this.log.epochAt(source.id, at);
    if (!epoch) throw new AppError('OUT_OF_RESTORE_WINDOW', `instance ${source.id} has no history at ${new Date(at).toISOString()}`);
    const seq = await this.log.seqAt(epoch, at);
    const base = await newestBase(this.points, epoch.epoch, seq);
    // The moment's seq is known only from the log after that base (or the anchor): once collected, it is out of reach.
    if (!(await this.log.holdsLogAfter(epoch, base?.seq ?? 0))) {
      throw new AppError('OUT_OF_RESTORE_WINDOW', `${new Date(at).toISOString()} is no longer in instance ${source.id}'s restore window: its change log was collected; nothing was changed`);
    }
    let plan: MaterialisePlan | null = null;
    let built: { stats: GraphStats; bytesRead: number };
    try {
      plan = await this.planAt(epoch, seq, base);
      built = await this.build(plan, null, target, context);
    } catch (error) {
      // The window moved past a later base while this one was read (lazily: a large base takes minutes): retention
      // removed its point, then its chunks. That is no damage, as for the log (ChangeLogService.entries).
      const readFrom = [...new Set([base?.id ?? epoch.originPointId, plan?.base?.id].filter((id): id is string => !!id))];
      if (!context.signal.aborted && readFrom.length > 0 && (await this.points.countBy({ id: In(readFrom) })) < readFrom.length) {
        throw new AppError(
          'OUT_OF_RESTORE_WINDOW',
          `${new Date(at).toISOString()} left instance ${source.id}'s restore window while it was restored: retention collected the base it was read from; nothing was changed`,
        );
      }
      throw error;
    }
    const point = logRestorePoint({
      tenantId: source.tenantId,
      instanceId: source.id,
      baseId: base?.id ?? null,
      epoch: epoch.epoch,
      seq,
      at,
      addedBytes: 0,
      stats: built.stats,
    });
    return { ...built, point };
  }

  private async build(
    plan: MaterialisePlan,
    expected: GraphStats | null,
    target: { instanceId: string; generation: number; limits: WriteLimits },
    context: JobContext,
  ): Promise<{ stats: GraphStats; bytesRead: number }> {
    const { base, deltas, logs } = plan;
    const chunkBytes = (refs: ChunkRef[]) => refs.reduce((sum, ref) => sum + ref.plainLength, 0);
    let replayed = deltas.reduce((sum, d) => sum + chunkBytes(d.delta!.chunks), 0);
    let lines = deltas.reduce((sum, d) => sum + d.delta!.lines, 0);
    for (const stretch of logs) {
      const size = await this.log.sizeAfter(stretch.epoch.epoch, stretch.afterSeq, stretch.untilSeq);
      replayed += size.plainBytes;
      lines += size.lines;
    }
    // The target's limits: a base that cannot fit whatever the lines after it do is not read at all, and the replay
    // stops as soon as what is left of it could no longer bring the counts within them.
    const within = { maxNodes: target.limits.maxNodes, maxRelationships: target.limits.maxRelationships, lines };
    if (base) assertMayStillFit(base.stats, within, lines);
    const total = (base?.base?.sizeBytes ?? 0) + replayed;
    context.progress({ phase: 'loading', bytesDone: 0, bytesTotal: total });
    let done = 0;
    const count = (bytes: number) => {
      done += bytes;
      context.progress({ bytesDone: done });
    };
    const counted = async function* (source: AsyncIterable<Buffer>) {
      for await (const piece of source) {
        context.signal.throwIfAborted();
        count(piece.length);
        yield piece;
      }
    };
    const signal = context.signal;
    // A base is read back as Buffers in bulk (heapGrowth): under the bound, a full collection ran every ~20 MiB of them.
    const baseBytes = base?.base ? Readable.from(heapGrowth.bulkPieces(counted(this.chunks.read(base.tenantId, base.base.chunks, { signal })))) : null;
    const { chunks, log } = this;
    const replay = async function* (): AsyncGenerator<DeltaBatch> {
      for (const delta of deltas) yield* lineBatches(counted(chunks.read(delta.tenantId, delta.delta!.chunks, { signal })));
      for (const stretch of logs) {
        // Progress counts segments as they are read, as the total does (their plaintext bytes).
        const entries = log.entries(stretch.epoch, stretch.afterSeq, { seq: stretch.untilSeq }, signal, count);
        yield* batchesOfLines(
          (async function* () {
            for await (const entry of entries) yield* entry.lines;
          })(),
        );
      }
      // Every byte is in: what remains is the check of the store against the recorded contents.
      context.progress({ phase: 'verifying' });
    };
    let stats: GraphStats;
    try {
      stats = await this.stores.materialise(target.instanceId, target.generation, baseBytes, replay(), expected, { signal, within });
    } catch (error) {
      if (base?.base && error instanceof ChunkStoreError) this.checkBaseInBackground(base);
      throw error;
    }
    this.metrics.replayedLogBytes.inc(replayed);
    return { stats, bytesRead: done };
  }

  /** Records a captured point (in the snapshot's completing transaction); CONFLICT when its base was collected meanwhile. */
  async record(point: RestorePointEntity, manager: EntityManager): Promise<void> {
    const needs = point.kind === 'LOG' ? point.baseId : point.parentId;
    if (needs && !(await manager.existsBy(RestorePointEntity, { id: needs }))) {
      throw new AppError('CONFLICT', 'the restore point this snapshot builds on was collected while it was taken; take the snapshot again');
    }
    await manager.insert(RestorePointEntity, point);
  }

  // ---- exports ----------------------------------------------------------------------------------------------------

  /**
   * Produces the snapshot's export archive from its restore point into an encrypted export copy (kept until the
   * snapshot goes), and returns its size and sha256. Deterministic: the same restore point always gives the same bytes.
   */
  async prepareExport(snapshot: SnapshotEntity, instanceName: string, signal?: AbortSignal): Promise<{ sizeBytes: number; sha256: string }> {
    const key = exportKeyOf(snapshot);
    const known = snapshot.sha256 !== null && snapshot.sizeBytes !== null && (await this.blobs.exists(key));
    if (known) return { sizeBytes: snapshot.sizeBytes!, sha256: snapshot.sha256! };
    return this.produceOnce(key, signal, (shared) =>
      this.withArchive(snapshot, instanceName, async (archive, measured) => {
        await this.blobs.write(key, archive);
        const produced = measured();
        // Snapshots no longer write archives; the archive bytes written to backup storage are these export copies.
        this.metrics.bytesArchived.inc(produced.sizeBytes);
        if (snapshot.sha256 !== null && snapshot.sha256 !== produced.sha256) {
          await this.blobs.delete(key);
          throw new AppError('INVALID_BACKUP_FILE', `snapshot ${snapshot.id} no longer produces the archive its sha256 records`);
        }
        return produced;
      }, quietContext(shared)),
    );
  }

  /**
   * The export copy `key` produced by `produce`, or by the production of it already under way in this process. That
   * production stops (`shared` aborts) only once every caller waiting for it has stopped waiting (its `signal`).
   */
  private async produceOnce(key: string, signal: AbortSignal | undefined, produce: (shared: AbortSignal) => Promise<ExportCopy>): Promise<ExportCopy> {
    signal?.throwIfAborted();
    let production = this.exportsUnderWay.get(key);
    if (!production) {
      const controller = new AbortController();
      // Stopped, it fails with whatever the step it was in made of the reason (a stream's AbortError): the reason itself.
      const done = produce(controller.signal)
        .catch((error: unknown) => {
          throw controller.signal.aborted ? controller.signal.reason : error;
        })
        .finally(() => this.exportsUnderWay.delete(key));
      production = { done, controller, waiting: 0 };
      this.exportsUnderWay.set(key, production);
    }
    const { done, controller } = production;
    const joined = production;
    joined.waiting += 1;
    if (!signal) return done;
    return new Promise<ExportCopy>((resolve, reject) => {
      const stop = () => {
        joined.waiting -= 1;
        if (joined.waiting > 0) return reject(signal.reason);
        // The last one waiting: the production stops, and its clean-up (the partial copy removed) comes first.
        controller.abort(signal.reason);
        done.then(
          () => reject(signal.reason),
          () => reject(signal.reason),
        );
      };
      signal.addEventListener('abort', stop, { once: true });
      done.then(
        (copy) => {
          signal.removeEventListener('abort', stop);
          resolve(copy);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', stop);
          reject(error);
        },
      );
    });
  }

  /**
   * Produces the snapshot as a foreign graph file (exportSnapshotAs) into an encrypted export copy beside the archive's,
   * and returns its size and sha256. Deterministic, like the archive: `expected` (an earlier link's) is checked, and
   * returned at once while the copy it describes is still stored.
   */
  async prepareGraphFileExport(
    snapshot: SnapshotEntity,
    instanceName: string,
    format: GraphFileFormat,
    expected?: { sizeBytes: number; sha256: string },
  ): Promise<{ sizeBytes: number; sha256: string }> {
    const write = format.write;
    if (!write) throw new AppError('BAD_USER_INPUT', `exporting as ${format.kind} is not available`);
    const key = exportKeyOf(snapshot, format.kind);
    if (expected && (await this.blobs.exists(key))) return expected;
    return this.produceOnce(key, undefined, (shared) =>
      this.withScratchView(snapshot, quietContext(shared), async (view) => {
        const source: GraphFileSource = {
          stats: snapshot.contents!,
          engineVersion: snapshot.engineVersion,
          capturedAt: new Date(snapshot.createdAt).toISOString(),
          sourceInstanceName: instanceName,
          batches: () => decodedBatches(view.encodedBatches()),
          nodeLabels: (ids) => view.nodeLabels(ids),
        };
        const digest = createHash('sha256');
        let sizeBytes = 0;
        const file = write(source);
        const measured = pipeline(
          file,
          new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              digest.update(chunk);
              sizeBytes += chunk.length;
              callback(null, chunk);
            },
          }),
          () => undefined,
        );
        await this.blobs.write(key, measured);
        this.metrics.graphFileBytesWritten.inc(sizeBytes);
        const sha256 = digest.digest('hex');
        if (expected !== undefined && expected.sha256 !== sha256) {
          await this.blobs.delete(key);
          throw new AppError('INVALID_BACKUP_FILE', `snapshot ${snapshot.id} no longer produces the ${format.kind} file its link records`);
        }
        return { sizeBytes, sha256 };
      }),
    );
  }

  /** A foreign graph file export copy; produced again when a collection removed it meanwhile, or it is damaged. */
  openGraphFileExport(
    snapshot: SnapshotEntity,
    instanceName: string,
    format: GraphFileFormat,
    expected: { sizeBytes: number; sha256: string },
    range?: { start?: number; end?: number },
  ): Promise<Readable> {
    return this.openCopy(exportKeyOf(snapshot, format.kind), range, () => this.prepareGraphFileExport(snapshot, instanceName, format, expected));
  }

  /** The export copy; produced again when a collection removed it meanwhile, or it is damaged (it is deterministic). */
  openExport(snapshot: SnapshotEntity, instanceName: string, range?: { start?: number; end?: number }): Promise<Readable> {
    return this.openCopy(exportKeyOf(snapshot), range, () => this.prepareExport({ ...snapshot, sizeBytes: null } as SnapshotEntity, instanceName));
  }

  /**
   * The export copy `key` (or its `range`), produced again by `produce` when it is missing, or damaged in its first
   * piece: that is found before the download's answer has begun, which can then still be the file (it answered with a
   * dropped connection and no status, and only the next download got the file).
   */
  private async openCopy(key: string, range: ByteRange | undefined, produce: () => Promise<ExportCopy>): Promise<Readable> {
    try {
      return await firstPieceRead(this.forgottenWhenDamaged(key, await this.blobs.read(key, range)));
    } catch (error) {
      if (!(error instanceof BlobNotFoundError || error instanceof BlobIntegrityError)) throw error;
      // Removed (forgottenWhenDamaged has begun to) before it is produced again, so the removal cannot come after.
      if (error instanceof BlobIntegrityError) await this.blobs.delete(key);
      await produce();
      return this.forgottenWhenDamaged(key, await this.blobs.read(key, range));
    }
  }

  /**
   * The read of an export copy, which deletes the copy when it is found damaged (it fails to authenticate): a copy is
   * only a cache of what the restore point produces, and one left in place failed every later download of it (each new
   * link keeps it), while the next one, finding no copy, produces it again, and checks it against the recorded sha256.
   */
  private forgottenWhenDamaged(key: string, copy: Readable): Readable {
    copy.once('error', (error) => {
      if (!(error instanceof BlobIntegrityError)) return;
      this.logger.warn({ err: error, key }, 'removed a damaged export copy: the next download produces it again');
      void this.blobs.delete(key).catch((err: unknown) => this.logger.warn({ err, key }, 'could not remove a damaged export copy'));
    });
    return copy;
  }

  /**
   * Export copies whose links have all expired, once they have been so for the grace period: they are a cache of what
   * the restore point produces again. An export produces its copy before it records its link, so a copy removed at
   * once could be one whose link was a moment away (its first download then produced it all again).
   */
  private removeUnusedExports(tenantId: string, now: number): Promise<number> {
    // The folder is itself a key: no trailing '/' (BlobStore.list).
    const folder = `tenants/${tenantId}/exports`;
    return this.removeOrphans(folder, async (keys) => {
      // `<snapshot id>.<format>`: the id is everything before the dot (formats have digits too: neo4j_admin_csv).
      const snapshotOf = (key: string) => key.slice(folder.length + 1).split('.')[0];
      const linked = await this.db.getRepository(ExportTokenEntity).find({
        select: { snapshotId: true },
        where: { snapshotId: In([...new Set(keys.map(snapshotOf))]), expiresAt: MoreThan(Date.now()) },
      });
      const live = new Set(linked.map((token) => token.snapshotId));
      return keys.filter((key) => !live.has(snapshotOf(key)));
    }, now);
  }

  /**
   * Segment blobs whose row was never recorded (a crash between writing a segment and recording it: the retry ships
   * other entries, so another key) or whose row a sweep removed just before a crash.
   */
  private removeOrphanSegments(tenantId: string, now: number): Promise<number> {
    return this.removeOrphans(`tenants/${tenantId}/log`, this.log.orphanSegmentCheck(), now);
  }

  /**
   * Manifest blobs no restore point names: a base's manifest is written before its chunks are committed and its point
   * recorded, so a crash (or a failure whose clean-up failed) in between leaves it, and so does a crash between a
   * collection's removal of points and of their manifests. A manifest lists every chunk of a base, 64 bytes per 256
   * KiB of the store.
   */
  private removeOrphanManifests(tenantId: string, now: number): Promise<number> {
    return this.removeOrphans(`tenants/${tenantId}/manifests`, async (keys) => {
      const idOf = (key: string) => /\/([^/]+)\.json$/.exec(key)?.[1];
      const ids = keys.map(idOf).filter((id): id is string => id !== undefined);
      if (ids.length === 0) return [];
      const named = new Set((await this.points.find({ select: { id: true }, where: { id: In(ids) } })).map((point) => point.id));
      return keys.filter((key) => {
        const id = idOf(key);
        return id !== undefined && !named.has(id);
      });
    }, now);
  }

  /**
   * Deletes the blobs under `folder` that `orphansAmong` says nothing names, asked ORPHAN_CHECK_KEYS keys at a time (a
   * folder may hold millions: their names are not held at once, nor looked up one by one). A blob store keeps no times,
   * so, as for uploads, one goes only when a collection at least the grace period after the first that found it
   * orphaned still finds it so (a restart starts the count again): a blob written just now may be named a moment later.
   */
  private async removeOrphans(folder: string, orphansAmong: (keys: string[]) => Promise<string[]>, now: number): Promise<number> {
    const orphans = new Set<string>();
    let keys: string[] = [];
    const check = async () => {
      for (const key of await orphansAmong(keys)) orphans.add(key);
      keys = [];
    };
    for await (const key of this.options.listBlobs(folder)) {
      keys.push(key);
      if (keys.length === ORPHAN_CHECK_KEYS) await check();
    }
    if (keys.length > 0) await check();
    let removed = 0;
    for (const key of orphans) {
      const since = this.orphansSince.get(key);
      if (since === undefined) this.orphansSince.set(key, now);
      else if (now - since >= this.options.collectGraceMs) {
        await this.blobs.delete(key);
        this.orphansSince.delete(key);
        removed += 1;
      }
    }
    for (const key of this.orphansSince.keys()) {
      if (key.startsWith(`${folder}/`) && !orphans.has(key)) this.orphansSince.delete(key);
    }
    return removed;
  }

  /**
   * Removes the export copies of a deleted snapshot. A production of one under way (a download of a link whose copy a
   * collection had removed) is stopped first, and waited for: it would otherwise write the copy after this removal, and
   * the deleted snapshot's data stayed in backup storage. Those waiting for it fail with NOT_FOUND.
   */
  async forgetExport(snapshot: SnapshotEntity): Promise<void> {
    for (const kind of ['ARCHIVE' as const, ...GRAPH_FILE_FORMATS.map((format) => format.kind)]) {
      const key = exportKeyOf(snapshot, kind);
      const production = this.exportsUnderWay.get(key);
      if (production) {
        production.controller.abort(new AppError('NOT_FOUND', `snapshot ${snapshot.id} was deleted`));
        await production.done.catch(() => undefined);
      }
      await this.blobs.delete(key);
    }
  }

  /**
   * Materialises the snapshot into a scratch store and streams its archive (header from the snapshot's recorded
   * contents and capture time, so that it is the same every time) through `consume`; the scratch store is removed.
   */
  private async withArchive<T>(
    snapshot: SnapshotEntity,
    instanceName: string,
    consume: (archive: Readable, measured: () => { sizeBytes: number; sha256: string }) => Promise<T>,
    context: JobContext = quietContext(),
  ): Promise<T> {
    return this.withScratchView(snapshot, context, async (view) => {
          const writer = createArchiveWriter({
            engineVersion: snapshot.engineVersion,
            sourceInstanceId: snapshot.instanceId,
            sourceInstanceName: instanceName,
            capturedAt: new Date(snapshot.createdAt).toISOString(),
            stats: snapshot.contents!,
          });
          const digest = createHash('sha256');
          let sizeBytes = 0;
          const measure = new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              digest.update(chunk);
              sizeBytes += chunk.length;
              callback(null, chunk);
            },
          });
          // pipeline: a consumer that stops (a failed write) destroys writer.stream, which releases the producer.
          const archive = pipeline(writer.stream, measure, () => undefined);
          const consumed = consume(archive, () => ({ sizeBytes, sha256: digest.digest('hex') }));
          consumed.catch(() => undefined);
          try {
            for await (const batch of view.encodedBatches()) {
              context.signal.throwIfAborted();
              await writer.writeEncoded(batch);
            }
            await writer.end();
          } catch (error) {
            writer.destroy(error as Error);
            // Unless cancelled, the consumer's own failure (ENOSPC, S3), which stopped the writer, is the cause worth
            // reporting.
            await consumed.catch((consumerError: unknown) => {
              if (!context.signal.aborted) throw consumerError;
            });
            throw error;
          }
          return await consumed;
    });
  }

  /**
   * The snapshot materialised into a scratch store (a previous release's loaded from its archive), read through one
   * view; the scratch store is removed after.
   */
  private async withScratchView<T>(snapshot: SnapshotEntity, context: JobContext, fn: (view: GraphReadView) => Promise<T>): Promise<T> {
    if (!snapshot.contents || (!snapshot.restorePointId && !snapshot.blobKey)) {
      throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} has no restore point`);
    }
    const scratchId = randomUUID();
    try {
      const target = { instanceId: scratchId, generation: 1, limits: UNLIMITED };
      if (snapshot.blobKey) await this.loadLegacy(snapshot.blobKey, target, context);
      else await this.materialise(snapshot.restorePointId!, target, context);
      return await this.stores.use(scratchId, 1, async (store) => {
        const view = await store.openReadView();
        try {
          return await fn(view);
        } finally {
          await view.close();
        }
      });
    } finally {
      await this.stores.removeGenerations(scratchId);
    }
  }

  /**
   * Loads a previous release's snapshot archive (one blob, no restore point) into a new store generation, checked as
   * it is read: exportSnapshotAs reads those snapshots from such a store (it was SNAPSHOT_NOT_READY, "no restore point").
   */
  private async loadLegacy(blobKey: string, target: { instanceId: string; generation: number; limits: WriteLimits }, context: JobContext): Promise<void> {
    const loader = await this.stores.createLoader(target.instanceId, target.generation, target.limits);
    try {
      const archive = openArchive(await this.blobs.read(blobKey));
      for await (const batch of archive.encodedBatches()) {
        context.signal.throwIfAborted();
        await loader.insert(batch);
      }
      await loader.finish();
    } catch (error) {
      await loader.abort();
      if (isArchiveError(error)) throw new AppError('INVALID_BACKUP_FILE', error.message);
      if (error instanceof CryptoError) throw new AppError('INVALID_BACKUP_FILE', `the stored archive is damaged: ${error.message}`);
      if (error instanceof BlobNotFoundError) throw new AppError('INVALID_BACKUP_FILE', 'the stored archive is missing');
      throw error;
    }
  }

  // ---- verification -----------------------------------------------------------------------------------------------

  /**
   * Reads every stored byte of the snapshot's chain back (manifests and chunks, authenticated, ids recomputed),
   * materialises it into a scratch store checked against its recorded contents, and compares the archive it
   * produces with the recorded sha256 (recording it when none was). Throws INVALID_BACKUP_FILE naming the damage.
   */
  async verify(snapshot: SnapshotEntity, instanceName: string, context: JobContext): Promise<{ sizeBytes: number; sha256: string }> {
    if (snapshot.blobKey) return this.verifyLegacy(snapshot, context);
    if (!snapshot.restorePointId) throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} has no data to verify`);
    context.progress({ phase: 'verifying' });
    const point = await this.points.findOneBy({ id: snapshot.restorePointId });
    if (!point) throw new AppError('INVALID_BACKUP_FILE', `restore point ${snapshot.restorePointId} is missing`);
    let plan: MaterialisePlan;
    try {
      plan = await this.planOf(point);
    } catch (error) {
      // A base whose manifest is damaged cannot be read at all: as for damage to its chunks, the next snapshots of its
      // store must not be built on it.
      if (error instanceof ManifestDamage && error.point.kind === 'BASE') await this.baseFoundDamaged(error.point, error.message);
      throw error;
    }
    // The chunks of the base and legacy deltas are read here; the change log is read (and its chain checked) by the
    // materialisation below.
    for (const manifest of [plan.base, ...plan.deltas].filter((m): m is Manifest => m !== null)) {
      const refs = [...(manifest.base?.chunks ?? []), ...(manifest.delta?.chunks ?? [])];
      const damage = await this.chunkDamage(manifest.tenantId, refs, context.signal);
      if (damage.length > 0) {
        const message = damageOf(manifest, damage);
        if (manifest.kind === 'BASE') await this.baseFoundDamaged(manifest, message);
        throw new AppError('INVALID_BACKUP_FILE', message);
      }
    }
    const produced = await this.withArchive(
      snapshot,
      instanceName,
      async (archive, measured) => {
        for await (const _piece of archive) context.signal.throwIfAborted();
        return measured();
      },
      context,
    );
    if (snapshot.sha256 !== null && produced.sha256 !== snapshot.sha256) {
      throw new AppError('INVALID_BACKUP_FILE', `the snapshot restores to different data than it recorded (sha256 ${produced.sha256}, recorded ${snapshot.sha256})`);
    }
    return produced;
  }

  /** What ChunkStore.verify finds damaged in `refs`; a repair of it that failed is logged (the next verification retries). */
  private async chunkDamage(tenantId: string, refs: ChunkRef[], signal?: AbortSignal): Promise<ChunkIntegrityError[]> {
    const { damage, repairFailure } = await this.chunks.verify(tenantId, refs, signal);
    if (repairFailure) {
      this.logger.warn({ err: repairFailure, tenantId }, 'moving the sound chunks out of a damaged pack failed; the next verification that finds it tries again');
    }
    return damage;
  }

  /**
   * A read of a base failed on its chunks (damaged, or missing): they are checked as a verification checks them, in the
   * background (the read's caller fails now). None found damaged (retention collected the base under the read, or the
   * damage was in a previous release's delta) changes nothing; nor does a base recorded as damaged already (each retry
   * of a restore of it would otherwise take one more base of its store).
   */
  private checkBaseInBackground(base: Manifest): void {
    void (async () => {
      if ((await this.points.findOneBy({ id: base.id }))?.damage !== null) return;
      const damage = await this.chunkDamage(base.tenantId, base.base!.chunks);
      if (damage.length > 0 && (await this.points.existsBy({ id: base.id }))) await this.baseFoundDamaged(base, damageOf(base, damage));
    })().catch((err: unknown) => this.logger.warn({ err, instanceId: base.instanceId }, 'checking a base a read found damaged failed'));
  }

  /**
   * A base found damaged is recorded, and the stores that cannot be built without it get a base of their own: its own
   * store, when current, and those restored from a moment built on it (ChangeLogService.recordBaseDamage). The damage is
   * what the caller reports, whatever becomes of these.
   */
  private async baseFoundDamaged(base: DamagedBase, message: string): Promise<void> {
    await this.log.recordBaseDamage(base, message).catch((err: unknown) =>
      this.logger.warn({ err, instanceId: base.instanceId }, 'recording a damaged base failed'),
    );
    await this.rebaseAfterDamage(base).catch((err: unknown) => this.logger.warn({ err, instanceId: base.instanceId }, 'deciding on a base of the store failed'));
  }

  /**
   * Starts a new base of the store a damaged base was taken of, when that store is still its instance's current one:
   * the snapshots taken until the policy's next base would otherwise be positions on the damaged one's log. The new
   * base stores again what the damaged chunks held, where the store still holds it (verification dropped them from the
   * index), which also mends the points that list them.
   */
  private async rebaseAfterDamage(damaged: DamagedBase): Promise<void> {
    const epoch = await this.log.epoch(damaged.epoch);
    if (!epoch || epoch.endedAt !== null) return;
    const instance = await this.instances.reload(damaged.instanceId);
    if (instance?.status !== 'RUNNING') return;
    this.rebase(instance);
  }

  /**
   * Takes a base of the instance now or, while another base or a snapshot's capture of it is under way (one at a
   * time), as soon as that ends (rebaseWhenDone). Not awaited: the verification fails now. Set as under way at once,
   * so that a snapshot taken next waits for it.
   */
  private rebase(instance: InstanceEntity): void {
    if (this.baseUnderWay(instance.id)) this.rebases.set(instance.id, instance.storeGeneration);
    else {
      void this.takeBase(instance)
        .then((taken) => (taken ? undefined : this.retryBaseOfCurrentStore(instance)))
        .catch((err: unknown) => this.logger.warn({ err, instanceId: instance.id }, 'deciding on a base of the store failed'));
    }
  }

  /**
   * A base a damage asked for failed: tried again as the policy's are (takeBaseOrRetry). Taken once, a base that failed
   * (the blob store away for a moment) was tried again only at the next shipped segment, and an instance nobody wrote
   * to kept no restore window meanwhile.
   */
  private async retryBaseOfCurrentStore(instance: InstanceEntity): Promise<void> {
    const epoch = await this.log.currentEpoch(instance.id);
    if (epoch) this.retryBase(instance.id, epoch.epoch);
  }

  /** Counts a base of the instance that failed, and looks again a second later, each next time twice as late. */
  private retryBase(instanceId: string, epoch: number): void {
    const failures = (this.failedBases.get(instanceId) ?? 0) + 1;
    this.failedBases.set(instanceId, failures);
    this.considerLater(instanceId, epoch, Math.min(1000 * 2 ** (failures - 1), BASE_POLICY.maxRetryMs));
  }

  /**
   * After a base (`based`: it succeeded) or a snapshot's capture of the instance ended: the base a verification asked
   * for meanwhile. A base under way that succeeds is that base. It fails when it had deduplicated against a chunk the
   * verification found damaged (it cannot put that copy back, nor store the data again): then one is taken after it,
   * also when a snapshot that waited for it is still deciding (it ends next, and takes it). A snapshot's capture counts
   * as no base (one it took of its own, rarely, is followed by another). Not for an instance deleted or restored
   * meanwhile (forget(), the generation).
   */
  private rebaseWhenDone(instanceId: string, based: boolean): void {
    const generation = this.rebases.get(instanceId);
    if (generation === undefined) return;
    if (!based && this.baseUnderWay(instanceId)) return;
    this.rebases.delete(instanceId);
    if (based) return;
    void this.instances
      .reload(instanceId)
      .then((current) => {
        if (current?.status === 'RUNNING' && current.storeGeneration === generation && !this.closed) this.rebase(current);
      })
      .catch((err: unknown) => this.logger.warn({ err, instanceId }, 'deciding on a base of the store failed'));
  }

  /** A previous release's snapshot: its whole archive read back and checked, frame by frame. */
  private async verifyLegacy(snapshot: SnapshotEntity, context: JobContext): Promise<{ sizeBytes: number; sha256: string }> {
    const digest = createHash('sha256');
    let sizeBytes = 0;
    try {
      const source = await this.blobs.read(snapshot.blobKey!);
      const tee = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          digest.update(chunk);
          sizeBytes += chunk.length;
          callback(null, chunk);
        },
      });
      // pipeline, not pipe: a read or decryption failure must reach the reader, which would otherwise wait for ever.
      const archive = openArchive(pipeline(source, tee, () => undefined));
      await archive.verify();
      context.signal.throwIfAborted();
    } catch (error) {
      if (error instanceof AppError) throw error;
      // Only what the bytes say is damage: a cancellation, a shutdown or backup storage out of reach (a reset
      // connection) was recorded as damage on a sound snapshot, which retention then no longer counted.
      if (isArchiveError(error) || error instanceof BlobNotFoundError || (error instanceof CryptoError && !(error instanceof UnknownKeyError))) {
        throw new AppError('INVALID_BACKUP_FILE', `the stored archive is damaged: ${(error as Error).message}`);
      }
      throw error;
    }
    const sha256 = digest.digest('hex');
    if (snapshot.sha256 !== null && sha256 !== snapshot.sha256) {
      throw new AppError('INVALID_BACKUP_FILE', `the stored archive no longer matches its sha256 (${sha256}, recorded ${snapshot.sha256})`);
    }
    return { sizeBytes, sha256 };
  }

  // ---- usage and collection ---------------------------------------------------------------------------------------

  /** Storage of the snapshots and change logs in `where` (a tenant, or one instance). */
  async usage(where: { tenantId: string; instanceId?: string }): Promise<{ snapshotCount: number; logicalBytes: number; storedBytes: number }> {
    // Summed by the database: every snapshot's row (their contents, ~1 KB each) was loaded for each request, and for
    // each instance of a list that asks for its backupStorage.
    const storeSize = this.db.options.type === 'postgres' ? `(s.contents::json ->> 'storeSizeBytes')::bigint` : `CAST(s.contents ->> 'storeSizeBytes' AS INTEGER)`;
    const query = this.db
      .getRepository(SnapshotEntity)
      .createQueryBuilder('s')
      .select('COUNT(*)', 'snapshotCount')
      // The export's size once produced, else the store's (as Snapshot.sizeBytes says).
      .addSelect(`COALESCE(SUM(COALESCE(s."sizeBytes", ${storeSize}, 0)), 0)`, 'logicalBytes')
      // A previous release's snapshots: whole archives in one blob each.
      .addSelect(`COALESCE(SUM(CASE WHEN s."blobKey" IS NOT NULL THEN COALESCE(s."addedBytes", 0) ELSE 0 END), 0)`, 'legacyBytes')
      .where('s."tenantId" = :tenantId AND s.status = :status', { tenantId: where.tenantId, status: 'COMPLETED' });
    if (where.instanceId !== undefined) query.andWhere('s."instanceId" = :instanceId', { instanceId: where.instanceId });
    const sums = await query.getRawOne<Record<'snapshotCount' | 'logicalBytes' | 'legacyBytes', string | number>>();
    const [snapshotCount, logicalBytes, legacyBytes] = [sums?.snapshotCount, sums?.logicalBytes, sums?.legacyBytes].map((value) => Number(value ?? 0));
    const logBytes = await this.log.storedBytes(where);
    let storedBytes: number;
    if (where.instanceId === undefined) {
      const chunkBytes = (await this.chunks.usage(where.tenantId)).storedBytes;
      storedBytes = chunkBytes + ((await this.points.sum('manifestBytes', { tenantId: where.tenantId })) ?? 0) + legacyBytes + logBytes;
    } else {
      // What the instance's own bases added (after repacking, an approximation; the tenant's total is exact).
      const baseBytes = (await this.points.sum('addedBytes', { tenantId: where.tenantId, instanceId: where.instanceId, kind: In(['BASE', 'DELTA']) })) ?? 0;
      storedBytes = baseBytes + legacyBytes + logBytes;
    }
    return { snapshotCount, logicalBytes, storedBytes };
  }

  /**
   * Every tenant that has backup storage, collected one after the other (the periodic sweep). A call while a pass is
   * under way (the pass outlasted the interval) is that pass.
   */
  collectAll(): Promise<void> {
    this.collectingAll ??= this.#collectEachTenant().finally(() => (this.collectingAll = undefined));
    return this.collectingAll;
  }

  async #collectEachTenant(): Promise<void> {
    // Tenants with packs too: once their last restore point is gone, emptied packs still wait for their grace period.
    const [withPoints, withPacks, withLogs] = await Promise.all([
      this.points.createQueryBuilder('p').select('DISTINCT p."tenantId"', 'tenantId').getRawMany<{ tenantId: string }>(),
      this.db.getRepository(ChunkPackEntity).createQueryBuilder('k').select('DISTINCT k."tenantId"', 'tenantId').getRawMany<{ tenantId: string }>(),
      this.log.tenantsWithLogs(),
    ]);
    const tenants = new Set([...withPoints, ...withPacks].map((row) => row.tenantId).concat(withLogs));
    await Promise.all([...tenants].map((tenantId) => this.collectSoon(tenantId)));
  }

  /** A previous release's snapshots (whole archives in one blob) count their stored size as the bytes they added. */
  async recordLegacySizes(raw: { size(key: string): Promise<number | null> }): Promise<void> {
    const repository = this.db.getRepository(SnapshotEntity);
    const legacy = await repository.find({ where: { status: 'COMPLETED', addedBytes: IsNull(), restorePointId: IsNull() } });
    for (const snapshot of legacy) {
      if (!snapshot.blobKey) continue;
      const size = await raw.size(snapshot.blobKey);
      if (size !== null) await repository.update({ id: snapshot.id }, { addedBytes: size });
    }
  }

  /**
   * Collects the tenant's garbage soon: in its turn, as the process runs one collection at a time (all at once, each
   * one's marks, metadata rows and listings were held together, as many times as there were tenants: the periodic
   * pass started every tenant's). A request while the tenant's collection waits is that one; one while it runs waits
   * behind the others, so that a tenant whose snapshots keep being deleted does not keep the lane. Resolves when the
   * run it asked for is over; never rejects (a failure is logged, and the next run retries).
   */
  collectSoon(tenantId: string): Promise<void> {
    const waiting = this.collectionsWaiting.get(tenantId);
    if (waiting) return waiting;
    const run = (this.collectionLane = this.collectionLane.then(async () => {
      this.collectionsWaiting.delete(tenantId);
      if (this.closed) return;
      try {
        await this.collect(tenantId);
      } catch (err) {
        this.logger.error({ err, tenantId }, 'backup storage collection failed; the next one retries');
      }
    }));
    this.collectionsWaiting.set(tenantId, run);
    return run;
  }

  /**
   * Mark and sweep. Marked: every snapshot's restore point; each instance's current store from its newest base older
   * than the grace period on (the next snapshot builds on the newest; one being taken, on the base it began on); its
   * restore window (the newest base at or before the window's start, and
   * everything after), from the moment of a point-in-time restore from it still queued or running when that is earlier
   * (momentsAwaited); and, for each of those, what it is built from (its base, or its epoch's anchor: the origin
   * point, recursively) and the log between. Unmarked points go (in a transaction that re-checks nothing recorded
   * meanwhile refers to them), then unmarked epochs and log segments, then every chunk the remaining manifests do not
   * list is left to the chunk store's collection, which keeps anything younger than the grace period (a base being
   * taken may have just deduplicated against it). A manifest that cannot be read skips that sweep, and only that.
   */
  async collect(tenantId: string): Promise<{ removedPoints: number; removedSegments: number; freedBytes: number }> {
    const marks = await this.mark(tenantId, Date.now());
    const removed = await this.db.transaction(async (manager) => {
      const candidates = marks.unmarked;
      const dead = new Set(candidates.map((point) => point.id));
      const referenced = new Set<string>();
      for (const snapshot of await manager.find(SnapshotEntity, { select: { restorePointId: true }, where: { tenantId } })) {
        if (snapshot.restorePointId) referenced.add(snapshot.restorePointId);
      }
      for (const point of await manager.find(RestorePointEntity, { select: { id: true, baseId: true, parentId: true }, where: { tenantId } })) {
        if (dead.has(point.id)) continue;
        if (point.baseId && point.baseId !== point.id) referenced.add(point.baseId);
        if (point.parentId) referenced.add(point.parentId);
      }
      for (const epoch of await manager.find(StoreEpochEntity, { where: { tenantId } })) {
        if (epoch.originPointId && marks.epochs.has(epoch.epoch)) referenced.add(epoch.originPointId);
      }
      const removable = candidates.filter((point) => !referenced.has(point.id));
      if (removable.length > 0) await manager.delete(RestorePointEntity, { id: In(removable.map((point) => point.id)) });
      return removable;
    });
    for (const point of removed) if (point.manifestKey) await this.blobs.delete(point.manifestKey);
    const removedSegments = await this.log.sweep(tenantId, marks.examined, marks.epochs, marks.ranges);
    // The grace period counts back from before the points are listed: marking a large tenant takes a while, and a base
    // recorded meanwhile is not among them.
    const markedAt = Date.now();
    const { marks: live, unreadable } = await this.markLiveChunks(tenantId);
    let swept: Awaited<ReturnType<ChunkStore['collect']>> = { removedChunks: 0, removedPacks: 0, repackedPacks: 0, freedBytes: 0, damagedPacks: [] };
    try {
      if (unreadable.length === 0) swept = await this.chunks.collect(tenantId, live, { graceMs: this.options.collectGraceMs, markedAt });
      else await this.tellChunkSweepSkipped(tenantId, unreadable);
    } finally {
      await live.remove();
    }
    // None of these reads a manifest: an unreadable one stops the chunk sweep only.
    await this.removeUnusedExports(tenantId, Date.now());
    const orphanSegments = await this.removeOrphanSegments(tenantId, Date.now());
    const orphanManifests = await this.removeOrphanManifests(tenantId, Date.now());
    if (removed.length > 0 || removedSegments > 0 || orphanSegments > 0 || orphanManifests > 0 || swept.freedBytes > 0) {
      this.logger.info({ tenantId, removedPoints: removed.length, removedSegments, orphanSegments, orphanManifests, ...swept }, 'collected backup storage');
    }
    return { removedPoints: removed.length, removedSegments, freedBytes: swept.freedBytes };
  }

  /**
   * The chunks the tenant's restore points list, marked on disk one manifest at a time (see ChunkMarks); in memory when
   * the scratch volume is full (MemoryChunkMarks), which would otherwise stop every collection, the one thing that
   * gives back the space of what was deleted. With them, the restore points whose manifest could not be read: their
   * chunks are unknown, so no chunk may be swept. A manifest read as missing or damaged may be neither (a master key
   * not configured now, an S3 error): its chunks must outlive that.
   */
  private async markLiveChunks(tenantId: string): Promise<{ marks: ChunkMarks | MemoryChunkMarks; unreadable: UnreadableManifest[] }> {
    const points = await this.points.find({ select: { id: true, tenantId: true, kind: true, manifestKey: true }, where: { tenantId } });
    const mark = async <T extends ChunkMarks | MemoryChunkMarks>(marks: T) => {
      const unreadable: UnreadableManifest[] = [];
      for (const point of points) {
        if (point.kind === 'LOG') continue;
        let manifest: Manifest;
        try {
          manifest = await this.readManifest(point);
        } catch (error) {
          // Damaged, or not readable now (a master key not configured, backup storage out of reach): either way its
          // chunks are not known, and the chunk sweep is skipped (collect()); the rest of the collection goes on.
          if (isAppError(error) && error.code !== 'INVALID_BACKUP_FILE') throw error;
          // Gone meanwhile (another replica's collection), its chunks are not needed: only a recorded one counts.
          if (await this.points.existsBy({ id: point.id })) unreadable.push({ restorePointId: point.id, why: (error as Error).message });
          continue;
        }
        await marks.add((manifest.base?.chunks ?? []).map((ref) => ref.id));
        await marks.add((manifest.delta?.chunks ?? []).map((ref) => ref.id));
      }
      await marks.seal();
      return { marks, unreadable };
    };
    let onDisk: ChunkMarks | null = null;
    try {
      onDisk = await ChunkMarks.create(this.options.scratchDir);
      return await mark(onDisk);
    } catch (error) {
      await onDisk?.remove();
      if (!isStorageFull(error)) throw error;
      this.logger.warn({ tenantId }, 'the scratch dir is full: this collection marks the live chunks in memory');
      return mark(new MemoryChunkMarks());
    }
  }

  /**
   * Once a collection: the chunk sweep was skipped, and which restore points (and the snapshots on them) stop it. The
   * tenant's chunks and packs are not collected until those manifests read again or those points are collected.
   */
  private async tellChunkSweepSkipped(tenantId: string, unreadable: UnreadableManifest[]): Promise<void> {
    const ids = unreadable.map((point) => point.restorePointId);
    const on = await this.points.find({ select: { id: true }, where: [{ tenantId, baseId: In(ids) }, { tenantId, parentId: In(ids) }] });
    const snapshots = await this.db.getRepository(SnapshotEntity).find({
      select: { id: true },
      where: { tenantId, restorePointId: In([...ids, ...on.map((point) => point.id)]) },
    });
    this.logger.error(
      { tenantId, restorePoints: unreadable, snapshotIds: snapshots.map((snapshot) => snapshot.id) },
      'skipped the chunk sweep of backup storage: a manifest cannot be read',
    );
  }

  /**
   * Per source instance, the earliest moment a point-in-time restore accepted and not ended yet (queued or running)
   * will read. Its window is kept from there: such a restore checks the window as it stood when it was asked for, and
   * the window's start, sliding on meanwhile, no longer covered a restore that waited, or one reading for longer than
   * the time between two bases.
   */
  private async momentsAwaited(tenantId: string): Promise<Map<string, number>> {
    const operations = await this.db.getRepository(OperationEntity).find({
      select: { sourceInstanceId: true, pointInTime: true },
      where: { tenantId, status: In(['QUEUED', 'RUNNING']), kind: In(['RESTORE_TO_POINT_IN_TIME', 'CREATE_FROM_POINT_IN_TIME']) },
    });
    const earliest = new Map<string, number>();
    for (const { sourceInstanceId, pointInTime } of operations) {
      if (sourceInstanceId !== null && pointInTime !== null) earliest.set(sourceInstanceId, Math.min(earliest.get(sourceInstanceId) ?? pointInTime, pointInTime));
    }
    return earliest;
  }

  /** What collect() keeps: see there. Ranges are (afterSeq, untilSeq] stretches of each marked epoch's log. */
  private async mark(
    tenantId: string,
    now: number,
  ): Promise<{ unmarked: MarkedPoint[]; examined: Set<number>; epochs: Set<number>; ranges: Map<number, [number, number][]> }> {
    // What marking and removing read of each point: not its stats (the label lists, ~1 KB), one row per snapshot.
    const all: MarkedPoint[] = await this.points.find({
      select: { id: true, kind: true, parentId: true, epoch: true, seq: true, at: true, manifestKey: true, createdAt: true },
      where: { tenantId },
    });
    const points = new Map(all.map((point) => [point.id, point]));
    const basesOf = new Map<number, MarkedPoint[]>();
    for (const point of all) {
      if (point.kind !== 'BASE') continue;
      const bases = basesOf.get(point.epoch);
      if (bases) bases.push(point);
      else basesOf.set(point.epoch, [point]);
    }
    for (const list of basesOf.values()) list.sort((a, b) => a.seq - b.seq);
    const epochs = new Map((await this.log.epochsOfTenant(tenantId)).map((epoch) => [epoch.epoch, epoch]));
    const marked = new Set<string>();
    const liveEpochs = new Set<number>();
    const ranges = new Map<number, [number, number][]>();
    const keepLog = (epoch: number, afterSeq: number, untilSeq: number) => {
      liveEpochs.add(epoch);
      if (untilSeq <= afterSeq) return;
      const kept = ranges.get(epoch);
      if (kept) kept.push([afterSeq, untilSeq]);
      else ranges.set(epoch, [[afterSeq, untilSeq]]);
    };
    const markPoint = (point: MarkedPoint | undefined): void => {
      if (!point || marked.has(point.id)) return;
      marked.add(point.id);
      if (point.kind === 'LOG') markReach(point.epoch, point.seq, point.seq);
      else if (point.parentId) markPoint(points.get(point.parentId));
    };
    /** Makes the epoch's seqs from `fromSeq` to `untilSeq` reachable: the newest base at or before fromSeq (or the anchor), and the log. */
    const markReach = (epoch: number, fromSeq: number, untilSeq: number): void => {
      const base = lastAtOrBefore(basesOf.get(epoch) ?? [], (candidate) => candidate.seq <= fromSeq);
      if (epochs.has(epoch)) liveEpochs.add(epoch);
      if (base) {
        markPoint(base);
        keepLog(epoch, base.seq, untilSeq);
        return;
      }
      keepLog(epoch, 0, untilSeq);
      const origin = epochs.get(epoch)?.originPointId;
      if (origin) markPoint(points.get(origin));
    };
    for (const snapshot of await this.db.getRepository(SnapshotEntity).find({ select: { restorePointId: true }, where: { tenantId } })) {
      if (snapshot.restorePointId) markPoint(points.get(snapshot.restorePointId));
    }
    const awaited = await this.momentsAwaited(tenantId);
    for (const epoch of epochs.values()) {
      const instance = await this.instances.reload(epoch.instanceId);
      if (!instance || instance.status === 'DESTROYING') continue;
      const bases = basesOf.get(epoch.epoch) ?? [];
      if (epoch.endedAt === null) {
        // The current store, from its newest base recorded longer than the grace period ago on, with every later base
        // (the next snapshot builds on the newest): a snapshot being taken records its point only as its operation
        // commits, and may be built on an older base than one recorded meanwhile. From the newest base, its log between
        // the two went, and the snapshot completed unrestorable (on FREE, the one snapshot kept). When it was recorded,
        // not its moment (`at`, its store's last write, which a base that took long to store is past already).
        // Not after any base recorded since (bases may be recorded out of their order): a linear look, bases in seq order.
        const cutoff = now - this.options.collectGraceMs;
        const ceiling = Math.min(...bases.filter((base) => base.createdAt > cutoff).map((base) => base.seq));
        let settled: MarkedPoint | undefined;
        for (const base of bases) if (base.createdAt <= cutoff && base.seq <= ceiling) settled = base;
        markReach(epoch.epoch, settled?.seq ?? 0, Number.MAX_SAFE_INTEGER);
        for (const base of bases) if (!settled || base.seq > settled.seq) markPoint(base);
      }
      const windowMs = this.instances.restoreWindowMs(instance);
      const floor = windowMs === null ? null : Math.min(now - windowMs, awaited.get(instance.id) ?? Infinity);
      if (floor === null || (epoch.endedAt !== null && epoch.endedAt <= floor)) continue;
      // The window: from the newest base at or before its start (or the anchor) on, with every later base.
      const start = Math.max(floor, epoch.startedAt);
      let first: MarkedPoint | undefined;
      for (let i = bases.length - 1; i >= 0 && !first; i--) if ((bases[i].at ?? epoch.startedAt) <= start) first = bases[i];
      markReach(epoch.epoch, first?.seq ?? 0, Number.MAX_SAFE_INTEGER);
      for (const base of bases) if (!first || base.seq > first.seq) markPoint(base);
    }
    return { unmarked: all.filter((point) => !marked.has(point.id)), examined: new Set(epochs.keys()), epochs: liveEpochs, ranges };
  }
}

/**
 * The last of `sorted` for which `atOrBefore` holds, given that it holds for a prefix of them (bases in seq order, by
 * seq): a binary search, where copying and reversing the list for each snapshot's point was O(bases) each.
 */
function lastAtOrBefore<T>(sorted: readonly T[], atOrBefore: (item: T) => boolean): T | undefined {
  let [low, high] = [0, sorted.length];
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (atOrBefore(sorted[middle])) low = middle + 1;
    else high = middle;
  }
  return sorted[low - 1];
}

export const manifestKeyOf = (tenantId: string, restorePointId: string) => `tenants/${tenantId}/manifests/${restorePointId}.json`;
/** The export copy of a snapshot: its archive, or a foreign graph file (`<id>.apoc_json`). */
const exportKeyOf = (snapshot: Pick<SnapshotEntity, 'tenantId' | 'id'>, kind: GraphFileKind | 'ARCHIVE' = 'ARCHIVE') =>
  `tenants/${snapshot.tenantId}/exports/${snapshot.id}.${kind.toLowerCase()}`;

/** What a collection's mark reads of a restore point. */
type MarkedPoint = Pick<RestorePointEntity, 'id' | 'kind' | 'parentId' | 'epoch' | 'seq' | 'at' | 'manifestKey' | 'createdAt'>;

/** A restore point whose manifest a collection could not read, and why. */
type UnreadableManifest = { restorePointId: string; why: string };

/** `stream` once its first piece can be read (or its end): a failure before that rejects, while nothing is sent yet. */
function firstPieceRead(stream: Readable): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const settle = (error?: Error) => {
      // No 'readable' listener stays: while one listens, a consumer's resume() does not make the stream flow.
      stream.off('readable', onReadable).off('error', settle);
      if (error) reject(error);
      else resolve(stream);
    };
    const onReadable = () => settle();
    stream.on('readable', onReadable).on('error', settle);
  });
}

/** An export copy's size and sha256: what its downloads serve, and their ETag. */
type ExportCopy = { sizeBytes: number; sha256: string };

/** An export copy being produced, and how many callers wait for it (BackupService.produceOnce). */
interface SharedProduction {
  done: Promise<ExportCopy>;
  controller: AbortController;
  waiting: number;
}

/** Scratch stores (exports, verification) hold whatever the snapshot holds. */
const UNLIMITED: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER };

/** For work nobody watches: no progress; aborted only by `signal`, if given. */
function quietContext(signal = new AbortController().signal): JobContext {
  return {
    signal,
    progress: () => undefined,
    saveParams: async () => undefined,
    enterPointOfNoReturn: async () => undefined,
    // What such work writes is its own: it holds no lease, and changes nothing another would undo.
    underLease: () => Promise.reject(new Error('work nobody watches holds no operation lease')),
  };
}

/** What a verification reports of damage found in a manifest's chunks (the first few named). */
function damageOf(manifest: Manifest, damage: ChunkIntegrityError[]): string {
  const named = damage.slice(0, 3).map((d) => d.message).join('; ');
  return `restore point ${manifest.id} is damaged (${damage.length} chunk(s)): ${named}`;
}
