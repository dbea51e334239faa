// Snapshots: on-demand and scheduled capture into encrypted blobs, history for dashboards, deletion, events.
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Between, Brackets, type DataSource, type EntityManager, In, IsNull, MoreThan, Not, type Repository } from 'typeorm';
import type { AppConfig } from '../config/app-config';
import { scheduleOf } from '../config/tiers';
import { ExportTokenEntity } from '../entities/export-token.entity';
import { InstanceEntity } from '../entities/instance.entity';
import { OperationEntity } from '../entities/operation.entity';
import { replaces, SnapshotEntity, type SnapshotProfile, type SnapshotStatus } from '../entities/snapshot.entity';
import { AppError, badInput, conflict, notFound } from '../errors/app-error';
import type { EventBus } from '../events/event-bus';
import type { Compensation, JobContext, OperationHandler, OperationResult } from '../jobs/operation-handler';
import { insertOperation, restoreInProgressOn } from '../jobs/operation-queue';
import { expiresAtFor, scheduleGridDueAt } from '../scheduler/retention';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import type { BackupService } from './backup.service';
import type { InstanceService } from './instance.service';
import { holdOperationInputs } from './operation-inputs';
import { type Principal, requireRole } from './principal';

export interface SnapshotFilterInput {
  from?: Date;
  to?: Date;
  profile?: SnapshotProfile;
  status?: SnapshotStatus;
}

export interface SnapshotPage {
  items: SnapshotEntity[];
  hasNextPage: boolean;
  totalCount: number;
}

export const MAX_SNAPSHOT_PAGE = 500;
/** What snapshots.error holds at most (a varchar(1000)). */
const SNAPSHOT_ERROR_LENGTH = 1000;

/** Called when an operation row is inserted, so the runner picks it up at once. */
export type WorkAnnouncer = () => void;

/** Runs in the transaction that records a snapshot COMPLETED (work that must follow it durably, such as exports). */
export type CompletionHook = (snapshot: SnapshotEntity, manager: EntityManager) => Promise<void>;

/**
 * Runs in the transaction that may change which of an instance's snapshots replaces which (see replaces): one's
 * COMPLETED, or what verification found in one.
 */
export type ReplacementHook = (snapshot: Pick<SnapshotEntity, 'instanceId'>, manager: EntityManager) => Promise<void>;

export class SnapshotService {
  private readonly snapshots: Repository<SnapshotEntity>;
  private readonly completionHooks: CompletionHook[] = [];
  private readonly replacementHooks: ReplacementHook[] = [];

  constructor(
    private readonly db: DataSource,
    private readonly config: AppConfig,
    private readonly instances: InstanceService,
    private readonly blobs: EncryptedBlobStore,
    private readonly events: EventBus,
    private readonly announceWork: WorkAnnouncer,
    private readonly backups: BackupService,
  ) {
    this.snapshots = db.getRepository(SnapshotEntity);
  }

  /** An on-demand snapshot: the row and its SNAPSHOT operation, returned at once (PENDING). */
  async requestSnapshot(principal: Principal, instanceId: string, description: string | null): Promise<SnapshotEntity> {
    requireRole(principal, 'MEMBER', 'taking a snapshot');
    if (description !== null && description.length > 500) throw badInput('description must be at most 500 characters');
    const instance = await this.instances.require(principal, instanceId);
    return this.enqueueSnapshot(instance, 'ON_DEMAND', description);
  }

  /** Inserts a PENDING snapshot and its operation in one transaction; CONFLICT when the instance is busy. */
  enqueueSnapshot(instance: InstanceEntity, profile: SnapshotProfile, description: string | null): Promise<SnapshotEntity> {
    return this.enqueue(instance, profile, description);
  }

