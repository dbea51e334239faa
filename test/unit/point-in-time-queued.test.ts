// A point-in-time restore checked again when it runs: against the restore window as it stood when it was asked for,
// before anything is changed. A restore that waited (queued behind others, or resumed after a restart) to a moment near
// the window's start was refused once that start had slid past it, though its log was still held, and only after the
// instance had been made READ_ONLY and its safety snapshot started.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { resolveTierPolicies } from '../../src/config/tiers';
import { InstanceEntity } from '../../src/entities/instance.entity';
import type { OperationEntity, RestoreKind } from '../../src/entities/operation.entity';
import { AppError } from '../../src/errors/app-error';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import type { JobContext } from '../../src/jobs/operation-handler';
import { Metrics } from '../../src/observability/metrics';
import type { BackupService } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import { InstanceService } from '../../src/services/instance.service';
import { RestoreOperationHandler } from '../../src/services/restore.service';
import type { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { insertInstanceRow } from '../support/instance-rows';
import { migratedSqliteMetadata } from '../support/metadata-database';

const WINDOW_MS = 3_000;

describe('a point-in-time restore that waited before it ran', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  let stores: SqliteGraphStoreProvider;
  let instances: InstanceService;
  const tenantId = randomUUID();
  /** The moments the source's history was read at (the step after the window's check). */
  let materialisedAt: number[];

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-pitr-queued-'));
    stores = new SqliteGraphStoreProvider(join(dir, 'instances'));
    const config = { tiers: resolveTierPolicies({ BUSINESS_CRITICAL: { pointInTimeWindow: 'PT3S' } }), bytesPerStorageGB: 2 ** 30 } as AppConfig;
    instances = new InstanceService(db, config, stores, createInMemoryEventBus());
    materialisedAt = [];
  });

  afterEach(async () => {
    await stores.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  function handler(kind: RestoreKind): RestoreOperationHandler {
    // The window as the change log computes it while nothing was collected: it starts WINDOW_MS before `now`.
    const log = {
      restoreWindow: async (_source: unknown, windowMs: number, now = Date.now()) => ({ earliest: now - windowMs, latest: Date.now() - 1, reason: null }),
      offeredThrough: async () => -1,
    } as unknown as ChangeLogService;
    const backups = {
      materialiseAt: async (_source: unknown, moment: number) => {
        materialisedAt.push(moment);
        throw new AppError('INTERNAL_SERVER_ERROR', 'the test stops here, once the window was found to reach the moment');
      },
    } as unknown as BackupService;
    // No safety snapshot may be started when the moment is refused.
    const snapshots = new Proxy({}, { get: (_target, name) => () => assert.fail(`the restore used snapshots.${String(name)}`) }) as SnapshotService;
    return new RestoreOperationHandler(kind, instances, snapshots, stores, {} as EncryptedBlobStore, backups, log, new Metrics());
  }

  async function operation(kind: RestoreKind, requestedAt: number, pointInTime: number): Promise<OperationEntity> {
    const sourceInstanceId = await insertInstanceRow(db, { tenantId, tier: 'BUSINESS_CRITICAL' });
    const instanceId =
      kind === 'CREATE_FROM_POINT_IN_TIME'
        ? await insertInstanceRow(db, { tenantId, tier: 'BUSINESS_CRITICAL', status: 'CREATING', availability: 'UNAVAILABLE' })
        : sourceInstanceId;
    return { id: randomUUID(), tenantId, instanceId, sourceInstanceId, kind, pointInTime, params: {}, attempt: 1, createdAt: requestedAt } as unknown as OperationEntity;
  }

  const context = (operation: OperationEntity): JobContext => ({
    signal: new AbortController().signal,
    progress: () => undefined,
    saveParams: async (params) => {
      operation.params = params;
    },
    enterPointOfNoReturn: async () => undefined,
    underLease: (work) => db.transaction(work),
  });

  it('restores a moment that was in the window when it was asked for, though the window has slid past it since', async () => {
    const requestedAt = Date.now() - 10_000;
    const moment = requestedAt - WINDOW_MS + 500;
    const queued = await operation('CREATE_FROM_POINT_IN_TIME', requestedAt, moment);
    await assert.rejects(handler('CREATE_FROM_POINT_IN_TIME').run(queued, context(queued)), /the test stops here/);
    assert.deepEqual(materialisedAt, [moment], 'the history was read at the moment asked for');
  });

  it('refuses a moment that was already outside the window when it was asked for, before the instance is changed', async () => {
    const requestedAt = Date.now() - 10_000;
    const queued = await operation('RESTORE_TO_POINT_IN_TIME', requestedAt, requestedAt - WINDOW_MS - 500);
    await assert.rejects(handler('RESTORE_TO_POINT_IN_TIME').run(queued, context(queued)), (error: AppError) => {
      assert.equal(error.code, 'OUT_OF_RESTORE_WINDOW');
      assert.match(error.message, /is outside instance .*'s restore window.*nothing was changed/);
      return true;
    });
    const instance = await db.getRepository(InstanceEntity).findOneByOrFail({ id: queued.instanceId });
    assert.deepEqual({ status: instance.status, availability: instance.availability }, { status: 'RUNNING', availability: 'AVAILABLE' });
    assert.deepEqual(materialisedAt, []);
  });
});
