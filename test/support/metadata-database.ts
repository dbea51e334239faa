// A fresh embedded (SQLite) metadata database with every migration run, in a temp dir of its own: for unit tests of
// what services store. The caller destroys it and removes the dir.
import { mkdtempSync } from 'node:fs';
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