  /**
   * The scheduler's snapshot: queued like any other, and in the same transaction the instance's lastScheduledAt
   * moves to the snapshot's createdAt, so a crash can neither lose the record of a queued snapshot nor queue it
   * twice. The move only happens while lastScheduledAt still holds the value the caller read: a second scheduler
   * acting on the same due time (a leader that lost its lock mid-tick) gets CONFLICT and writes nothing.
   */
  async enqueueScheduledSnapshot(instance: InstanceEntity): Promise<SnapshotEntity> {
    const schedule = scheduleOf(this.config.tiers[instance.tier]);
    let nextScheduledAt: number | null = null;
    const snapshot = await this.enqueue(instance, 'SCHEDULED', null, async (manager, scheduled) => {
      nextScheduledAt = scheduleGridDueAt(schedule, scheduled.createdAt, instance.createdAt);
      const moved = await manager.update(
        InstanceEntity,
        { id: instance.id, lastScheduledAt: instance.lastScheduledAt ?? IsNull() },
        { lastScheduledAt: scheduled.createdAt, nextScheduledAt },
      );
      if (!moved.affected) throw conflict(`instance ${instance.id} was scheduled by another process meanwhile`);
    });
    instance.lastScheduledAt = snapshot.createdAt;
    instance.nextScheduledAt = nextScheduledAt;
    return snapshot;
  }

  private async enqueue(
    instance: InstanceEntity,
    profile: SnapshotProfile,
    description: string | null,
    alsoInTransaction?: (manager: EntityManager, snapshot: SnapshotEntity) => Promise<void>,
  ): Promise<SnapshotEntity> {
    const snapshot = this.newSnapshot(instance, profile, description);
    await this.db.transaction(async (manager) => {
      // Held, not only read: on PostgreSQL a read missed a deletion's claim made meanwhile (see holdOperationInputs).
      await holdOperationInputs(manager, { targetId: instance.id });
      await manager.insert(SnapshotEntity, snapshot);
      await insertOperation(manager, {
        tenantId: instance.tenantId,
        instanceId: instance.id,
        kind: 'SNAPSHOT',
        snapshotId: snapshot.id,
      });
      await alsoInTransaction?.(manager, snapshot);
    });
    this.publish(snapshot);
    this.announceWork();
    return snapshot;
  }

  /**
   * Captures the instance's data as a restore point (its position on the change log, once shipped: BackupService)
   * and records the snapshot COMPLETED. Writes to the instance go on meanwhile. Used for PRE_RESTORE snapshots inside a
   * restore; the SNAPSHOT operation records the completion with its own outcome instead (captureRestorePoint).
   */
  async capture(instance: InstanceEntity, snapshot: SnapshotEntity, context: JobContext): Promise<SnapshotEntity> {
    const captured = await this.captureRestorePoint(instance, snapshot, context);
    await this.db.transaction((manager) => captured.commit(manager));
    this.publish(snapshot);
    return snapshot;
  }

  /**
   * capture() without its last step: the restore point is ready; commit() records it and the snapshot's COMPLETED in
   * the caller's transaction.
   */
  async captureRestorePoint(
    instance: InstanceEntity,
    snapshot: SnapshotEntity,
    context: JobContext,
  ): Promise<{ commit(manager: EntityManager): Promise<void> }> {
    // Only a snapshot still to be taken: an attempt of its operation that outlived its lease, resuming after the next
    // attempt completed it (or the operation failed it), took it back to IN_PROGRESS for good (nobody undoes a lost
    // lease's steps), and it could no longer be restored, exported or deleted.
    const { affected } = await this.snapshots.update({ id: snapshot.id, status: In(['PENDING', 'IN_PROGRESS']) }, { status: 'IN_PROGRESS' });
    if (!affected) throw conflict(`snapshot ${snapshot.id} is no longer being taken`);
    Object.assign(snapshot, { status: 'IN_PROGRESS' });
    this.publish(snapshot);
    const { restorePoint, stats } = await this.backups.capture(instance, context, { logOnly: snapshot.profile === 'PRE_RESTORE' });
    // createdAt is the point in time the snapshot captures. It holds every write committed up to its restore point, so
    // one that waited (QUEUED for a free operation slot, or taken again after an interruption) holds those committed
    // meanwhile too: its createdAt moves on to the newest of them (where it was queued, it named a moment they were not
    // part of yet).
    const createdAt = Math.max(snapshot.createdAt, restorePoint.at ?? 0);
    const completion: Partial<SnapshotEntity> = {
      status: 'COMPLETED',
      createdAt,
      completedAt: Date.now(),
      contents: stats,
      restorePointId: restorePoint.id,
      addedBytes: restorePoint.addedBytes,
      expiresAt: expiresAtFor(createdAt, scheduleOf(this.config.tiers[instance.tier])),
    };
    return {
      commit: async (manager) => {
        await this.backups.record(restorePoint, manager);
        await this.complete(snapshot, completion, manager);
      },
    };
  }

