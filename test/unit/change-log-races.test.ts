// The change log where two pieces of work meet, through the real services in this process (createApp: real stores,
// change log, bases, collection): a collection of the tenant while an instance is created, a base taken after damage
// while the blob store fails for a moment, and two replicas recording what they shipped or found damaged out of order.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type App, createApp } from '../../src/app';
import { loadConfig } from '../../src/config/app-config';
import { LogSegmentEntity } from '../../src/entities/log-segment.entity';
import { StoreEpochEntity } from '../../src/entities/store-epoch.entity';
import { createLogger } from '../../src/logging/logger';
import type { ChangeLogService } from '../../src/services/change-log.service';
import type { Principal } from '../../src/services/principal';
import { packsOf } from '../support/snapshots';
import { eventually } from '../support/wait';

const ADMIN_TOKEN = 'sg_change_log_races_admin_0123456789';

describe('the change log where two pieces of work meet', function () {
  this.timeout(60_000);
  let dir: string;
  let app: App;
  let principal: Principal;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-change-log-races-'));
    const config = loadConfig({
      SNAPGRAPH_DATA_DIR: dir,
      SNAPGRAPH_BOOTSTRAP_TOKEN: ADMIN_TOKEN,
      SNAPGRAPH_LOG_SHIP_DELAY_MS: '20',
      SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '100',
      SNAPGRAPH_CHUNK_WORKERS: '0',
    });
    app = await createApp(config, createLogger('silent'));
    principal = (await app.services.tenants.authenticate(ADMIN_TOKEN))!;
  });

  after(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const reload = async (id: string) => (await app.services.instances.reload(id))!;
  const windowOf = async (id: string) => {
    const instance = await reload(id);
    return app.services.changeLog.restoreWindow(instance, app.services.instances.restoreWindowMs(instance));
  };
  const epochOf = async (instanceId: string) => (await app.db.getRepository(StoreEpochEntity).findOneBy({ instanceId }))!;
  async function ended(operationId: string) {
    return eventually(
      async () => {
        const operation = await app.services.operations.find(principal, operationId);
        return operation && ['SUCCEEDED', 'FAILED'].includes(operation.status) ? operation : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 20, what: `operation ${operationId} to end` },
    );
  }
  async function completedSnapshot(instanceId: string) {
    const requested = await app.services.snapshots.requestSnapshot(principal, instanceId, null);
    await eventually(async () => ((await app.services.snapshots.byId(requested.id))?.status === 'COMPLETED' ? true : undefined), {
      intervalMs: 10,
      what: 'the snapshot to complete',
    });
    return requested;
  }

  // The mark lists the tenant's epochs, the sweep read them again: one begun in between was "not live", and lost its log.
  it("keeps the log of an instance created and written while a collection of its tenant runs, and its snapshot restores", async () => {
    const { instances, graph, changeLog, backups, restores } = app.services;
    await instances.create(principal, { name: 'there before', tier: 'PROFESSIONAL' });
    let created: { id: string } | null = null;
    const sweep = changeLog.sweep.bind(changeLog);
    changeLog.sweep = async (...args: Parameters<ChangeLogService['sweep']>) => {
      created = await instances.create(principal, { name: 'born during a collection', tier: 'PROFESSIONAL' });
      await graph.createNodes(principal, created.id, [{ labels: ['A'], properties: { n: 1 } }]);
      await changeLog.flush(await reload(created.id));
      return sweep(...args);
    };
    try {
      await backups.collect(principal.tenantId);
    } finally {
      changeLog.sweep = sweep;
    }
    const id = created!.id;
    assert.equal((await epochOf(id)).collectedThroughSeq, null);
    assert.ok((await app.db.getRepository(LogSegmentEntity).countBy({ instanceId: id })) > 0, 'its log segments were removed');
    const snapshot = await completedSnapshot(id);
    const restore = await restores.requestRestore(principal, snapshot.id, 'RESTORE', id);
    const outcome = await ended(restore.id);
    assert.equal(outcome!.status, 'SUCCEEDED', `${outcome!.errorCode}: ${outcome!.errorMessage}`);
  });

  it('tries a base a damage asked for again when it fails, and an instance nobody writes to gets its window back', async () => {
    const { instances, graph, backups, verify } = app.services;
    const source = await instances.create(principal, { name: 'idle, base damaged', tier: 'PROFESSIONAL' });
    await graph.createNodes(principal, source.id, [{ labels: ['A'], properties: { n: 1 } }]);
    await eventually(async () => ((await windowOf(source.id)) ? true : undefined), { intervalMs: 20, what: 'a window' });
    const packsBefore = new Set(packsOf(dir, source.tenantId));
    await backups.takeBase(await reload(source.id));
    const basePacks = packsOf(dir, source.tenantId).filter((path) => !packsBefore.has(path));
    assert.ok(basePacks.length > 0);
    const snapshot = await completedSnapshot(source.id);
    for (const path of basePacks) {
      const bytes = readFileSync(path);
      bytes[Math.floor(bytes.length / 3)] ^= 0x20;
      writeFileSync(path, bytes);
    }
    // The base the damage asks for fails once (the blob store away for a moment).
    const capture = backups as unknown as { captureBase: (...args: unknown[]) => Promise<unknown> };
    const captureBase = capture.captureBase.bind(backups);
    let captures = 0;
    capture.captureBase = async (...args: unknown[]) => {
      if (captures++ === 0) throw new Error('the blob store is away for a moment');
      return captureBase(...args);
    };
    try {
      const verification = await verify.requestVerify(principal, snapshot.id);
      await ended(verification.id);
      await eventually(async () => ((await windowOf(source.id)) ? true : undefined), {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: "a window again without a write",
      });
      assert.ok(captures >= 2, `bases tried: ${captures}`);
    } finally {
      capture.captureBase = captureBase;
    }
  });

  // Another replica shipping the same instance recorded a later latest than the one this one read.
  it("never moves the recorded end of the window back to an older one this replica shipped", async () => {
    const instance = await app.services.instances.create(principal, { name: 'two shippers', tier: 'PROFESSIONAL' });
    await eventually(async () => ((await windowOf(instance.id)) ? true : undefined), { intervalMs: 20, what: 'a window' });
    const epochs = app.db.getRepository(StoreEpochEntity);
    const read = await epochOf(instance.id);
    const later = Date.now() + 60_000;
    await epochs.update({ epoch: read.epoch }, { shippedThrough: later });
    const log = app.services.changeLog as unknown as { advanceLatest(epoch: StoreEpochEntity, shippedThrough: number, persistNow: boolean): Promise<void> };
    await log.advanceLatest(read, Date.now(), true);
    assert.equal((await epochs.findOneByOrFail({ epoch: read.epoch })).shippedThrough, later);
  });

  // A replay planned before later damage was recorded (and a base taken after it since) overwrote it with its older one.
  it('keeps the later damage of an epoch when a replay that read it before records older damage', async () => {
    const instance = await app.services.instances.create(principal, { name: 'two damages', tier: 'PROFESSIONAL' });
    const epochs = app.db.getRepository(StoreEpochEntity);
    const stale = await epochOf(instance.id);
    const fresh = await epochOf(instance.id);
    await app.services.changeLog.recordDamage(fresh, 31, 'segment 31–40 is damaged');
    await app.services.changeLog.recordDamage(stale, 11, 'segment 11–20 is damaged');
    const row = await epochs.findOneByOrFail({ epoch: stale.epoch });
    assert.deepEqual([row.damagedFromSeq, row.damage], [31, 'segment 31–40 is damaged']);
    assert.equal(stale.damagedFromSeq, 31, 'the stale copy learns the damage recorded');
  });
});
