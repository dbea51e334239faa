// Restores: a snapshot over an instance, a snapshot into a new instance, or an uploaded archive over an instance.
// One pipeline serves all three: READ_ONLY → PRE_RESTORE snapshot → shadow store → verify → UNAVAILABLE → swap → AVAILABLE.
import { finished, type Readable } from 'node:stream';
import { type DataSource, In } from 'typeorm';
import { type ArchiveHeader, type ArchiveReader, isArchiveError, openArchive } from '../archive';
import { SharedFramePool } from '../archive/frame-pool';
import { RECORD_RULES_EDITION } from '../archive/record-validation';
import { heapGrowth } from '../runtime/heap-growth';
import type { GraphFileKind } from '../graph-files/graph-file-format';
import { graphFileFormat } from '../graph-files/graph-file-formats';
import { loadGraphFile } from '../graph-files/graph-file-loader';
import type { ReceivedFile } from './upload.service';
import type { InstanceEntity } from '../entities/instance.entity';
import { OperationEntity, type OperationKind, type RestoreKind } from '../entities/operation.entity';
import type { SnapshotEntity } from '../entities/snapshot.entity';
import { CryptoError } from '../crypto/errors';
import { AppError, capacityExceeded } from '../errors/app-error';
import { distinctNamesProblem } from '../graph/graph-rules';
import type { GraphStoreProvider, SealedStore, WriteLimits } from '../graph/graph-store';
import { badInput } from '../errors/app-error';
import { type EncodedBatch, type EngineVersion, type GraphStats, statsDifferences } from '../graph/records';
import type { Compensation, JobContext, OperationHandler, OperationResult } from '../jobs/operation-handler';
import type { Metrics } from '../observability/metrics';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { BlobNotFoundError } from '../storage/errors';
import { ChunkStoreError } from '../chunks';
import { assertNoOperationInProgress, insertOperation } from '../jobs/operation-queue';
import { assertAcceptsOperations, type InstanceInput, type InstanceService, type StateChange } from './instance.service';
import { holdOperationInputs } from './operation-inputs';
import { type Principal, requireRole } from './principal';
import type { BackupService } from './backup.service';
import type { ChangeLogService } from './change-log.service';
import { startEpoch } from '../changelog/store-epochs';
import { RestorePointEntity } from '../entities/restore-point.entity';
import type { EpochAnchor } from '../entities/store-epoch.entity';
import { assertMayStillFit, StoreMissingError } from '../graph/graph-store';
import type { SnapshotService, WorkAnnouncer } from './snapshot.service';
import { unwrapUploadedFile } from './uploaded-file';

export const CONFIRM_WORD = 'RESTORE';

/** What the operation row remembers, so a restart can compensate precisely. */
interface RestoreParams {
  /** RESTORE_FROM_FILE: the verified upload (an encrypted blob), removed when the operation ends. */
  uploadKey?: string;
  /** RESTORE_FROM_FILE: the upload is kept as it came, a tar holding the file (a resumable upload). */
  inTar?: boolean;
  /** RESTORE_FROM_FILE of a foreign graph file: its format (absent for a Snapgraph archive). */
  fileKind?: GraphFileKind;
  /**
   * RESTORE_FROM_FILE of a Snapgraph archive: the RECORD_RULES_EDITION its every record passed while it was stored.
   * The load then only counts them; under another edition (queued before an upgrade) it checks them again.
   */
  recordsChecked?: number;
  preRestoreSnapshotId?: string;
  shadowGeneration?: number;
}

/** The upload blob an operation's params name (a restore from a file reads it, and deletes it when it ends). */
export function uploadKeyOf(params: Record<string, unknown> | null): string | null {
  const key = (params as RestoreParams | null)?.uploadKey;
  return typeof key === 'string' ? key : null;
}

export function assertConfirmed(confirm: string): void {
  if (confirm !== CONFIRM_WORD) {
    throw new AppError('CONFIRMATION_REQUIRED', `type ${CONFIRM_WORD} in confirm to overwrite the instance's data; nothing was changed`);
  }
}

export function assertCompatible(archiveEngine: EngineVersion, target: Pick<InstanceEntity, 'engineVersion' | 'id'>): void {
  if (archiveEngine === 'V5' && target.engineVersion === 'V4') {
    throw new AppError(
      'INCOMPATIBLE_VERSION',
      `a V5 archive cannot be restored into V4 instance ${target.id}; restore it into a V5 instance (V4 into V5 is allowed)`,
    );
  }
}

/**
 * OUT_OF_RESTORE_WINDOW unless the instance's restore window holds `moment`. A queued restore checks again when it
 * starts, earliest only (latest only moves on, and another replica may not have persisted how far it saw it): while it
 * waited, retention may have collected the log the moment needs.
 */
