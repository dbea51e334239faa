// A removed snapshot's snapshotUpdated event goes out as soon as its row is gone: the deletions in the blob store that
// follow (its blob from an earlier release, its export copies) can take hundreds of milliseconds on a loaded machine,
// and a client that waits for the event to know the snapshot is gone need not wait for them.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';
import type { EventBus } from '../../src/events/event-bus';
import type { InstanceService } from '../../src/services/instance.service';
import type { BackupService } from '../../src/services/backup.service';
import { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { insertInstanceRow, insertSnapshotRow, ONE_NODE_CONTENTS } from '../support/instance-rows';
import { sqliteMetadataPerTest } from '../support/metadata-database';

describe('the removal of a snapshot', function () {
  this.timeout(30_000);
  let db: DataSource;
  sqliteMetadataPerTest('snapgraph-removal-event-', (opened) => (db = opened));

  it('publishes its removal event once the row is gone, without waiting for the deletions in the blob store', async () => {
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    await insertInstanceRow(db, { id: instanceId, tenantId, tier: 'PROFESSIONAL', createdAt: Date.now() - 60_000 });
    const id = randomUUID();
    await insertSnapshotRow(db, {
      id,
      tenantId,
      instanceId,
      profile: 'SCHEDULED',
      expiresAt: Date.now() - 1_000,
      blobKey: `tenants/${tenantId}/snapshots/${id}.sgz`,
      contents: ONE_NODE_CONTENTS,
    });
    // The blob store holds every deletion until the test lets it go on.
    let letDeletionsGoOn!: () => void;
    const held = new Promise<void>((resolve) => (letDeletionsGoOn = resolve));
    const blobs = { delete: () => held } as unknown as EncryptedBlobStore;
    const backups = { forgetExport: () => held, collectSoon: () => undefined } as unknown as BackupService;
    let announced!: (payload: { snapshotId: string; removed: boolean }) => void;
    const removalEvent = new Promise<{ snapshotId: string; removed: boolean }>((resolve) => (announced = resolve));
    const events = { pubSub: { publish: (_topic: string, _id: string, payload: { snapshotId: string; removed: boolean }) => announced(payload) } } as unknown as EventBus;
    const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const snapshots = new SnapshotService(db, config, {} as InstanceService, blobs, events, () => undefined, backups);
    const snapshot = (await db.getRepository(SnapshotEntity).findOneBy({ id }))!;

    const removal = snapshots.deleteUnlessRead(snapshot, { unlessRestoring: true, unlessLinked: true });
    const event = await removalEvent;
    assert.deepEqual({ snapshotId: event.snapshotId, removed: event.removed }, { snapshotId: id, removed: true });
    assert.equal(await db.getRepository(SnapshotEntity).existsBy({ id }), false, 'the row is gone when the event goes out');
    letDeletionsGoOn();
    assert.equal(await removal, 'deleted');
  });
});
