// An instance or a snapshot as its metadata row alone, for unit tests of services that work on the metadata database:
// rows with everything a test does not say filled in as an ordinary one would be.
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';

/** A FREE instance of 1 GB, RUNNING and AVAILABLE on store generation 1, unless `fields` says otherwise. */
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

/** What a snapshot of one node labelled A holds. */
export const ONE_NODE_CONTENTS = { nodeCount: 1, relationshipCount: 0, labels: [{ name: 'A', count: 1 }], relationshipTypes: [], storeSizeBytes: 4096 };

/**
 * A COMPLETED ON_DEMAND snapshot taken 30 s ago and completed a second after it was taken, with no expiry and no
 * recorded contents, unless `fields` says otherwise.
 */
export async function insertSnapshotRow(
  db: DataSource,
  fields: Partial<SnapshotEntity> & Pick<SnapshotEntity, 'tenantId' | 'instanceId'>,
): Promise<string> {
  const id = fields.id ?? randomUUID();
  const createdAt = fields.createdAt ?? Date.now() - 30_000;
  await db.getRepository(SnapshotEntity).insert({
    profile: 'ON_DEMAND',
    status: 'COMPLETED',
    completedAt: createdAt + 1_000,
    expiresAt: null,
    description: null,
    engineVersion: 'V5',
    contents: null,
    error: null,
    ...fields,
    createdAt,
    id,
  });
  return id;
}
