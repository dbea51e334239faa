// The retention sweep runs once a tick (a second), and also at the moment a snapshot expires: the scheduler knows the
// next expiresAt as it knows the next due time, and wakes for it, so an expired snapshot goes within milliseconds of
// its expiresAt, not up to a tick later (docs/scheduling.md).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';

import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { createLogger } from '../../src/logging/logger';
import type { SchedulerLeadership } from '../../src/scheduler/leadership';
import type { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import { Scheduler } from '../../src/scheduler/scheduler';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { insertInstanceRow, insertSnapshotRow, ONE_NODE_CONTENTS } from '../support/instance-rows';
import { sqliteMetadataPerTest } from '../support/metadata-database';

describe('the scheduler and snapshot expiry', function () {
  this.timeout(30_000);
  /** Far longer than the test: a sweep that comes before the next regular tick was woken for the expiry. */
  const TICK_MS = 600_000;
  let db: DataSource;
  sqliteMetadataPerTest('snapgraph-expiry-wake-', (opened) => (db = opened));

  it("starts a retention sweep at a snapshot's expiresAt, not at the next tick", async () => {
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    await insertInstanceRow(db, { id: instanceId, tenantId, tier: 'PROFESSIONAL', createdAt: Date.now() - 60_000 });
    const expiresAt = Date.now() + 1_000;
    await insertSnapshotRow(db, { tenantId, instanceId, profile: 'SCHEDULED', createdAt: expiresAt - 10_000, expiresAt, contents: ONE_NODE_CONTENTS });
    const sweptAt: number[] = [];
    let sweptAfterExpiry!: (now: number) => void;
    const sweepAfterExpiry = new Promise<number>((resolve) => (sweptAfterExpiry = resolve));
    const sweeper = {
      sweep: async (now: number) => {
        sweptAt.push(now);
        if (now >= expiresAt) sweptAfterExpiry(now);
        return 0;
      },
    } as unknown as RetentionSweeper;
    const leadership: SchedulerLeadership = { check: async () => true, release: async () => undefined };
    const tiers = DEFAULT_TIER_POLICIES;
    const scheduler = new Scheduler(db, { tiers }, {} as SnapshotService, sweeper, leadership, createLogger('silent'), { tickMs: TICK_MS });
    scheduler.start();
    try {
      // Without a wake for the expiry, the sweep after the first would come a tick (10 minutes) later: the test times out.
      const now = await sweepAfterExpiry;
      assert.ok(now >= expiresAt, 'the sweep is not early');
      assert.equal(sweptAt.filter((at) => at >= expiresAt).length, 1, 'one sweep for the expiry');
    } finally {
      await scheduler.stop();
    }
  });

  // The last sweep's start was read from the clock before the step: measured from it, none was due for the whole step.
  it('goes on sweeping once a tick after the clock is stepped back a minute', async () => {
    const realNow = Date.now;
    let offsetMs = 0;
    Date.now = () => realNow() + offsetMs;
    const sweptAt: number[] = [];
    const sweeper = { sweep: async (now: number) => sweptAt.push(now) && 0 } as unknown as RetentionSweeper;
    const leadership: SchedulerLeadership = { check: async () => true, release: async () => undefined };
    const scheduler = new Scheduler(db, { tiers: DEFAULT_TIER_POLICIES }, {} as SnapshotService, sweeper, leadership, createLogger('silent'), {
      tickMs: 200,
    });
    scheduler.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.ok(sweptAt.length >= 1);
      const before = sweptAt.length;
      offsetMs = -60_000;
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.ok(sweptAt.length - before >= 3, `${sweptAt.length - before} sweeps in the 1.5 s after the clock was stepped back (ticks of 200 ms)`);
    } finally {
      await scheduler.stop();
      Date.now = realNow;
    }
  });
});