async function assertWindowReaches(
  log: ChangeLogService,
  instances: InstanceService,
  source: InstanceEntity,
  moment: number,
  { checkLatest, requestedAt }: { checkLatest: boolean; requestedAt?: number },
): Promise<void> {
  const windowMs = instances.restoreWindowMs(source);
  if (windowMs === null) {
    throw new AppError('OUT_OF_RESTORE_WINDOW', `instance ${source.id} (${source.tier}) has no restore window; restore one of its snapshots instead`);
  }
  // For a restore that was accepted and then waited (queued, or resumed after a restart), the window as it stood when
  // it was asked for: its start slides on with the clock, and a moment near it was otherwise refused once the restore
  // ran, though its log was still held. What was collected or damaged meanwhile still counts.
  const window = await log.restoreWindow(source, windowMs, Math.min(requestedAt ?? Date.now(), Date.now()));
  if (!window) {
    // Its tier has one: told that it had none, and to fall back on snapshots, the caller would not try again.
    throw new AppError(
      'OUT_OF_RESTORE_WINDOW',
      `instance ${source.id}'s restore window is not open yet: its change log is not shipped yet, or the base of its store ` +
        `taken after damage (or a new history) is not stored yet, which takes seconds; try again once restoreWindow is not null; nothing was changed`,
    );
  }
  if (moment < window.earliest || (checkLatest && moment > window.latest)) {
    throw new AppError(
      'OUT_OF_RESTORE_WINDOW',
      `${new Date(moment).toISOString()} is outside instance ${source.id}'s restore window, ${new Date(window.earliest).toISOString()} to ` +
        `${new Date(window.latest).toISOString()}; nothing was changed`,
    );
  }
}

export class RestoreService {
  constructor(
    private readonly db: DataSource,
    private readonly instances: InstanceService,
    private readonly snapshots: SnapshotService,
    private readonly announceWork: WorkAnnouncer,
    private readonly log: ChangeLogService,
  ) {}

  /** Queues a restore of instanceId's data as it was at `at` over targetInstanceId (default: instanceId itself). */
  async requestRestoreToPointInTime(
    principal: Principal,
    instanceId: string,
    at: Date,
    confirm: string,
    targetInstanceId: string | null,
  ): Promise<OperationEntity> {
    requireRole(principal, 'ADMIN', 'restoring to a point in time');
    assertConfirmed(confirm);
    const source = await this.instances.require(principal, instanceId);
    const target = targetInstanceId ? await this.instances.require(principal, targetInstanceId) : source;
    const askedAt = Date.now();
    const pointInTime = await this.assertInWindow(source, at, askedAt);
    assertCompatible(source.engineVersion, target);
    await this.assertMomentMayFit(source, pointInTime, target);
    assertAcceptsOperations(target);
    return this.enqueue(target, 'RESTORE_TO_POINT_IN_TIME', { pointInTime, sourceInstanceId: source.id, createdAt: askedAt });
  }

  /** A new instance holding instanceId's data as it was at `at`. */
  async requestCreateFromPointInTime(principal: Principal, instanceId: string, at: Date, input: InstanceInput): Promise<InstanceEntity> {
    requireRole(principal, 'MEMBER', 'creating an instance from a point in time');
    const source = await this.instances.require(principal, instanceId);
    const valid = this.instances.validateInput(input);
    const askedAt = Date.now();
    const pointInTime = await this.assertInWindow(source, at, askedAt);
    assertCompatible(source.engineVersion, { ...valid, id: 'the new instance' });
    await this.assertMomentMayFit(source, pointInTime, { ...valid, id: 'the new instance', storageGB: 2 * valid.memoryGB });
    const instance = await this.db.transaction(async (manager) => {
      await holdOperationInputs(manager, { sourceInstanceId: source.id });
      const created = await this.instances.create(principal, valid, { status: 'CREATING', sourceSnapshotId: null }, manager);
      await insertOperation(manager, {
        tenantId: created.tenantId,
        instanceId: created.id,
        kind: 'CREATE_FROM_POINT_IN_TIME',
        pointInTime,
        sourceInstanceId: source.id,
        params: {},
        createdAt: askedAt,
      });
      return created;
    });
    this.announceWork();
    return instance;
  }

  /**
   * OUT_OF_RESTORE_WINDOW unless `at` is inside the instance's restore window at `askedAt`; returns it in ms. The
   * operation records `askedAt` as its createdAt, which its run checks the window as of again.
   */
  private async assertInWindow(source: InstanceEntity, at: Date, askedAt: number): Promise<number> {
    const moment = at.getTime();
    if (!Number.isFinite(moment)) throw badInput('at is not a valid date-time');
    await assertWindowReaches(this.log, this.instances, source, moment, { checkLatest: true, requestedAt: askedAt });
    return moment;
  }

  /**
   * CAPACITY_EXCEEDED when what is recorded of the source (ChangeLogService.recordedCountsAt) shows that its data at the
   * moment cannot fit the target's tier limits: refused before anything is built (or created). Otherwise the build
   * measures what it really holds.
   */
  private async assertMomentMayFit(
    source: InstanceEntity,
    moment: number,
    target: Pick<InstanceEntity, 'id' | 'tier' | 'storageGB'>,
  ): Promise<void> {
    const recorded = await this.log.recordedCountsAt(source.id, moment);
    if (recorded) assertMayStillFit(recorded, this.instances.limitsOf(target), recorded.linesSince, target.tier);
  }

