import { Column, Entity, PrimaryColumn } from 'typeorm';
import { BigIntColumn } from './columns';

/**
 * The master key this deployment's servers write under (one row, slot 'current'): recorded by the first boot, moved
 * on by a boot that names it as a previous key (a rotation) or by `snapgraph rotate-master-key`. A boot whose keys do
 * not include it is refused: it would write what the others cannot read, even while nothing is stored yet for the
 * check of stored data (stored-master-keys.ts) to go by.
 */
@Entity('current_master_key')
export class CurrentMasterKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 16 })
  slot: string;

  @Column({ type: 'varchar', length: 16 })
  keyId: string;

  /** When it became the deployment's key. */
  @BigIntColumn()
  since: number;
}
