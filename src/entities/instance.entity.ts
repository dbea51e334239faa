import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import type { Tier } from '../config/tiers';
import type { EngineVersion } from '../graph/records';
import { BigIntColumn, IdColumn } from './columns';

export type InstanceStatus = 'CREATING' | 'RUNNING' | 'RESTORING' | 'DESTROYING' | 'FAILED';
export type Availability = 'AVAILABLE' | 'READ_ONLY' | 'UNAVAILABLE';

@Entity('instances')
@Index('idx_instances_tenant', ['tenantId', 'createdAt'])
// A tier's instances in id order, for the retention sweep.
@Index('idx_instances_tier', ['tier', 'id'])
// The scheduler's per-tick query: the instances due by a time, those not yet given a due time, and those whose last
// scheduled snapshot (or creation) lies ahead of the clock.
@Index('idx_instances_next_scheduled', ['nextScheduledAt', 'tier'])
@Index('idx_instances_last_scheduled', ['lastScheduledAt'])
@Index('idx_instances_created', ['createdAt'])
export class InstanceEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  @Column({ type: 'varchar', length: 32 })
  tier: Tier;

  @Column({ type: 'integer' })
  memoryGB: number;

  @Column({ type: 'integer' })
  storageGB: number;

  @Column({ type: 'varchar', length: 2 })
  engineVersion: EngineVersion;

  @Column({ type: 'varchar', length: 16 })
  status: InstanceStatus;

  @Column({ type: 'varchar', length: 16 })
  availability: Availability;

  @IdColumn({ nullable: true })
  sourceSnapshotId: string | null;

  /** Which store file holds the data; a restore builds generation n+1 beside it and swaps the pointer. */
  @Column({ type: 'integer', default: 1 })
  storeGeneration: number;

  @BigIntColumn()
  createdAt: number;

  /** When the scheduler last took (or tried to take) a scheduled snapshot. */
  @BigIntColumn({ nullable: true })
  lastScheduledAt: number | null;

  /**
   * When the next scheduled snapshot falls due by the grid (scheduleGridDueAt of this row's lastScheduledAt and
   * createdAt, under the leading scheduler's config), so that the scheduler finds the due instances through an index.
   * Null on a tier without a schedule. Whoever writes createdAt or lastScheduledAt writes it too, in the same statement:
   * a write of its own would give the tenant a new data version (the API's response cache would answer again from the
   * database), at each creation and scheduled snapshot. The leading scheduler realigns every row when it starts (the
   * config may have changed) and fills in any row still without one.
   */
  @BigIntColumn({ nullable: true })
  nextScheduledAt: number | null;

  /**
   * While the instance is DESTROYING: when its deletion claimed it (by databaseTime's clock), until that deletion found
   * no operation on its data and committed to it (null from then on). See InstanceService.remove.
   */
  @BigIntColumn({ nullable: true })
  deletionClaimedAt: number | null;
}
