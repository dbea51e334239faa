// The retention sweep against the product's SQLite metadata database: what it leaves alone while an operation works on
// an instance. A restore's safety snapshot is COMPLETED before the restore's load; on a keep-latest-only tier (FREE)
// it must not cost the instance its older snapshots, since a restore that then fails or is cancelled removes it too.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { DataSource } from 'typeorm';

import { DEFAULT_TIER_POLICIES, type Tier } from '../../src/config/tiers';
import { ExportTokenEntity } from '../../src/entities/export-token.entity';
import { OperationEntity } from '../../src/entities/operation.entity';
import { SnapshotEntity, type SnapshotProfile } from '../../src/entities/snapshot.entity';
import { createLogger } from '../../src/logging/logger';
import { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { insertInstanceRow, insertSnapshotRow } from '../support/instance-rows';
import { migratedSqliteMetadata } from '../support/metadata-database';

describe('retention sweep', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  let sweeper: RetentionSweeper;
  /** The snapshotUpdated events the sweep published, by snapshot id, with the expiresAt each carried. */
  let published: { id: string; expiresAt: number | null }[];
  const tenantId = randomUUID();

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-retention-'));
    // The sweep decides; removing a snapshot's data is the snapshot service's (its row goes with it here).
    const snapshots = {
      delete: async (snapshot: SnapshotEntity) => (await db.getRepository(SnapshotEntity).delete({ id: snapshot.id })).affected === 1,
      deleteUnlessRead: async (snapshot: SnapshotEntity) => ((await db.getRepository(SnapshotEntity).delete({ id: snapshot.id })).affected === 1 ? 'deleted' : 'gone'),
      snapshotsOf: (instanceId: string) => db.getRepository(SnapshotEntity).find({ where: { instanceId }, order: { createdAt: 'ASC' } }),
      publish: (snapshot: SnapshotEntity) => published.push({ id: snapshot.id, expiresAt: snapshot.expiresAt }),
    } as unknown as SnapshotService;
    published = [];
    sweeper = new RetentionSweeper(db, { tiers: DEFAULT_TIER_POLICIES }, snapshots, createLogger('silent'));
  });

  afterEach(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  async function instance(tier: Tier): Promise<string> {
    const id = randomUUID();
    await insertInstanceRow(db, { id, tenantId, name: `retained-${id.slice(0, 8)}`, tier, status: 'RESTORING', availability: 'READ_ONLY', createdAt: Date.now() - 60_000 });
    return id;
  }

  const snapshot = (instanceId: string, profile: SnapshotProfile, ageMs: number) => snapshotAt(instanceId, Date.now() - ageMs, profile);

  async function snapshotAt(instanceId: string, createdAt: number, profile: SnapshotProfile = 'SCHEDULED'): Promise<string> {
    return insertSnapshotRow(db, { tenantId, instanceId, profile, createdAt, completedAt: createdAt + 100 });
  }

  async function operation(instanceId: string, kind: OperationEntity['kind'], status: OperationEntity['status'], snapshotId: string | null = null): Promise<string> {
    const id = randomUUID();
    await db.getRepository(OperationEntity).insert({ id, tenantId, instanceId, kind, status, snapshotId, phase: null, params: {}, createdAt: Date.now() - 1_000, attempt: 1 });
    return id;
  }

  const remaining = async (instanceId: string) =>
    (await db.getRepository(SnapshotEntity).find({ where: { instanceId }, order: { createdAt: 'ASC' } })).map((s) => s.id);

  it("leaves a FREE instance's older snapshot while a restore runs on it, and applies keep-latest-only once it has ended", async () => {
    const id = await instance('FREE');
    const only = await snapshot(id, 'ON_DEMAND', 30_000);
    // The restore (from an uploaded file: it names none of the instance's snapshots) has taken its safety snapshot.
    const restore = await operation(id, 'RESTORE_FROM_FILE', 'RUNNING');
    const safety = await snapshot(id, 'PRE_RESTORE', 1_000);

    assert.equal(await sweeper.sweep(), 0);
    assert.deepEqual(await remaining(id), [only, safety], 'the sweep removed a snapshot of an instance being restored');

    // The restore succeeded: its safety snapshot is now the latest, and the older one goes.
    await db.getRepository(OperationEntity).update({ id: restore }, { status: 'SUCCEEDED' });
    assert.equal(await sweeper.sweep(), 1);
    assert.deepEqual(await remaining(id), [safety]);
  });

  it('goes on removing while only an export of the instance runs', async () => {
    const id = await instance('FREE');
    await snapshot(id, 'ON_DEMAND', 30_000);
    const latest = await snapshot(id, 'ON_DEMAND', 1_000);
    await operation(id, 'EXPORT', 'RUNNING', latest);
    assert.equal(await sweeper.sweep(), 1);
    assert.deepEqual(await remaining(id), [latest]);
  });

  it('keeps an expired snapshot while one of its export links is valid, and removes it once the link has expired', async () => {
    const id = await instance('PROFESSIONAL');
    const exported = await snapshot(id, 'ON_DEMAND', DEFAULT_RETENTION_MS + 1_000);
    const newer = await snapshot(id, 'SCHEDULED', 0);
    // Asked for a minute before the snapshot expired: the link says it works for its whole TTL.
    const linkExpiresAt = Date.now() + 14 * 60_000;
    await exportLink(exported, linkExpiresAt);
    assert.equal(await sweeper.sweep(), 0);
    assert.deepEqual(await remaining(id), [exported, newer], 'retention removed a snapshot whose export link was still valid');

    assert.equal(await sweeper.sweep(linkExpiresAt + 1), 1);
    assert.deepEqual(await remaining(id), [newer]);
  });

  it("keeps a FREE instance's older snapshot while one of its export links is valid", async () => {
    const id = await instance('FREE');
    const older = await snapshot(id, 'ON_DEMAND', 30_000);
    const latest = await snapshot(id, 'ON_DEMAND', 1_000);
    await exportLink(older, Date.now() + 15 * 60_000);
    await sweeper.onSnapshotCompleted({ id, tier: 'FREE' });
    assert.deepEqual(await remaining(id), [older, latest]);
  });

  it("thins a snapshot that crosses thinAfter after the first sweep, and keeps its bucket's oldest", async () => {
    // VIRTUAL_DEDICATED_CLOUD: hourly for 7 days, then the oldest of each UTC day. Later sweeps read only the instances
    // with a snapshot that crossed the line since the sweep before; the keeper crossed before, and is read with it.
    const id = await instance('VIRTUAL_DEDICATED_CLOUD');
    const day = Math.floor((Date.now() - 10 * DAY) / DAY) * DAY;
    const keeper = await snapshotAt(id, day + HOUR);
    await snapshotAt(id, day + 2 * HOUR);
    const newer = await snapshotAt(id, Date.now());
    const crossing = day + 2 * HOUR + 7 * DAY;
    assert.equal(await sweeper.sweep(crossing - 10_000), 0, 'the first sweep: only the keeper has crossed');
    assert.equal(await sweeper.sweep(crossing - 9_000), 0);
    assert.equal(await sweeper.sweep(crossing + 1_000), 1);
    assert.deepEqual(await remaining(id), [keeper, newer]);
  });

  it("removes a snapshot that expires after the first sweep, by the instance's expired snapshots", async () => {
    const id = await instance('PROFESSIONAL');
    const createdAt = Date.now() - DAY;
    await snapshotAt(id, createdAt);
    const newer = await snapshotAt(id, Date.now());
    assert.equal(await sweeper.sweep(), 0);
    assert.equal(await sweeper.sweep(createdAt + DEFAULT_RETENTION_MS - 1), 0);
    assert.equal(await sweeper.sweep(createdAt + DEFAULT_RETENTION_MS), 1);
    assert.deepEqual(await remaining(id), [newer]);
  });

  it("keeps an instance's newest completed snapshot past its retention, kept until replaced, and removes it once replaced", async () => {
    const id = await instance('PROFESSIONAL');
    const now = Date.now();
    await snapshotAt(id, now - 9 * DAY);
    const newest = await snapshotAt(id, now - 8 * DAY, 'ON_DEMAND');
    await insertSnapshotRow(db, { tenantId, instanceId: id, profile: 'SCHEDULED', status: 'FAILED', createdAt: now - 7 * DAY - 1, completedAt: null });
    // Expiring after the first sweep (which aligns expiresAt): found by the expired snapshots' index, as they expire.
    assert.equal(await sweeper.sweep(now - 3 * DAY), 0);
    assert.equal(await expiresAt(newest), now - DAY);

    assert.equal(await sweeper.sweep(now), 2, 'the older and the failed snapshots go');
    assert.deepEqual(await remaining(id), [newest]);
    assert.equal(await expiresAt(newest), null, 'kept until replaced');
    assert.deepEqual(published, [{ id: newest, expiresAt: null }], 'subscribers are told');
    assert.equal(await sweeper.sweep(now + 1_000), 0);
    assert.equal(published.length, 1, 'decided once');
    assert.deepEqual(await remaining(id), [newest]);

    const replacement = await snapshotAt(id, now + 2_000);
    await db.transaction((manager) => sweeper.onReplacement({ instanceId: id }, manager));
    assert.equal(await expiresAt(newest), now - DAY, 'given back its expiresAt by the completion of a newer one');
    assert.equal(await sweeper.sweep(now + 3_000), 1);
    assert.deepEqual(await remaining(id), [replacement]);
  });

  const expiresAt = async (id: string) => (await db.getRepository(SnapshotEntity).findOneByOrFail({ id })).expiresAt;

  const DAY = 24 * 3600_000;
  const HOUR = 3600_000;

  const DEFAULT_RETENTION_MS = 7 * 24 * 3600_000;

  async function exportLink(snapshotId: string, expiresAt: number): Promise<void> {
    const id = randomUUID();
    await db.getRepository(ExportTokenEntity).insert({
      id,
      tenantId,
      snapshotId,
      apiKeyId: null,
      tokenHash: id.replace(/-/g, '').padEnd(64, '0'),
      fileName: 'exported.backup',
      format: 'ARCHIVE',
      sizeBytes: null,
      sha256: null,
      createdAt: Date.now(),
      expiresAt,
    });
  }
});
