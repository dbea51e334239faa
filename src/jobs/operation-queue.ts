// Inserting operation rows: the database's partial unique index turns a second active operation into CONFLICT.
import { randomUUID } from 'node:crypto';
import { type EntityManager, In, Not } from 'typeorm';
import { isUniqueViolation } from '../entities/data-source';
import { OperationEntity, type OperationKind, RESTORE_KINDS } from '../entities/operation.entity';
import { conflict } from '../errors/app-error';

export interface NewOperation {
  /** A chosen id (e.g. derived from another row, so that racing replicas insert it once); random by default. */
  id?: string;
  tenantId: string;
  instanceId: string;
  kind: OperationKind;
  snapshotId?: string | null;
  params?: Record<string, unknown> | null;
  bytesTotal?: number | null;
  pointInTime?: number | null;
  sourceInstanceId?: string | null;
  /** When it was asked for (now by default): a point-in-time restore's window was checked then, and is again as it runs. */
  createdAt?: number;
}

export async function insertOperation(manager: EntityManager, fields: NewOperation): Promise<OperationEntity> {
  const operation = Object.assign(new OperationEntity(), {
    id: fields.id ?? randomUUID(),
    tenantId: fields.tenantId,
    instanceId: fields.instanceId,
    kind: fields.kind,
    status: 'QUEUED',
    phase: 'queued',
    bytesDone: 0,
    bytesTotal: fields.bytesTotal ?? null,
    snapshotId: fields.snapshotId ?? null,
    params: fields.params ?? null,
    errorCode: null,
    errorMessage: null,
    createdAt: fields.createdAt ?? Date.now(),
    startedAt: null,
    finishedAt: null,
    leaseOwner: null,
    leaseExpiresAt: null,
    attempt: 0,
    cancelRequestedAt: null,
    pointInTime: fields.pointInTime ?? null,
    sourceInstanceId: fields.sourceInstanceId ?? null,
  } satisfies OperationEntity);
  try {
    await manager.save(OperationEntity, operation, { reload: false });
  } catch (error) {
    if (isUniqueViolation(error)) throw inProgress(fields.instanceId);
    throw error;
  }
  return operation;
}

/**
 * The CONFLICT insertOperation would answer, asked ahead: for work that must not be done for nothing (reading a large
 * upload back to queue its restore). The insert still decides: an operation may start in between.
 */
export async function assertNoOperationInProgress(manager: EntityManager, instanceId: string): Promise<void> {
  if (await manager.existsBy(OperationEntity, inProgressOn(instanceId))) throw inProgress(instanceId);
}

/** The operation in progress on an instance, as the partial unique index counts it (exports run beside it). */
export const inProgressOn = (instanceId: string) => ({ instanceId, status: In(['QUEUED', 'RUNNING']), kind: Not<OperationKind>('EXPORT') });

/** A restore (of any kind) queued for or running on one of the instances. */
export const restoreInProgressOn = (instanceIds: string[]) => ({ instanceId: In(instanceIds), status: In(['QUEUED', 'RUNNING']), kind: In([...RESTORE_KINDS]) });

const inProgress = (instanceId: string) => conflict(`instance ${instanceId} already has an operation in progress; try again when it has finished`);
