import { Entity, PrimaryColumn, Column } from 'typeorm';
import { BigIntColumn } from './columns';

@Entity('tenants')
export class TenantEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 })
  id: string;

  @Column({ type: 'varchar', length: 100, unique: true })
  name: string;

  @BigIntColumn()
  createdAt: number;
}
