// The base policy's state of an instance that is deleted: its retry of a base it could not take (the blob store full,
// say) is forgotten with it, also when that base fails while the deletion waits for it.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import type { ChunkStore } from '../../src/chunks';
import type { InstanceEntity } from '../../src/entities/instance.entity';
import type { StoreEpochEntity } from '../../src/entities/store-epoch.entity';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { createLogger } from '../../src/logging/logger';
import { Metrics } from '../../src/observability/metrics';
import { BackupService } from '../../src/services/backup.service';
import type { ChangeLogService, DamagedListener } from '../../src/services/change-log.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { eventually } from '../support/wait';
import { migratedSqliteMetadata } from '../support/metadata-database';

describe('the base policy of a deleted instance', function () {
  this.timeout(20_000);
  let dir: string;
  let db: DataSource;
  let backups: BackupService;
  /** Each base attempt: the test fails it (the blob store away) when it likes. */
  let attempts: { fail: () => void }[];
  let damaged: DamagedListener;

  const instance = { id: '00000000-0000-4000-8000-000000000001', tenantId: '00000000-0000-4000-8000-000000000002', status: 'RUNNING', storeGeneration: 1 };
  // Damage with no base after it: the policy takes a base at once, and retries it when it fails.
  const epoch = { epoch: 7, instanceId: instance.id, tenantId: instance.tenantId, anchor: 'EMPTY', endedAt: null, damagedFromSeq: 1 } as unknown as StoreEpochEntity;
  /** What the policy remembers of the instance: a base it could not take, a look at it put off. */
  const remembered = () => {
    const state = backups as unknown as { failedBases: Map<string, number>; deferredBases: Map<string, NodeJS.Timeout> };
    return { failedBases: state.failedBases.has(instance.id), deferredBases: state.deferredBases.has(instance.id) };
  };

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-base-policy-'));
    attempts = [];
    const log = {
      onShipped: () => undefined,
      onDamaged: (listener: DamagedListener) => (damaged = listener),
      damagedThroughSeq: async () => 1,
      epoch: async () => epoch,
    } as unknown as ChangeLogService;
    const stores = {
      use: () => new Promise((_resolve, reject) => attempts.push({ fail: () => reject(new Error('the blob store is away')) })),
    } as unknown as GraphStoreProvider;
    const instances = { reload: async () => instance as unknown as InstanceEntity } as unknown as InstanceService;
    backups = new BackupService(db, {} as ChunkStore, {} as EncryptedBlobStore, stores, instances, log, createLogger('silent'), new Metrics(), {
      scratchDir: join(dir, 'scratch'),
      collectGraceMs: 1000,
      listBlobs: async function* () {},
    });
  });

  afterEach(async () => {
    backups.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('forgets a base it could not take when the instance is deleted', async () => {
    damaged(instance.id, epoch);
    await eventually(() => attempts.length === 1, { intervalMs: 10, what: 'a base after the damage' });
    attempts[0].fail();
    await eventually(() => remembered().failedBases, { intervalMs: 10, what: 'the failed base to be retried later' });
    await backups.settle(instance.id);
    assert.deepEqual(remembered(), { failedBases: false, deferredBases: false });
  });

  it('forgets a base that fails while the deletion waits for it, and does not try it again', async () => {
    damaged(instance.id, epoch);
    await eventually(() => attempts.length === 1, { intervalMs: 10, what: 'a base after the damage' });
    const settling = backups.settle(instance.id);
    attempts[0].fail();
    await settling;
    assert.deepEqual(remembered(), { failedBases: false, deferredBases: false });
  });
});
