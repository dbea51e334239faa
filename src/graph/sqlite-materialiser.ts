// Restores a store physically: a base copy's bytes written back to a file, then the deltas after it applied in order.
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import sqlite3 from 'sqlite3';
import { AppError } from '../errors/app-error';
import { isStorageFull } from '../errors/storage-full';
import type { DeltaBatch, GraphStats, NameCount } from './records';
import { SqliteConnection } from './sqlite-connection';
import { newEpoch, readStats, readTracking, removeStoreFiles, setMeta, TUNING } from './sqlite-graph-store';

// Every statement reads the batch's lines (?1) in SQLite's thread. A line replaces the row with its id (or deletes
// it); counts move by what leaves and what arrives, so no full recount is needed. `touched` keeps every id a delta
// named, for the checks in verifyTouched and the next ids.
const IDS = `SELECT CAST(value ->> 1 AS INTEGER) FROM json_each(?1)`;
const APPLY: Record<DeltaBatch['kind'], { tags: [string, string]; statements: string[] }> = {
  node: {
    tags: ['N', '-N'],
    statements: [
      `INSERT OR IGNORE INTO temp.touched (kind, id) SELECT 'N', CAST(value ->> 1 AS INTEGER) FROM json_each(?1)`,
      `INSERT INTO counts (kind, name, count) SELECT * FROM (
         SELECT 'label', l.value, -count(*) FROM nodes n, json_each(n.labels) l WHERE n.id IN (${IDS}) GROUP BY l.value
         UNION ALL SELECT 'nodes', '', -count(*) FROM nodes WHERE id IN (${IDS}))
       WHERE true ON CONFLICT (kind, name) DO UPDATE SET count = count + excluded.count`,
      `DELETE FROM node_labels WHERE (label, node_id) IN
         (SELECT l.value, n.id FROM nodes n, json_each(n.labels) l WHERE n.id IN (${IDS}))`,
      `DELETE FROM nodes WHERE id IN (${IDS})`,
      `INSERT INTO nodes (id, labels, properties) SELECT value ->> 1, value -> 2, value -> 3 FROM json_each(?1) WHERE value ->> 0 = 'N'`,
      `INSERT INTO node_labels (label, node_id)
       SELECT l.value, CAST(j.value ->> 1 AS INTEGER) FROM json_each(?1) j, json_each(j.value, '$[2]') l WHERE j.value ->> 0 = 'N'`,
      `INSERT INTO counts (kind, name, count) SELECT * FROM (
         SELECT 'label', l.value, count(*) FROM json_each(?1) j, json_each(j.value, '$[2]') l WHERE j.value ->> 0 = 'N' GROUP BY l.value
         UNION ALL SELECT 'nodes', '', count(*) FROM json_each(?1) WHERE value ->> 0 = 'N')
       WHERE true ON CONFLICT (kind, name) DO UPDATE SET count = count + excluded.count`,
    ],
  },
  relationship: {
    tags: ['R', '-R'],
    statements: [
      `INSERT OR IGNORE INTO temp.touched (kind, id) SELECT 'R', CAST(value ->> 1 AS INTEGER) FROM json_each(?1)`,
      `INSERT INTO counts (kind, name, count) SELECT * FROM (
         SELECT 'type', type, -count(*) FROM relationships WHERE id IN (${IDS}) GROUP BY type
         UNION ALL SELECT 'relationships', '', -count(*) FROM relationships WHERE id IN (${IDS}))
       WHERE true ON CONFLICT (kind, name) DO UPDATE SET count = count + excluded.count`,
      `DELETE FROM relationships WHERE id IN (${IDS})`,
      `INSERT INTO relationships (id, type, start_id, end_id, properties)
       SELECT value ->> 1, value ->> 2, value ->> 3, value ->> 4, value -> 5 FROM json_each(?1) WHERE value ->> 0 = 'R'`,
      `INSERT INTO counts (kind, name, count) SELECT * FROM (
         SELECT 'type', value ->> 2, count(*) FROM json_each(?1) WHERE value ->> 0 = 'R' GROUP BY value ->> 2
         UNION ALL SELECT 'relationships', '', count(*) FROM json_each(?1) WHERE value ->> 0 = 'R')
       WHERE true ON CONFLICT (kind, name) DO UPDATE SET count = count + excluded.count`,
    ],
  },
};

