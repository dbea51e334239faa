import { Entity, PrimaryColumn, Column } from 'typeorm';
import { BigIntColumn, IdColumn } from './columns';

export type Role = 'ADMIN' | 'MEMBER' | 'VIEWER';

/** The secret itself is never stored: only its SHA-256 (secrets are 256-bit random, so a slow hash adds nothing). */
@Entity('api_keys')
export class ApiKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @IdColumn()
  tenantId: string;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  @Column({ type: 'varchar', length: 10 })
  role: Role;

  @Column({ type: 'varchar', length: 64, unique: true })
  secretHash: string;

  @BigIntColumn()
  createdAt: number;

  @BigIntColumn({ nullable: true })
  revokedAt: number | null;

  /** Recorded at most once a minute per key (API_KEY_USAGE_RESOLUTION_MS), not on every request. */
  @BigIntColumn({ nullable: true })
  lastUsedAt: number | null;
}
