import { Column, Entity, PrimaryColumn } from 'typeorm';
import { BigIntColumn } from './columns';

/**
 * The id of the data dir this deployment's servers share (one row, slot 'current'), also written in the dir itself
 * (storage/shared-data-dir.ts): a server booted on a dir without it is refused. Only with DATABASE_URL: with embedded
 * metadata, the database is in the data dir.
 */
@Entity('shared_data_dir')
export class SharedDataDirEntity {
  @PrimaryColumn({ type: 'varchar', length: 16 })
  slot: string;

  @Column({ type: 'varchar', length: 36 })
  dataDirId: string;

  /** When the first server marked it. */
  @BigIntColumn()
  since: number;
}
