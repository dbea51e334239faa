// The migration that stores each instance's next scheduled due time, on SQLite and PostgreSQL: a database of the
// release before gets the column and its indexes with its rows and triggers untouched, the scheduler's first tick gives
// every instance its due time and finds the due ones, and down() takes it all away again.
import assert from 'node:assert/strict';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { createLogger } from '../../src/logging/logger';
import type { SchedulerLeadership } from '../../src/scheduler/leadership';
import type { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import { Scheduler } from '../../src/scheduler/scheduler';
import type { SnapshotEntity } from '../../src/entities/snapshot.entity';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { describeMigration, undoThrough } from '../support/migrations';
import { assertGridDueTimesStored } from '../support/schedule-due-times';

const HOUR = 3600_000;
const INDEXES = ['idx_instances_next_scheduled', 'idx_instances_last_scheduled', 'idx_instances_created'];

describeMigration('the schedule-due-times migration', (current) => {
  it('adds the column and indexes to a database of the release before, which the scheduler then fills in, and down() removes them', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    await undoThrough(db, 'ScheduleDueTimes1767100000000');
    const schema = async () => {
      const runner = db.createQueryRunner();
      try {
        const table = (await runner.getTable('instances'))!;
        return { column: table.columns.some((c) => c.name === 'nextScheduledAt'), indexes: INDEXES.filter((name) => table.indices.some((i) => i.name === name)) };
      } finally {
        await runner.release();
      }
    };
    assert.deepEqual(await schema(), { column: false, indexes: [] });
    // Rows as the release before writes them: no nextScheduledAt. One hourly instance due (its last one 70 min ago).
    const now = Date.now();
    const row = (id: string, lastScheduledAt: number | null) =>
      db.query(
        `INSERT INTO "instances" ("id", "tenantId", "name", "tier", "memoryGB", "storageGB", "engineVersion", "status", "availability", "storeGeneration", "createdAt", "lastScheduledAt") ` +
          `VALUES ('${id}', 'tenant', '${id}', 'BUSINESS_CRITICAL', 1, 2, 'V5', 'RUNNING', 'AVAILABLE', 1, ${now - 5 * HOUR}, ${lastScheduledAt})`,
      );
    await row('due', now - 70 * 60_000);
    await row('not-due', now - 20 * 60_000);

    // The instances' triggers stay (on SQLite, a table that TypeORM rebuilds for a column loses them): a change to an
    // instance still gives its tenant a new data version.
    const versionChangesOnUpdate = async () => {
      const version = async () => (await db.query(`SELECT "version" FROM "tenant_data_versions" WHERE "tenantId" = 'tenant'`))[0]?.version;
      const before = await version();
      await db.query(`UPDATE "instances" SET "name" = 'renamed' WHERE "id" = 'not-due'`);
      return (await version()) !== before;
    };

    await db.runMigrations({ transaction: 'each' });
    assert.deepEqual(await schema(), { column: true, indexes: INDEXES });
    assert.ok(await versionChangesOnUpdate(), 'the tenant data version moves after the upgrade');
    const queued: string[] = [];
    const snapshots = {
      enqueueScheduledSnapshot: async (instance: InstanceEntity) => {
        queued.push(instance.id);
        return { id: 'snapshot', createdAt: Date.now() } as SnapshotEntity;
      },
    } as unknown as SnapshotService;
    const leadership: SchedulerLeadership = { check: async () => true, release: async () => undefined };
    const sweeper = { sweep: async () => 0 } as unknown as RetentionSweeper;
    const scheduler = new Scheduler(db, { tiers: DEFAULT_TIER_POLICIES }, snapshots, sweeper, leadership, createLogger('silent'));
    scheduler.start();
    for (let waited = 0; queued.length === 0 && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    await scheduler.stop();
    assert.deepEqual(queued, ['due']);
    await assertGridDueTimesStored(db, DEFAULT_TIER_POLICIES);

    await undoThrough(db, 'ScheduleDueTimes1767100000000');
    assert.deepEqual(await schema(), { column: false, indexes: [] });
    assert.equal((await db.query('SELECT "id" FROM "instances"')).length, 2);
    assert.ok(await versionChangesOnUpdate(), 'the tenant data version moves after down()');
  });
});
