import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { BigIntColumn, IdColumn, JsonColumn } from './columns';

/** A tenant's own S3 bucket that snapshots are exported to; its keys are sealed under the master key. */
@Entity('export_destinations')
@Index('idx_export_destinations_tenant', ['tenantId', 'createdAt'])
export class ExportDestinationEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  /** s3://bucket/optional/prefix */
  @Column({ type: 'varchar', length: 600 })
  url: string;

  @Column({ type: 'varchar', length: 500, nullable: true })
  endpoint: string | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  region: string | null;

  @JsonColumn()
  autoExportInstanceIds: string[];

  /** The master key the credentials are sealed under. */
  @Column({ type: 'varchar', length: 64 })
  masterKeyId: string;

  /** base64 of MasterKey.seal(JSON {accessKeyId, secretAccessKey}); never leaves the server. */
  @Column({ type: 'text' })
  sealedCredentials: string;

  @BigIntColumn()
  createdAt: number;

  @BigIntColumn({ nullable: true })
  lastExportAt: number | null;

  @Column({ type: 'varchar', length: 1000, nullable: true })
  lastError: string | null;
}
