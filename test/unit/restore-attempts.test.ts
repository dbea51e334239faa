// Attempts of one restore against each other, on the product's SQLite metadata database and real graph stores: an
// attempt that outlived its lease (its process stalled past it, a GC pause, a VM paused) while another replica put the
// operation back and ran the next attempt to its end must not, once it resumes and stops, remove what that attempt
// swapped in.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';

import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { OperationEntity } from '../../src/entities/operation.entity';
import { insertOperation } from '../../src/jobs/operation-queue';
import { OperationRunner } from '../../src/jobs/operation-runner';
import { AppError } from '../../src/errors/app-error';
import { createLogger } from '../../src/logging/logger';
import type { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { DeltaBatch } from '../../src/graph/records';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import type { JobContext } from '../../src/jobs/operation-handler';
import { Metrics } from '../../src/observability/metrics';
import type { BackupService } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import { InstanceService } from '../../src/services/instance.service';
import { RestoreOperationHandler } from '../../src/services/restore.service';
import type { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { eventually } from '../support/wait';
import { insertInstanceRow } from '../support/instance-rows';
import { migratedSqliteMetadata } from '../support/metadata-database';

describe('restore attempts', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  let stores: SqliteGraphStoreProvider;

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-restore-attempts-'));
    stores = new SqliteGraphStoreProvider(join(dir, 'instances'));
  });

  afterEach(async () => {
    await stores.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** An attempt's context: its params recorded in the operation's row, as the runner does, while it holds its lease. */
  const contextFor = (operation: OperationEntity, signal: AbortSignal): JobContext => ({
    signal,
    progress: () => undefined,
    saveParams: async (params) => {
      signal.throwIfAborted();
      operation.params = params;
      await db.getRepository(OperationEntity).update({ id: operation.id }, { params } as QueryDeepPartialEntity<OperationEntity>);
    },
    enterPointOfNoReturn: async () => signal.throwIfAborted(),
    underLease: async (work) => {
      signal.throwIfAborted();
      return db.transaction(work);
    },
  });

  /** The operation's row, RUNNING, and its attempt `attempt` (one object per attempt, as each runner reads its own). */
  async function runningOperation(fields: Pick<OperationEntity, 'tenantId' | 'instanceId' | 'kind' | 'snapshotId'>): Promise<(attempt: number) => OperationEntity> {
    const row = await insertOperation(db.manager, fields);
    await db.getRepository(OperationEntity).update({ id: row.id }, { status: 'RUNNING' });
    return (attempt) => Object.assign(new OperationEntity(), { ...row, status: 'RUNNING', params: {}, attempt });
  }

  /** A snapshot's data written back into real stores, the first write held back until `resumeFirst`. */
  function firstWriteHeldBack(): { backups: BackupService; materialising: () => number; resumeFirst: () => void } {
    let resumeFirst!: () => void;
    const firstMayGoOn = new Promise<void>((resolve) => (resumeFirst = resolve));
    let materialising = 0;
    const backups = {
      materialise: async (_pointId: string, target: { instanceId: string; generation: number }, context: JobContext) => {
        const first = ++materialising === 1;
        const deltas = (async function* (): AsyncGenerator<DeltaBatch> {
          if (first) await firstMayGoOn;
        })();
        const stats = await stores.materialise(target.instanceId, target.generation, null, deltas, null, { signal: context.signal });
        return { stats, bytesRead: 0 };
      },
    } as unknown as BackupService;
    return { backups, materialising: () => materialising, resumeFirst };
  }

  /** Runs an attempt to its end, committed as the runner commits it with SUCCEEDED: the instance is RUNNING then. */
  async function runToItsEnd(handler: RestoreOperationHandler, operation: OperationEntity): Promise<void> {
    const result = await handler.run(operation, contextFor(operation, new AbortController().signal));
    await db.transaction((manager) => result.commit!(manager));
    result.announce!();
    await result.afterCommit!();
    assert.equal((await db.getRepository(InstanceEntity).findOneByOrFail({ id: operation.instanceId })).status, 'RUNNING');
  }

  /**
   * Starts an attempt whose write is held back (firstWriteHeldBack) until it has outlived its lease: `resume` aborts it
   * (its lease is gone), lets it go on, and waits for it to stop.
   */
  async function startStale(handler: RestoreOperationHandler, operation: OperationEntity, held: ReturnType<typeof firstWriteHeldBack>) {
    const stale = new AbortController();
    const run = handler.run(operation, contextFor(operation, stale.signal)).then(
      () => assert.fail('the stale attempt succeeded'),
      () => undefined,
    );
    await eventually(() => held.materialising() === 1, { intervalMs: 10, what: 'the first attempt to write its store' });
    return async () => {
      stale.abort(new Error('the operation lease was lost'));
      held.resumeFirst();
      await run;
    };
  }

  /** The instance's store as its row names it: there, and empty (the snapshot's data). */
  async function assertStoreInPlace(instanceId: string): Promise<void> {
    const { storeGeneration } = await db.getRepository(InstanceEntity).findOneByOrFail({ id: instanceId });
    const stats = await stores.use(instanceId, storeGeneration, (store) => store.stats()).catch((error: Error) => error);
    assert.ok(!(stats instanceof Error), `the instance's store is gone: ${stats instanceof Error ? stats.message : ''}`);
    assert.equal(stats.nodeCount, 0);
  }

  /** A restore of an empty snapshot over an instance with a store of its own, its handler, and its events. */
  async function restoreOverInstance(backups: BackupService, { name = 'restored over', storeGeneration = 1 } = {}) {
    const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    const instances = new InstanceService(db, config, stores, events);
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    await insertInstanceRow(db, { id: instanceId, tenantId, name, storeGeneration });
    await stores.create(instanceId, storeGeneration);
    const empty = { nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0 };
    const snapshot = { id: randomUUID(), tenantId, instanceId, status: 'COMPLETED', engineVersion: 'V5', restorePointId: randomUUID(), contents: empty } as unknown as SnapshotEntity;
    // The safety snapshot taken before the restore: recorded and captured as nothing (the restore's own work is tested).
    const snapshots = {
      byId: async (id: string) => (id === snapshot.id ? snapshot : null),
      newSnapshot: () => ({ id: randomUUID() }),
      insert: async () => undefined,
      capture: async () => undefined,
      keepSafetySnapshot: async () => undefined,
      deleteUnlessRead: async () => 'deleted',
    } as unknown as SnapshotService;
    const handler = new RestoreOperationHandler('RESTORE', instances, snapshots, stores, {} as EncryptedBlobStore, backups, { offeredThrough: async () => -1 } as unknown as ChangeLogService, new Metrics());
    const availability: string[] = [];
    const subscription = events.pubSub.subscribe('instance.availability', tenantId);
    void (async () => {
      for await (const event of subscription) availability.push(event.availability);
    })();
    return { instances, tenantId, instanceId, snapshot, handler, availability, events, stop: () => subscription.return() };
  }

  it("a stale attempt that stops after the next one swapped its store in leaves that store alone", async () => {
    const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const instances = new InstanceService(db, config, stores, createInMemoryEventBus());
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    await insertInstanceRow(db, { id: instanceId, tenantId, name: 'created from a snapshot', status: 'CREATING', availability: 'UNAVAILABLE' });
    const empty = { nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0 };
    const snapshot = { id: randomUUID(), tenantId, instanceId: randomUUID(), status: 'COMPLETED', engineVersion: 'V5', restorePointId: randomUUID(), contents: empty } as unknown as SnapshotEntity;
    // The snapshot's data written back: the first attempt's stops half-way until the test lets it go on.
    const held = firstWriteHeldBack();
    const { backups } = held;
    const handler = new RestoreOperationHandler(
      'CREATE_FROM_SNAPSHOT',
      instances,
      { byId: async () => snapshot } as unknown as SnapshotService,
      stores,
      {} as EncryptedBlobStore,
      backups,
      // A new instance: no store before it, so nothing offered before its history starts.
      { offeredThrough: async () => -1 } as unknown as ChangeLogService,
      new Metrics(),
    );
    const operation = await runningOperation({ tenantId, instanceId, kind: 'CREATE_FROM_SNAPSHOT', snapshotId: snapshot.id });

    const first = operation(1);
    const resumeStale = await startStale(handler, first, held);

    // Its process stalls past the lease: another replica takes the operation over, puts it back and queues it again,
    // and the next attempt runs to its end, the runner committing its swap with SUCCEEDED.
    await handler.compensate(first, { code: 'INTERRUPTED', message: 'the server stopped while the operation was running', retry: true });
    await runToItsEnd(handler, operation(2));

    // The stalled process resumes: its lease is gone, its run stops.
    await resumeStale();

    await assertStoreInPlace(instanceId);
  });

  it("a stale attempt of a restore that was ended leaves the next restore's store alone", async () => {
    // The snapshot's data written back: the first restore's stops half-way until the test lets it go on.
    const held = firstWriteHeldBack();
    const { tenantId, instanceId, snapshot, handler, stop } = await restoreOverInstance(held.backups, { name: 'restored twice', storeGeneration: 3 });

    const first = (await runningOperation({ tenantId, instanceId, kind: 'RESTORE', snapshotId: snapshot.id }))(1);
    const resumeStale = await startStale(handler, first, held);

    // Its process stalls past the lease: another replica takes the operation over and ends it (its user cancelled it),
    // and the next restore of the instance runs to its end.
    await handler.compensate(first, { code: 'CANCELLED', message: 'the operation was cancelled', retry: false });
    await db.getRepository(OperationEntity).update({ id: first.id }, { status: 'CANCELLED' });
    await runToItsEnd(handler, (await runningOperation({ tenantId, instanceId, kind: 'RESTORE', snapshotId: snapshot.id }))(1));

    // The stalled process resumes: its lease is gone, its run stops and removes its own store.
    await resumeStale();

    await assertStoreInPlace(instanceId);
    await stop();
  });

  it('a stale attempt that resumes only after the next one ended leaves the instance as that one left it', async () => {
    const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const instances = new InstanceService(db, config, stores, createInMemoryEventBus());
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    // Restored by the next attempt of the same restore, which another replica ran to its end: RUNNING, AVAILABLE.
    await insertInstanceRow(db, { id: instanceId, tenantId, name: 'restored', storeGeneration: 3 });
    await stores.create(instanceId, 3);
    const snapshot = { id: randomUUID(), tenantId, instanceId, status: 'COMPLETED', engineVersion: 'V5', restorePointId: randomUUID() } as unknown as SnapshotEntity;
    const handler = new RestoreOperationHandler(
      'RESTORE',
      instances,
      { byId: async () => snapshot } as unknown as SnapshotService,
      stores,
      {} as EncryptedBlobStore,
      {} as BackupService,
      { offeredThrough: async () => -1 } as unknown as ChangeLogService,
      new Metrics(),
    );
    // The first attempt's process stalled (cut off from the database) right as the attempt began, past its lease; it
    // resumes now, its lease long gone: every write the runner fences for it is refused.
    const stale = (await runningOperation({ tenantId, instanceId, kind: 'RESTORE', snapshotId: snapshot.id }))(1);
    const lost = new AbortController();
    lost.abort(new Error('the operation lease was lost'));
    await handler.run(stale, contextFor(stale, lost.signal)).then(
      () => assert.fail('the stale attempt succeeded'),
      () => undefined,
    );

    const row = await db.getRepository(InstanceEntity).findOneByOrFail({ id: instanceId });
    assert.deepEqual({ status: row.status, availability: row.availability }, { status: 'RUNNING', availability: 'AVAILABLE' }, 'the stale attempt left the instance restoring');
    const written = await stores.use(instanceId, 3, (store) => store.createNodes([{ labels: ['A'], properties: {} }], { maxNodes: null, maxRelationships: null, maxBytes: 2 ** 30 })).then(
      () => null,
      (error: Error) => error.message,
    );
    assert.equal(written, null, 'the stale attempt froze the store');
  });

  // The runner commits the swap with SUCCEEDED, and commits it again once space returns when that failed on a full disk.
  it('announces AVAILABLE after a swap whose first commit a full disk rolled back', async () => {
    const written = firstWriteHeldBack();
    written.resumeFirst();
    const { instanceId, tenantId, snapshot, handler, availability, stop } = await restoreOverInstance(written.backups);
    const operation = (await runningOperation({ tenantId, instanceId, kind: 'RESTORE', snapshotId: snapshot.id }))(1);
    const result = await handler.run(operation, contextFor(operation, new AbortController().signal));
    const full = Object.assign(new Error('SQLITE_FULL: database or disk is full'), { code: 'SQLITE_FULL' });
    await assert.rejects(db.transaction(async (manager) => {
      await result.commit!(manager);
      throw full;
    }));
    await db.transaction((manager) => result.commit!(manager));
    result.announce!();
    await eventually(() => availability.at(-1) === 'AVAILABLE', { what: 'AVAILABLE, last', intervalMs: 10 });
    await stop();
    const row = await db.getRepository(InstanceEntity).findOneByOrFail({ id: instanceId });
    assert.deepEqual([row.status, row.availability], ['RUNNING', 'AVAILABLE']);
  });

  // Recorded FAILED all the same, the instance stayed RESTORING and READ_ONLY for good: recovery looks only at RUNNING ones.
  it('ends a failed restore only once its compensation has put the instance back, after a moment the database failed it', async () => {
    const backups = {
      materialise: async () => {
        throw new AppError('INVALID_BACKUP_FILE', 'the snapshot is damaged');
      },
    } as unknown as BackupService;
    const { instances, tenantId, instanceId, snapshot, handler, events, stop } = await restoreOverInstance(backups);
    const setState = instances.setState.bind(instances);
    let failures = 1;
    instances.setState = async (...args: Parameters<InstanceService['setState']>) => {
      if (failures-- > 0) throw Object.assign(new Error('Connection terminated unexpectedly'), { code: '57P01' });
      return setState(...args);
    };
    const runner = new OperationRunner(db, events, createLogger('silent'), { leaseMs: 5_000, soleProcess: true, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    try {
      const { id } = await insertOperation(db.manager, { tenantId, instanceId, kind: 'RESTORE', snapshotId: snapshot.id });
      await runner.start();
      const ended = await eventually(
        async () => {
          const operation = await db.getRepository(OperationEntity).findOneByOrFail({ id });
          return ['FAILED', 'CANCELLED', 'SUCCEEDED'].includes(operation.status) ? operation : undefined;
        },
        { what: 'the restore to end', timeoutMs: 20_000 },
      );
      assert.deepEqual([ended!.status, ended!.errorCode], ['FAILED', 'INVALID_BACKUP_FILE']);
      const row = await db.getRepository(InstanceEntity).findOneByOrFail({ id: instanceId });
      assert.deepEqual([row.status, row.availability], ['RUNNING', 'AVAILABLE']);
    } finally {
      await runner.stop();
      await stop();
    }
  });
});

