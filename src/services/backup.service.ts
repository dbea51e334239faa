// Backup storage: snapshots as restore points over the tenant's chunk store. A restore point is a physical base image
// of an instance's store or the rows changed since a parent point; a restore writes the base back at disk speed and
// applies the deltas of its chain. This service takes bases, writes and reads manifests, materialises
// restore points into stores (restores, exports, verification), and collects what no snapshot needs any more.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { In, IsNull, MoreThan, type DataSource, type EntityManager, type Repository } from 'typeorm';
import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ExportTokenEntity } from '../entities/export-token.entity';
import { createArchiveWriter, openArchive } from '../archive';
import type { ChunkRef, ChunkStore, ChunkWriter } from '../chunks';
import type { InstanceEntity } from '../entities/instance.entity';
import { RestorePointEntity } from '../entities/restore-point.entity';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { AppError } from '../errors/app-error';
import type { GraphStoreProvider, WriteLimits } from '../graph/graph-store';
import { lineBatches } from '../graph/line-batches';
import type { DeltaBatch, GraphStats } from '../graph/records';
import type { JobContext } from '../jobs/operation-handler';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../observability/metrics';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { BlobNotFoundError } from '../storage/errors';
import type { InstanceService } from './instance.service';

/** Plain bytes of one chunk of a base image: a whole number of SQLite pages (pages are at most 64 KiB). */
export const BASE_CHUNK_BYTES = 256 * 1024;
const MANIFEST_VERSION = 1;

/** What a restore point's manifest blob holds. */
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
  /** DELTA: tuple lines (upserts, and deletions `["-N",id]`/`["-R",id]`), newline-separated, in order. */
  delta: { lines: number; chunks: ChunkRef[] } | null;
}

export interface CapturedPoint {
  restorePoint: RestorePointEntity;
  stats: GraphStats;
}

export class BackupService {
  private readonly points: Repository<RestorePointEntity>;
  private readonly collecting = new Map<string, { again: boolean }>();

  constructor(
    private readonly db: DataSource,
    private readonly chunks: ChunkStore,
    private readonly blobs: EncryptedBlobStore,
    private readonly stores: GraphStoreProvider,
    private readonly instances: InstanceService,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly options: { scratchDir: string; collectGraceMs: number; listBlobs: (prefix: string) => AsyncIterable<string> },
  ) {
    this.points = db.getRepository(RestorePointEntity);
  }

  /**
   * Captures the instance's store as a restore point: a base copy. The point's row is returned, not inserted: the
   * caller records it together with the snapshot's COMPLETED.
   */
  async capture(instance: InstanceEntity, context: JobContext): Promise<CapturedPoint> {
    const id = randomUUID();
    const writer = this.chunks.writer(instance.tenantId);
    try {
      const manifest = await this.captureBase(instance, id, writer, context);
      context.signal.throwIfAborted();
      const manifestKey = manifestKeyOf(instance.tenantId, id);
      const { storedBytes: manifestBytes } = await this.blobs.write(manifestKey, Readable.from([JSON.stringify(manifest)]));
      const { addedBytes: chunkBytes } = await writer.finish();
      const addedBytes = chunkBytes + manifestBytes;
      const parent = manifest.parentId ? await this.points.findOneByOrFail({ id: manifest.parentId }) : null;
      const ownDeltaBytes = manifest.kind === 'DELTA' ? addedBytes : 0;
      const restorePoint = Object.assign(new RestorePointEntity(), {
        id,
        tenantId: instance.tenantId,
        instanceId: instance.id,
        kind: manifest.kind,
        parentId: manifest.parentId,
        baseId: parent?.baseId ?? id,
        epoch: manifest.epoch,
        seq: manifest.seq,
        chainLength: parent ? parent.chainLength + 1 : 0,
        chainDeltaLines: (parent?.chainDeltaLines ?? 0) + (manifest.delta?.lines ?? 0),
        chainDeltaBytes: (parent?.chainDeltaBytes ?? 0) + ownDeltaBytes,
        addedBytes,
        manifestBytes,
        manifestKey,
        stats: manifest.stats,
        createdAt: Date.now(),
      } satisfies RestorePointEntity);
      return { restorePoint, stats: manifest.stats };
    } catch (error) {
      await writer.abort().catch(() => undefined);
      await this.blobs.delete(manifestKeyOf(instance.tenantId, id)).catch(() => undefined);
      throw error;
    }
  }

