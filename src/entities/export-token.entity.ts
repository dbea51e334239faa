import { Entity, PrimaryColumn, Column, Index } from 'typeorm';
import { BigIntColumn, IdColumn } from './columns';

/** A download link for one snapshot. Only the token's SHA-256 is stored; the URL is shown once. */
@Entity('export_tokens')
@Index('idx_export_tokens_expiry', ['expiresAt'])
export class ExportTokenEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @IdColumn()
  snapshotId: string;

  /** The key that asked for the link: revoking it ends the link. Null for links made before keys were recorded. */
  @IdColumn({ nullable: true })
  apiKeyId: string | null;

  @Column({ type: 'varchar', length: 64, unique: true })
  tokenHash: string;

  @Column({ type: 'varchar', length: 300 })
  fileName: string;

  /** ARCHIVE, or the foreign graph file format of exportSnapshotAs (graph-files/). */
  @Column({ type: 'varchar', length: 20, default: 'ARCHIVE' })
  format: string;

  /** A foreign format's file: its size and SHA-256 (it is deterministic); null for an archive (the snapshot's). */
  @BigIntColumn({ nullable: true })
  sizeBytes: number | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  sha256: string | null;

  @BigIntColumn()
  createdAt: number;

  @BigIntColumn()
  expiresAt: number;
}