  // A capture that stops removes what it wrote (BackupService.capture); packs a crash left without index rows are
  // removed by the next collection. Nothing else needs cleaning here.

  /** Puts a snapshot back to PENDING for another attempt. Idempotent. */
  async resetSnapshot(snapshotId: string): Promise<void> {
    const snapshot = await this.snapshots.findOne({ where: { id: snapshotId } });
    if (!snapshot || snapshot.status === 'COMPLETED' || snapshot.status === 'FAILED') return;
    if (snapshot.status !== 'PENDING') await this.update(snapshot, { status: 'PENDING' });
  }

  /**
   * Marks a snapshot FAILED. Idempotent. Retention removes a failed snapshot as it removes a completed one, so it gets
   * the same expiresAt (left null, a failed scheduled snapshot read as kept until replaced, and went after retention).
   */
  async failSnapshot(snapshotId: string, message: string): Promise<void> {
    const snapshot = await this.snapshots.findOne({ where: { id: snapshotId } });
    if (!snapshot || snapshot.status === 'COMPLETED' || snapshot.status === 'FAILED') return;
    const instance = await this.instances.reload(snapshot.instanceId);
    const expiresAt = instance ? expiresAtFor(snapshot.createdAt, scheduleOf(this.config.tiers[instance.tier])) : null;
    // The column holds 1,000 characters (PostgreSQL refuses more, and the snapshot would stay IN_PROGRESS), as the
    // operation's errorMessage does.
    await this.update(snapshot, { status: 'FAILED', error: message.slice(0, SNAPSHOT_ERROR_LENGTH), expiresAt });
  }

  /** Verification found the snapshot damaged: its error says what (it stays listed, so that the damage is seen). */
  async recordDamage(snapshot: SnapshotEntity, message: string): Promise<void> {
    await this.recordVerification(snapshot, { error: message.slice(0, SNAPSHOT_ERROR_LENGTH) });
    this.publish(snapshot);
  }

  /**
   * What verification found in a snapshot (`patch`: its error, null when it read back whole, and when it did), in
   * `manager`'s transaction (one of its own otherwise), with the replacement hooks: a damaged snapshot replaces none of
   * its elders, and one found whole again replaces them. Subscribers are told separately.
   */
  async recordVerification(snapshot: SnapshotEntity, patch: Partial<SnapshotEntity>, manager?: EntityManager): Promise<void> {
    if (!manager) return this.db.transaction((own) => this.recordVerification(snapshot, patch, own));
    await manager.update(SnapshotEntity, { id: snapshot.id }, patch);
    Object.assign(snapshot, patch);
    for (const hook of this.replacementHooks) await hook(snapshot, manager);
  }

  newSnapshot(instance: InstanceEntity, profile: SnapshotProfile, description: string | null): SnapshotEntity {
    return Object.assign(new SnapshotEntity(), {
      id: randomUUID(),
      tenantId: instance.tenantId,
      instanceId: instance.id,
      profile,
      status: 'PENDING',
      createdAt: Date.now(),
      completedAt: null,
      expiresAt: null,
      description,
      sizeBytes: null,
      sha256: null,
      engineVersion: instance.engineVersion,
      contents: null,
      error: null,
      blobKey: null,
      restorePointId: null,
      addedBytes: null,
      verifiedAt: null,
    } satisfies SnapshotEntity);
  }

