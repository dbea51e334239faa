import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import type { EngineVersion, GraphStats } from '../graph/records';
import { BigIntColumn, IdColumn, JsonColumn } from './columns';

export type SnapshotProfile = 'SCHEDULED' | 'ON_DEMAND' | 'PRE_RESTORE';
export type SnapshotStatus = 'PENDING' | 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';

@Entity('snapshots')
// History pages walk (instanceId, createdAt desc, id desc): this index answers them without a sort.
@Index('idx_snapshots_history', ['instanceId', 'createdAt', 'id'])
@Index('idx_snapshots_tenant', ['tenantId', 'createdAt'])
// The retention sweep finds expired snapshots, and the ones that crossed its thinning line, without a whole-table walk.
@Index('idx_snapshots_expiry', ['expiresAt'])
@Index('idx_snapshots_created', ['createdAt'])
export class SnapshotEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @IdColumn()
  instanceId: string;

  @Column({ type: 'varchar', length: 16 })
  profile: SnapshotProfile;

  @Column({ type: 'varchar', length: 16 })
  status: SnapshotStatus;

  @BigIntColumn()
  createdAt: number;

  @BigIntColumn({ nullable: true })
  completedAt: number | null;

  @BigIntColumn({ nullable: true })
  expiresAt: number | null;

  @Column({ type: 'varchar', length: 500, nullable: true })
  description: string | null;

  @BigIntColumn({ nullable: true })
  sizeBytes: number | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  sha256: string | null;

  @Column({ type: 'varchar', length: 2 })
  engineVersion: EngineVersion;

  @JsonColumn({ nullable: true })
  contents: GraphStats | null;

  @Column({ type: 'varchar', length: 1000, nullable: true })
  error: string | null;

  /** A snapshot of the previous release: its whole archive in one encrypted blob (null for restore points). */
  @Column({ type: 'varchar', length: 200, nullable: true })
  blobKey: string | null;

  /** Where its data lives: a restore point over the chunk store. */
  @IdColumn({ nullable: true })
  restorePointId: string | null;

  /** Bytes at rest this snapshot added; null until COMPLETED. */
  @BigIntColumn({ nullable: true })
  addedBytes: number | null;

  @BigIntColumn({ nullable: true })
  verifiedAt: number | null;
}

/**
 * SQL: the snapshot `newer` replaces the snapshot `older` of the same instance as a restorable one, which retention
 * then no longer keeps for it: `newer` is COMPLETED and newer (by createdAt, then id), and not known to be damaged (its
 * error, set by verification) unless `older` is (or is not COMPLETED): a damaged snapshot restores nothing.
 */
export function replaces(newer: string, older: string): string {
  return (
    `${newer}."instanceId" = ${older}."instanceId" AND ${newer}.status = 'COMPLETED' ` +
    `AND (${newer}."createdAt" > ${older}."createdAt" OR (${newer}."createdAt" = ${older}."createdAt" AND ${newer}.id > ${older}.id)) ` +
    `AND (${newer}.error IS NULL OR ${older}.error IS NOT NULL OR ${older}.status <> 'COMPLETED')`
  );
}

/** SQL for a WHERE clause on the snapshots table: a snapshot replaces (see replaces) the row `outer` names. */
export function replacementExists(outer: string): string {
  return `EXISTS (SELECT 1 FROM snapshots n WHERE ${replaces('n', outer)})`;
}
