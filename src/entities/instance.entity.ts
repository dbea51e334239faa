import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import type { Tier } from '../config/tiers';
import type { EngineVersion } from '../graph/records';
import { BigIntColumn, IdColumn } from './columns';

export type InstanceStatus = 'CREATING' | 'RUNNING' | 'RESTORING' | 'DESTROYING' | 'FAILED';
export type Availability = 'AVAILABLE' | 'READ_ONLY' | 'UNAVAILABLE';

@Entity('instances')
@Index('idx_instances_tenant', ['tenantId', 'createdAt'])
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
}
