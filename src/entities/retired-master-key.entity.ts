import { Entity, PrimaryColumn } from 'typeorm';
import { BigIntColumn } from './columns';

/**
 * A master key that a server was booted with as a previous key (SNAPGRAPH_PREVIOUS_MASTER_KEYS): data may still be
 * under it until `snapgraph rotate-master-key` has moved everything, which then forgets it. Until then a boot without
 * it is refused: the boot's own check samples what is stored, and sees the rewrapped chunk keys, not the blobs left.
 */
@Entity('retired_master_keys')
export class RetiredMasterKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 16 })
  keyId: string;

  /** When a boot first named it. */
  @BigIntColumn()
  retiredAt: number;
}
