// Replicas booting a new release at once (a rolling update that starts several, every replica restarted together)
// each migrate the one PostgreSQL database: one applies the migrations, the others wait for it and find none left.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { createMetadataDataSource, MIGRATIONS, runMetadataMigrations } from '../../src/entities/data-source';
import { createTestDatabase, describePostgres, type TestDatabase } from '../support/postgres';

describePostgres('metadata migrations run by several servers at once on PostgreSQL', (postgres) => {
  let dir: string;
  let database: TestDatabase;
  let sources: DataSource[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-concurrent-migrations-'));
    database = await createTestDatabase(postgres.adminUrl());
  });

  afterEach(async () => {
    for (const db of sources) if (db.isInitialized) await db.destroy();
    sources = [];
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = async () => {
    const db = createMetadataDataSource({ dataDir: dir, databaseUrl: database.url });
    sources.push(db);
    await db.initialize();
    return db;
  };

  it('are applied once, and every server boots, from a database of the first release and from an empty one', async function () {
    this.timeout(60_000);
    for (const first of [2, 0]) {
      if (first > 0) {
        // The first release's schema (its two migrations), with a tenant in it.
        const old = await open();
        await old.runMigrations({ transaction: 'each' });
        while ((await old.query(`SELECT count(*) AS n FROM "migrations"`))[0].n > first) await old.undoLastMigration({ transaction: 'each' });
        await old.query(`INSERT INTO "tenants" ("id", "name", "createdAt") VALUES ('t', 'default', 1)`);
        await old.destroy();
      }
      const servers = await Promise.all([open(), open(), open()]);
      const results = await Promise.allSettled(servers.map((db) => runMetadataMigrations(db)));
      assert.deepEqual(
        results.map((result) => (result.status === 'rejected' ? String(result.reason) : 'booted')),
        ['booted', 'booted', 'booted'],
      );
      const applied = results.flatMap((result) => (result.status === 'fulfilled' ? result.value : []));
      assert.equal(applied.length, MIGRATIONS.length - first, 'each migration applied by one server only');
      const recorded: { name: string }[] = await servers[0].query(`SELECT "name" FROM "migrations"`);
      assert.equal(recorded.length, MIGRATIONS.length);
      for (const db of servers) await db.destroy();
      await database.drop();
      database = await createTestDatabase(postgres.adminUrl());
    }
  });
});
