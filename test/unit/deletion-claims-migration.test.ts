// The migration that records when a deletion claimed its instance, on SQLite and PostgreSQL: a database of the release
// before keeps its rows and triggers, a claim that release left half-way (DESTROYING, still AVAILABLE) counts as made at
// the upgrade, and down() takes the column away again.
import assert from 'node:assert/strict';
import { describeMigration, undoThrough } from '../support/migrations';

describeMigration('the deletion-claims migration', (current) => {
  it('adds the column, dates the claims the release before left, keeps the triggers, and down() removes it', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    await undoThrough(db, 'DeletionClaims1767200000000');
    const row = (id: string, status: string, availability: string) =>
      db.query(
        `INSERT INTO "instances" ("id", "tenantId", "name", "tier", "memoryGB", "storageGB", "engineVersion", "status", "availability", "storeGeneration", "createdAt") ` +
          `VALUES ('${id}', 'tenant', '${id}', 'FREE', 1, 2, 'V5', '${status}', '${availability}', 1, ${Date.now()})`,
      );
    await row('claimed', 'DESTROYING', 'AVAILABLE');
    await row('committed', 'DESTROYING', 'UNAVAILABLE');
    await row('running', 'RUNNING', 'AVAILABLE');
    const versionChangesOnUpdate = async () => {
      const version = async () => (await db.query(`SELECT "version" FROM "tenant_data_versions" WHERE "tenantId" = 'tenant'`))[0]?.version;
      const before = await version();
      await db.query(`UPDATE "instances" SET "name" = 'renamed' WHERE "id" = 'running'`);
      return (await version()) !== before;
    };

    const before = Date.now();
    await db.runMigrations({ transaction: 'each' });
    const claims = await db.query(`SELECT "id", "deletionClaimedAt" FROM "instances" ORDER BY "id"`);
    const claimedAt = (id: string) => claims.find((c: { id: string }) => c.id === id).deletionClaimedAt;
    assert.ok(Math.abs(Number(claimedAt('claimed')) - before) < 60_000, `claimed at ${claimedAt('claimed')}`);
    assert.equal(claimedAt('committed'), null);
    assert.equal(claimedAt('running'), null);
    assert.ok(await versionChangesOnUpdate(), 'the tenant data version moves after the upgrade');

    await undoThrough(db, 'DeletionClaims1767200000000');
    const runner = db.createQueryRunner();
    try {
      assert.equal((await runner.getTable('instances'))!.columns.some((c) => c.name === 'deletionClaimedAt'), false);
    } finally {
      await runner.release();
    }
    assert.equal((await db.query('SELECT "id" FROM "instances"')).length, 3);
    assert.ok(await versionChangesOnUpdate(), 'the tenant data version moves after down()');
  });
});