// A line is [tag, "<positive integer id>", …]; anything else would be skipped or misapplied by the statements above.
const MALFORMED = `SELECT count(*) AS count FROM json_each(?1)
  WHERE json_type(value) IS NOT 'array' OR coalesce(value ->> 0 NOT IN (?2, ?3), true) OR typeof(value ->> 1) IS NOT 'text'
     OR CAST(CAST(value ->> 1 AS INTEGER) AS TEXT) IS NOT value ->> 1 OR CAST(value ->> 1 AS INTEGER) <= 0`;

export interface MaterialiseOptions {
  signal?: AbortSignal;
  /** Runs PRAGMA quick_check on the base before anything is applied (default true). */
  checkBase?: boolean;
}

/**
 * Writes the base's bytes to path, applies the deltas, checks the result against `expected`, gives it a new epoch
 * with no recorded changes, and syncs it to disk. Leaves nothing at path when it fails.
 */
export async function materialiseStore(
  path: string,
  base: Readable,
  deltas: AsyncIterable<DeltaBatch>,
  expected: GraphStats,
  { signal, checkBase = true }: MaterialiseOptions = {},
): Promise<GraphStats> {
  await removeStoreFiles(path);
  let db: SqliteConnection | null = null;
  try {
    await writeFile(path, base, signal);
    db = await SqliteConnection.open(path, sqlite3.OPEN_READWRITE);
    // Nothing to protect while the file is built: a crash leaves a partial shadow, which is discarded. One sync of
    // the whole file at the end makes base and deltas durable together.
    await db.exec(`${TUNING} PRAGMA temp_store = MEMORY; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;`);
    if (checkBase) await quickCheck(db);
    const tracking = await readTracking(db).catch((error: Error) => {
      throw new AppError('INVALID_BACKUP_FILE', `the base is not a graph store: ${error.message}`);
    });

    await db.exec(`BEGIN; CREATE TEMP TABLE touched (kind TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;`);
    for await (const batch of deltas) {
      signal?.throwIfAborted();
      await applyBatch(db, batch);
    }
    signal?.throwIfAborted();
    await verifyTouched(db);
    // Ids a delta named (existing or deleted) were handed out at the source: never hand them out again.
    for (const [key, kind] of [['next_node_id', 'N'], ['next_relationship_id', 'R']] as const) {
      await db.run(
        `INSERT OR REPLACE INTO meta (key, value) SELECT ?1, max(coalesce((SELECT value FROM meta WHERE key = ?1), 1),
           coalesce((SELECT max(id) FROM temp.touched WHERE kind = ?2), 0) + 1)`,
        [key, kind],
      );
    }
    // A new history starts here: this store's seqs no longer follow the source's, so no delta of the source applies.
    await db.run(`DELETE FROM counts WHERE count <= 0 AND kind IN ('label', 'type')`);
    await db.run(`DELETE FROM changes`);
    await setMeta(db, 'epoch', newEpoch());
    await setMeta(db, 'changes_trimmed_through', tracking.seq);
    await db.exec('COMMIT; DROP TABLE temp.touched;');

    const stats = await readStats(db);
    assertSameGraph(stats, expected);
    await db.exec(`PRAGMA journal_mode = WAL;`);
    await db.close();
    db = null;
    await syncFile(path);
    return stats;
  } catch (error) {
    await db?.close().catch(() => undefined);
    await removeStoreFiles(path);
    throw error;
  }
}

async function writeFile(path: string, base: Readable, signal: AbortSignal | undefined): Promise<void> {
  const file = await open(path, 'wx');
  try {
    for await (const chunk of base) {
      signal?.throwIfAborted();
      await file.write(chunk as Buffer);
    }
  } finally {
    await file.close();
  }
}

