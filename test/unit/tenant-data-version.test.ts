// The tenant data version (migration 1766500000000 and entities/tenant-data-version.ts) on a metadata database that
// went through every migration: this also fails if a later migration loses the triggers (SQLite drops a table's
// triggers when TypeORM rebuilds it).
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { type TenantDataVersion, tenantDataVersion } from '../../src/entities/tenant-data-version';
import { createMigratedTestDatabase, describePostgres, type TestDatabase, withClient } from '../support';

interface Fixture {
  db: DataSource;
  versionOf: TenantDataVersion;
  /** A placeholder for the n-th parameter, as the database writes it. */
  p(n: number): string;
}

function itCountsChanges(open: () => Promise<Fixture>): void {
  let fixture: Fixture;
  before(async () => {
    fixture = await open();
  });

  const insertInstance = (tenantId: string, id = randomUUID()) => {
    const { db, p } = fixture;
    const columns = '"id", "tenantId", "name", "tier", "memoryGB", "storageGB", "engineVersion", "status", "availability", "createdAt"';
    return db
      .query(`INSERT INTO "instances" (${columns}) VALUES (${[1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(p).join(', ')})`, [
        id, tenantId, 'versioned', 'FREE', 1, 1, 'V5', 'RUNNING', 'AVAILABLE', Date.now(),
      ])
      .then(() => id);
  };
  const insertSnapshot = (tenantId: string, instanceId: string) => {
    const { db, p } = fixture;
    return db.query(
      `INSERT INTO "snapshots" ("id", "tenantId", "instanceId", "profile", "status", "createdAt", "engineVersion") VALUES (${[1, 2, 3, 4, 5, 6, 7].map(p).join(', ')})`,
      [randomUUID(), tenantId, instanceId, 'ON_DEMAND', 'PENDING', Date.now(), 'V5'],
    );
  };

  it('has no version for a tenant nothing was counted for: nothing of it is kept', async () => {
    assert.equal(await fixture.versionOf(randomUUID()), null);
  });

  it("gives a new version at every insert, update and delete of the tenant's instances and snapshots, and only its", async () => {
    const { db, versionOf, p } = fixture;
    const [tenant, other] = [randomUUID(), randomUUID()];
    const otherInstance = await insertInstance(other);
    const seen = new Set<string>();
    const step = async (change: () => Promise<unknown>) => {
      const otherBefore = await versionOf(other);
      await change();
      const version = await versionOf(tenant);
      assert.ok(version !== null && !seen.has(version), `a new version after a change: ${version}`);
      seen.add(version);
      assert.equal(await versionOf(other), otherBefore, "another tenant's version did not move");
    };
    let id = '';
    await step(async () => (id = await insertInstance(tenant)));
    await step(() => db.query(`UPDATE "instances" SET "name" = ${p(1)} WHERE "id" = ${p(2)}`, ['renamed', id]));
    await step(() => insertSnapshot(tenant, id));
    await step(() => db.query(`UPDATE "snapshots" SET "status" = 'COMPLETED' WHERE "instanceId" = ${p(1)}`, [id]));
    await step(() => db.query(`DELETE FROM "snapshots" WHERE "instanceId" = ${p(1)}`, [id]));
    await step(() => db.query(`DELETE FROM "instances" WHERE "id" = ${p(1)}`, [id]));
    assert.ok(otherInstance);
  });

  it('takes back nothing a rolled back transaction did, and gives no version while one is open on the connection', async function () {
    const { db, versionOf, p } = fixture;
    const tenant = randomUUID();
    const id = await insertInstance(tenant);
    const before = await versionOf(tenant);
    const sqlite = db.options.type !== 'postgres';
    await assert.rejects(
      db.transaction(async (manager) => {
        await manager.query(`UPDATE "instances" SET "name" = ${p(1)} WHERE "id" = ${p(2)}`, ['rolled-back', id]);
        // SQLite: one connection for everyone, and the transaction is open on it.
        if (sqlite) assert.equal(await versionOf(tenant), null);
        else assert.equal(await versionOf(tenant), before, 'PostgreSQL: other connections see the committed version');
        throw new Error('roll back');
      }),
      /roll back/,
    );
    assert.equal(await versionOf(tenant), before);
  });
}

describe('the tenant data version (embedded SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'snapgraph-versions-'));
  let db: DataSource;
  itCountsChanges(async () => {
    db = createMetadataDataSource({ dataDir: dir });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    return { db, versionOf: tenantDataVersion(db), p: () => '?' };
  });
  after(async () => {
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
});

describePostgres('the tenant data version (PostgreSQL)', (postgres) => {
  let database: TestDatabase;
  let db: DataSource;
  itCountsChanges(async () => {
    database = await createMigratedTestDatabase(postgres.adminUrl());
    db = createMetadataDataSource({ dataDir: '/nonexistent', databaseUrl: database.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    return { db, versionOf: tenantDataVersion(db), p: (n) => `$${n}` };
  });
  after(async () => {
    await db?.destroy();
    await database?.drop();
  });

  it('does not make writers that did not deadlock before deadlock (the version is taken at commit)', async () => {
    const tenant = randomUUID();
    const instance = randomUUID();
    await db.query(
      `INSERT INTO "instances" ("id", "tenantId", "name", "tier", "memoryGB", "storageGB", "engineVersion", "status", "availability", "createdAt") VALUES ($1, $2, 'i', 'FREE', 1, 1, 'V5', 'RUNNING', 'AVAILABLE', 0)`,
      [instance, tenant],
    );
    // A scheduled snapshot: its row, then its instance's; meanwhile another writer updates that instance.
    await withClient(database.url, (first) =>
      withClient(database.url, async (second) => {
        await first.query('BEGIN');
        await first.query(`INSERT INTO "snapshots" ("id", "tenantId", "instanceId", "profile", "status", "createdAt", "engineVersion") VALUES ($1, $2, $3, 'SCHEDULED', 'PENDING', 0, 'V5')`, [
          randomUUID(),
          tenant,
          instance,
        ]);
        await second.query('BEGIN');
        await second.query(`UPDATE "instances" SET "availability" = 'READ_ONLY' WHERE "id" = $1`, [instance]);
        const firstUpdate = first.query(`UPDATE "instances" SET "lastScheduledAt" = 1 WHERE "id" = $1`, [instance]);
        await second.query('COMMIT');
        await firstUpdate;
        await first.query('COMMIT');
      }),
    );
    assert.notEqual(await tenantDataVersion(db)(tenant), null);
  });
});
