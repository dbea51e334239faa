// Attempts of one SNAPSHOT operation against each other, on the product's SQLite metadata database: an attempt that
// outlived its lease (its process stalled, or cut off from the database, while another replica put the operation back
// and ran the next attempt to its end) must not, once it resumes, take the snapshot that attempt completed back.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { InstanceEntity } from '../../src/entities/instance.entity';
import type { OperationEntity } from '../../src/entities/operation.entity';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import type { JobContext } from '../../src/jobs/operation-handler';
import type { BackupService } from '../../src/services/backup.service';
import { InstanceService } from '../../src/services/instance.service';
import { SnapshotOperationHandler, SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { insertInstanceRow } from '../support/instance-rows';
import { sqliteMetadataPerTest } from '../support/metadata-database';

describe('snapshot attempts', function () {
  this.timeout(30_000);
  let db: DataSource;
  sqliteMetadataPerTest('snapgraph-snapshot-attempts-', (opened) => (db = opened));

  it('a stale attempt that resumes after the next one completed the snapshot leaves it COMPLETED', async () => {
    const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    const instances = new InstanceService(db, config, {} as GraphStoreProvider, events);
    // The capture of a stale attempt goes as far as its first look at the signal (the change log's flush).
    const backups = {
      capture: async (_instance: InstanceEntity, context: JobContext) => {
        context.signal.throwIfAborted();
        throw new Error('a stale attempt captured a restore point');
      },
    } as unknown as BackupService;
    const snapshots = new SnapshotService(db, config, instances, {} as EncryptedBlobStore, events, () => undefined, backups);
    const handler = new SnapshotOperationHandler(snapshots, instances, async () => undefined);
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    await insertInstanceRow(db, { id: instanceId, tenantId, name: 'snapshotted' });
    // Completed by the operation's next attempt, which another replica ran to its end.
    const stats = { nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0 };
    const snapshot = Object.assign(snapshots.newSnapshot((await instances.reload(instanceId))!, 'ON_DEMAND', null), {
      status: 'COMPLETED',
      completedAt: Date.now(),
      contents: stats,
      restorePointId: randomUUID(),
    } satisfies Partial<SnapshotEntity>);
    await db.getRepository(SnapshotEntity).insert(snapshot);

    // The first attempt's process resumes, its lease long gone.
    const stale = { id: randomUUID(), tenantId, instanceId, kind: 'SNAPSHOT', snapshotId: snapshot.id, params: null, attempt: 1 } as unknown as OperationEntity;
    const lost = new AbortController();
    lost.abort(new Error('the operation lease was lost'));
    const context: JobContext = {
      signal: lost.signal,
      progress: () => undefined,
      saveParams: async () => lost.signal.throwIfAborted(),
      enterPointOfNoReturn: async () => lost.signal.throwIfAborted(),
      underLease: async () => lost.signal.throwIfAborted() as never,
    };
    await handler.run(stale, context).then(
      () => assert.fail('the stale attempt succeeded'),
      () => undefined,
    );

    const row = await db.getRepository(SnapshotEntity).findOneByOrFail({ id: snapshot.id });
    assert.equal(row.status, 'COMPLETED', 'the stale attempt took the completed snapshot back');
  });
});