async function syncFile(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

async function quickCheck(db: SqliteConnection): Promise<void> {
  const rows = await db.all<{ quick_check: string }>(`PRAGMA quick_check(10)`).catch((error: Error) => {
    if (isStorageFull(error)) throw error;
    return [{ quick_check: error.message }];
  });
  if (rows.length !== 1 || rows[0].quick_check !== 'ok') {
    throw new AppError('INVALID_BACKUP_FILE', `the base store is damaged: ${rows.map((row) => row.quick_check).join('; ')}`);
  }
}

async function applyBatch(db: SqliteConnection, batch: DeltaBatch): Promise<void> {
  if (batch.lines.length === 0) return;
  const payload = `[${batch.lines.join(',')}]`;
  const { tags, statements } = APPLY[batch.kind];
  try {
    const malformed = await db.get<{ count: number }>(MALFORMED, [payload, ...tags]);
    if (malformed!.count > 0) throw new Error(`${malformed!.count} of ${batch.lines.length} ${batch.kind} lines are malformed`);
    for (const statement of statements) await db.run(statement, [payload]);
  } catch (error) {
    if (isStorageFull(error)) throw error;
    throw new AppError('INVALID_BACKUP_FILE', `a delta holds records that cannot be applied: ${(error as Error).message}`);
  }
}

/** The base passed quick_check and the counts are compared afterwards: here, what the deltas wrote is checked. */
async function verifyTouched(db: SqliteConnection): Promise<void> {
  const bad = await db.get<{ nodes: number; relationships: number; dangling: number }>(
    `SELECT
       (SELECT count(*) FROM temp.touched t JOIN nodes n ON n.id = t.id
        WHERE t.kind = 'N' AND (json_type(n.labels) IS NOT 'array' OR json_type(n.properties) IS NOT 'object')) AS nodes,
       (SELECT count(*) FROM temp.touched t JOIN relationships r ON r.id = t.id
        WHERE t.kind = 'R' AND (typeof(r.type) <> 'text' OR json_type(r.properties) IS NOT 'object'
          OR NOT EXISTS (SELECT 1 FROM nodes WHERE id = r.start_id) OR NOT EXISTS (SELECT 1 FROM nodes WHERE id = r.end_id))) AS relationships,
       (SELECT count(*) FROM temp.touched t
        WHERE t.kind = 'N' AND NOT EXISTS (SELECT 1 FROM nodes WHERE id = t.id)
          AND (EXISTS (SELECT 1 FROM relationships WHERE start_id = t.id) OR EXISTS (SELECT 1 FROM relationships WHERE end_id = t.id))) AS dangling`,
  );
  if (bad && (bad.nodes > 0 || bad.relationships > 0 || bad.dangling > 0)) {
    throw new AppError(
      'INVALID_BACKUP_FILE',
      `the deltas leave ${bad.nodes} malformed nodes, ${bad.relationships} malformed relationships or relationships to missing nodes, ` +
        `and ${bad.dangling} deleted nodes that relationships still refer to`,
    );
  }
}

function assertSameGraph(actual: GraphStats, expected: GraphStats): void {
  const names = (list: NameCount[]) => JSON.stringify([...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  const differences = [
    actual.nodeCount !== expected.nodeCount && `${actual.nodeCount} nodes instead of ${expected.nodeCount}`,
    actual.relationshipCount !== expected.relationshipCount &&
      `${actual.relationshipCount} relationships instead of ${expected.relationshipCount}`,
    names(actual.labels) !== names(expected.labels) && 'different label counts',
    names(actual.relationshipTypes) !== names(expected.relationshipTypes) && 'different relationship type counts',
  ].filter(Boolean);
  if (differences.length > 0) {
    throw new AppError('INVALID_BACKUP_FILE', `the restored store does not match its snapshot: ${differences.join(', ')}`);
  }
}
