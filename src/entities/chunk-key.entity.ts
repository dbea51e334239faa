import { Column, Entity, PrimaryColumn } from 'typeorm';
import { BigIntColumn } from './columns';

/** A tenant's chunk keys (data key and id key), sealed by a master key. The row decides which keys a tenant has. */
@Entity('chunk_keys')
export class ChunkKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  tenantId: string;

  /** The master key that sealed them. */
  @Column({ type: 'varchar', length: 16 })
  masterKeyId: string;

  /** base64 of MasterKey.seal(data key ‖ id key). */
  @Column({ type: 'varchar', length: 200 })
  sealedKeys: string;

  @BigIntColumn()
  createdAt: number;
}
