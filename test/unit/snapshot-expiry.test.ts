// A snapshot's expiresAt is when retention removes it (docs/api.md), for every snapshot retention removes by time:
// failed ones as well as completed ones.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { resolveTierPolicies, scheduleOf, type Tier } from '../../src/config/tiers';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { SnapshotEntity, type SnapshotStatus } from '../../src/entities/snapshot.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { snapshotsToRemove } from '../../src/scheduler/retention';
import type { BackupService } from '../../src/services/backup.service';
import { InstanceService } from '../../src/services/instance.service';
import { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { insertInstanceRow } from '../support/instance-rows';

const DAY = 24 * 3600_000;

describe('snapshot expiresAt', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  const tenantId = randomUUID();

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-expiry-'));
    db = createMetadataDataSource({ dataDir: dir });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
  });

  afterEach(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  function services(tiers: unknown = {}): { snapshots: SnapshotService; config: AppConfig } {
    const config = { tiers: resolveTierPolicies(tiers), bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    const instances = new InstanceService(db, config, {} as GraphStoreProvider, events);
    const snapshots = new SnapshotService(db, config, instances, {} as EncryptedBlobStore, events, () => undefined, {} as BackupService);
    return { snapshots, config };
  }

  async function snapshotOf(tier: Tier, status: SnapshotStatus, expiresAt: number | null = null): Promise<SnapshotEntity> {
    const instanceId = await insertInstanceRow(db, { tenantId, tier, memoryGB: 1 });
    const createdAt = Date.now() - 60_000;
    const snapshot = Object.assign(new SnapshotEntity(), {
      id: randomUUID(),
      tenantId,
      instanceId,
      profile: 'SCHEDULED',
      status,
      createdAt,
      completedAt: status === 'COMPLETED' ? createdAt + 100 : null,
      expiresAt,
      description: null,
      engineVersion: 'V5',
      contents: null,
      error: null,
    } satisfies Partial<SnapshotEntity>);
    await db.getRepository(SnapshotEntity).insert(snapshot);
    return snapshot;
  }

  const stored = async (id: string) => (await db.getRepository(SnapshotEntity).findOneByOrFail({ id })).expiresAt;

  it('is set when a snapshot fails on a tier with retention, to when retention removes it', async () => {
    const { snapshots, config } = services();
    const snapshot = await snapshotOf('PROFESSIONAL', 'IN_PROGRESS');
    await snapshots.failSnapshot(snapshot.id, 'the capture failed');
    const schedule = scheduleOf(config.tiers.PROFESSIONAL);
    const removedAt = snapshot.createdAt + 7 * DAY;
    const failed = { ...snapshot, status: 'FAILED' as const };
    assert.deepEqual(snapshotsToRemove([failed], schedule, removedAt - 1), [], 'retention removes it no earlier');
    assert.deepEqual(snapshotsToRemove([failed], schedule, removedAt), [snapshot.id], 'retention removes it then');
    assert.equal(await stored(snapshot.id), removedAt, 'expiresAt, shown by the API, says so');
  });

  it('stays null when a snapshot fails on FREE, where it goes only when replaced', async () => {
    const { snapshots } = services();
    const snapshot = await snapshotOf('FREE', 'PENDING');
    await snapshots.failSnapshot(snapshot.id, 'the capture failed');
    assert.equal(await stored(snapshot.id), null);
  });
});
