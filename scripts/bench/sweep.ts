// The leader's per-second metadata work when there is nothing to do: a retention sweep (RetentionSweeper.sweep) and the
// scheduler's query for due snapshots (Scheduler.scheduledBy), on a metadata database of 10,000 and 40,000 instances
// (--instances 10000,40000), spread evenly over the four tiers with a few snapshots each, none of them due for removal
// and no scheduled snapshot due. Prints the median and range of --runs sweeps (default 15) per size and backend: SQLite
// (better-sqlite3 runs on the event loop, so a sweep's time is time every request waits), and PostgreSQL when the
// local one answers (127.0.0.1:5432, database `test`; --no-postgres skips it). Not part of `npm test`.
//
//   npm run bench:sweep -- [--instances 10000,40000] [--runs 15] [--no-postgres]
//
// The database is built by the product's own migrations (createMetadataDataSource + runMetadataMigrations); rows are
// inserted directly. Per instance, with the default tier policies:
//   FREE: one COMPLETED ON_DEMAND snapshot (latest only: nothing to remove);
//   PROFESSIONAL: three daily SCHEDULED within the 7-day retention;
//   BUSINESS_CRITICAL: three hourly SCHEDULED within 30 days;
//   VIRTUAL_DEDICATED_CLOUD: three hourly SCHEDULED within the 7 days before thinning, and one keeper of each of the
//   three days before (one per daily bucket: nothing to thin).
// The first sweep of a sweeper (it aligns expiresAt once, and reads every thinning bucket) is reported on its own, and
// so is the scheduler's alignment of every instance's stored due time when it starts leading (the rows are inserted
// without one, as after the upgrade that added it); the steady-state sweeps and queries that follow are one simulated
// second apart, as the scheduler runs them.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { DEFAULT_TIER_POLICIES, TIERS, type Tier } from '../../src/config/tiers';
import { createMetadataDataSource, runMetadataMigrations } from '../../src/entities/data-source';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { SnapshotEntity, type SnapshotProfile } from '../../src/entities/snapshot.entity';
import { TenantEntity } from '../../src/entities/tenant.entity';
import { createLogger } from '../../src/logging/logger';
import { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import { Scheduler } from '../../src/scheduler/scheduler';
import type { SchedulerLeadership } from '../../src/scheduler/leadership';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { median } from './server-process';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const BATCH = 200;
const POSTGRES_ADMIN_URL = process.env.SNAPGRAPH_TEST_POSTGRES_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/test';

function option(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? undefined : process.argv[index + 1];
}

interface Figures {
  first: number;
  sweeps: number[];
  /** Longest event-loop stall seen during the steady-state sweeps (ms). */
  stall: number;
  /** The scheduler's first alignment of every instance's due time (all of them unset, as after the upgrade). */
  aligned: number;
  scheduled: number[];
}

/** The instances and their snapshots, `count` instances round-robin over the tiers, as of `now`. */
async function fill(db: DataSource, count: number, now: number): Promise<number> {
  const tenantId = randomUUID();
  await db.getRepository(TenantEntity).insert({ id: tenantId, name: `bench-${tenantId.slice(0, 8)}`, createdAt: now } as Partial<TenantEntity> as TenantEntity);
  let snapshotCount = 0;
  for (let start = 0; start < count; start += BATCH) {
    const instances: InstanceEntity[] = [];
    const snapshots: SnapshotEntity[] = [];
    for (let n = start; n < Math.min(count, start + BATCH); n++) {
      const tier = TIERS[n % TIERS.length];
      const { instance, history } = instanceWithHistory(tenantId, tier, n, now);
      instances.push(instance);
      snapshots.push(...history);
    }
    await db.transaction(async (manager) => {
      await manager.insert(InstanceEntity, instances);
      for (let i = 0; i < snapshots.length; i += BATCH) await manager.insert(SnapshotEntity, snapshots.slice(i, i + BATCH));
    });
    snapshotCount += snapshots.length;
  }
  return snapshotCount;
}

function instanceWithHistory(tenantId: string, tier: Tier, n: number, now: number): { instance: InstanceEntity; history: SnapshotEntity[] } {
  const id = randomUUID();
  const interval = tier === 'PROFESSIONAL' ? DAY : HOUR;
  // Creation times spread over the interval, 90 days ago: due times spread over the next interval, none in the next
  // minute (the last one at least a minute ago, the next one at least a minute ahead).
  const offset = 60_000 + ((n * 7919) % (interval - 120_000));
  const createdAt = now - 90 * DAY - offset;
  const lastGridPoint = now - offset;
  const snapshotAt = (at: number, profile: SnapshotProfile, retentionMs: number | null): SnapshotEntity =>
    Object.assign(new SnapshotEntity(), {
      id: randomUUID(),
      tenantId,
      instanceId: id,
      profile,
      status: 'COMPLETED',
      createdAt: at,
      completedAt: at + 2_000,
      expiresAt: retentionMs === null ? null : at + retentionMs,
      description: null,
      sizeBytes: 1_000_000,
      sha256: null,
      engineVersion: 'V5',
      contents: { nodeCount: 10, relationshipCount: 20 },
      error: null,
      blobKey: null,
      restorePointId: null,
      addedBytes: 1000,
      verifiedAt: null,
    } as Partial<SnapshotEntity>);
  const history: SnapshotEntity[] = [];
  if (tier === 'FREE') history.push(snapshotAt(now - 5 * DAY, 'ON_DEMAND', null));
  if (tier === 'PROFESSIONAL') for (let k = 2; k >= 0; k--) history.push(snapshotAt(lastGridPoint - k * DAY, 'SCHEDULED', 7 * DAY));
  if (tier === 'BUSINESS_CRITICAL') for (let k = 2; k >= 0; k--) history.push(snapshotAt(lastGridPoint - k * HOUR, 'SCHEDULED', 30 * DAY));
  if (tier === 'VIRTUAL_DEDICATED_CLOUD') {
    // Keepers: the first snapshot of each of the three UTC days before the thinning line's day.
    const lineDay = Math.floor((now - 7 * DAY) / DAY) * DAY;
    for (let k = 3; k >= 1; k--) history.push(snapshotAt(lineDay - k * DAY + ((n * 7919) % HOUR), 'SCHEDULED', 60 * DAY));
    for (let k = 2; k >= 0; k--) history.push(snapshotAt(lastGridPoint - k * HOUR, 'SCHEDULED', 60 * DAY));
  }
  const instance = Object.assign(new InstanceEntity(), {
    id,
    tenantId,
    name: `bench-${n}`,
    tier,
    memoryGB: 1,
    storageGB: 2,
    engineVersion: 'V5',
    status: 'RUNNING',
    availability: 'AVAILABLE',
    sourceSnapshotId: null,
    storeGeneration: 1,
    createdAt,
    lastScheduledAt: tier === 'FREE' ? null : lastGridPoint,
    nextScheduledAt: null,
    deletionClaimedAt: null,
  } satisfies InstanceEntity);
  return { instance, history };
}

async function measure(db: DataSource, count: number, runs: number): Promise<Figures> {
  const now = Date.now();
  const filled = performance.now();
  const snapshotCount = await fill(db, count, now);
  console.log(`    filled ${count} instances, ${snapshotCount} snapshots in ${((performance.now() - filled) / 1000).toFixed(1)} s`);
  // The sweep must find nothing to do; should it choose a snapshot, the bench's data is wrong.
  const snapshots = {
    deleteUnlessRead: async () => {
      throw new Error('the bench data has nothing to remove, yet the sweep chose a snapshot');
    },
    snapshotsOf: async () => [],
  } as unknown as SnapshotService;
  const config = { tiers: DEFAULT_TIER_POLICIES };
  const sweeper = new RetentionSweeper(db, config, snapshots, createLogger('silent'));
  const leadership = { check: async () => true, release: async () => undefined } as unknown as SchedulerLeadership;
  const scheduler = new Scheduler(db, config, snapshots, sweeper, leadership, createLogger('silent'));
  const internals = scheduler as unknown as { scheduledBy(now: number, horizon: number): Promise<{ due: unknown[] }>; alignGridDueTimes(): Promise<void> };
  const scheduledBy = (at: number) => internals.scheduledBy(at, at + 1_000);
  // What a scheduler does when it starts leading: every instance gets its due time (all of them, as after the upgrade).
  let started = performance.now();
  await internals.alignGridDueTimes();
  const aligned = performance.now() - started;
  // What autovacuum does within a minute of those writes: without it, PostgreSQL walks the dead index entries they
  // left, and plans from no statistics (a fresh table) with sequential scans.
  if (db.options.type === 'postgres') await db.query('VACUUM ANALYZE "instances"');

  started = performance.now();
  if ((await sweeper.sweep(now)) !== 0) throw new Error('the first sweep removed snapshots');
  const first = performance.now() - started;
  const sweeps: number[] = [];
  const scheduled: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  for (let run = 1; run <= runs; run++) {
    const at = now + run * 1_000;
    started = performance.now();
    if ((await sweeper.sweep(at)) !== 0) throw new Error('a sweep removed snapshots');
    sweeps.push(performance.now() - started);
    started = performance.now();
    const { due } = await scheduledBy(at);
    scheduled.push(performance.now() - started);
    if (due.length > 0) throw new Error(`${due.length} scheduled snapshots are due, none should be`);
    // Let the event-loop monitor see the gaps between ticks as the scheduler's timer would.
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  loop.disable();
  return { first, sweeps, stall: loop.max / 1e6, aligned, scheduled };
}

const ms = (value: number) => `${value.toFixed(1)} ms`;
const range = (values: number[]) => `median ${ms(median(values))} (${ms(Math.min(...values))}–${ms(Math.max(...values))})`;

function report(figures: Figures): void {
  console.log(`    first sweep ${ms(figures.first)}`);
  console.log(`    sweep       ${range(figures.sweeps)}; longest event-loop stall ${ms(figures.stall)}`);
  console.log(`    due times aligned at leadership ${ms(figures.aligned)}`);
  console.log(`    scheduledBy ${range(figures.scheduled)}`);
}

async function onSqlite(count: number, runs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'snapgraph-bench-sweep-'));
  const db = createMetadataDataSource({ dataDir: dir });
  try {
    await db.initialize();
    await runMetadataMigrations(db);
    console.log(`  SQLite, ${count} instances`);
    report(await measure(db, count, runs));
  } finally {
    if (db.isInitialized) await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function onPostgres(count: number, runs: number): Promise<void> {
  const admin = new Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2_000 });
  try {
    await admin.connect();
  } catch (error) {
    console.log(`  PostgreSQL skipped: ${(error as Error).message}`);
    return;
  }
  const name = `snapgraph_bench_sweep_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  const db = createMetadataDataSource({ dataDir: tmpdir(), databaseUrl: url.toString() });
  try {
    await db.initialize();
    await runMetadataMigrations(db);
    console.log(`  PostgreSQL, ${count} instances`);
    report(await measure(db, count, runs));
  } finally {
    if (db.isInitialized) await db.destroy();
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.end();
  }
}

async function main(): Promise<void> {
  const sizes = (option('instances') ?? '10000,40000').split(',').map(Number);
  const runs = Number(option('runs') ?? 15);
  if (sizes.some((n) => !Number.isInteger(n) || n <= 0) || !Number.isInteger(runs) || runs <= 0) {
    throw new Error('--instances takes positive integers separated by commas, --runs a positive integer');
  }
  console.log(`retention sweep and scheduler query with nothing to do (${runs} runs each)`);
  for (const count of sizes) await onSqlite(count, runs);
  if (!process.argv.includes('--no-postgres')) for (const count of sizes) await onPostgres(count, runs);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
