import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import { BigIntColumn, IdColumn, JsonColumn } from './columns';

export const OPERATION_KINDS = [
  'SNAPSHOT',
  'RESTORE',
  'CREATE_FROM_SNAPSHOT',
  'RESTORE_FROM_FILE',
  'VERIFY',
  'RESTORE_TO_POINT_IN_TIME',
  'CREATE_FROM_POINT_IN_TIME',
  'EXPORT',
] as const;
export type OperationKind = (typeof OPERATION_KINDS)[number];
/** The operations that build an instance's data anew: a restore over it, or a new instance from a snapshot or a moment. */
export const RESTORE_KINDS = ['RESTORE', 'RESTORE_FROM_FILE', 'CREATE_FROM_SNAPSHOT', 'RESTORE_TO_POINT_IN_TIME', 'CREATE_FROM_POINT_IN_TIME'] as const;
export type RestoreKind = (typeof RESTORE_KINDS)[number];
export type OperationStatus = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** The durable record of one job: what to do, who runs it (lease), how far it got, how it ended. */
@Entity('operations')
@Index('idx_operations_instance', ['instanceId', 'createdAt', 'id'])
@Index('idx_operations_status', ['status'])
// At most one queued or running operation per instance, enforced by the database across processes. An EXPORT only
// reads a snapshot: it runs beside the instance's other work.
@Index('uq_operations_active', ['instanceId'], { unique: true, where: "status IN ('QUEUED', 'RUNNING') AND kind <> 'EXPORT'" })
export class OperationEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @IdColumn()
  instanceId: string;

  @Column({ type: 'varchar', length: 32 })
  kind: OperationKind;

  @Column({ type: 'varchar', length: 16 })
  status: OperationStatus;

  @Column({ type: 'varchar', length: 64, nullable: true })
  phase: string | null;

  @BigIntColumn({ default: 0 })
  bytesDone: number;

  @BigIntColumn({ nullable: true })
  bytesTotal: number | null;

  @IdColumn({ nullable: true })
  snapshotId: string | null;

  /** Kind-specific input (e.g. the uploaded file's path), JSON. */
  @JsonColumn({ nullable: true })
  params: Record<string, unknown> | null;

  @Column({ type: 'varchar', length: 32, nullable: true })
  errorCode: string | null;

  @Column({ type: 'varchar', length: 1000, nullable: true })
  errorMessage: string | null;

  @BigIntColumn()
  createdAt: number;

  @BigIntColumn({ nullable: true })
  startedAt: number | null;

  @BigIntColumn({ nullable: true })
  finishedAt: number | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  leaseOwner: string | null;

  @BigIntColumn({ nullable: true })
  leaseExpiresAt: number | null;

  /** How many times a runner has started it: 0 while first queued, then 1, 2, … (each restart or lost lease adds one). */
  @Column({ type: 'integer', default: 0 })
  attempt: number;

  /** Set by cancelOperation on a RUNNING operation; the runner holding the lease sees it and stops. */
  @BigIntColumn({ nullable: true })
  cancelRequestedAt: number | null;

  /** RESTORE_TO_POINT_IN_TIME / CREATE_FROM_POINT_IN_TIME: the moment restored (ms), and the instance whose history it is. */
  @BigIntColumn({ nullable: true })
  pointInTime: number | null;

  @IdColumn({ nullable: true })
  sourceInstanceId: string | null;
}
