// The base that a verification which found a base damaged starts of the instance's store: taken also when another base
// was under way and failed (a base under way that deduplicated against the damaged chunks fails: see ChunkWriter).
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
import { BackupService, type Manifest } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { eventually } from '../support/wait';
import { migratedSqliteMetadata } from '../support/metadata-database';

describe('the base a verification starts after finding damage', function () {
  this.timeout(20_000);
  let dir: string;
  let db: DataSource;
  let backups: BackupService;
  /** Each base attempt: the test fails it when it likes. */
  let attempts: { fail: () => void }[];
  let releaseCapture: (() => void) | undefined;

  const instance = { id: '00000000-0000-4000-8000-000000000011', tenantId: '00000000-0000-4000-8000-000000000012', status: 'RUNNING', storeGeneration: 1 };
  const epoch = { epoch: 9, instanceId: instance.id, tenantId: instance.tenantId, anchor: 'EMPTY', endedAt: null } as unknown as StoreEpochEntity;
  const damagedBase = { id: 'damaged', tenantId: instance.tenantId, instanceId: instance.id, kind: 'BASE', epoch: 9, seq: 5 } as unknown as Manifest;

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-rebase-'));
    attempts = [];
    const log = {
      onShipped: () => undefined,
      onDamaged: () => undefined,
      epoch: async () => epoch,
      flush: async () => ({ position: { seq: 5, at: 0, stats: {} }, epoch }),
      // A snapshot's capture weighs the log for a base of its own: held here until the test lets it go.
      sizeAfter: () => new Promise((resolve) => (releaseCapture = () => resolve({ plainBytes: 0, lines: 0 }))),
      storedBytesBetween: async () => 0,
    } as unknown as ChangeLogService;
    const stores = {
      use: () => new Promise((_resolve, reject) => attempts.push({ fail: () => reject(new Error('a deduplicated chunk is damaged')) })),
    } as unknown as GraphStoreProvider;
    const instances = {
      reload: async () => instance as unknown as InstanceEntity,
      stats: async () => ({ storeSizeBytes: 0, nodeCount: 0, relationshipCount: 0 }),
    } as unknown as InstanceService;
    releaseCapture = undefined;
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

  it('is taken once a base under way at the verification fails', async () => {
    const underWay = backups.takeBase(instance as unknown as InstanceEntity);
    await eventually(() => attempts.length === 1, { intervalMs: 10, what: 'the base under way' });
    await (backups as unknown as { rebaseAfterDamage(manifest: Manifest): Promise<void> }).rebaseAfterDamage(damagedBase);
    attempts[0].fail();
    assert.equal(await underWay, null);
    await eventually(() => attempts.length === 2, { intervalMs: 10, timeoutMs: 3000, what: 'a base after the damage' });
    attempts[1].fail();
    await backups.settle(instance.id);
  });

  it('is taken once a base under way fails, also when a snapshot of the instance waited for that base', async () => {
    const underWay = backups.takeBase(instance as unknown as InstanceEntity);
    await eventually(() => attempts.length === 1, { intervalMs: 10, what: 'the base under way' });
    // A snapshot begins meanwhile: it waits for the base under way (it may be its base), then decides on one.
    const context = { progress: () => undefined, signal: new AbortController().signal, saveParams: async () => undefined, enterPointOfNoReturn: async () => undefined, underLease: () => assert.fail('not run under a lease') };
    const snapshot = backups.capture(instance as unknown as InstanceEntity, context);
    await (backups as unknown as { rebaseAfterDamage(manifest: Manifest): Promise<void> }).rebaseAfterDamage(damagedBase);
    attempts[0].fail();
    assert.equal(await underWay, null);
    await eventually(() => releaseCapture !== undefined, { intervalMs: 10, what: "the snapshot's decision" });
    releaseCapture!();
    await snapshot;
    await eventually(() => attempts.length === 2, { intervalMs: 10, timeoutMs: 3000, what: 'a base after the damage' });
    attempts[1].fail();
    await backups.settle(instance.id);
  });
});
