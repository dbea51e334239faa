// The migration that brought the change log (ChangeLog1766200000000), on SQLite and PostgreSQL, over a database of the
// release before it: the restore points that release recorded keep their manifest and base.
import assert from 'node:assert/strict';
import { describeMigration, undoThrough } from '../support/migrations';

describeMigration('the change-log migration', (current) => {
  it("keeps every restore point's manifest key and base id, and down() keeps them too", async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    await undoThrough(db, 'ChangeLog1766200000000');
    // Restore points as the release before the change log recorded them: a base (its own base) and a delta on it.
    const points = [
      ['base-point', null, 'base-point', 'tenants/t/manifests/base-point.json'],
      ['delta-point', 'base-point', 'base-point', 'tenants/t/manifests/delta-point.json'],
    ] as const;
    for (const [id, parentId, baseId, manifestKey] of points) {
      await db.query(
        `INSERT INTO "restore_points" ("id", "tenantId", "instanceId", "kind", "parentId", "baseId", "epoch", "seq", "chainLength",
           "chainDeltaLines", "chainDeltaBytes", "addedBytes", "manifestBytes", "manifestKey", "stats", "createdAt")
         VALUES ('${id}', 't', 'i', '${parentId ? 'DELTA' : 'BASE'}', ${parentId ? `'${parentId}'` : 'NULL'}, '${baseId}', 7, 1, 1, 0, 0, 10, 10,
           '${manifestKey}', '{}', 1000)`,
      );
    }
    const read = async () =>
      (await db.query(`SELECT "id", "baseId", "manifestKey" FROM "restore_points" ORDER BY "id"`)) as { id: string; baseId: string; manifestKey: string }[];
    const expected = points.map(([id, , baseId, manifestKey]) => ({ id, baseId, manifestKey })).sort((a, b) => a.id.localeCompare(b.id));

    await db.runMigrations({ transaction: 'each' });
    assert.deepEqual(await read(), expected, 'the upgrade kept the restore points as they were');
    await undoThrough(db, 'ChangeLog1766200000000');
    assert.deepEqual(await read(), expected, 'undoing it kept them as they were');
  });
});