  private async captureBase(
    instance: InstanceEntity,
    id: string,
    writer: ChunkWriter,
    context: JobContext,
  ): Promise<Manifest> {
    await mkdir(this.options.scratchDir, { recursive: true, mode: 0o700 });
    const copy = join(this.options.scratchDir, `base-${id}.sqlite`);
    try {
      context.progress({ phase: 'capturing', bytesDone: 0, bytesTotal: null });
      const base = await this.instances.withStore(instance, (store) => store.captureBase(copy));
      context.progress({ bytesDone: 0, bytesTotal: base.sizeBytes });
      const chunks: ChunkRef[] = [];
      let done = 0;
      for await (const piece of createReadStream(copy, { highWaterMark: BASE_CHUNK_BYTES })) {
        context.signal.throwIfAborted();
        chunks.push(await writer.put(piece as Buffer));
        done += (piece as Buffer).length;
        context.progress({ bytesDone: done });
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
        stats: base.stats,
        base: { sizeBytes: base.sizeBytes, pageSize: base.pageSize, chunks },
        delta: null,
      };
    } finally {
      await rm(copy, { force: true });
    }
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
    let text = '';
    try {
      for await (const piece of await this.blobs.read(point.manifestKey)) text += (piece as Buffer).toString('utf8');
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw new AppError('INVALID_BACKUP_FILE', `the manifest of restore point ${point.id} is missing`);
      throw new AppError('INVALID_BACKUP_FILE', `the manifest of restore point ${point.id} is damaged: ${(error as Error).message}`);
    }
    const manifest = JSON.parse(text) as Manifest;
    if (manifest.version !== MANIFEST_VERSION || manifest.id !== point.id || manifest.tenantId !== point.tenantId) {
      throw new AppError('INVALID_BACKUP_FILE', `the manifest of restore point ${point.id} does not describe it`);
    }
    return manifest;
  }

  /**
   * Builds the restore point's data into a new store generation: the base written back, then each delta applied;
   * verified against the recorded stats. The generation is removed on any failure. Returns what the store holds and
   * the plain bytes of the chain it was built from.
   */
  async materialise(
    restorePointId: string,
    target: { instanceId: string; generation: number; limits: WriteLimits },
    context: JobContext,
  ): Promise<{ stats: GraphStats; bytesRead: number }> {
    const chain = await this.chainOf(restorePointId);
    const [base, ...deltas] = chain;
    if (!base.base) throw new AppError('INVALID_BACKUP_FILE', `restore point ${restorePointId} has no base`);
    const tenantId = base.tenantId;
    const expected = chain[chain.length - 1].stats;
    const total = base.base.sizeBytes + deltas.reduce((sum, d) => sum + d.delta!.chunks.reduce((s, c) => s + c.plainLength, 0), 0);
    context.progress({ phase: 'loading', bytesDone: 0, bytesTotal: total });
    let done = 0;
    const counted = async function* (source: AsyncIterable<Buffer>) {
      for await (const piece of source) {
        context.signal.throwIfAborted();
        done += piece.length;
        context.progress({ bytesDone: done });
        yield piece;
      }
    };
    const baseBytes = Readable.from(counted(this.chunks.read(tenantId, base.base.chunks, { signal: context.signal })));
    const chunks = this.chunks;
    const deltaBatches = async function* (): AsyncGenerator<DeltaBatch> {
      for (const delta of deltas) {
        yield* lineBatches(counted(chunks.read(tenantId, delta.delta!.chunks, { signal: context.signal })));
      }
      // Every byte is in: what remains is the check of the store against the recorded contents.
      context.progress({ phase: 'verifying' });
    };
    const stats = await this.stores.materialise(target.instanceId, target.generation, baseBytes, deltaBatches(), expected, { signal: context.signal });
    return { stats, bytesRead: done };
  }

  /** Records a captured point (in the snapshot's completing transaction); CONFLICT when its parent was collected meanwhile. */
  async record(point: RestorePointEntity, manager: EntityManager): Promise<void> {
    if (point.parentId && !(await manager.existsBy(RestorePointEntity, { id: point.parentId }))) {
      throw new AppError('CONFLICT', 'the restore point this snapshot builds on was collected while it was taken; take the snapshot again');
    }
    await manager.insert(RestorePointEntity, point);
  }

  // ---- exports ----------------------------------------------------------------------------------------------------

