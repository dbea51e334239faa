import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import { BigIntColumn, bigintAsNumber, IdColumn } from './columns';

/**
 * What an epoch's store held at seq 0, before its first logged write:
 * EMPTY (a new instance), ORIGIN (a restore point written back: `originPointId`), BASE (a base image taken at seq 0,
 * after an archive was loaded), or NONE (not known: a store older than the change log, until its first base).
 */
export type EpochAnchor = 'EMPTY' | 'ORIGIN' | 'BASE' | 'NONE';

/**
 * One history of an instance's store: a new store or a restored one starts an epoch; its writes are the change log
 * of that epoch (seq 1, 2, …), shipped to backup storage as segments. An instance's epochs follow each other in time:
 * the current one has no endedAt.
 */
@Entity('store_epochs')
@Index('idx_store_epochs_instance', ['instanceId', 'startedAt'])
export class StoreEpochEntity {
  @PrimaryColumn({ type: 'bigint', transformer: bigintAsNumber })
  epoch: number;

  @IdColumn()
  tenantId: string;

  @IdColumn()
  instanceId: string;

  @Column({ type: 'varchar', length: 8 })
  anchor: EpochAnchor;

  /** ORIGIN: the restore point the store was built from. */
  @IdColumn({ nullable: true })
  originPointId: string | null;

  @BigIntColumn()
  startedAt: number;

  /** When a restore replaced this store (or the instance was deleted); null while it is the instance's store. */
  @BigIntColumn({ nullable: true })
  endedAt: number | null;

  /** The newest seq whose entry is in a recorded segment (0: none yet). */
  @BigIntColumn({ default: 0 })
  shippedSeq: number;

  /** The sha256 of the newest segment's plaintext: the next segment names it (the chain). */
  @Column({ type: 'varchar', length: 64, nullable: true })
  headSha256: string | null;

  /** Every write committed at or before this moment is in a recorded segment (the restore window's latest). */
  @BigIntColumn({ nullable: true })
  shippedThrough: number | null;

  /** Set when a segment of this epoch was found damaged or missing: the window starts past it. */
  @Column({ type: 'varchar', length: 1000, nullable: true })
  damage: string | null;

  /** The first seq the newest damage makes unreachable (a restore past it needs a base past the damaged stretch: ChangeLogService.damagedThroughSeq). */
  @BigIntColumn({ nullable: true })
  damagedFromSeq: number | null;

  /**
   * The newest seq collection has removed from this epoch's log (null: none): the log after it is all still stored, so
   * the window reaches no further back than the first base at or after it (ChangeLogService.reachOf), whatever length
   * the window is configured to have now.
   */
  @BigIntColumn({ nullable: true })
  collectedThroughSeq: number | null;
}
