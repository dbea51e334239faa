// The migration that adds the retention sweep's indexes, on SQLite and PostgreSQL: a database of the release before
// gets them with its rows untouched, the sweep works on it, and down() takes them away again.
import assert from 'node:assert/strict';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { createLogger } from '../../src/logging/logger';
import { RetentionSweeper } from '../../src/scheduler/retention-sweeper';
import type { SnapshotService } from '../../src/services/snapshot.service';
import { describeMigration, undoThrough } from '../support/migrations';

const DAY = 24 * 3600_000;
const SWEEP_INDEXES = [['instances', 'idx_instances_tier'], ['snapshots', 'idx_snapshots_expiry'], ['snapshots', 'idx_snapshots_created']];

describeMigration('the sweep-indexes migration', (current) => {
  it('adds the indexes to a database of the release before, which the sweep then works on, and down() removes them', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    await undoThrough(db, 'SweepIndexes1767000000000');
    const indexes = async () => {
      const runner = db.createQueryRunner();
      try {
        const names = [];
        for (const [table, index] of SWEEP_INDEXES) if ((await runner.getTable(table))!.indices.some((i) => i.name === index)) names.push(index);
        return names;
      } finally {
        await runner.release();
      }
    };
    assert.deepEqual(await indexes(), []);
    const tenantId = 'tenant';
    // A row as the release before writes it (later releases add columns the entity has).
    const instanceId = 'instance';
    await db.query(
      `INSERT INTO "instances" ("id", "tenantId", "name", "tier", "memoryGB", "storageGB", "engineVersion", "status", "availability", "storeGeneration", "createdAt") ` +
        `VALUES ('${instanceId}', '${tenantId}', 'instance', 'PROFESSIONAL', 1, 2, 'V5', 'RUNNING', 'AVAILABLE', 1, ${Date.now()})`,
    );
    const now = Date.now();
    const snapshot = (id: string, createdAt: number) => ({
      id, tenantId, instanceId, profile: 'SCHEDULED' as const, status: 'COMPLETED' as const, createdAt, completedAt: createdAt + 100,
      expiresAt: createdAt + 7 * DAY, description: null, engineVersion: 'V5' as const, contents: null, error: null,
    });
    await db.getRepository(SnapshotEntity).insert([snapshot('expired', now - 8 * DAY), snapshot('kept', now - DAY)]);

    await db.runMigrations({ transaction: 'each' });
    assert.deepEqual(await indexes(), SWEEP_INDEXES.map(([, index]) => index));
    const snapshots = {
      deleteUnlessRead: async (s: SnapshotEntity) => ((await db.getRepository(SnapshotEntity).delete({ id: s.id })).affected === 1 ? 'deleted' : 'gone'),
    } as unknown as SnapshotService;
    assert.equal(await new RetentionSweeper(db, { tiers: DEFAULT_TIER_POLICIES }, snapshots, createLogger('silent')).sweep(now), 1);
    assert.deepEqual((await db.getRepository(SnapshotEntity).find()).map((s) => s.id), ['kept']);

    await undoThrough(db, 'SweepIndexes1767000000000');
    assert.deepEqual(await indexes(), []);
    assert.equal(await db.getRepository(SnapshotEntity).count(), 1);
  });
});
