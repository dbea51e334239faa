// A fresh embedded (SQLite) metadata database with every migration run, in a temp dir of its own: for unit tests of
// what services store. The caller destroys it and removes the dir, or sqliteMetadataPerTest does it for each test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';

import { createMetadataDataSource } from '../../src/entities/data-source';

export async function migratedSqliteMetadata(prefix: string): Promise<{ dir: string; db: DataSource }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const db = createMetadataDataSource({ dataDir: dir });
  await db.initialize();
  await db.runMigrations({ transaction: 'each' });
  return { dir, db };
}

/**
 * A database of migratedSqliteMetadata for each test of the calling suite, handed to `use` before the test and
 * destroyed, with its dir, after it.
 */
export function sqliteMetadataPerTest(prefix: string, use: (db: DataSource) => void): void {
  let opened: { dir: string; db: DataSource } | null = null;
  beforeEach(async () => {
    opened = await migratedSqliteMetadata(prefix);
    use(opened.db);
  });
  afterEach(async () => {
    if (!opened) return;
    const { dir, db } = opened;
    opened = null;
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
}
