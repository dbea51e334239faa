// The sweep that queues the retries of failed automatic exports, against the product's SQLite metadata database.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { DataSource } from 'typeorm';

import { Keyring, MasterKey } from '../../src/crypto';
import { ExportDestinationEntity } from '../../src/entities/export-destination.entity';
import { OperationEntity } from '../../src/entities/operation.entity';
import type { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { ExportDestinationService, MAX_EXPORT_RETRIES } from '../../src/services/export-destination.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { insertInstanceRow, insertSnapshotRow } from '../support/instance-rows';
import { migratedSqliteMetadata } from '../support/metadata-database';
import type { Principal } from '../../src/services/principal';
import { InstanceEntity } from '../../src/entities/instance.entity';

describe('retries of failed automatic exports', function () {
  this.timeout(60_000);
  let dir: string;
  let db: DataSource;
  let destinations: ExportDestinationService;
  const tenantId = randomUUID();
  const instanceId = randomUUID();
  const snapshot = { id: randomUUID(), tenantId, instanceId, status: 'COMPLETED', sizeBytes: 100 } as SnapshotEntity;
  const destinationId = randomUUID();

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-export-retries-'));
    await db.getRepository(ExportDestinationEntity).insert({
      id: destinationId,
      tenantId,
      name: 'offsite',
      url: 's3://bucket/prefix',
      endpoint: null,
      region: 'eu-west-1',
      autoExportInstanceIds: [instanceId],
      masterKeyId: 'k',
      sealedCredentials: 's',
      createdAt: Date.now(),
      lastExportAt: null,
      lastError: null,
    });
    // The rows a retry holds as it goes in (holdOperationInputs).
    await insertInstanceRow(db, { id: instanceId, tenantId, tier: 'PROFESSIONAL' });
    await insertSnapshotRow(db, { id: snapshot.id, tenantId, instanceId });
    const snapshots = { byId: async (id: string) => (id === snapshot.id ? snapshot : null) } as unknown as SnapshotService;
    destinations = new ExportDestinationService(db, new Keyring(MasterKey.generate()), {} as InstanceService, snapshots, () => undefined, {
      retryBaseMs: 1000,
      allowPrivateAddresses: false,
    });
  });

  afterEach(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const failedExport = (finishedAt: number, params: Record<string, unknown>): OperationEntity =>
    Object.assign(new OperationEntity(), {
      id: randomUUID(),
      tenantId,
      instanceId,
      kind: 'EXPORT',
      status: 'FAILED',
      phase: 'uploading',
      bytesDone: 0,
      bytesTotal: 100,
      snapshotId: snapshot.id,
      params,
      errorCode: 'DESTINATION_UNAVAILABLE',
      errorMessage: 'copying failed',
      createdAt: finishedAt - 1000,
      startedAt: finishedAt - 1000,
      finishedAt,
      leaseOwner: null,
      leaseExpiresAt: null,
      attempt: 1,
      cancelRequestedAt: null,
      pointInTime: null,
      sourceInstanceId: null,
    } satisfies OperationEntity);

  it('queues a due retry however many failed exports of the last day came before it', async () => {
    const now = Date.now();
    // A day of an outage: exports that were retried to the end, and exports asked for by hand (never retried).
    const earlier = Array.from({ length: 600 }, (_, i) =>
      failedExport(now - 20 * 3_600_000 + i, i % 2 ? { destinationId, auto: true, retry: MAX_EXPORT_RETRIES } : { destinationId, auto: false, retry: 0 }),
    );
    await db.getRepository(OperationEntity).save(earlier, { chunk: 100 });
    const due = failedExport(now - 60_000, { destinationId, auto: true, retry: 0 });
    await db.getRepository(OperationEntity).save(due);

    assert.equal(await destinations.retryFailedAutoExports(now), 1);
    const queued = await db.getRepository(OperationEntity).findBy({ status: 'QUEUED' });
    assert.equal(queued.length, 1);
    assert.deepEqual(queued[0].params, { destinationId, auto: true, retry: 1 });
    // Queued once: the next sweep finds its retry there.
    assert.equal(await destinations.retryFailedAutoExports(now + 1000), 0);
  });

  it("tells the tenant, once, when a failed export's snapshot expired before its retry", async () => {
    const now = Date.now();
    // Retention removed the snapshot while its failed export waited for its retry: the retry was skipped, and nothing
    // said that this snapshot was never copied (lastError still named the endpoint's error, the operation too).
    const gone = randomUUID();
    const failed = Object.assign(failedExport(now - 60_000, { destinationId, auto: true, retry: 2 }), { snapshotId: gone });
    await db.getRepository(OperationEntity).save(failed);
    await db.getRepository(ExportDestinationEntity).update({ id: destinationId }, { lastError: 'DESTINATION_UNAVAILABLE: copying failed' });

    assert.equal(await destinations.retryFailedAutoExports(now), 0);
    const { lastError } = (await db.getRepository(ExportDestinationEntity).findOneByOrFail({ id: destinationId }));
    assert.match(lastError ?? '', new RegExp(`snapshot ${gone} expired \\(or was deleted\\) before its failed export could be retried: it was not copied`));
    assert.match(lastError ?? '', /DESTINATION_UNAVAILABLE: copying failed/, 'lastError still says why the export failed');
    const operation = await db.getRepository(OperationEntity).findOneByOrFail({ id: failed.id });
    assert.equal(operation.status, 'FAILED');
    assert.match(operation.errorMessage ?? '', new RegExp(`snapshot ${gone} expired`));
    assert.equal(await db.getRepository(OperationEntity).countBy({ status: 'QUEUED' }), 0);

    // Said once: a later export's success cleared lastError, and the next sweeps leave it so.
    await db.getRepository(ExportDestinationEntity).update({ id: destinationId }, { lastError: null });
    assert.equal(await destinations.retryFailedAutoExports(now + 1000), 0);
    assert.equal((await db.getRepository(ExportDestinationEntity).findOneByOrFail({ id: destinationId })).lastError, null);
  });

  it('queues nothing while the instance of a failed export is being deleted, and the retry once its deletion was refused', async () => {
    const now = Date.now();
    const failed = failedExport(now - 60_000, { destinationId, auto: true, retry: 1 });
    await db.getRepository(OperationEntity).save(failed);
    await db.getRepository(InstanceEntity).update({ id: instanceId }, { status: 'DESTROYING' });

    assert.equal(await destinations.retryFailedAutoExports(now), 0);
    assert.equal(await db.getRepository(OperationEntity).countBy({ status: 'QUEUED' }), 0, 'a retry queued now would fail with NOT_FOUND');
    assert.equal((await db.getRepository(OperationEntity).findOneByOrFail({ id: failed.id })).errorMessage, 'copying failed', 'not given up on');
    // The deletion is given back (an operation ran on the instance): the next sweep queues the retry.
    await db.getRepository(InstanceEntity).update({ id: instanceId }, { status: 'RUNNING' });
    assert.equal(await destinations.retryFailedAutoExports(now + 1_000), 1);
  });

  it('deletes a destination only while no export to it is queued or running', async () => {
    const admin = { tenantId, role: 'ADMIN' } as Principal;
    const at = Date.now();
    const exporting = Object.assign(failedExport(at, { destinationId, auto: false, retry: 0 }), { status: 'RUNNING', finishedAt: null });
    await db.getRepository(OperationEntity).save(exporting);
    await assert.rejects(destinations.remove(admin, destinationId), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'CONFLICT');
      assert.match(error.message, new RegExp(`has an export running \\(operation ${exporting.id}\\); cancel it`));
      return true;
    });
    assert.ok(await db.getRepository(ExportDestinationEntity).existsBy({ id: destinationId }), 'still there, with its keys');

    await db.getRepository(OperationEntity).update({ id: exporting.id }, { status: 'CANCELLED', finishedAt: at });
    assert.equal(await destinations.remove(admin, destinationId), true);
    assert.equal(await db.getRepository(ExportDestinationEntity).existsBy({ id: destinationId }), false);
    // Its failed automatic exports are no longer retried: nobody to tell.
    await db.getRepository(OperationEntity).save(failedExport(at - 60_000, { destinationId, auto: true, retry: 0 }));
    assert.equal(await destinations.retryFailedAutoExports(at), 0);
  });
});