  async requestRestore(principal: Principal, snapshotId: string, confirm: string, instanceId: string | null): Promise<OperationEntity> {
    requireRole(principal, 'ADMIN', 'restoring a snapshot');
    assertConfirmed(confirm);
    const snapshot = await this.snapshots.require(principal, snapshotId);
    const target = await this.instances.require(principal, instanceId ?? snapshot.instanceId);
    this.assertRestorable(snapshot, target);
    return this.enqueue(target, 'RESTORE', { snapshotId: snapshot.id, bytesTotal: snapshot.sizeBytes }, { sourceInstanceId: snapshot.instanceId });
  }

  async requestCreateFromSnapshot(principal: Principal, snapshotId: string, input: InstanceInput): Promise<InstanceEntity> {
    requireRole(principal, 'MEMBER', 'creating an instance from a snapshot');
    const snapshot = await this.snapshots.require(principal, snapshotId);
    const valid = this.instances.validateInput(input);
    this.assertRestorable(snapshot, { ...valid, id: 'the new instance', storageGB: 2 * valid.memoryGB });
    // The instance and its operation go in together: a crash can never leave a CREATING instance nobody finishes.
    const instance = await this.db.transaction(async (manager) => {
      await holdOperationInputs(manager, { sourceInstanceId: snapshot.instanceId, snapshotId: snapshot.id });
      const created = await this.instances.create(principal, valid, { status: 'CREATING', sourceSnapshotId: snapshot.id }, manager);
      await insertOperation(manager, {
        tenantId: created.tenantId,
        instanceId: created.id,
        kind: 'CREATE_FROM_SNAPSHOT',
        snapshotId: snapshot.id,
        bytesTotal: snapshot.sizeBytes,
        params: {},
      });
      return created;
    });
    this.announceWork();
    return instance;
  }

  /**
   * Queues a restore of an already verified upload. The caller has checked the archive end to end
   * (see UploadService), so its header's record counts are the body's; this checks that they fit the target.
   * The header's storeSizeBytes is only a claim about the source store: the load measures the real size.
   */
  async requestRestoreFromFile(principal: Principal, target: InstanceEntity, upload: ReceivedFile): Promise<OperationEntity> {
    const { content } = upload;
    // A foreign graph file carries no engine version: it restores into any instance.
    if (content.kind === 'ARCHIVE') this.assertArchiveMayFit(content.header, target);
    else this.assertFits(content.census, target);
    assertAcceptsOperations(target);
    return this.enqueue(target, 'RESTORE_FROM_FILE', {
      bytesTotal: upload.sizeBytes,
      params: {
        uploadKey: upload.key,
        ...(upload.inTar ? { inTar: true } : {}),
        ...(content.kind === 'ARCHIVE' ? { recordsChecked: RECORD_RULES_EDITION } : { fileKind: content.kind }),
      } satisfies RestoreParams,
    });
  }

  /**
   * The id of a restore of `instanceId` from the upload `uploadKey` that is queued or running (null: none): a request
   * that failed as it queued one (a lost connection to PostgreSQL as it committed) may have queued it all the same.
   */
  async restoreQueuedFrom(instanceId: string, uploadKey: string): Promise<string | null> {
    const queued = await this.db
      .getRepository(OperationEntity)
      .find({ select: { id: true, params: true }, where: { instanceId, kind: 'RESTORE_FROM_FILE', status: In(['QUEUED', 'RUNNING']) } });
    return queued.find((operation) => (operation.params as RestoreParams | null)?.uploadKey === uploadKey)?.id ?? null;
  }

  /**
   * INCOMPATIBLE_VERSION or CAPACITY_EXCEEDED when an archive's header shows that it cannot be restored into `target`:
   * asked of an upload as soon as its header is read (UploadService), and again once it is all in. Its storeSizeBytes
   * is only a claim about the source's store, which says little of the size loaded: the load measures that.
   */
  assertArchiveMayFit(header: Pick<ArchiveHeader, 'engineVersion' | 'stats'>, target: Pick<InstanceEntity, 'id' | 'tier' | 'storageGB' | 'engineVersion'>): void {
    assertCompatible(header.engineVersion, target);
    const { nodeCount, relationshipCount, labels, relationshipTypes } = header.stats;
    this.assertFits({ nodeCount, relationshipCount }, target);
    // An archive's header is bounded (4 MiB), not its names: a graph made here holds no more than MAX_DISTINCT_NAMES.
    const tooMany = distinctNamesProblem('label', labels.length) ?? distinctNamesProblem('type', relationshipTypes.length);
    if (tooMany) throw capacityExceeded(`the archive cannot be restored: ${tooMany}`);
  }

  /**
   * Whether a restore of `target` could be queued now, asked before costly work (reading a large upload back):
   * CONFLICT or INSTANCE_UNAVAILABLE as requestRestoreFromFile would answer, which still decides.
   */
  async assertTakesRestoreNow(target: InstanceEntity): Promise<void> {
    assertAcceptsOperations(target);
    await assertNoOperationInProgress(this.db.manager, target.id);
  }

