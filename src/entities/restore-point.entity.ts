import { randomUUID } from 'node:crypto';
import { Entity, PrimaryColumn, Column, Index, type Repository } from 'typeorm';
import type { GraphStats } from '../graph/records';
import { BigIntColumn, IdColumn, JsonColumn } from './columns';

export type RestorePointKind = 'BASE' | 'DELTA' | 'LOG';

/**
 * One point an instance's data can be brought back to: a physical base image of its store (BASE), a position on its
 * change log (LOG: the newest base of its epoch at or before it, or the epoch's anchor, then the log up to its seq), or
 * the rows changed since a parent point (DELTA, written by the previous release; still restorable). BASE and DELTA
 * points have a manifest (the chunks that hold them) in an encrypted blob. Snapshots point at restore points; a point
 * lives while a snapshot, a descendant, an epoch built from it or a restore window needs it.
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

  /** The base at the root of its chain (itself for a base); for LOG, the base its replay starts from (null: the anchor). */
  @IdColumn({ nullable: true })
  baseId: string | null;

  /** The store lineage it belongs to (a new store, or a restored one, starts a new epoch) and its change sequence. */
  @BigIntColumn()
  epoch: number;

  @BigIntColumn()
  seq: number;

  /** The commit time of the write at seq (null for seq 0, before any write of the epoch). */
  @BigIntColumn({ nullable: true })
  at: number | null;

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

  /** BASE and DELTA only. */
  @Column({ type: 'varchar', length: 200, nullable: true })
  manifestKey: string | null;

  @JsonColumn()
  stats: GraphStats;

  /**
   * BASE only: why it cannot be read (a verification, or a read that failed, found chunks of it damaged or missing): the
   * restore window leaves out the moments built on it (ChangeLogService.reachOf and anchorDamage). Kept when a later
   * base stores the data of those chunks again, which mends it: the window then leaves out moments that could be built,
   * rather than offer moments that cannot.
   */
  @Column({ type: 'varchar', length: 1000, nullable: true })
  damage: string | null;

  @BigIntColumn()
  createdAt: number;
}

/** A point on an epoch's change log (LOG): the newest base at or before `seq` (`baseId`), then the log up to `seq`. */
export function logRestorePoint(
  fields: Pick<RestorePointEntity, 'tenantId' | 'instanceId' | 'baseId' | 'epoch' | 'seq' | 'at' | 'addedBytes' | 'stats'>,
): RestorePointEntity {
  return Object.assign(new RestorePointEntity(), {
    ...fields,
    id: randomUUID(),
    kind: 'LOG',
    parentId: null,
    chainLength: 0,
    chainDeltaLines: 0,
    chainDeltaBytes: 0,
    manifestBytes: 0,
    manifestKey: null,
    damage: null,
    createdAt: Date.now(),
  } satisfies RestorePointEntity);
}

/**
 * The base a point at `seq` of an epoch builds on: the newest BASE at or before it; of two at one seq, the one taken
 * last (a base taken after verification found one damaged holds the same position, and a point must build on the
 * sound one).
 */
export function newestBase(points: Repository<RestorePointEntity>, epoch: number, seq: number): Promise<RestorePointEntity | null> {
  return points
    .createQueryBuilder('p')
    .where("p.epoch = :epoch AND p.kind = 'BASE' AND p.seq <= :seq", { epoch, seq })
    .orderBy('p.seq', 'DESC')
    .addOrderBy('p.createdAt', 'DESC')
    .getOne();
}
