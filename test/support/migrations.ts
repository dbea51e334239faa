// Tests of a metadata migration, on SQLite and PostgreSQL alike: each test gets a fresh metadata database, not migrated
// (run the migrations, then undo them back to the state before the one under test with undoThrough).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { createTestDatabase, describePostgres, type TestDatabase } from './postgres';

/** `suite` once per backend ("<title> on SQLite", "<title> on PostgreSQL"); `db()` is the test's database. */
export function describeMigration(title: string, suite: (db: () => DataSource) => void): void {
  describe(`${title} on SQLite`, function () {
    this.timeout(60_000);
    freshDatabasePerTest({ name: 'SQLite' }, suite);
  });
  describePostgres(`${title} on PostgreSQL`, (postgres) => {
    freshDatabasePerTest({ name: 'PostgreSQL', adminUrl: postgres.adminUrl }, suite);
  });
}

function freshDatabasePerTest(backend: { name: 'SQLite' } | { name: 'PostgreSQL'; adminUrl: () => string }, suite: (db: () => DataSource) => void): void {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-migration-'));
    database = backend.name === 'PostgreSQL' ? await createTestDatabase(backend.adminUrl()) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
  });
  afterEach(async () => {
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  suite(() => db);
}

/** Undoes the newest migrations until `name` is undone too (later releases add migrations after it). */
export async function undoThrough(db: DataSource, name: string): Promise<void> {
  while ((await db.query(`SELECT "name" FROM "migrations" WHERE "name" = '${name}'`)).length > 0) {
    await db.undoLastMigration({ transaction: 'each' });
  }
}
