// The scheduler's per-tick query for due snapshots, against the product's metadata database on SQLite and PostgreSQL:
// it finds exactly the instances scheduledDueAt says are due (the clock stepped back included, and after a config
// change), and a tick with nothing due loads no instance.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource, EntitySubscriberInterface } from 'typeorm';
import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES, type Tier, type TierPolicy, TIERS } from '../../src/config/tiers';
import { InstanceEntity, type InstanceStatus } from '../../src/entities/instance.entity';
import { isAppError } from '../../src/errors/app-error';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { createLogger } from '../../src/logging/logger';
import type { SchedulerLeadership } from '../../src/scheduler/leadership';
import { scheduledDueAt } from '../../src/scheduler/retention';
import type { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import { Scheduler } from '../../src/scheduler/scheduler';
import { tierSchedules } from '../../src/scheduler/tier-schedules';
import type { BackupService } from '../../src/services/backup.service';
import { InstanceService } from '../../src/services/instance.service';
import { SnapshotService } from '../../src/services/snapshot.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { insertInstanceRow } from '../support/instance-rows';
import { seeded } from '../support/seeded-random';
import { assertGridDueTimesStored } from '../support/schedule-due-times';
import { describeMigration } from '../support/migrations';

const SECOND = 1_000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;
type Tiers = Record<Tier, TierPolicy>;
const withIntervals = (intervals: Partial<Record<Tier, string | null>>): Tiers =>
  Object.fromEntries(TIERS.map((tier) => [tier, tier in intervals ? { ...DEFAULT_TIER_POLICIES[tier], snapshotInterval: intervals[tier] } : DEFAULT_TIER_POLICIES[tier]])) as Tiers;
/** Second-scale intervals, one of them an odd number of milliseconds (half of it is not whole). */
const SHORT = withIntervals({ PROFESSIONAL: 'PT3S', BUSINESS_CRITICAL: 'PT7.001S', VIRTUAL_DEDICATED_CLOUD: 'PT2S' });
/** SHORT after a config change: other intervals, one tier no longer scheduled and one scheduled now. */
const CHANGED = withIntervals({ FREE: 'PT4S', PROFESSIONAL: 'PT5S', BUSINESS_CRITICAL: 'PT7.001S', VIRTUAL_DEDICATED_CLOUD: null });

interface DueQuery {
  scheduledBy(now: number, horizon: number): Promise<{ due: { instance: InstanceEntity; dueAt: number }[]; soonest: number | null }>;
  alignGridDueTimes(): Promise<void>;
  tick(): Promise<number | null>;
}

function schedulerOn(db: DataSource, tiers: Tiers, snapshots = {} as SnapshotService): DueQuery {
  const sweeper = { sweep: async () => 0 } as unknown as RetentionSweeper;
  const leadership: SchedulerLeadership = { check: async () => true, release: async () => undefined };
  return new Scheduler(db, { tiers }, snapshots, sweeper, leadership, createLogger('silent')) as unknown as DueQuery;
}

function countInstanceLoads(db: DataSource): () => number {
  let loads = 0;
  const counter: EntitySubscriberInterface<InstanceEntity> = { listenTo: () => InstanceEntity, afterLoad: () => void loads++ };
  db.subscribers.push(counter);
  return () => loads;
}

/** What the query must answer at `now`, by scheduledDueAt over every instance. */
async function expectedAt(db: DataSource, tiers: Tiers, now: number, horizon: number): Promise<{ due: string[]; soonest: number | null }> {
  const schedules = tierSchedules(tiers);
  const dueTimes = (await db.getRepository(InstanceEntity).find())
    .filter((instance) => instance.status === 'RUNNING' || instance.status === 'RESTORING')
    .map((instance) => ({ id: instance.id, dueAt: scheduledDueAt(schedules[instance.tier], instance.lastScheduledAt, instance.createdAt, now) }))
    .filter((entry): entry is { id: string; dueAt: number } => entry.dueAt !== null);
  const later = dueTimes.filter(({ dueAt }) => dueAt > now && dueAt <= horizon).map(({ dueAt }) => dueAt);
  return { due: dueTimes.filter(({ dueAt }) => dueAt <= now).map(({ id }) => id).sort(), soonest: later.length ? Math.min(...later) : null };
}

/** Instances of every tier and status, created and last scheduled anywhere around `now`, some far ahead of it. */
async function insertScatteredInstances(db: DataSource, tenantId: string, now: number, seed: number): Promise<void> {
  const next = seeded(seed);
  const statuses: InstanceStatus[] = ['RUNNING', 'RUNNING', 'RESTORING', 'CREATING', 'FAILED'];
  for (let n = 0; n < 300; n++) {
    const span = 8 * SECOND;
    await insertInstanceRow(db, {
      tenantId,
      tier: TIERS[Math.floor(next() * TIERS.length)],
      status: statuses[Math.floor(next() * statuses.length)],
      createdAt: Math.round(now - 20 * span + next() * 23 * span),
      lastScheduledAt: next() < 0.3 ? null : Math.round(now - 3 * span + next() * 5 * span),
    });
  }
}

describeMigration('the scheduler query for due snapshots', (current) => {
  it('loads no instance on a tick with nothing due', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    const tenantId = randomUUID();
    const now = Date.now();
    const count = 80;
    for (let n = 0; n < count; n++) {
      const tier = TIERS[n % TIERS.length];
      const interval = tier === 'PROFESSIONAL' ? DAY : HOUR;
      // Due times spread over the interval, the last one at least a minute ago, the next one at least a minute ahead.
      const offset = 60 * SECOND + Math.floor(((interval - 120 * SECOND) * n) / count);
      await insertInstanceRow(db, { tenantId, tier, createdAt: now - 90 * DAY - offset, lastScheduledAt: tier === 'FREE' ? null : now - offset });
    }
    const scheduler = schedulerOn(db, DEFAULT_TIER_POLICIES);
    await scheduler.tick();
    const loads = countInstanceLoads(db);
    await scheduler.tick();
    assert.equal(loads(), 0);
  });

  it('finds exactly the instances scheduledDueAt says are due, and the soonest due time after now, as snapshots are taken', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    const start = Date.now();
    await insertScatteredInstances(db, randomUUID(), start, 17);
    const config = { tiers: SHORT, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    const instances = new InstanceService(db, config, {} as GraphStoreProvider, events);
    const snapshots = new SnapshotService(db, config, instances, {} as EncryptedBlobStore, events, () => undefined, {} as BackupService);
    const scheduler = schedulerOn(db, SHORT, snapshots);
    let taken = 0;
    // Nothing runs the snapshots queued here: their instances stay busy, and stay due.
    const busy = new Set<string>();
    for (let now = start - 4 * SECOND; now < start + 12 * SECOND; now += 373) {
      const expected = await expectedAt(db, SHORT, now, now + SECOND);
      const { due, soonest } = await scheduler.scheduledBy(now, now + SECOND);
      assert.deepEqual({ due: due.map(({ instance }) => instance.id).sort(), soonest }, expected, `at start + ${now - start} ms`);
      // The snapshots the scheduler would take (a busy instance, its snapshot queued already, is CONFLICT: tried once).
      for (const { instance } of due) {
        if (busy.has(instance.id)) continue;
        busy.add(instance.id);
        try {
          await snapshots.enqueueScheduledSnapshot(instance);
          taken++;
        } catch (error) {
          if (!isAppError(error)) throw error;
        }
      }
    }
    assert.ok(taken > 30, `${taken} snapshots taken`);
  });

  it('writes no instance row on a tick after a creation or a scheduled snapshot: each stores its next due time itself', async () => {
    // A write of an instance row, even of the scheduler's own column, gives its tenant a new data version, and the
    // response cache then executes the tenant's next queries again.
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    const tenantId = randomUUID();
    const principal = { tenantId, tenantName: 't', role: 'ADMIN', apiKeyId: randomUUID(), apiKeyName: 'k' } as const;
    const config = { tiers: SHORT, bytesPerStorageGB: 2 ** 30 } as AppConfig;
    const events = createInMemoryEventBus();
    const instances = new InstanceService(db, config, {} as GraphStoreProvider, events);
    const snapshots = new SnapshotService(db, config, instances, {} as EncryptedBlobStore, events, () => undefined, {} as BackupService);
    const scheduler = schedulerOn(db, SHORT, snapshots);
    await scheduler.tick();
    const version = async () => (await db.query(`SELECT "version" FROM "tenant_data_versions" WHERE "tenantId" = '${tenantId}'`))[0]?.version as string;

    const created = [];
    for (const tier of TIERS) created.push(await instances.create(principal, { name: tier.toLowerCase(), tier }, { status: 'CREATING', sourceSnapshotId: null }));
    await assertGridDueTimesStored(db, SHORT);
    const afterCreation = await version();
    await scheduler.tick();
    assert.equal(await version(), afterCreation, 'a tick wrote an instance row after its creation');

    const professional = created.find((instance) => instance.tier === 'PROFESSIONAL')!;
    await db.getRepository(InstanceEntity).update(professional.id, { status: 'RUNNING' });
    await snapshots.enqueueScheduledSnapshot({ ...professional, status: 'RUNNING' });
    await assertGridDueTimesStored(db, SHORT);
    const afterSnapshot = await version();
    await scheduler.tick();
    assert.equal(await version(), afterSnapshot, 'a tick wrote an instance row after its scheduled snapshot');
  });

  it('is exact after the config changed, from the first tick', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    const start = Date.now();
    await insertScatteredInstances(db, randomUUID(), start, 4242);
    await schedulerOn(db, SHORT).scheduledBy(start, start + SECOND);
    const scheduler = schedulerOn(db, CHANGED);
    await scheduler.alignGridDueTimes();
    await assertGridDueTimesStored(db, CHANGED);
    for (let now = start - 4 * SECOND; now < start + 12 * SECOND; now += 373) {
      const expected = await expectedAt(db, CHANGED, now, now + SECOND);
      const { due, soonest } = await scheduler.scheduledBy(now, now + SECOND);
      assert.deepEqual({ due: due.map(({ instance }) => instance.id).sort(), soonest }, expected, `at start + ${now - start} ms`);
    }
  });
});