  /** The tenant's other snapshots that began in the same second as `snapshot` (whose export names may be its). */
  takenInSameSecond(snapshot: SnapshotEntity): Promise<SnapshotEntity[]> {
    const from = Math.floor(snapshot.createdAt / 1000) * 1000;
    return this.snapshots.find({
      where: { tenantId: snapshot.tenantId, createdAt: Between(from, from + 999), id: Not(snapshot.id) },
      select: { id: true, instanceId: true, createdAt: true, engineVersion: true },
    });
  }

  async insert(snapshot: SnapshotEntity): Promise<void> {
    await this.snapshots.insert(snapshot);
    this.publish(snapshot);
  }

  find(principal: Principal, id: string): Promise<SnapshotEntity | null> {
    return this.snapshots.findOne({ where: { id, tenantId: principal.tenantId } });
  }

  async require(principal: Principal, id: string): Promise<SnapshotEntity> {
    const snapshot = await this.find(principal, id);
    if (!snapshot) throw notFound('snapshot', id);
    return snapshot;
  }

  byId(id: string): Promise<SnapshotEntity | null> {
    return this.snapshots.findOne({ where: { id } });
  }

  /**
   * History, newest first: keyset pagination over (createdAt, id), so a cursor stays correct while new
   * snapshots arrive. The (instanceId, createdAt, id) index answers it without sorting.
   */
  async list(
    principal: Principal,
    instanceId: string,
    first: number,
    after: { createdAt: number; id: string } | null,
    filter: SnapshotFilterInput = {},
  ): Promise<SnapshotPage> {
    if (!Number.isInteger(first) || first < 0 || first > MAX_SNAPSHOT_PAGE) {
      throw badInput(`first must be between 0 and ${MAX_SNAPSHOT_PAGE}`);
    }
    const query = this.snapshots
      .createQueryBuilder('s')
      .where('s.instanceId = :instanceId AND s.tenantId = :tenantId', { instanceId, tenantId: principal.tenantId });
    if (filter.from) query.andWhere('s.createdAt >= :from', { from: filter.from.getTime() });
    if (filter.to) query.andWhere('s.createdAt <= :to', { to: filter.to.getTime() });
    if (filter.profile) query.andWhere('s.profile = :profile', { profile: filter.profile });
    if (filter.status) query.andWhere('s.status = :status', { status: filter.status });
    const totalCount = await query.getCount();
    if (after) {
      query.andWhere(
        new Brackets((q) =>
          q
            .where('s.createdAt < :afterCreatedAt', { afterCreatedAt: after.createdAt })
            .orWhere('(s.createdAt = :afterCreatedAt AND s.id < :afterId)', { afterId: after.id }),
        ),
      );
    }
    const rows = await query.orderBy('s.createdAt', 'DESC').addOrderBy('s.id', 'DESC').take(first + 1).getMany();
    return { items: rows.slice(0, first), hasNextPage: rows.length > first, totalCount };
  }

  async remove(principal: Principal, id: string): Promise<void> {
    requireRole(principal, 'ADMIN', 'deleting a snapshot');
    const snapshot = await this.require(principal, id);
    if (snapshot.status !== 'COMPLETED' && snapshot.status !== 'FAILED') {
      throw new AppError('CONFLICT', `snapshot ${id} is ${snapshot.status}; delete it when it has completed or failed`);
    }
    if ((await this.deleteUnlessRead(snapshot)) === 'read') {
      throw new AppError('CONFLICT', `snapshot ${id} is being written or restored; delete it when that has finished`);
    }
  }