  /**
   * Produces the snapshot's export archive from its restore point into an encrypted export copy (kept until the
   * snapshot goes), and returns its size and sha256. Deterministic: the same restore point always gives the same bytes.
   */
  async prepareExport(snapshot: SnapshotEntity, instanceName: string): Promise<{ sizeBytes: number; sha256: string }> {
    const key = exportKeyOf(snapshot);
    const known = snapshot.sha256 !== null && snapshot.sizeBytes !== null && (await this.blobs.exists(key));
    if (known) return { sizeBytes: snapshot.sizeBytes!, sha256: snapshot.sha256! };
    return this.withArchive(snapshot, instanceName, async (archive, measured) => {
      await this.blobs.write(key, archive);
      const produced = measured();
      // Snapshots no longer write archives; the archive bytes written to backup storage are these export copies.
      this.metrics.bytesArchived.inc(produced.sizeBytes);
      if (snapshot.sha256 !== null && snapshot.sha256 !== produced.sha256) {
        await this.blobs.delete(key);
        throw new AppError('INVALID_BACKUP_FILE', `snapshot ${snapshot.id} no longer produces the archive its sha256 records`);
      }
      return produced;
    });
  }

  /** The export copy; produced again when a collection removed it meanwhile (it is deterministic). */
  async openExport(snapshot: SnapshotEntity, instanceName: string, range?: { start?: number; end?: number }): Promise<Readable> {
    try {
      return await this.blobs.read(exportKeyOf(snapshot), range);
    } catch (error) {
      if (!(error instanceof BlobNotFoundError)) throw error;
      await this.prepareExport({ ...snapshot, sizeBytes: null } as SnapshotEntity, instanceName);
      return this.blobs.read(exportKeyOf(snapshot), range);
    }
  }

  /** Export copies whose links have all expired: they are a cache of what the restore point produces again. */
  private async removeUnusedExports(tenantId: string): Promise<number> {
    // The folder is itself a key: no trailing '/' (BlobStore.list).
    const folder = `tenants/${tenantId}/exports`;
    let removed = 0;
    for await (const key of this.options.listBlobs(folder)) {
      const snapshotId = key.slice(folder.length + 1).replace(/\.archive$/, '');
      const live = await this.db.getRepository(ExportTokenEntity).existsBy({ snapshotId, expiresAt: MoreThan(Date.now()) });
      if (live) continue;
      await this.blobs.delete(key);
      removed += 1;
    }
    return removed;
  }

