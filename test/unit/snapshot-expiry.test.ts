// A snapshot's expiresAt is when retention removes it (docs/api.md), for every snapshot retention removes by time:
// failed ones as well as completed ones, and under the retention the server runs with now, not the one it ran with
// when the snapshot completed (config changes apply at the next start, to every snapshot).
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
import { createLogger } from '../../src/logging/logger';
import { snapshotsToRemove } from '../../src/scheduler/retention';
import { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import type { BackupService } from '../../src/services/backup.service';
import { InstanceService } from '../../src/services/instance.service';
import { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { insertInstanceRow, insertSnapshotRow } from '../support/instance-rows';
import { createMigratedTestDatabase, describePostgres, type TestDatabase } from '../support/postgres';

const DAY = 24 * 3600_000;

type Backend = { name: 'SQLite' } | { name: 'PostgreSQL'; adminUrl(): string };

describe('snapshot expiresAt on SQLite metadata', () => expiryTests({ name: 'SQLite' }));
describePostgres('snapshot expiresAt on PostgreSQL metadata', (postgres) => expiryTests({ name: 'PostgreSQL', adminUrl: () => postgres.adminUrl() }));

function expiryTests(backend: Backend) {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  const tenantId = randomUUID();

  beforeEach(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-expiry-'));
    database = backend.name === 'PostgreSQL' ? await createMigratedTestDatabase(backend.adminUrl()) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
  });

  afterEach(async () => {
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  function services(tiers: unknown = {}): { snapshots: SnapshotService; sweeper: RetentionSweeper; config: AppConfig } {
    const config = { tiers: resolveTierPolicies(tiers), bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    const instances = new InstanceService(db, config, {} as GraphStoreProvider, events);
    // What a removal asks of the backups: nothing to do for a snapshot that has no data here.
    const backups = { forgetExport: async () => undefined, collectSoon: async () => undefined } as unknown as BackupService;
    const snapshots = new SnapshotService(db, config, instances, {} as EncryptedBlobStore, events, () => undefined, backups);
    const sweeper = new RetentionSweeper(db, config, snapshots, createLogger('silent'));
    // As the server wires them (src/app.ts).
    snapshots.onReplacement((snapshot, manager) => sweeper.onReplacement(snapshot, manager));
    return { snapshots, sweeper, config };
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

  it("follows the tier's retention as configured at the start, as the sweep that removes it does", async () => {
    // Completed (or failed) under the defaults: PROFESSIONAL P7D, BUSINESS_CRITICAL P30D, FREE latest only.
    const shortened = await snapshotOf('BUSINESS_CRITICAL', 'COMPLETED');
    await db.getRepository(SnapshotEntity).update({ id: shortened.id }, { expiresAt: shortened.createdAt + 30 * DAY });
    const failedBefore = await snapshotOf('BUSINESS_CRITICAL', 'FAILED');
    const turnedOff = await snapshotOf('PROFESSIONAL', 'COMPLETED', Date.now() + 7 * DAY);
    const nowTimed = await snapshotOf('FREE', 'COMPLETED', null);
    const running = await snapshotOf('BUSINESS_CRITICAL', 'IN_PROGRESS');

    // The next start: BUSINESS_CRITICAL keeps 3 days, PROFESSIONAL keeps everything, FREE keeps 2 days.
    const { sweeper } = services({
      BUSINESS_CRITICAL: { retention: 'P3D' },
      PROFESSIONAL: { retention: null },
      FREE: { keepLatestOnly: false, retention: 'P2D' },
    });
    assert.equal(await sweeper.sweep(), 0);
    assert.equal(await stored(shortened.id), shortened.createdAt + 3 * DAY);
    assert.equal(await stored(failedBefore.id), failedBefore.createdAt + 3 * DAY);
    assert.equal(await stored(turnedOff.id), null);
    assert.equal(await stored(nowTimed.id), nowTimed.createdAt + 2 * DAY);
    assert.equal(await stored(running.id), null, 'set when it completes');
  });

  it("is null on an instance's newest completed snapshot kept past its retention, across restarts, until a newer one completes", async () => {
    const now = Date.now();
    // Past its retention (P7D), one with the expiresAt it completed with, one from before expiresAt was set.
    const timed = await insertInstanceRow(db, { tenantId, tier: 'PROFESSIONAL', memoryGB: 1 });
    const timedNewest = await insertSnapshotRow(db, { tenantId, instanceId: timed, createdAt: now - 8 * DAY, expiresAt: now - DAY });
    const legacy = await insertInstanceRow(db, { tenantId, tier: 'PROFESSIONAL', memoryGB: 1 });
    await insertSnapshotRow(db, { tenantId, instanceId: legacy, createdAt: now - 9 * DAY, expiresAt: null });
    const legacyNewest = await insertSnapshotRow(db, { tenantId, instanceId: legacy, createdAt: now - 8 * DAY, expiresAt: null });

    assert.equal(await services().sweeper.sweep(now), 1, 'only the older one goes');
    const left = async (instanceId: string) => (await db.getRepository(SnapshotEntity).findBy({ instanceId })).map((s) => s.id);
    assert.deepEqual(await left(legacy), [legacyNewest]);
    assert.equal(await stored(legacyNewest), null, 'kept until replaced');
    assert.equal(await stored(timedNewest), null, 'kept until replaced');

    // The next start aligns every expiresAt with the retention, except these.
    const { snapshots, sweeper } = services();
    assert.equal(await sweeper.sweep(now + 1_000), 0);
    assert.equal(await stored(legacyNewest), null);
    assert.equal(await stored(timedNewest), null);

    // A newer snapshot completes: in its transaction, the one it replaces gets its expiresAt back, and goes.
    const replacement = Object.assign(new SnapshotEntity(), await db.getRepository(SnapshotEntity).findOneByOrFail({
      id: await insertSnapshotRow(db, { tenantId, instanceId: timed, status: 'IN_PROGRESS', createdAt: now + 2_000, completedAt: null }),
    }));
    await snapshots.complete(replacement, { status: 'COMPLETED', completedAt: now + 3_000, expiresAt: now + 2_000 + 7 * DAY });
    assert.equal(await stored(timedNewest), now - DAY);
    assert.equal(await stored(legacyNewest), null, "another instance's is not replaced");
    assert.equal(await sweeper.sweep(now + 4_000), 1);
    assert.deepEqual(await left(timed), [replacement.id]);
  });

  it('is removed only while a newer completed snapshot of its instance is still there, looked at as its row goes', async () => {
    const { snapshots } = services();
    const now = Date.now();
    const instanceId = await insertInstanceRow(db, { tenantId, tier: 'PROFESSIONAL', memoryGB: 1 });
    const row = async (id: string) => db.getRepository(SnapshotEntity).findOneByOrFail({ id });
    const expired = [
      await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 9 * DAY, expiresAt: now - 2 * DAY }),
      await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 8 * DAY, expiresAt: now - DAY }),
    ];
    const newer = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - DAY, expiresAt: now + 6 * DAY });
    await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now, status: 'FAILED', expiresAt: now + 7 * DAY });

    assert.equal(await snapshots.deleteUnlessRead(await row(expired[0]), { supersededOnly: true }), 'deleted');
    // Chosen while the newer one was there, which a user deleted since.
    const chosen = await row(expired[1]);
    await db.getRepository(SnapshotEntity).delete({ id: newer });
    assert.equal(await snapshots.deleteUnlessRead(chosen, { supersededOnly: true }), 'needed');
    assert.equal((await row(expired[1])).id, expired[1], 'still there: the newest completed one');
  });

  it("is null on an instance's newest sound snapshot while a newer one is found damaged, until one is sound", async () => {
    const { snapshots, sweeper } = services();
    const now = Date.now();
    const row = async (id: string) => db.getRepository(SnapshotEntity).findOneByOrFail({ id });
    const left = async (instanceId: string) => (await db.getRepository(SnapshotEntity).findBy({ instanceId })).map((s) => s.id).sort();
    const instanceId = await insertInstanceRow(db, { tenantId, tier: 'PROFESSIONAL', memoryGB: 1 });
    await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 10 * DAY, expiresAt: now - 3 * DAY });
    const sound = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 9 * DAY, expiresAt: now - 2 * DAY });
    const damaged = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 8 * DAY, expiresAt: now - DAY });
    await snapshots.recordDamage(await row(damaged), 'chunk 3 of 9 does not match its hash');

    assert.equal(await sweeper.sweep(now), 1, 'the older one goes');
    assert.deepEqual(await left(instanceId), [sound, damaged].sort());
    assert.equal(await stored(sound), null, 'the newest sound one is kept until replaced');
    assert.equal(await stored(damaged), null, 'the newest one too');
    // The next start keeps both so.
    const restarted = services();
    assert.equal(await restarted.sweeper.sweep(now + 1_000), 0);
    assert.equal(await stored(sound), null);

    // A later verification reads the damaged one back whole: in its transaction, it replaces the sound one again.
    await restarted.snapshots.recordVerification(await row(damaged), { error: null, verifiedAt: now + 2_000 });
    assert.equal(await stored(sound), now - 2 * DAY);
    assert.equal(await restarted.sweeper.sweep(now + 3_000), 1);
    assert.deepEqual(await left(instanceId), [damaged]);
  });

  it('gives a kept sound snapshot its expiresAt back when it is found damaged itself, and a newer one completed', async () => {
    const { snapshots, sweeper } = services();
    const now = Date.now();
    const row = async (id: string) => db.getRepository(SnapshotEntity).findOneByOrFail({ id });
    const instanceId = await insertInstanceRow(db, { tenantId, tier: 'PROFESSIONAL', memoryGB: 1 });
    const sound = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 9 * DAY, expiresAt: now - 2 * DAY });
    const damaged = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - DAY, expiresAt: now + 6 * DAY });
    await snapshots.recordDamage(await row(damaged), 'the archive ends before its last record');
    assert.equal(await sweeper.sweep(now), 0);
    assert.equal(await stored(sound), null);

    await snapshots.recordDamage(await row(sound), 'chunk 1 of 4 cannot be read');
    assert.equal(await stored(sound), now - 2 * DAY, 'replaced by the newer one, damaged as well');
    assert.equal(await sweeper.sweep(now + 1_000), 1);
  });

  it('is removed, when sound, only while a newer sound completed snapshot is still there', async () => {
    const { snapshots } = services();
    const now = Date.now();
    const instanceId = await insertInstanceRow(db, { tenantId, tier: 'PROFESSIONAL', memoryGB: 1 });
    const row = async (id: string) => db.getRepository(SnapshotEntity).findOneByOrFail({ id });
    const sound = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 9 * DAY, expiresAt: now - 2 * DAY });
    const damagedOlder = await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - 10 * DAY, expiresAt: now - 3 * DAY, error: 'damaged' });
    const chosen = await row(sound);
    // Chosen while the newer one was thought sound; verification has found it damaged since.
    await insertSnapshotRow(db, { tenantId, instanceId, createdAt: now - DAY, expiresAt: now + 6 * DAY, error: 'damaged' });
    assert.equal(await snapshots.deleteUnlessRead(chosen, { supersededOnly: true }), 'needed');
    assert.equal((await row(sound)).id, sound, 'still there: the newest sound one');
    assert.equal(await snapshots.deleteUnlessRead(await row(damagedOlder), { supersededOnly: true }), 'deleted', 'a damaged one is replaced by any newer one');
    await db.getRepository(SnapshotEntity).delete({ id: sound });
    assert.equal(await snapshots.deleteUnlessRead(chosen, { supersededOnly: true }), 'gone', 'removed by someone else meanwhile');
  });
}
