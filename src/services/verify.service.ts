// Verification of stored snapshots: a VERIFY operation reads a snapshot back in full without touching any instance.
import type { DataSource } from 'typeorm';
import type { OperationEntity } from '../entities/operation.entity';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { AppError, isAppError } from '../errors/app-error';
import type { Compensation, JobContext, OperationHandler, OperationResult } from '../jobs/operation-handler';
import { insertOperation } from '../jobs/operation-queue';
import type { BackupService } from './backup.service';
import type { InstanceService } from './instance.service';
import { holdOperationInputs } from './operation-inputs';
import { type Principal, requireRole } from './principal';
import type { SnapshotService, WorkAnnouncer } from './snapshot.service';

export class VerifyService {
  constructor(
    private readonly db: DataSource,
    private readonly snapshots: SnapshotService,
    private readonly announceWork: WorkAnnouncer,
  ) {}

  /** Queues a VERIFY operation of a COMPLETED snapshot (one operation per instance at a time, as for any other). */
  async requestVerify(principal: Principal, snapshotId: string): Promise<OperationEntity> {
    requireRole(principal, 'MEMBER', 'verifying a snapshot');
    const snapshot = await this.snapshots.require(principal, snapshotId);
    if (snapshot.status !== 'COMPLETED') {
      throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} is ${snapshot.status}; only COMPLETED snapshots can be verified`);
    }
    const operation = await this.db.transaction(async (manager) => {
      await holdOperationInputs(manager, { sourceInstanceId: snapshot.instanceId, snapshotId: snapshot.id });
      return insertOperation(manager, { tenantId: snapshot.tenantId, instanceId: snapshot.instanceId, kind: 'VERIFY', snapshotId: snapshot.id });
    });
    this.announceWork();
    return operation;
  }
}

/** Runs VERIFY: a damaged snapshot FAILS it with INVALID_BACKUP_FILE and records the damage in the snapshot's error. */
export class VerifyOperationHandler implements OperationHandler {
  readonly kind = 'VERIFY' as const;

  constructor(
    private readonly snapshots: SnapshotService,
    private readonly instances: InstanceService,
    private readonly backups: BackupService,
  ) {}

  async run(operation: OperationEntity, context: JobContext): Promise<OperationResult> {
    const snapshot = operation.snapshotId ? await this.snapshots.byId(operation.snapshotId) : null;
    if (!snapshot || snapshot.status !== 'COMPLETED') throw new AppError('NOT_FOUND', `snapshot ${operation.snapshotId} no longer exists`);
    const instance = await this.instances.reload(snapshot.instanceId);
    try {
      const produced = await this.backups.verify(snapshot, instance?.name ?? snapshot.instanceId, context);
      // Decided once: the runner commits again after a full disk refused a commit, and by then `snapshot` has the patch.
      const patch: Partial<SnapshotEntity> = { verifiedAt: Date.now(), error: null };
      if (snapshot.sha256 === null) Object.assign(patch, produced);
      return {
        commit: (manager) => this.snapshots.recordVerification(snapshot, patch, manager),
        announce: () => this.snapshots.publish(snapshot),
      };
    } catch (error) {
      if (isAppError(error) && error.code === 'INVALID_BACKUP_FILE') {
        await this.snapshots.recordDamage(snapshot, error.message);
      }
      throw error;
    }
  }

  /** Verification changes nothing it would have to put back. */
  async compensate(_operation: OperationEntity, _why: Compensation): Promise<void> {}
}
