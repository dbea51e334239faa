import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { BigIntColumn } from './columns';

/**
 * Where one stored chunk of a tenant lives: a row of the chunk index. The id is the hex HMAC of the plaintext under
 * the tenant's id key, so equal data of one tenant has one row and tenants never share rows.
 */
@Entity('chunks')
@Index('idx_chunks_pack', ['tenantId', 'packId'])
export class ChunkEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  tenantId: string;

  @PrimaryColumn({ type: 'varchar', length: 64 })
  id: string;

  @Column({ type: 'varchar', length: 32 })
  packId: string;

  /** Byte offset of the stored chunk (nonce ‖ ciphertext ‖ tag) in its pack. */
  @BigIntColumn()
  offset: number;

  /** Stored bytes. */
  @Column({ type: 'integer' })
  length: number;

  @Column({ type: 'integer' })
  plainLength: number;

  /**
   * When a writer last stored or deduplicated against this chunk (epoch ms). Collection spares chunks touched within
   * its grace period, so a snapshot whose manifest is not yet recorded as live keeps its chunks.
   */
  @BigIntColumn()
  touchedAt: number;
}
