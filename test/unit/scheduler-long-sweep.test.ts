// A retention sweep with much to do (the first after a start reads every thinned history; a shortened retention, or a
// long downtime, expires thousands of snapshots at once, each removal a few deletions in the blob store) must not put
// the scheduled snapshots off: they are queued within milliseconds of their due time (docs/scheduling.md).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';

import { DEFAULT_TIER_POLICIES, scheduleOf } from '../../src/config/tiers';
import type { InstanceEntity } from '../../src/entities/instance.entity';
import type { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { createLogger } from '../../src/logging/logger';
import type { SchedulerLeadership } from '../../src/scheduler/leadership';
import { scheduleGridDueAt } from '../../src/scheduler/retention';
import type { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import { Scheduler } from '../../src/scheduler/scheduler';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { insertInstanceRow } from '../support/instance-rows';
import { sqliteMetadataPerTest } from '../support/metadata-database';

describe('the scheduler while a retention sweep takes long', function () {
  this.timeout(30_000);
  const SWEEP_MS = 4_000;
  const tiers = { ...DEFAULT_TIER_POLICIES, PROFESSIONAL: { ...DEFAULT_TIER_POLICIES.PROFESSIONAL, snapshotInterval: 'PT2S' } };
  let db: DataSource;
  sqliteMetadataPerTest('snapgraph-long-sweep-', (opened) => (db = opened));

  it('queues a snapshot that falls due during the sweep on time, not once the sweep has ended', async () => {
    const createdAt = Date.now() - 1_500;
    const dueAt = scheduleGridDueAt(scheduleOf(tiers.PROFESSIONAL), null, createdAt)!;
    await insertInstanceRow(db, { tenantId: randomUUID(), tier: 'PROFESSIONAL', createdAt, nextScheduledAt: dueAt });
    const queuedAt: number[] = [];
    const snapshots = {
      enqueueScheduledSnapshot: async (instance: InstanceEntity) => {
        queuedAt.push(Date.now());
        return { id: randomUUID(), createdAt: Date.now(), instanceId: instance.id } as SnapshotEntity;
      },
    } as unknown as SnapshotService;
    let sweeps = 0;
    let firstSweepEnded!: () => void;
    const firstSweep = new Promise<number>((resolve) => (firstSweepEnded = () => resolve(Date.now())));
    const sweeper = {
      sweep: async () => {
        sweeps++;
        await new Promise((resolve) => setTimeout(resolve, SWEEP_MS));
        if (sweeps === 1) firstSweepEnded();
        return 0;
      },
    } as unknown as RetentionSweeper;
    const leadership: SchedulerLeadership = { check: async () => true, release: async () => undefined };
    const scheduler = new Scheduler(db, { tiers }, snapshots, sweeper, leadership, createLogger('silent'));
    scheduler.start();
    try {
      // Due about 0.5 s after the start, during the first sweep (4 s): queued before that sweep ended, not after it.
      const sweepEndedAt = await firstSweep;
      assert.ok(dueAt < sweepEndedAt, 'the snapshot fell due after the sweep: make the sweep longer');
      assert.ok(queuedAt.length >= 1 && queuedAt[0] < sweepEndedAt, `the snapshot due at ${dueAt} was queued at ${queuedAt[0]}, once the sweep had ended at ${sweepEndedAt}`);
    } finally {
      await scheduler.stop();
    }
  });
});
