import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import type { GraphStats } from '../graph/records';
import { BigIntColumn, IdColumn, JsonColumn } from './columns';

export type RestorePointKind = 'BASE' | 'DELTA';

/**
 * One point an instance's data can be brought back to: a physical base image of its store, or the rows changed since
 * a parent point. Its manifest (the chunks that hold it) is an encrypted blob; snapshots point at restore points, and a
 * restore point lives while a snapshot needs it or one of its descendants.
 */
@Entity('restore_points')
// The parent of the next delta: the newest point of the store's epoch.
@Index('idx_restore_points_epoch', ['tenantId', 'epoch', 'seq'])
@Index('idx_restore_points_parent', ['parentId'])
export class RestorePointEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  /** The instance whose store it was taken from. */
  @IdColumn()
  instanceId: string;

  @Column({ type: 'varchar', length: 8 })
  kind: RestorePointKind;

  @IdColumn({ nullable: true })
  parentId: string | null;

  /** The base at the root of its chain (itself for a base). */
  @IdColumn()
  baseId: string;

  /** The store lineage it belongs to (a new store, or a restored one, starts a new epoch) and its change sequence. */
  @BigIntColumn()
  epoch: number;

  @BigIntColumn()
  seq: number;

  /** Deltas from the base up to and including this point (0 for a base). */
  @Column({ type: 'integer' })
  chainLength: number;

  /** Rows (upserts and deletions) in the deltas from the base up to and including this point: what a restore replays. */
  @BigIntColumn()
  chainDeltaLines: number;

  /** Stored bytes of the deltas from the base up to and including this point. */
  @BigIntColumn()
  chainDeltaBytes: number;

  /** Bytes at rest this point added: chunks no earlier point of the tenant held, and its manifest. */
  @BigIntColumn()
  addedBytes: number;

  /** Stored size of its manifest (part of addedBytes). */
  @BigIntColumn()
  manifestBytes: number;

  @Column({ type: 'varchar', length: 200 })
  manifestKey: string;

  @JsonColumn()
  stats: GraphStats;

  @BigIntColumn()
  createdAt: number;
}
