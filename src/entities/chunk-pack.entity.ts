import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { BigIntColumn } from './columns';

/**
 * WRITING: a writer is filling it (the row exists before the blob, so a crashed writer's blob is always found);
 * SEALED: its chunks are indexed; CONDEMNED: no index row points into it any more, the blob is kept for a grace
 * period for readers and writers that located a chunk in it before; DELETING: its blob is being deleted.
 */
export type ChunkPackState = 'WRITING' | 'SEALED' | 'CONDEMNED' | 'DELETING';

/** One pack blob of a tenant's chunk store (`tenants/<tenantId>/chunks/packs/<id>`). */
@Entity('chunk_packs')
@Index('idx_chunk_packs_state', ['tenantId', 'state'])
export class ChunkPackEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  tenantId: string;

  @PrimaryColumn({ type: 'varchar', length: 32 })
  id: string;

  @Column({ type: 'varchar', length: 16 })
  state: ChunkPackState;

  /** Stored size of the blob; 0 while WRITING. */
  @BigIntColumn()
  sizeBytes: number;

  @Column({ type: 'integer' })
  chunkCount: number;

  @BigIntColumn()
  createdAt: number;

  /** Last sign of life of its writer while WRITING; when it was condemned while CONDEMNED (epoch ms). */
  @BigIntColumn()
  touchedAt: number;
}
