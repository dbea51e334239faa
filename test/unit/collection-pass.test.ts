// Collections of backup storage run one at a time in a process: the periodic pass started every tenant's at once, and
// each collection's marks, metadata rows and listings were held together, as many times as there were tenants.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import type { ChunkStore } from '../../src/chunks';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { createLogger } from '../../src/logging/logger';
import { Metrics } from '../../src/observability/metrics';
import { BackupService } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { migratedSqliteMetadata } from '../support/metadata-database';

const TENANTS = ['t-1', 't-2', 't-3', 't-4'];

describe('collections of backup storage', () => {
  let dir: string;
  let db: DataSource;
  let backups: BackupService;
  /** Collections under way now, the most at once, and every start in order. */
  let running: number;
  let most: number;
  let started: string[];
  let finishOne: () => void;

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-collection-pass-'));
    const log = { onShipped: () => undefined, onDamaged: () => undefined, tenantsWithLogs: async () => TENANTS } as unknown as ChangeLogService;
    backups = new BackupService(db, {} as ChunkStore, {} as EncryptedBlobStore, {} as GraphStoreProvider, {} as InstanceService, log, createLogger('silent'), new Metrics(), {
      scratchDir: join(dir, 'scratch'),
      collectGraceMs: 60_000,
      listBlobs: async function* () {},
    });
    running = 0;
    most = 0;
    started = [];
    // Each collection lasts until the test lets it end.
    let waiting: (() => void)[] = [];
    finishOne = () => waiting.shift()?.();
    backups.collect = async (tenantId: string) => {
      started.push(tenantId);
      most = Math.max(most, ++running);
      await new Promise<void>((resolve) => waiting.push(resolve));
      running -= 1;
      return { removedPoints: 0, removedSegments: 0, freedBytes: 0 };
    };
    waiting = [];
  });

  afterEach(async () => {
    backups.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const turns = () => new Promise((resolve) => setTimeout(resolve, 20));

  it('collects every tenant one after the other, and a call while a pass is under way is that pass', async () => {
    const pass = backups.collectAll();
    const again = backups.collectAll();
    assert.equal(again, pass, 'a second pass while one is under way');
    for (let i = 0; i < TENANTS.length; i++) {
      await turns();
      assert.equal(running, 1, `collection ${i + 1}: one under way`);
      finishOne();
    }
    await pass;
    assert.deepEqual(started, TENANTS);
    assert.equal(most, 1);
    const next = backups.collectAll();
    assert.notEqual(next, pass, 'a pass after the last one is a new one');
    for (let i = 0; i < TENANTS.length; i++) {
      await turns();
      finishOne();
    }
    await next;
    assert.equal(started.length, TENANTS.length * 2);
  });

  // A tenant whose snapshots keep being deleted (retention, on every completed snapshot) asks again while it runs: in
  // place, it kept the lane, and no other tenant's collection ran.
  it("puts a tenant's collection asked for while it runs behind the others, and joins one asked for while it waits", async () => {
    const asked = backups.collectSoon('t-2');
    await turns();
    const waitingOne = backups.collectSoon('t-3');
    const pass = backups.collectAll();
    assert.equal(backups.collectSoon('t-3'), waitingOne, 'a request while it waits is that one');
    await turns();
    assert.deepEqual(started, ['t-2']);
    for (let i = 0; i < 5; i++) {
      finishOne();
      await turns();
    }
    await Promise.all([asked, waitingOne, pass]);
    assert.deepEqual(started, ['t-2', 't-3', 't-1', 't-2', 't-4'], "t-2's second run after the tenants that were waiting");
    assert.equal(most, 1);
  });

  it('runs no collection once closed', async () => {
    const pass = backups.collectAll();
    await turns();
    backups.close();
    finishOne();
    await pass;
    assert.deepEqual(started, ['t-1']);
  });
});