  /**
   * delete(), unless an operation queued or running reads the snapshot: the row goes first, then the look for one, in
   * one transaction undone when it finds one. A request queuing such an operation holds the row as it does
   * (holdOperationInputs), so it is either found here or finds the row gone; looked at before the row went, it could
   * slip in between and be accepted, then fail (NOT_FOUND). 'gone': the row was already removed by someone else.
   * `retention`: what made retention choose it is looked at again in the same transaction ('needed' when it no longer
   * holds): the sweep decided on rows read earlier, and a restore that has ended since may have taken its safety
   * snapshot (the newer one) with it.
   */
  async deleteUnlessRead(snapshot: SnapshotEntity, retention: RetentionRecheck = {}): Promise<'deleted' | 'gone' | 'read' | 'needed'> {
    const deleted = await this.db
      .transaction(async (manager) => {
        if (retention.supersededOnly) {
          // The newest snapshot that replaces it (see replaces), held as a restore's request holds a snapshot (a write
          // to its row), before the row goes (newer rows before older ones, as a completion and its hooks write them):
          // a compensation removing it (a failed restore's safety snapshot) either has removed it already, or waits
          // for this transaction, which then saw a restore still running on the instance (the compensation comes
          // before its operation ends). One witness: writing every newer one rewrote hundreds of rows per removal on
          // an hourly tier. A witness removed meanwhile is not replaced by the next newer one (PostgreSQL does not run
          // the subquery again): 'needed', and the row is kept until a later sweep, erring towards keeping.
          const witness = await manager
            .createQueryBuilder()
            .update(SnapshotEntity)
            .set({ status: 'COMPLETED' })
            .where(
              `status = 'COMPLETED' AND id = (SELECT n.id FROM snapshots n INNER JOIN snapshots o ON o.id = :id WHERE ${replaces('n', 'o')} ` +
                'ORDER BY n."createdAt" DESC, n.id DESC LIMIT 1) ' +
                // Looked at again on the witness as locked (PostgreSQL re-evaluates this row's own conditions, not the
                // subqueries): found damaged meanwhile, it no longer replaces a sound snapshot.
                `AND (error IS NULL OR EXISTS (SELECT 1 FROM snapshots o WHERE o.id = :id AND (o.error IS NOT NULL OR o.status <> 'COMPLETED')))`,
              { id: snapshot.id },
            )
            .execute();
          // Not there at all: another remover's ('gone').
          if (!witness.affected && (await manager.exists(SnapshotEntity, { where: { id: snapshot.id } }))) throw new SnapshotKept('needed');
        }
        const { affected } = await manager.delete(SnapshotEntity, { id: snapshot.id });
        const read = await manager.exists(OperationEntity, {
          where: [
            { snapshotId: snapshot.id, status: 'QUEUED' },
            { snapshotId: snapshot.id, status: 'RUNNING' },
          ],
        });
        if (read) throw new SnapshotKept('read');
        if (retention.unlessRestoring && (await manager.exists(OperationEntity, { where: restoreInProgressOn([snapshot.instanceId]) }))) {
          throw new SnapshotKept('needed');
        }
        if (retention.unlessLinked && (await manager.exists(ExportTokenEntity, { where: { snapshotId: snapshot.id, expiresAt: MoreThan(Date.now()) } }))) {
          throw new SnapshotKept('read');
        }
        return Boolean(affected);
      })
      .catch((error: unknown) => {
        if (error instanceof SnapshotKept) return error.why;
        throw error;
      });
    if (deleted === 'read' || deleted === 'needed') return deleted;
    return (await this.afterRowDeleted(snapshot, deleted)) ? 'deleted' : 'gone';
  }

  /**
   * Removes the row, tells subscribers, then removes a previous release's blob and its export copy, and asks for a
   * collection of what no snapshot needs any more. Used by deletion, retention and instance removal.
   * Returns false (and publishes nothing) when the row was already gone: two removers racing announce it once.
   */
  async delete(snapshot: SnapshotEntity): Promise<boolean> {
    // The row goes first: a crash in between leaves unlisted data (collected later), never a listed snapshot without it.
    const { affected } = await this.snapshots.delete({ id: snapshot.id });
    return this.afterRowDeleted(snapshot, Boolean(affected));
  }

