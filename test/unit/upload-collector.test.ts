// The collection of upload blobs no restore names, against a real FilesystemBlobStore in a temp dir and the product's
// SQLite metadata database, with a clock the test moves.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { OperationEntity, type OperationStatus } from '../../src/entities/operation.entity';
import { TenantEntity } from '../../src/entities/tenant.entity';
import { createLogger } from '../../src/logging/logger';
import { UploadCollector } from '../../src/services/upload-collector';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { migratedSqliteMetadata } from '../support/metadata-database';

const HOUR = 3_600_000;

describe('UploadCollector', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  let blobs: FilesystemBlobStore;
  let now: number;
  let collector: UploadCollector;
  const tenants = [randomUUID(), randomUUID()];

  const store = (key: string) => blobs.write(key, Readable.from([Buffer.from(`bytes of ${key}`)]));
  const restoreOf = (uploadKey: string, status: OperationStatus) =>
    db.getRepository(OperationEntity).insert({
      id: randomUUID(),
      tenantId: tenants[0],
      instanceId: randomUUID(),
      kind: 'RESTORE_FROM_FILE',
      status,
      params: { uploadKey },
      createdAt: now,
      attempt: 0,
    });
  const present = async (keys: string[]) => Promise.all(keys.map((key) => blobs.exists(key)));

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-upload-collector-'));
    for (const id of tenants) await db.getRepository(TenantEntity).insert({ id, name: `tenant-${id}`, createdAt: 0 });
    blobs = new FilesystemBlobStore(join(dir, 'blobs'));
    await blobs.init();
    now = 1_000_000_000;
    collector = new UploadCollector(db, blobs, createLogger('silent'), { graceMs: HOUR, clock: () => now });
  });

  afterEach(async () => {
    await collector.stop();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('deletes an upload no operation names once it has gone unclaimed for the grace period, in every tenant', async () => {
    const orphans = [`tenants/${tenants[0]}/uploads/${randomUUID()}.blob`, `tenants/${tenants[1]}/uploads/tus-${randomUUID()}.blob`];
    for (const key of orphans) await store(key);

    assert.equal(await collector.collect(), 0, 'first seen unclaimed: the grace period starts');
    now += HOUR - 1;
    assert.equal(await collector.collect(), 0);
    assert.deepEqual(await present(orphans), [true, true]);
    now += 1;
    assert.equal(await collector.collect(), 2);
    assert.deepEqual(await present(orphans), [false, false]);
  });

  it('never deletes on a first sighting, even with no grace period', async () => {
    collector = new UploadCollector(db, blobs, createLogger('silent'), { graceMs: 0, clock: () => now });
    const key = `tenants/${tenants[0]}/uploads/${randomUUID()}.blob`;
    await store(key);
    assert.equal(await collector.collect(), 0);
    assert.deepEqual(await present([key]), [true]);
    assert.equal(await collector.collect(), 1);
  });

  it('keeps the uploads of queued and running restores however old, and collects those of ended ones', async () => {
    const queued = `tenants/${tenants[0]}/uploads/${randomUUID()}.blob`;
    const running = `tenants/${tenants[0]}/uploads/tus-${randomUUID()}.blob`;
    const failed = `tenants/${tenants[0]}/uploads/${randomUUID()}.blob`;
    for (const key of [queued, running, failed]) await store(key);
    await restoreOf(queued, 'QUEUED');
    await restoreOf(running, 'RUNNING');
    await restoreOf(failed, 'FAILED'); // its clean-up could not delete it

    await collector.collect();
    now += 2 * HOUR;
    assert.equal(await collector.collect(), 1);
    assert.deepEqual(await present([queued, running, failed]), [true, true, false]);
  });

  it('starts the grace period again for an upload that a restore named in between', async () => {
    const key = `tenants/${tenants[0]}/uploads/${randomUUID()}.blob`;
    await store(key);
    await collector.collect();
    now += HOUR / 2;
    const id = randomUUID();
    await db.getRepository(OperationEntity).insert({ id, tenantId: tenants[0], instanceId: randomUUID(), kind: 'RESTORE_FROM_FILE', status: 'QUEUED', params: { uploadKey: key }, createdAt: now, attempt: 0 });
    await collector.collect();
    // Handed back and given up, its file not deleted: unclaimed from now, not from the first sighting.
    await db.getRepository(OperationEntity).update({ id }, { status: 'FAILED' });
    now += HOUR / 2;
    assert.equal(await collector.collect(), 0);
    now += HOUR;
    assert.equal(await collector.collect(), 1);
    assert.deepEqual(await present([key]), [false]);
  });

  it('leaves everything else of a tenant alone', async () => {
    const others = [`tenants/${tenants[0]}/exports/${randomUUID()}.backup`, `tenants/${tenants[0]}/snapshots/${randomUUID()}.blob`, `tenants/${tenants[0]}/uploadsx/${randomUUID()}.blob`];
    for (const key of others) await store(key);
    await collector.collect();
    now += 10 * HOUR;
    assert.equal(await collector.collect(), 0);
    assert.deepEqual(await present(others), [true, true, true]);
  });

  it('runs one pass at a time and none once stopped', async () => {
    const key = `tenants/${tenants[0]}/uploads/${randomUUID()}.blob`;
    await store(key);
    const [first, second] = [collector.collect(), collector.collect()];
    assert.equal(first, second);
    await first;
    await collector.stop();
    now += 2 * HOUR;
    assert.equal(await collector.collect(), 0);
    assert.deepEqual(await present([key]), [true]);
  });
});