  async forgetExport(snapshot: SnapshotEntity): Promise<void> {
    await this.blobs.delete(exportKeyOf(snapshot));
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
    if (!snapshot.restorePointId || !snapshot.contents) throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} has no restore point`);
    const scratchId = randomUUID();
    try {
      await this.materialise(snapshot.restorePointId, { instanceId: scratchId, generation: 1, limits: UNLIMITED }, context);
      return await this.stores.use(scratchId, 1, async (store) => {
        const view = await store.openReadView();
        try {
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
          const archive = writer.stream.pipe(measure);
          writer.stream.on('error', (error) => measure.destroy(error));
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
            throw error;
          }
          return await consumed;
        } finally {
          await view.close();
        }
      });
    } finally {
      await this.stores.removeGenerations(scratchId);
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
    const chain = await this.chainOf(snapshot.restorePointId);
    for (const manifest of chain) {
      const refs = [...(manifest.base?.chunks ?? []), ...(manifest.delta?.chunks ?? [])];
      const { damage } = await this.chunks.verify(manifest.tenantId, refs);
      if (damage.length > 0) {
        const named = damage.slice(0, 3).map((d) => d.message).join('; ');
        throw new AppError('INVALID_BACKUP_FILE', `restore point ${manifest.id} is damaged (${damage.length} chunk(s)): ${named}`);
      }
      context.signal.throwIfAborted();
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
      const archive = openArchive(source.pipe(tee));
      await archive.verify();
      context.signal.throwIfAborted();
    } catch (error) {
      if (error instanceof AppError) throw error;
      throw new AppError('INVALID_BACKUP_FILE', `the stored archive is damaged: ${(error as Error).message}`);
    }
    const sha256 = digest.digest('hex');
    if (snapshot.sha256 !== null && sha256 !== snapshot.sha256) {
      throw new AppError('INVALID_BACKUP_FILE', `the stored archive no longer matches its sha256 (${sha256}, recorded ${snapshot.sha256})`);
    }
    return { sizeBytes, sha256 };
  }

  // ---- usage and collection ---------------------------------------------------------------------------------------

  /** Storage of the snapshots in `where` (a tenant, or one instance). */
  async usage(where: { tenantId: string; instanceId?: string }): Promise<{ snapshotCount: number; logicalBytes: number; storedBytes: number }> {
    const snapshots = await this.db.getRepository(SnapshotEntity).find({
      select: { id: true, sizeBytes: true, contents: true, blobKey: true, addedBytes: true },
      where: { ...where, status: 'COMPLETED' },
    });
    const logicalBytes = snapshots.reduce((sum, s) => sum + (s.sizeBytes ?? s.contents?.storeSizeBytes ?? 0), 0);
    const legacyBytes = snapshots.reduce((sum, s) => sum + (s.blobKey ? s.addedBytes ?? 0 : 0), 0);
    let storedBytes: number;
    if (where.instanceId === undefined) {
      const chunkBytes = (await this.chunks.usage(where.tenantId)).storedBytes;
      storedBytes = chunkBytes + ((await this.points.sum('manifestBytes', { tenantId: where.tenantId })) ?? 0) + legacyBytes;
    } else {
      // What the instance's own points added (after repacking, an approximation; the tenant's total is exact).
      storedBytes = ((await this.points.sum('addedBytes', { tenantId: where.tenantId, instanceId: where.instanceId })) ?? 0) + legacyBytes;
    }
    return { snapshotCount: snapshots.length, logicalBytes, storedBytes };
  }

  /** Every tenant that has backup storage, collected one after the other (the periodic sweep). */
  async collectAll(): Promise<void> {
    // Tenants with packs too: once their last restore point is gone, emptied packs still wait for their grace period.
    const [withPoints, withPacks] = await Promise.all([
      this.points.createQueryBuilder('p').select('DISTINCT p."tenantId"', 'tenantId').getRawMany<{ tenantId: string }>(),
      this.db.getRepository(ChunkPackEntity).createQueryBuilder('k').select('DISTINCT k."tenantId"', 'tenantId').getRawMany<{ tenantId: string }>(),
    ]);
    for (const tenantId of new Set([...withPoints, ...withPacks].map((row) => row.tenantId))) this.collectSoon(tenantId);
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

  /** Collects the tenant's garbage soon, once at a time per tenant (a request during a run asks for one more run). */
  collectSoon(tenantId: string): void {
    const running = this.collecting.get(tenantId);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    this.collecting.set(tenantId, state);
    void (async () => {
      try {
        do {
          state.again = false;
          await this.collect(tenantId);
        } while (state.again);
      } catch (err) {
        this.logger.error({ err, tenantId }, 'backup storage collection failed; the next one retries');
      } finally {
        this.collecting.delete(tenantId);
      }
    })();
  }

  /**
   * Mark and sweep. Restore points no snapshot needs (directly, or through a descendant) go first, leaf by leaf, each
   * in a transaction that re-checks it is still unreferenced (a snapshot recorded meanwhile keeps its chain: see
   * record()); then every chunk the remaining manifests do not list is left to the chunk store's collection, which
   * keeps anything younger than the grace period (a capture in progress may have just deduplicated against it).
   */
  async collect(tenantId: string): Promise<{ removedPoints: number; freedBytes: number }> {
    let removedPoints = 0;
    for (;;) {
      const removed = await this.db.transaction(async (manager) => {
        const dead = await manager
          .createQueryBuilder(RestorePointEntity, 'p')
          .where('p.tenantId = :tenantId', { tenantId })
          .andWhere('NOT EXISTS (SELECT 1 FROM snapshots s WHERE s."restorePointId" = p.id)')
          .andWhere('NOT EXISTS (SELECT 1 FROM restore_points c WHERE c."parentId" = p.id)')
          .getMany();
        if (dead.length > 0) await manager.delete(RestorePointEntity, { id: In(dead.map((p) => p.id)) });
        return dead;
      });
      if (removed.length === 0) break;
      removedPoints += removed.length;
      for (const point of removed) await this.blobs.delete(point.manifestKey);
    }
    const live = new Set<string>();
    for (const point of await this.points.find({ where: { tenantId } })) {
      const manifest = await this.readManifest(point);
      for (const ref of [...(manifest.base?.chunks ?? []), ...(manifest.delta?.chunks ?? [])]) live.add(ref.id);
    }
    const swept = await this.chunks.collect(tenantId, live, { graceMs: this.options.collectGraceMs });
    await this.removeUnusedExports(tenantId);
    if (removedPoints > 0 || swept.freedBytes > 0) {
      this.logger.info({ tenantId, removedPoints, ...swept }, 'collected backup storage');
    }
    return { removedPoints, freedBytes: swept.freedBytes };
  }
}

export const manifestKeyOf = (tenantId: string, restorePointId: string) => `tenants/${tenantId}/manifests/${restorePointId}.json`;
const exportKeyOf = (snapshot: Pick<SnapshotEntity, 'tenantId' | 'id'>) => `tenants/${snapshot.tenantId}/exports/${snapshot.id}.archive`;

/** Scratch stores (exports, verification) hold whatever the snapshot holds. */
const UNLIMITED: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER };

/** For work nobody watches: no progress, never aborted. */
function quietContext(): JobContext {
  return {
    signal: new AbortController().signal,
    progress: () => undefined,
    saveParams: async () => undefined,
    enterPointOfNoReturn: async () => undefined,
  };
}