  /**
   * What follows the removal of a snapshot's row (by this caller when `deleted`, else by another remover before). The
   * event goes out first: once the row is gone the snapshot is gone for every reader, and the deletions in the blob
   * store (up to one per export format) took up to 340 ms under load before subscribers heard of it.
   */
  private async afterRowDeleted(snapshot: SnapshotEntity, deleted: boolean): Promise<boolean> {
    if (deleted) this.publish(snapshot, true);
    if (snapshot.blobKey) await this.blobs.delete(snapshot.blobKey);
    await this.backups.forgetExport(snapshot);
    void this.backups.collectSoon(snapshot.tenantId);
    return deleted;
  }

  async deleteAllOf(instance: InstanceEntity): Promise<void> {
    for (const snapshot of await this.snapshotsOf(instance.id)) await this.delete(snapshot);
  }

  /**
   * The snapshot's export archive, optionally a byte range [start, end): a previous release's blob, or the archive
   * produced from its restore point (prepareExport).
   */
  async openArchive(snapshot: SnapshotEntity, range?: { start?: number; end?: number }): Promise<Readable> {
    if (snapshot.status !== 'COMPLETED') {
      throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} is ${snapshot.status}, not COMPLETED`);
    }
    if (snapshot.blobKey) return this.blobs.read(snapshot.blobKey, range);
    const instance = await this.instances.reload(snapshot.instanceId);
    return this.backups.openExport(snapshot, instance?.name ?? snapshot.instanceId, range);
  }

  /**
   * Makes sure the snapshot's export archive exists and its sizeBytes and sha256 are set (produced from its restore
   * point at the first export; an archive is deterministic, so they never change once set). Stops when `signal` aborts.
   */
  async prepareExport(snapshot: SnapshotEntity, signal?: AbortSignal): Promise<SnapshotEntity> {
    if (snapshot.blobKey || snapshot.status !== 'COMPLETED') return snapshot;
    const instance = await this.instances.reload(snapshot.instanceId);
    const produced = await this.backups.prepareExport(snapshot, instance?.name ?? snapshot.instanceId, signal);
    if (snapshot.sha256 === null) {
      await this.snapshots.update({ id: snapshot.id, sha256: IsNull() }, produced);
      Object.assign(snapshot, produced);
    }
    return snapshot;
  }

  snapshotsOf(instanceId: string): Promise<SnapshotEntity[]> {
    return this.snapshots.find({ where: { instanceId } });
  }

  /**
   * Adds work that is recorded together with every snapshot's COMPLETED, except a restore's safety snapshot's: that
   * one is provisional until its restore happens (keepSafetySnapshot), and removed if it does not.
   */
  onCompleted(hook: CompletionHook): void {
    this.completionHooks.push(hook);
  }

  /** Adds work recorded whenever which snapshot replaces which may have changed (see ReplacementHook). */
  onReplacement(hook: ReplacementHook): void {
    this.replacementHooks.push(hook);
  }

  /**
   * Records a captured snapshot as COMPLETED, with the completion hooks' work (not for a safety snapshot), in
   * `manager`'s transaction (one of its own otherwise); subscribers are told separately.
   */
  async complete(snapshot: SnapshotEntity, completion: Partial<SnapshotEntity>, manager?: EntityManager): Promise<void> {
    if (!manager) return this.db.transaction((own) => this.complete(snapshot, completion, own));
    await manager.update(SnapshotEntity, { id: snapshot.id }, completion);
    Object.assign(snapshot, completion);
    if (snapshot.profile !== 'PRE_RESTORE') await this.runCompletionHooks(snapshot, manager);
  }

  /**
   * A restore's safety snapshot stays now that its restore happened: the completion hooks' work (its automatic
   * exports) is recorded in `manager`'s transaction, with the restore's outcome. Queued at its COMPLETED instead, an
   * export of it ran against a removed snapshot whenever the restore did not happen (FAILED with NOT_FOUND, shown as
   * the destination's lastError).
   */
  async keepSafetySnapshot(id: string, manager: EntityManager): Promise<void> {
    const snapshot = await manager.findOneBy(SnapshotEntity, { id });
    if (snapshot?.status === 'COMPLETED') await this.runCompletionHooks(snapshot, manager);
  }

  private async runCompletionHooks(snapshot: SnapshotEntity, manager: EntityManager): Promise<void> {
    // Rows in one order, as every other writer takes them: the instance's snapshots (the replacement hooks write the
    // older ones), then export destinations (the completion hooks queue exports to them).
    for (const hook of [...this.replacementHooks, ...this.completionHooks]) await hook(snapshot, manager);
  }

  private async update(snapshot: SnapshotEntity, patch: Partial<SnapshotEntity>): Promise<SnapshotEntity> {
    await this.snapshots.update({ id: snapshot.id }, patch);
    Object.assign(snapshot, patch);
    this.publish(snapshot);
    return snapshot;
  }

  publish(snapshot: SnapshotEntity, removed = false): void {
    const { blobKey: _blobKey, restorePointId: _restorePointId, ...visible } = snapshot;
    this.events.pubSub.publish('snapshot.updated', snapshot.tenantId, {
      tenantId: snapshot.tenantId,
      instanceId: snapshot.instanceId,
      snapshotId: snapshot.id,
      removed,
      snapshot: { ...visible },
    });
  }
}

/** The SNAPSHOT operation: capture; on a failure or a cancellation a FAILED snapshot with no blob left behind. */
export class SnapshotOperationHandler implements OperationHandler {
  readonly kind = 'SNAPSHOT' as const;

  constructor(
    private readonly snapshots: SnapshotService,
    private readonly instances: InstanceService,
    private readonly afterCapture: (instance: InstanceEntity) => Promise<void>,
  ) {}

  async run(operation: OperationEntity, context: JobContext): Promise<OperationResult> {
    const instance = await this.instances.reload(operation.instanceId);
    const snapshot = operation.snapshotId ? await this.snapshots.byId(operation.snapshotId) : null;
    if (!instance || !snapshot) throw new AppError('NOT_FOUND', 'the instance or snapshot no longer exists');
    const captured = await this.snapshots.captureRestorePoint(instance, snapshot, context);
    // COMPLETED is recorded with the operation's SUCCEEDED: a client that sees the snapshot done can restore it at once.
    return {
      commit: (manager) => captured.commit(manager),
      announce: () => this.snapshots.publish(snapshot),
      afterCommit: () => this.afterCapture(instance),
    };
  }

  /** Handed back: PENDING again, for the next attempt. Ended (failed or cancelled): FAILED with the reason. */
  async compensate(operation: OperationEntity, why: Compensation): Promise<void> {
    if (!operation.snapshotId) return;
    if (why.retry) await this.snapshots.resetSnapshot(operation.snapshotId);
    else await this.snapshots.failSnapshot(operation.snapshotId, why.message);
  }
}

/** Rolls back a deletion that found an operation reading the snapshot. */
class SnapshotKept extends Error {
  constructor(readonly why: 'read' | 'needed') {
    super(why);
  }
}

/** What retention's choice of a snapshot rests on, looked at again as its row goes (see deleteUnlessRead). */
export interface RetentionRecheck {
  /** Kept while a restore of its instance is queued or running (see RetentionSweeper.remove). */
  unlessRestoring?: boolean;
  /** Kept while one of its export links is valid (see RetentionSweeper.remove). */
  unlessLinked?: boolean;
  /** Kept unless a snapshot that replaces it (see replaces) is still there: no rule removes what its instance spares. */
  supersededOnly?: boolean;
}
