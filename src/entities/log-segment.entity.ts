import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import { BigIntColumn, IdColumn } from './columns';

/**
 * A run of consecutive change-log entries of one epoch, stored as an encrypted blob. Each names the sha256 of the
 * previous segment's plaintext (null for the epoch's first), so reading an epoch's segments in order proves the chain.
 */
@Entity('log_segments')
@Index('uq_log_segments_epoch_first', ['epoch', 'firstSeq'], { unique: true })
@Index('idx_log_segments_tenant', ['tenantId'])
export class LogSegmentEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @IdColumn()
  instanceId: string;

  @BigIntColumn()
  epoch: number;

  @BigIntColumn()
  firstSeq: number;

  @BigIntColumn()
  lastSeq: number;

  /** Commit times of its first and last entries. */
  @BigIntColumn()
  firstAt: number;

  @BigIntColumn()
  lastAt: number;

  /** Tuple lines it holds (what a replay applies). */
  @BigIntColumn()
  lines: number;

  /** Plaintext bytes (what a replay reads). */
  @BigIntColumn()
  plainBytes: number;

  @BigIntColumn()
  storedBytes: number;

  @Column({ type: 'varchar', length: 64 })
  sha256: string;

  @Column({ type: 'varchar', length: 64, nullable: true })
  prevSha256: string | null;

  @Column({ type: 'varchar', length: 300 })
  blobKey: string;

  @BigIntColumn()
  createdAt: number;
}
