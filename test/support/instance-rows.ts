// An instance as its metadata row alone, for unit tests of services that work on the metadata database: a FREE
// instance of 1 GB, RUNNING and AVAILABLE on store generation 1, unless `fields` says otherwise.
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { InstanceEntity } from '../../src/entities/instance.entity';

export async function insertInstanceRow(db: DataSource, fields: Partial<InstanceEntity> & Pick<InstanceEntity, 'tenantId'>): Promise<string> {
  const id = fields.id ?? randomUUID();
  await db.getRepository(InstanceEntity).insert({
    name: 'instance',
    tier: 'FREE',
    memoryGB: 1,
    storageGB: 2,
    engineVersion: 'V5',
    status: 'RUNNING',
    availability: 'AVAILABLE',
    sourceSnapshotId: null,
    storeGeneration: 1,
    createdAt: Date.now(),
    lastScheduledAt: null,
    ...fields,
    id,
  });
  return id;
}