  private assertRestorable(
    snapshot: SnapshotEntity,
    target: Pick<InstanceEntity, 'id' | 'tier' | 'storageGB' | 'engineVersion'> & { status?: string },
  ): void {
    if (snapshot.status !== 'COMPLETED' || !snapshot.contents) {
      throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} is ${snapshot.status}; only COMPLETED snapshots can be restored`);
    }
    assertCompatible(snapshot.engineVersion, target);
    this.assertFits(snapshot.contents, target);
    if (target.status !== undefined) assertAcceptsOperations(target as InstanceEntity);
  }

  /**
   * CAPACITY_EXCEEDED when the data would not fit the target's tier limits or storage: an early refusal, before
   * any work. The restore's load checks again what it really writes.
   */
  assertFits(
    stats: Pick<GraphStats, 'nodeCount' | 'relationshipCount'> & { storeSizeBytes?: number },
    target: Pick<InstanceEntity, 'id' | 'tier' | 'storageGB'>,
  ): void {
    assertFitsLimits(stats, target, this.instances.limitsOf(target));
  }

  private async enqueue(
    target: InstanceEntity,
    kind: OperationKind,
    fields: { snapshotId?: string; bytesTotal?: number | null; params?: RestoreParams; pointInTime?: number; sourceInstanceId?: string; createdAt?: number },
    reads: { sourceInstanceId?: string } = {},
  ): Promise<OperationEntity> {
    // The target and the data it reads are checked again as the operation goes in (a deletion racing).
    const operation = await this.db.transaction(async (manager) => {
      await holdOperationInputs(manager, { targetId: target.id, sourceInstanceId: fields.sourceInstanceId, snapshotId: fields.snapshotId, ...reads });
      return insertOperation(manager, { tenantId: target.tenantId, instanceId: target.id, kind, ...fields, params: { ...fields.params } });
    });
    this.announceWork();
    return operation;
  }
}


/** What a new store was built from: the anchor of the epoch it starts, and a restore point to record with it. */
interface Shadow {
  expected: GraphStats | null;
  stats: GraphStats;
  anchor: { anchor: EpochAnchor; originPointId: string | null };
  newPoint: RestorePointEntity | null;
}

/** Runs the restores: a snapshot or a point in time over an instance or into a new one, and an uploaded archive. */
export class RestoreOperationHandler implements OperationHandler {
  constructor(
    readonly kind: RestoreKind,
    private readonly instances: InstanceService,
    private readonly snapshots: SnapshotService,
    private readonly stores: GraphStoreProvider,
    private readonly blobs: EncryptedBlobStore,
    private readonly backups: BackupService,
    private readonly log: ChangeLogService,
    private readonly metrics: Metrics,
  ) {}

  private get creating(): boolean {
    return this.kind === 'CREATE_FROM_SNAPSHOT' || this.kind === 'CREATE_FROM_POINT_IN_TIME';
  }

  private get pointInTime(): boolean {
    return this.kind === 'RESTORE_TO_POINT_IN_TIME' || this.kind === 'CREATE_FROM_POINT_IN_TIME';
  }

  /**
   * A point-in-time restore's source instance and moment, still in its restore window as it stood when the restore was
   * asked for (see assertWindowReaches): not past its latest, which was checked then and only grows.
   */
  private async pointInTimeSource(operation: OperationEntity): Promise<{ source: InstanceEntity; moment: number }> {
    const source = operation.sourceInstanceId ? await this.instances.reload(operation.sourceInstanceId) : null;
    if (!source || operation.pointInTime === null) throw new AppError('NOT_FOUND', `instance ${operation.sourceInstanceId} no longer exists`);
    await assertWindowReaches(this.log, this.instances, source, operation.pointInTime, { checkLatest: false, requestedAt: operation.createdAt });
    return { source, moment: operation.pointInTime };
  }

  async run(operation: OperationEntity, context: JobContext): Promise<OperationResult> {
    const instance = await this.instances.reload(operation.instanceId);
    if (!instance) throw new AppError('NOT_FOUND', `instance ${operation.instanceId} no longer exists`);
    // Only the input survives an earlier attempt; everything else is this attempt's.
    const given = operation.params as RestoreParams | null;
    const params: RestoreParams = {
      uploadKey: given?.uploadKey,
      inTar: given?.inTar,
      fileKind: given?.fileKind,
      recordsChecked: given?.recordsChecked,
    };
    const overwriting = !this.creating;
    // A generation of this attempt's own: an earlier attempt that outlived its lease (its process stalled past it while
    // another replica put the operation back and ran this one, or ended it and ran the next restore) removes its shadow
    // when it stops at last. With the same number, that was this attempt's store, by then perhaps swapped in: the
    // instance was left without its data. Taken once this attempt records it (saveParams, below).
    const shadowGeneration = await this.instances.nextStoreGeneration(instance);
    params.shadowGeneration = shadowGeneration;
    context.progress({ phase: 'preparing', bytesDone: 0 });
    // Before anything is changed: a moment out of reach fails the restore with the instance as it was (checked after
    // it was made READ_ONLY and its safety snapshot started, the failure came after both).
    const reading = this.pointInTime ? await this.pointInTimeSource(operation) : null;
    // Recorded before anything is changed: the write is fenced by this attempt's lease, so an attempt that outlived it
    // (its process cut off from the database as it began, while another replica ran the next attempt to its end) stops
    // here. Its state change below was left for nobody to undo: its runner does not compensate a lost lease, and the
    // instance stayed RESTORING and READ_ONLY, refusing writes, operations and its deletion.
    await context.saveParams({ ...params });

    let safetySnapshot: Promise<unknown> | null = null;
    // Stopped when the restore fails before the swap: its snapshot would only be removed, and the instance stayed
    // READ_ONLY until it was complete.
    const stopSafetySnapshot = new AbortController();
    if (overwriting) {
      // READ_ONLY first, then the store itself is frozen: writes admitted before READ_ONLY commit, later ones are
      // refused, so the safety snapshot read from it holds every acknowledged write and none is lost in the swap.
      await this.setStateUnderLease(context, instance, { status: 'RESTORING', availability: 'READ_ONLY', reason: 'a restore is being prepared' });
      const lost = await this.instances
        .withStore(instance, (store) => store.freezeWrites(operation.id))
        .then(() => false, (error: unknown) => {
          if (error instanceof StoreMissingError) return true;
          throw error;
        });
      // A lost store has nothing left to keep: its data is what its change log shipped (see the restore window).
      if (!lost) {
        const safety = this.snapshots.newSnapshot(instance, 'PRE_RESTORE', `taken automatically before operation ${operation.id}`);
        params.preRestoreSnapshotId = safety.id;
        await context.saveParams({ ...params });
        await this.snapshots.insert(safety);
        // Its own progress is not the restore's: only the restore's bytes count, so progress never moves back.
        const signal = AbortSignal.any([context.signal, stopSafetySnapshot.signal]);
        safetySnapshot = this.snapshots.capture(instance, safety, { ...context, signal, progress: () => undefined });
        safetySnapshot.catch(() => undefined);
      }
    }

    let loaded: Shadow;
    try {
      loaded = await this.buildShadow(operation, params, instance, shadowGeneration, context, reading);
      if (loaded.expected) assertSameGraph(loaded.stats, loaded.expected);
      // What the built store really takes: a snapshot's recorded size, checked up front, is what its source took.
      assertFitsLimits(loaded.stats, instance, this.instances.limitsOf(instance));
    } catch (error) {
      // Never leave a capture running behind a failed restore: it is stopped, and compensation removes its snapshot. On
      // success, the restore waits for it below, in the phase that says so.
      stopSafetySnapshot.abort(error);
      await safetySnapshot?.catch(() => undefined);
      throw error;
    }
    if (safetySnapshot) {
      context.progress({ phase: 'pre-restore snapshot' });
      await safetySnapshot;
    }
    context.signal.throwIfAborted();

    // The point of no return, only while this runner still holds the lease and nobody asked to cancel. The swap is
    // one metadata update pointing the instance at the new store, committed by the runner together with SUCCEEDED:
    // the instance is UNAVAILABLE only for that moment, and a crash before the commit leaves the old data in place.
    await context.enterPointOfNoReturn();
    if (overwriting) await this.setStateUnderLease(context, instance, { availability: 'UNAVAILABLE', reason: 'swapping in the restored data' });
    // What this process saw offered from the old store (all there is of a lost one; see historyStart).
    const offeredHere = overwriting ? await this.log.offeredThrough(instance.id) : -1;
    let announceSwap = () => undefined as void;
    return {
      commit: async (manager) => {
        // On a copy of the instance, each time: a commit rolled back (a full disk, committed again once space returns)
        // had already marked the instance AVAILABLE on its new store, so the next one announced no change (clients
        // waiting for AVAILABLE waited for good) and read the old store's position from the new one.
        const swapped = Object.assign(Object.create(Object.getPrototypeOf(instance)) as InstanceEntity, instance);
        const { epoch: newEpoch, startedAt } = await this.historyStart(swapped, shadowGeneration, overwriting, offeredHere);
        announceSwap = await this.instances.setStateIn(manager, swapped, {
          storeGeneration: shadowGeneration,
          status: 'RUNNING',
          availability: 'AVAILABLE',
          reason: overwriting ? 'restore completed' : this.kind === 'CREATE_FROM_SNAPSHOT' ? 'created from snapshot' : 'created from a point in time',
        });
        if (loaded.newPoint) await manager.insert(RestorePointEntity, loaded.newPoint);
        await startEpoch(manager, swapped, newEpoch, loaded.anchor, startedAt);
        if (params.preRestoreSnapshotId) await this.snapshots.keepSafetySnapshot(params.preRestoreSnapshotId, manager);
      },
      announce: () => announceSwap(),
      afterCommit: async () => {
        // Only what the swap replaced: the operation is recorded SUCCEEDED, and the next one on the instance may already
        // be building its shadow, one generation up (removing every other generation took it from under that restore).
        await this.stores.removeGenerationsBefore(instance.id, shadowGeneration);
        if (params.uploadKey) await this.blobs.delete(params.uploadKey);
      },
    };
  }

  /**
   * The instance's state changed under the attempt's lease (JobContext.underLease): written outside it, by an attempt
   * that outlived its lease (its process stalled, its link to the database slow), the change landed after another
   * replica had undone the restore and ended it, and the instance stayed RESTORING and READ_ONLY for good.
   */
  private async setStateUnderLease(context: JobContext, instance: InstanceEntity, change: StateChange): Promise<void> {
    const announce = await context.underLease((manager) => this.instances.setStateIn(manager, instance, change));
    announce();
  }

  /**
   * The new store's history, a new epoch built from what the restore wrote back: its number, and its start, which is
   * the new store's readAt (position), so that every write to it takes a commit time at or after the start. (Read
   * before waiting for the safety snapshot, that readAt was earlier than the start, taken at the swap: with the clock
   * stepped back after the swap, or another replica's behind, the first writes took commit times before their epoch
   * began, and a restore to such a moment found the old store's data.) The start is after every moment the old
   * store's window offered (the clock may have been stepped back behind them): its readAt, which is after every readAt
   * any replica was handed from it (it keeps the newest); `offeredHere` (this process's, and what was persisted) for a
   * store that is lost. Read in the swap's commit: another replica shipping the old store meanwhile could offer a
   * later moment from it.
   */
  private async historyStart(
    instance: InstanceEntity,
    generation: number,
    overwriting: boolean,
    offeredHere: number,
  ): Promise<{ epoch: number; startedAt: number }> {
    const oldReadAt = overwriting
      ? await this.instances.withStore(instance, async (store) => (await store.position()).readAt).catch((error: unknown) => {
          if (error instanceof StoreMissingError) return -1;
          throw error;
        })
      : -1;
    const { epoch, readAt } = await this.stores.use(instance.id, generation, (store) => store.position(Math.max(Date.now(), oldReadAt, offeredHere + 1)));
    return { epoch, startedAt: readAt };
  }

  /**
   * Builds the new store generation: a restore point (a snapshot's, or the source's moment in time) written back
   * physically, or an archive (an upload, or a previous release's snapshot) loaded record by record, of which a base is
   * then taken (the new epoch's anchor). The shadow is removed on any failure.
   */
  private async buildShadow(
    operation: OperationEntity,
    params: RestoreParams,
    instance: InstanceEntity,
    generation: number,
    context: JobContext,
    reading: { source: InstanceEntity; moment: number } | null,
  ): Promise<Shadow> {
    const target = { instanceId: instance.id, generation, limits: this.instances.limitsOf(instance) };
    const backupError = (error: unknown) => {
      throw asBackupError(error);
    };
    if (reading) {
      const { source, moment } = reading;
      const built = await this.backups.materialiseAt(source, moment, target, context).catch(backupError);
      this.metrics.bytesRestored.inc(built.bytesRead);
      return { expected: null, stats: built.stats, anchor: { anchor: 'ORIGIN', originPointId: built.point.id }, newPoint: built.point };
    }
    const snapshot = this.kind === 'RESTORE_FROM_FILE' ? null : await this.sourceSnapshot(operation);
    if (snapshot?.restorePointId && snapshot.contents) {
      const { stats, bytesRead } = await this.backups.materialise(snapshot.restorePointId, target, context).catch(backupError);
      this.metrics.bytesRestored.inc(bytesRead);
      return { expected: snapshot.contents, stats, anchor: { anchor: 'ORIGIN', originPointId: snapshot.restorePointId }, newPoint: null };
    }
    const { expected, sealed } = params.fileKind
      ? await this.loadGraphFile(params.fileKind, () => this.openUpload(params), instance, generation, context)
      : snapshot
        ? await this.loadArchive(() => this.snapshots.openArchive(snapshot), instance, generation, context, false)
        : await this.loadArchive(() => this.openUpload(params), instance, generation, context, params.recordsChecked === RECORD_RULES_EDITION);
    try {
      context.progress({ phase: 'capturing' });
      const { restorePoint } = await this.backups.captureSealed(instance, sealed, { ...context, progress: () => undefined });
      return { expected, stats: sealed.base.stats, anchor: { anchor: 'BASE', originPointId: null }, newPoint: restorePoint };
    } catch (error) {
      // Only this attempt's shadow: by now a stale attempt's `instance` may not name the current generation.
      await this.stores.removeGeneration(instance.id, generation).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Streams an archive into a new store generation, then seals it; the shadow is removed on any failure.
   * `recordsChecked`: its records passed this release's checks when it was uploaded (see ArchiveReader.encodedBatches).
   */
  private async loadArchive(
    openSource: () => Promise<Readable>,
    instance: InstanceEntity,
    generation: number,
    context: JobContext,
    recordsChecked: boolean,
  ): Promise<{ expected: GraphStats; sealed: SealedStore }> {
    context.progress({ phase: 'loading', bytesDone: 0 });
    const loader = await this.stores.createLoader(instance.id, generation, this.instances.limitsOf(instance));
    try {
      const frames = loadFrames.acquire();
      let archive: ArchiveReader;
      let header: ArchiveHeader;
      let source: Readable | undefined;
      try {
        source = await openSource();
        archive = openArchive(source);
        header = await archive.header;
        assertCompatible(header.engineVersion, instance);
        // SQLite loads one batch while the next is read, decrypted and inflated (on the frame pool's thread, off the
        // event loop that decrypts, hashes and binds them): bytes in bulk (see HeapGrowth).
        let loading: Promise<void> = Promise.resolve();
        for await (const batch of coalesce(heapGrowth.bulkPieces(archive.encodedBatches({ recordsChecked, pool: frames })))) {
          context.signal.throwIfAborted();
          await loading;
          loading = loader.insert(batch);
          loading.catch(() => undefined);
          context.progress({ bytesDone: archive.bytesRead() });
        }
        await loading;
        this.metrics.bytesRestored.inc(archive.bytesRead());
      } catch (error) {
        // Refused by its header, the source was never read: its file or connection is let go now.
        source?.destroy();
        throw asBackupError(error);
      } finally {
        loadFrames.release();
      }
      context.progress({ phase: 'verifying' });
      return { expected: header.stats, sealed: await loader.finish() };
    } catch (error) {
      await loader.abort();
      throw error;
    }
  }

  /**
   * Streams a foreign graph file into a new store generation, then seals it; the shadow is removed on any failure.
   * Nothing promised what it holds (expected: null): the load's own checks and the instance's limits decide.
   */
  private async loadGraphFile(
    kind: GraphFileKind,
    openSource: () => Promise<Readable>,
    instance: InstanceEntity,
    generation: number,
    context: JobContext,
  ): Promise<{ expected: null; sealed: SealedStore }> {
    const format = graphFileFormat(kind);
    if (!format) throw new AppError('INVALID_BACKUP_FILE', `files of kind ${kind} can no longer be read`);
    context.progress({ phase: 'loading', bytesDone: 0 });
    const loader = await this.stores.createLoader(instance.id, generation, this.instances.limitsOf(instance));
    try {
      const reader = format.open(await openSource());
      try {
        await loadGraphFile(reader, loader, { signal: context.signal, progress: (bytesDone) => context.progress({ bytesDone }) });
        this.metrics.bytesRestored.inc(reader.bytesRead());
      } catch (error) {
        throw asBackupError(error);
      }
      context.progress({ phase: 'verifying' });
      return { expected: null, sealed: await loader.finish() };
    } catch (error) {
      await loader.abort();
      throw error;
    }
  }

  async compensate(operation: OperationEntity, why: Compensation): Promise<boolean> {
    const params: RestoreParams = { ...(operation.params as RestoreParams | null) };
    const instance = await this.instances.reload(operation.instanceId);
    let completed = false;
    if (instance) {
      // The instance's state comes first: a failing clean-up below must never leave it RESTORING or READ_ONLY.
      completed = params.shadowGeneration !== undefined && instance.storeGeneration === params.shadowGeneration;
      if (!this.creating) {
        // This restore's own fence only (its attempts all fence as the operation): another's is that one's to lift.
        // A fence that cannot be lifted now (a full disk, a busy store) is lifted by the instance's next write, once
        // this restore has ended (InstanceService.liftStaleWriteFence); a store that is gone has none.
        await this.instances.withStore(instance, async (store) => store.thawWrites(operation.id)).catch(() => undefined);
      }
      if (completed) {
        // Interrupted after the swap (written by an earlier version, which swapped before recording SUCCEEDED):
        // the restored data is in place, so the restore did happen.
        if (instance.status !== 'RUNNING' || instance.availability !== 'AVAILABLE') {
          await this.instances.setState(instance, { status: 'RUNNING', availability: 'AVAILABLE', reason: 'restore completed' });
        }
      } else if (this.creating && instance.status === 'CREATING') {
        // Handed back, the instance stays CREATING for the next attempt; otherwise it says it failed (and can be deleted).
        if (!why.retry) {
          await this.instances.setState(instance, { status: 'FAILED', availability: 'UNAVAILABLE', reason: `creation did not complete: ${why.message}` });
        }
      } else if (instance.status === 'RESTORING' || instance.availability !== 'AVAILABLE') {
        const reason = why.retry ? 'restore interrupted; the data is unchanged and it will run again' : 'restore did not complete; the data is unchanged';
        await this.instances.setState(instance, { status: 'RUNNING', availability: 'AVAILABLE', reason });
      }
    }
    // Clean-up, each step on its own: whatever the row points at is the data; every other generation is a shadow.
    const attempt = (step: Promise<unknown>) => step.catch(() => undefined);
    if (instance) await attempt(this.stores.removeGenerations(instance.id, instance.storeGeneration));
    // The uploaded file is the input of the next attempt; it goes once the operation has ended.
    if (params.uploadKey && (completed || !why.retry)) await attempt(this.blobs.delete(params.uploadKey));
    // A restore that did not happen leaves no safety snapshot: it would only copy data that is still there
    // (the next attempt takes its own). Unless an operation reads it: COMPLETED, it was listed and could be restored or
    // exported while the restore went on, and removed from under that operation, it failed with NOT_FOUND.
    if (params.preRestoreSnapshotId && !completed) {
      const safety = await this.snapshots.byId(params.preRestoreSnapshotId);
      if (safety) await attempt(this.snapshots.deleteUnlessRead(safety));
    }
    return completed;
  }

  private async openUpload(params: RestoreParams): Promise<Readable> {
    const gone = () => new AppError('INVALID_BACKUP_FILE', 'the uploaded file is gone');
    if (!params.uploadKey) throw gone();
    const stored = await this.blobs.read(params.uploadKey).catch((error: unknown) => {
      throw error instanceof BlobNotFoundError ? gone() : error;
    });
    if (!params.inTar) return stored;
    const { stream } = await unwrapUploadedFile(stored).catch((error: unknown) => {
      stored.destroy();
      throw error;
    });
    // The tar reader stops after the file's entry: what it read from goes with it (a descriptor, an S3 request).
    finished(stream, () => stored.destroy());
    return stream;
  }

  private async sourceSnapshot(operation: OperationEntity): Promise<SnapshotEntity> {
    const snapshot = operation.snapshotId ? await this.snapshots.byId(operation.snapshotId) : null;
    if (!snapshot) throw new AppError('NOT_FOUND', `snapshot ${operation.snapshotId} no longer exists`);
    return snapshot;
  }
}

/**
 * The thread inflating archives' frames while restores load them: one keeps ahead of the event loop (see FramePool).
 * Shared by the loads under way: a thread each made memory grow with the restores running at once, not their speed
 * (16 restores of 64 MiB uploads at once, two cores: 998 MiB of RSS with a thread each, 617 MiB with none).
 */
const loadFrames = new SharedFramePool(1);

// A load batch carries up to this many records or characters, whichever comes first: large enough to keep SQLite
// busy, small enough that memory stays flat with large properties.
const LOAD_BATCH = { lines: 5_000, chars: 512 * 1024 };

/** Merges consecutive batches of one kind up to LOAD_BATCH: fewer, larger statements for SQLite. */
async function* coalesce(batches: AsyncIterable<EncodedBatch>): AsyncGenerator<EncodedBatch> {
  let pending: EncodedBatch | null = null;
  let chars = 0;
  for await (const batch of batches) {
    if (pending && (pending.kind !== batch.kind || pending.lines.length >= LOAD_BATCH.lines || chars >= LOAD_BATCH.chars)) {
      yield pending;
      pending = null;
      chars = 0;
    }
    if (pending) pending.lines.push(...batch.lines);
    else pending = { kind: batch.kind, lines: [...batch.lines] };
    for (const line of batch.lines) chars += line.length;
  }
  if (pending) yield pending;
}

/**
 * CAPACITY_EXCEEDED when the data would not fit the target's tier limits or storage: an early refusal, before
 * any work, on what is recorded of it; then, whatever it was built from, the check of the built store before the swap
 * (an archive's load also checks what it writes as it goes).
 */
export function assertFitsLimits(
  stats: Pick<GraphStats, 'nodeCount' | 'relationshipCount'> & { storeSizeBytes?: number },
  target: Pick<InstanceEntity, 'id' | 'tier' | 'storageGB'>,
  limits: WriteLimits,
): void {
  if (limits.maxNodes !== null && stats.nodeCount > limits.maxNodes) {
    throw capacityExceeded(`the data holds ${stats.nodeCount} nodes; ${target.tier} allows ${limits.maxNodes}`);
  }
  if (limits.maxRelationships !== null && stats.relationshipCount > limits.maxRelationships) {
    throw capacityExceeded(`the data holds ${stats.relationshipCount} relationships; ${target.tier} allows ${limits.maxRelationships}`);
  }
  if (stats.storeSizeBytes !== undefined && stats.storeSizeBytes > limits.maxBytes) {
    throw capacityExceeded(`the data takes ${stats.storeSizeBytes} bytes; ${target.id} has ${target.storageGB} GB of storage (${limits.maxBytes} bytes)`);
  }
}

/** Damage to the stored bytes (the archive inside, or the encryption around it) is the archive's fault, not a bug. */
function asBackupError(error: unknown): unknown {
  if (isArchiveError(error)) return new AppError('INVALID_BACKUP_FILE', error.message);
  if (error instanceof CryptoError) return new AppError('INVALID_BACKUP_FILE', `the stored archive is damaged: ${error.message}`);
  if (error instanceof BlobNotFoundError) return new AppError('INVALID_BACKUP_FILE', 'the stored archive is missing');
  if (error instanceof ChunkStoreError) return new AppError('INVALID_BACKUP_FILE', `the stored snapshot is damaged: ${error.message}`);
  return error;
}

/** The shadow must hold exactly what the archive header promised (a name listed with count 0 promises nothing). */
function assertSameGraph(loaded: GraphStats, expected: GraphStats): void {
  const differences = statsDifferences(loaded, expected);
  if (differences.length > 0) {
    throw new AppError('INVALID_BACKUP_FILE', `verification failed: the restored store does not match what the archive promised: ${differences.join(', ')}`);
  }
}
