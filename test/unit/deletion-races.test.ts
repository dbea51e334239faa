// Deletions against requests that would read the data being deleted, on the services and the metadata database
// (SQLite, and PostgreSQL when it is there). A request that passed its own checks just before deleteInstance claimed
// the instance (or before deleteSnapshot looked for operations reading the snapshot), and queues its operation just
// after the deletion looked, must not be accepted and then fail with NOT_FOUND: exactly one of the two wins, the other
// is refused at once.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DataSource, EntityManager, In } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { OperationEntity } from '../../src/entities/operation.entity';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import { createLogger } from '../../src/logging/logger';
import { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import type { BackupService } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import { ExportDestinationEntity } from '../../src/entities/export-destination.entity';
import { ExportDestinationService } from '../../src/services/export-destination.service';
import { InstanceService } from '../../src/services/instance.service';
import type { Principal } from '../../src/services/principal';
import { RestoreService } from '../../src/services/restore.service';
import { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { createMigratedTestDatabase, describePostgres, type TestDatabase } from '../support/postgres';
import { insertInstanceRow, insertSnapshotRow, ONE_NODE_CONTENTS } from '../support/instance-rows';

type Backend = { name: 'SQLite' } | { name: 'PostgreSQL'; adminUrl(): string };

describe('deletion races on SQLite metadata', () => deletionRaces({ name: 'SQLite' }));
describePostgres('deletion races on PostgreSQL metadata', (postgres) => deletionRaces({ name: 'PostgreSQL', adminUrl: () => postgres.adminUrl() }));

function deletionRaces(backend: Backend) {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  let instances: InstanceService;
  let snapshots: SnapshotService;
  let restores: RestoreService;
  let exports: ExportDestinationService;
  /** Opened by the test: until then, a request that has passed its own checks waits before its transaction. */
  let letRequestGoOn: () => void;
  let requestChecked: Promise<void>;
  const tenantId = randomUUID();
  const principal: Principal = { tenantId, tenantName: 'racing', role: 'ADMIN', apiKeyId: 'key', apiKeyName: 'key' };
  const restoreExists = EntityManager.prototype.exists;
  const restoreSave = EntityManager.prototype.save;
  const restoreFind = EntityManager.prototype.find;

  beforeEach(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-deletion-races-'));
    database = backend.name === 'PostgreSQL' ? await createMigratedTestDatabase(backend.adminUrl()) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    instances = new InstanceService(db, config, { removeGenerations: async () => undefined } as unknown as GraphStoreProvider, events);
    const backups = { forgetExport: async () => undefined, collectSoon: () => undefined } as unknown as BackupService;
    snapshots = new SnapshotService(db, config, instances, { delete: async () => undefined } as unknown as EncryptedBlobStore, events, () => undefined, backups);
    instances.onRemove((instance) => snapshots.deleteAllOf(instance));
    const log = { restoreWindow: async () => ({ earliest: 0, latest: Date.now() + 3_600_000 }), recordedCountsAt: async () => null } as unknown as ChangeLogService;
    let checked!: () => void;
    requestChecked = new Promise((resolve) => (checked = resolve));
    const goOn = new Promise<void>((resolve) => (letRequestGoOn = resolve));
    const paused = new Proxy(db, {
      get: (target, key) =>
        key === 'transaction'
          ? async (...args: unknown[]) => {
              checked();
              await goOn;
              return (target.transaction as (...a: unknown[]) => Promise<unknown>)(...args);
            }
          : Reflect.get(target, key),
    });
    restores = new RestoreService(paused, instances, snapshots, () => undefined, log);
    exports = new ExportDestinationService(paused, {} as never, instances, snapshots, () => undefined, { retryBaseMs: 60_000, allowPrivateAddresses: true });
  });

  afterEach(async () => {
    EntityManager.prototype.exists = restoreExists;
    EntityManager.prototype.save = restoreSave;
    EntityManager.prototype.find = restoreFind;
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function instance(name: string, tier: InstanceEntity['tier'] = 'FREE'): Promise<string> {
    const id = randomUUID();
    await insertInstanceRow(db, { id, tenantId, name, tier, createdAt: Date.now() - 60_000 });
    return id;
  }

  async function snapshot(instanceId: string, ageMs = 30_000): Promise<string> {
    return insertSnapshotRow(db, { tenantId, instanceId, createdAt: Date.now() - ageMs, contents: ONE_NODE_CONTENTS });
  }

  /** What a request or a deletion ended with: 'ok', or the error's code. */
  const outcome = (promise: Promise<unknown>) =>
    promise.then(
      () => 'ok',
      (error: { extensions?: { code?: string }; code?: string; message?: string }) => error.extensions?.code ?? error.code ?? String(error.message),
    );

  /**
   * Runs `request` until it has passed its own checks, then `deletion`; the request queues its operation right after
   * the deletion has looked for operations on the data (the first look at operations after this is armed), given a
   * moment to do so before the deletion goes on. What each ended with: its value, or the error's code.
   */
  async function race(
    request: () => Promise<unknown>,
    deletion: () => Promise<unknown>,
    look: 'exists' | 'find' = 'exists',
  ): Promise<{ request: string; deletion: string }> {
    const requested = outcome(request());
    await requestChecked;
    let armed = true;
    const original = look === 'exists' ? restoreExists : restoreFind;
    EntityManager.prototype[look] = async function (this: EntityManager, ...args: unknown[]) {
      const found = await (original as (...a: unknown[]) => Promise<unknown>).apply(this, args);
      if (armed && args[0] === OperationEntity) {
        armed = false;
        letRequestGoOn();
        // A request the deletion makes wait (a lock it holds) cannot finish now: the deletion goes on after a while.
        await Promise.race([requested, sleep(500)]);
      }
      return found;
    } as never;
    const deleted = outcome(deletion());
    return { request: await requested, deletion: await deleted };
  }

  /**
   * Runs `request` until it is about to insert its operation (inside its transaction, its checks made), then starts
   * `deletion`, and lets the request go on a moment later.
   */
  async function raceFromInside(request: () => Promise<unknown>, deletion: () => Promise<unknown>): Promise<{ request: string; deletion: string }> {
    let inserting!: () => void;
    const atInsert = new Promise<void>((resolve) => (inserting = resolve));
    let goOn!: () => void;
    const insert = new Promise<void>((resolve) => (goOn = resolve));
    let armed = true;
    EntityManager.prototype.save = async function (this: EntityManager, ...args: unknown[]) {
      if (armed && args[0] === OperationEntity) {
        armed = false;
        inserting();
        await insert;
      }
      return (restoreSave as (...a: unknown[]) => Promise<unknown>).apply(this, args);
    } as EntityManager['save'];
    letRequestGoOn();
    const requested = outcome(request());
    await atInsert;
    const deleted = outcome(deletion());
    await sleep(300);
    goOn();
    return { request: await requested, deletion: await deleted };
  }

  /** Operations queued or running that read the snapshots or history of `instanceId`, or work on it. */
  async function operationsOnDataOf(instanceId: string, snapshotIds: string[]): Promise<OperationEntity[]> {
    const active = In(['QUEUED', 'RUNNING']);
    return db.getRepository(OperationEntity).find({
      where: [{ instanceId, status: active }, { sourceInstanceId: instanceId, status: active }, { snapshotId: In(snapshotIds), status: active }],
    });
  }

  async function destination(): Promise<string> {
    const id = randomUUID();
    await db.getRepository(ExportDestinationEntity).insert({
      id,
      tenantId,
      name: 'bucket',
      url: 's3://bucket',
      endpoint: null,
      region: null,
      autoExportInstanceIds: [],
      masterKeyId: 'key',
      sealedCredentials: 'sealed',
      createdAt: Date.now(),
      lastExportAt: null,
      lastError: null,
    });
    return id;
  }

  const input = { name: 'copy', tier: 'FREE' as const, memoryGB: 1, engineVersion: 'V5' as const };

  describe('deleteInstance', () => {
    it('against an instance created from one of its snapshots: the creation is refused, nothing is queued', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const outcome = await race(() => restores.requestCreateFromSnapshot(principal, snapshotId, input), () => instances.remove(principal, source));
      assert.deepEqual(outcome, { request: 'CONFLICT', deletion: 'ok' });
      assert.deepEqual(await operationsOnDataOf(source, [snapshotId]), [], 'an operation was queued on data being deleted');
      assert.equal(await db.getRepository(InstanceEntity).countBy({ tenantId }), 0, 'the CREATING instance stayed behind');
    });

    it('against a restore of one of its snapshots over another instance: the restore is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const target = await instance('target');
      const snapshotId = await snapshot(source);
      const outcome = await race(() => restores.requestRestore(principal, snapshotId, 'RESTORE', target), () => instances.remove(principal, source));
      assert.deepEqual(outcome, { request: 'CONFLICT', deletion: 'ok' });
      assert.deepEqual(await operationsOnDataOf(source, [snapshotId]), []);
      assert.equal(await db.getRepository(OperationEntity).countBy({ instanceId: target }), 0);
    });

    it('against a restore of its own snapshot over it: the restore is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const outcome = await race(() => restores.requestRestore(principal, snapshotId, 'RESTORE', null), () => instances.remove(principal, source));
      assert.deepEqual(outcome, { request: 'INSTANCE_UNAVAILABLE', deletion: 'ok' });
      assert.deepEqual(await operationsOnDataOf(source, [snapshotId]), []);
    });

    it('against a creation from one of its snapshots that is already queuing its operation: the deletion is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const outcome = await raceFromInside(() => restores.requestCreateFromSnapshot(principal, snapshotId, input), () => instances.remove(principal, source));
      assert.deepEqual(outcome, { request: 'ok', deletion: 'CONFLICT' });
      const row = await db.getRepository(InstanceEntity).findOneByOrFail({ id: source });
      assert.equal(row.status, 'RUNNING', 'the refused deletion did not give its claim back');
      assert.equal((await operationsOnDataOf(source, [snapshotId])).length, 1);
    });

    it('against a snapshot of it that is already queuing its operation: the deletion is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const outcome = await raceFromInside(() => snapshots.requestSnapshot(principal, source, null), () => instances.remove(principal, source));
      assert.deepEqual(outcome, { request: 'ok', deletion: 'CONFLICT' });
      assert.equal((await db.getRepository(InstanceEntity).findOneByOrFail({ id: source })).status, 'RUNNING');
    });

    it('against an export of one of its snapshots to a destination: the export is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const bucket = await destination();
      const outcome = await race(() => exports.exportSnapshotTo(principal, snapshotId, bucket), () => instances.remove(principal, source));
      assert.deepEqual(outcome, { request: 'CONFLICT', deletion: 'ok' });
      assert.deepEqual(await operationsOnDataOf(source, [snapshotId]), []);
    });

    it('against an instance created from a moment of its history: the creation is refused', async function () {
      this.timeout(20_000);
      // A tier with a restore window: a FREE instance's request is refused before it looks at anything.
      const source = await instance('source', 'PROFESSIONAL');
      const outcome = await race(
        () => restores.requestCreateFromPointInTime(principal, source, new Date(Date.now() - 1_000), input),
        () => instances.remove(principal, source),
      );
      assert.deepEqual(outcome, { request: 'CONFLICT', deletion: 'ok' });
      assert.deepEqual(await operationsOnDataOf(source, []), []);
      assert.equal(await db.getRepository(InstanceEntity).countBy({ tenantId }), 0, 'the CREATING instance stayed behind');
    });
  });

  describe('deleteSnapshot', () => {
    it('against an instance created from it: the creation is refused, nothing is queued on a deleted snapshot', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const outcome = await race(() => restores.requestCreateFromSnapshot(principal, snapshotId, input), () => snapshots.remove(principal, snapshotId));
      assert.deepEqual(outcome, { request: 'NOT_FOUND', deletion: 'ok' });
      assert.equal(await db.getRepository(OperationEntity).countBy({ snapshotId }), 0, 'a creation was queued from a deleted snapshot');
      assert.equal(await db.getRepository(InstanceEntity).countBy({ tenantId }), 1, 'the CREATING instance stayed behind');
    });

    it('against a restore of it: the restore is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const outcome = await race(() => restores.requestRestore(principal, snapshotId, 'RESTORE', null), () => snapshots.remove(principal, snapshotId));
      assert.deepEqual(outcome, { request: 'NOT_FOUND', deletion: 'ok' });
      assert.equal(await db.getRepository(OperationEntity).countBy({ snapshotId }), 0, 'a restore was queued from a deleted snapshot');
    });

    it('against an export of it to a destination: the export is refused', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const bucket = await destination();
      const outcome = await race(() => exports.exportSnapshotTo(principal, snapshotId, bucket), () => snapshots.remove(principal, snapshotId));
      assert.deepEqual(outcome, { request: 'NOT_FOUND', deletion: 'ok' });
      assert.equal(await db.getRepository(OperationEntity).countBy({ snapshotId }), 0, 'an export was queued from a deleted snapshot');
    });

    it('against a restore of it that is already queuing its operation: the deletion is refused, the snapshot stays', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const snapshotId = await snapshot(source);
      const outcome = await raceFromInside(() => restores.requestRestore(principal, snapshotId, 'RESTORE', null), () => snapshots.remove(principal, snapshotId));
      assert.deepEqual(outcome, { request: 'ok', deletion: 'CONFLICT' });
      assert.equal(await db.getRepository(SnapshotEntity).countBy({ id: snapshotId }), 1);
      assert.equal(await db.getRepository(OperationEntity).countBy({ snapshotId, status: 'QUEUED' }), 1);
    });
  });

  describe('retention', () => {
    it('against an instance created from the snapshot it removes: the snapshot stays for the creation', async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const older = await snapshot(source, 60_000);
      await snapshot(source, 30_000);
      // FREE keeps its latest snapshot only: the older one goes once the newer has completed.
      const retention = new RetentionSweeper(db, { tiers: DEFAULT_TIER_POLICIES }, snapshots, createLogger('silent'));
      const outcome = await race(
        () => restores.requestCreateFromSnapshot(principal, older, input),
        () => retention.onSnapshotCompleted({ id: source, tier: 'FREE' }),
        'find',
      );
      assert.deepEqual(outcome, { request: 'ok', deletion: 'ok' });
      assert.equal(await db.getRepository(SnapshotEntity).countBy({ id: older }), 1, 'the snapshot a queued creation reads was removed');
      assert.equal(await db.getRepository(OperationEntity).countBy({ snapshotId: older, status: 'QUEUED' }), 1);
    });

    it("against a restore that fails after the sweep read the snapshots: a FREE instance keeps its only snapshot", async function () {
      this.timeout(20_000);
      const source = await instance('source');
      const only = await snapshot(source, 60_000);
      // A restore from an uploaded file runs on it, and has taken its safety snapshot (the newest COMPLETED one).
      const restore = randomUUID();
      await db.getRepository(OperationEntity).insert({
        id: restore,
        tenantId,
        instanceId: source,
        kind: 'RESTORE_FROM_FILE',
        status: 'RUNNING',
        snapshotId: null,
        phase: null,
        params: {},
        createdAt: Date.now() - 5_000,
        attempt: 1,
      });
      const safety = await snapshot(source, 1_000);
      await db.getRepository(SnapshotEntity).update({ id: safety }, { profile: 'PRE_RESTORE' });
      // The sweep has read both and chosen the older one (superseded by the safety snapshot). Then, as it first looks at
      // operations, the restore fails: its compensation removes the safety snapshot, and it ends FAILED.
      let armed = true;
      EntityManager.prototype.find = async function (this: EntityManager, ...args: unknown[]) {
        const found = await (restoreFind as (...a: unknown[]) => Promise<unknown>).apply(this, args);
        if (armed && args[0] === OperationEntity) {
          armed = false;
          await db.getRepository(SnapshotEntity).delete({ id: safety });
          await db.getRepository(OperationEntity).update({ id: restore }, { status: 'FAILED' });
        }
        return found;
      } as never;
      const retention = new RetentionSweeper(db, { tiers: DEFAULT_TIER_POLICIES }, snapshots, createLogger('silent'));
      await retention.sweep();
      assert.equal(armed, false, 'the restore failed while the sweep ran');
      assert.deepEqual(
        (await db.getRepository(SnapshotEntity).findBy({ instanceId: source })).map((s) => s.id),
        [only],
        'the sweep removed the only snapshot left: the safety snapshot that superseded it is gone',
      );
    });
  });
}
