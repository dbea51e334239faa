// Restores a store physically: a base copy's bytes written back to a file (or an empty store), then the changes after
// it (a snapshot's deltas, or change log lines) applied in order.
import { type FileHandle, open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import sqlite3 from 'sqlite3';
import { AppError } from '../errors/app-error';
import { isStorageFull } from '../errors/storage-full';
import { assertMayStillFit, type BuildLimits, type MaterialiseOptions } from './graph-store';
import { type DeltaBatch, type GraphStats, type NameCount, statsDifferences } from './records';
import { SqliteConnection } from './sqlite-connection';
import { readPosition, readStats, removeStoreFiles, startEpoch, TUNING, upgradeSchema } from './sqlite-graph-store';

// A batch's lines are parsed once, into a temporary table (ids are INTEGER PRIMARY KEYs there: an id that is not an
// integer fails the insert; a later line for an id replaces an earlier one, so the last line for it wins). What each line replaces is read once from the store into another. From those two small
// tables, counts move by what leaves and what arrives (no recount), the label index changes only for nodes whose
// labels did (a 1% delta mostly changes properties), and each table of the store is written in one pass.
// `touched` keeps every id a delta named (and whether its last line deleted it), for verifyTouched and the next ids.
const TEMP_TABLES = `
  CREATE TEMP TABLE touched (kind TEXT NOT NULL, id INTEGER NOT NULL, deleted INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
  CREATE TEMP TABLE incoming_nodes (id INTEGER PRIMARY KEY, tag, labels, properties);
  CREATE TEMP TABLE previous_nodes (id INTEGER PRIMARY KEY, labels);
  CREATE TEMP TABLE relabelled (id INTEGER PRIMARY KEY);
  CREATE TEMP TABLE incoming_relationships (id INTEGER PRIMARY KEY, tag, type, start_id, end_id, properties);
  CREATE TEMP TABLE previous_relationships (id INTEGER PRIMARY KEY, type);
`;

const MATERIALISE_CACHE_KIB = 64 * 1024;
/** A write of a base's bytes takes pieces until it holds this many (it may pass it by one piece). */
const WRITE_BATCH_BYTES = 8 * 1024 * 1024;
const UPSERT_COUNTS = `WHERE true ON CONFLICT (kind, name) DO UPDATE SET count = count + excluded.count`;
const APPLY: Record<DeltaBatch['kind'], { clear: string; parse: string; statements: string[] }> = {
  node: {
    clear: `DELETE FROM temp.incoming_nodes; DELETE FROM temp.previous_nodes; DELETE FROM temp.relabelled;`,
    parse: `INSERT OR REPLACE INTO temp.incoming_nodes (id, tag, labels, properties)
            SELECT value ->> 1, value ->> 0, value -> 2, value -> 3 FROM json_each(?1) ORDER BY key`,
    statements: [
      `INSERT INTO temp.previous_nodes (id, labels) SELECT n.id, n.labels FROM temp.incoming_nodes i JOIN nodes n ON n.id = i.id`,
      `INSERT OR REPLACE INTO temp.touched (kind, id, deleted) SELECT 'N', id, tag = '-N' FROM temp.incoming_nodes`,
      // New labels NULL for a deletion: a node that is gone and was never there needs nothing.
      `INSERT INTO temp.relabelled (id) SELECT i.id FROM temp.incoming_nodes i LEFT JOIN temp.previous_nodes p ON p.id = i.id
       WHERE p.labels IS NOT (CASE WHEN i.tag = 'N' THEN i.labels END)`,
      `INSERT INTO counts (kind, name, count) SELECT * FROM (
         SELECT 'label', l.value, sum(x.delta) FROM (
           SELECT p.labels, -1 AS delta FROM temp.previous_nodes p JOIN temp.relabelled r ON r.id = p.id
           UNION ALL SELECT i.labels, 1 FROM temp.incoming_nodes i JOIN temp.relabelled r ON r.id = i.id WHERE i.tag = 'N') x,
           json_each(x.labels) l GROUP BY l.value
         UNION ALL SELECT 'nodes', '', (SELECT count(*) FROM temp.incoming_nodes WHERE tag = 'N') - (SELECT count(*) FROM temp.previous_nodes))
       ${UPSERT_COUNTS}`,
      `DELETE FROM node_labels WHERE (label, node_id) IN
         (SELECT l.value, p.id FROM temp.previous_nodes p JOIN temp.relabelled r ON r.id = p.id, json_each(p.labels) l)`,
      `INSERT INTO node_labels (label, node_id)
       SELECT l.value, i.id FROM temp.incoming_nodes i JOIN temp.relabelled r ON r.id = i.id, json_each(i.labels) l WHERE i.tag = 'N'`,
      `INSERT OR REPLACE INTO nodes (id, labels, properties) SELECT id, labels, properties FROM temp.incoming_nodes WHERE tag = 'N'`,
      `DELETE FROM nodes WHERE id IN (SELECT id FROM temp.incoming_nodes WHERE tag = '-N')`,
    ],
  },
  relationship: {
    clear: `DELETE FROM temp.incoming_relationships; DELETE FROM temp.previous_relationships;`,
    parse: `INSERT OR REPLACE INTO temp.incoming_relationships (id, tag, type, start_id, end_id, properties)
            SELECT value ->> 1, value ->> 0, value ->> 2, value ->> 3, value ->> 4, value -> 5 FROM json_each(?1) ORDER BY key`,
    statements: [
      `INSERT INTO temp.previous_relationships (id, type)
       SELECT r.id, r.type FROM temp.incoming_relationships i JOIN relationships r ON r.id = i.id`,
      `INSERT OR REPLACE INTO temp.touched (kind, id, deleted) SELECT 'R', id, tag = '-R' FROM temp.incoming_relationships`,
      `INSERT INTO counts (kind, name, count) SELECT * FROM (
         SELECT 'type', x.type, sum(x.delta) FROM (
           SELECT type, -1 AS delta FROM temp.previous_relationships
           UNION ALL SELECT type, 1 FROM temp.incoming_relationships WHERE tag = 'R') x GROUP BY x.type
         UNION ALL SELECT 'relationships', '',
           (SELECT count(*) FROM temp.incoming_relationships WHERE tag = 'R') - (SELECT count(*) FROM temp.previous_relationships))
       ${UPSERT_COUNTS}`,
      `INSERT OR REPLACE INTO relationships (id, type, start_id, end_id, properties)
       SELECT id, type, start_id, end_id, properties FROM temp.incoming_relationships WHERE tag = 'R'`,
      `DELETE FROM relationships WHERE id IN (SELECT id FROM temp.incoming_relationships WHERE tag = '-R')`,
    ],
  },
};

// A line is [tag, "<positive integer id>", …] with the tag of its batch's kind; the rest of its shape is checked by
// the NOT NULL columns it goes into and by verifyTouched. A line a later one for the same id replaced has no effect,
// and is not checked.
const MALFORMED = (kind: DeltaBatch['kind']) => {
  const [upsert, deletion] = kind === 'node' ? ['N', '-N'] : ['R', '-R'];
  return `SELECT count(*) AS count FROM temp.${kind === 'node' ? 'incoming_nodes' : 'incoming_relationships'}
          WHERE (tag IS NOT '${upsert}' AND tag IS NOT '${deletion}') OR id <= 0
             OR (tag = '${upsert}' AND (${kind === 'node' ? `json_type(labels) IS NOT 'array' OR ` : `typeof(type) IS NOT 'text' OR `}json_type(properties) IS NOT 'object'))`;
};

/**
 * Writes the base's bytes to path (an empty store when there is none), applies the batches, checks the result against
 * `expected` (against its own rows when there is none), starts a new epoch at seq 0 with an empty log, and syncs it to
 * disk. Leaves nothing at path when it fails. quick_check is off by default: at 1M nodes it costs about as much as
 * writing the file, and the chunk store has already authenticated every byte of the base; verification, which must
 * find damage whatever its cause, asks for it.
 */
export async function materialiseStore(
  path: string,
  base: Readable | null,
  deltas: AsyncIterable<DeltaBatch>,
  expected: GraphStats | null,
  { signal, quickCheck = false, within }: MaterialiseOptions = {},
): Promise<GraphStats> {
  await removeStoreFiles(path);
  let db: SqliteConnection | null = null;
  try {
    if (base) await writeFile(path, base, signal);
    db = await SqliteConnection.open(path, sqlite3.OPEN_READWRITE | (base ? 0 : sqlite3.OPEN_CREATE));
    // No journal: a crash leaves a partial shadow, which is discarded anyway. One sync of the whole file at the end
    // makes base and deltas durable together. A larger cache than a live store's: a delta's rows are read, then
    // rewritten, all over the nodes table. (All graph-store connections together stay within SQLITE_HEAP_BYTES.)
    // The temporary tables are a file's, cached like the store's pages: `touched` grows with every id the replay names
    // (3M records: about 40 MiB), and an in-memory temporary database can never give a page of it back.
    await db.exec(
      `${TUNING} PRAGMA cache_size = -${MATERIALISE_CACHE_KIB}; PRAGMA temp_store = FILE; PRAGMA temp.cache_size = -${MATERIALISE_CACHE_KIB};
       PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;`,
    );
    if (base) {
      if (quickCheck) await checkBase(db);
      await readPosition(db).catch((error: Error) => {
        throw new AppError('INVALID_BACKUP_FILE', `the base is not a graph store: ${error.message}`);
      });
    }

    await db.exec(`BEGIN; ${TEMP_TABLES}`);
    // An empty store gets its tables; a previous release's base its change log.
    await upgradeSchema(db);
    let linesLeft = within?.lines ?? 0;
    if (within) await assertStoreMayStillFit(db, within, linesLeft);
    for await (const batch of deltas) {
      signal?.throwIfAborted();
      await applyBatch(db, batch);
      if (!within) continue;
      linesLeft = Math.max(linesLeft - batch.lines.length, 0);
      await assertStoreMayStillFit(db, within, linesLeft);
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
    await db.run(`DELETE FROM counts WHERE count <= 0 AND kind IN ('label', 'type')`);
    // A new history starts here: this store's seqs no longer follow the source's, so none of its log applies.
    await startEpoch(db);
    await db.exec('COMMIT');

    const stats = await readStats(db);
    if (expected) assertSameGraph(stats, expected, 'its snapshot');
    else assertSameGraph(stats, await recountedStats(db), 'its own rows');
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

/**
 * Writes the base's pieces in order, those already read in one write (until it reaches WRITE_BATCH_BYTES): each write
 * is a round trip through libuv's pool and back to the event loop, which thousands of WebSocket subscribers keep
 * busy; one per 256 KiB chunk made the restore they watched wait that many turns (bench:fanout).
 */
async function writeFile(path: string, base: Readable, signal: AbortSignal | undefined): Promise<void> {
  const file = await open(path, 'wx');
  try {
    for await (const first of base) {
      signal?.throwIfAborted();
      const batch: Buffer[] = [first as Buffer];
      let bytes = batch[0].length;
      let next: Buffer | null;
      while (bytes < WRITE_BATCH_BYTES && (next = base.read() as Buffer | null) !== null) {
        batch.push(next);
        bytes += next.length;
      }
      await writeAll(file, batch);
    }
  } finally {
    await file.close();
  }
}

/** writev until every byte is written (a regular file takes all of them, but for an error; a short write is not one). */
async function writeAll(file: FileHandle, pieces: Buffer[]): Promise<void> {
  let left = pieces.filter((piece) => piece.length > 0);
  while (left.length > 0) {
    const { bytesWritten } = await file.writev(left);
    if (bytesWritten === 0) throw new Error('the store file took no bytes');
    let skip = bytesWritten;
    while (left.length > 0 && skip >= left[0].length) {
      skip -= left[0].length;
      left = left.slice(1);
    }
    if (skip > 0) left = [left[0].subarray(skip), ...left.slice(1)];
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

async function checkBase(db: SqliteConnection): Promise<void> {
  const rows = await db.all<{ quick_check: string }>(`PRAGMA quick_check(10)`).catch((error: Error) => {
    if (isStorageFull(error)) throw error;
    return [{ quick_check: error.message }];
  });
  if (rows.length !== 1 || rows[0].quick_check !== 'ok') {
    throw new AppError('INVALID_BACKUP_FILE', `the base store is damaged: ${rows.map((row) => row.quick_check).join('; ')}`);
  }
}

/** See assertMayStillFit: the store's counts as the build stands. */
async function assertStoreMayStillFit(db: SqliteConnection, within: BuildLimits, linesLeft: number): Promise<void> {
  const rows = await db.all<{ kind: string; count: number }>(`SELECT kind, count FROM counts WHERE kind IN ('nodes', 'relationships') AND name = ''`);
  const count = (kind: string) => rows.find((row) => row.kind === kind)?.count ?? 0;
  assertMayStillFit({ nodeCount: count('nodes'), relationshipCount: count('relationships') }, within, linesLeft);
}

async function applyBatch(db: SqliteConnection, batch: DeltaBatch): Promise<void> {
  if (batch.lines.length === 0) return;
  const { clear, parse, statements } = APPLY[batch.kind];
  try {
    await db.exec(clear);
    await db.run(parse, [`[${batch.lines.join(',')}]`]);
    const bad = await db.get<{ count: number }>(MALFORMED(batch.kind));
    if (bad!.count > 0) throw new Error(`${bad!.count} of ${batch.lines.length} ${batch.kind} lines are malformed`);
    for (const statement of statements) await db.run(statement);
  } catch (error) {
    if (isStorageFull(error)) throw error;
    throw new AppError('INVALID_BACKUP_FILE', `a delta holds records that cannot be applied: ${(error as Error).message}`);
  }
}

/**
 * The base passed quick_check, each line's shape was checked as it came in, and the counts are compared afterwards:
 * what is left is whether the relationships the deltas wrote, and the nodes they deleted, leave every end in place.
 */
async function verifyTouched(db: SqliteConnection): Promise<void> {
  const bad = await db.get<{ relationships: number; dangling: number }>(
    `SELECT
       (SELECT count(*) FROM temp.touched t JOIN relationships r ON r.id = t.id
        WHERE t.kind = 'R' AND NOT t.deleted AND (NOT EXISTS (SELECT 1 FROM nodes WHERE id = r.start_id) OR NOT EXISTS (SELECT 1 FROM nodes WHERE id = r.end_id))) AS relationships,
       (SELECT count(*) FROM temp.touched t
        WHERE t.kind = 'N' AND t.deleted
          AND (EXISTS (SELECT 1 FROM relationships WHERE start_id = t.id) OR EXISTS (SELECT 1 FROM relationships WHERE end_id = t.id))) AS dangling`,
  );
  if (bad && (bad.relationships > 0 || bad.dangling > 0)) {
    throw new AppError(
      'INVALID_BACKUP_FILE',
      `the deltas leave ${bad.relationships} relationships to missing nodes and ${bad.dangling} deleted nodes that relationships still refer to`,
    );
  }
}

/** What the rows themselves add up to, for a store with no recorded stats to compare with (the counts table's shape). */
async function recountedStats(db: SqliteConnection): Promise<GraphStats> {
  const rows = await db.all<{ kind: string; name: string; count: number }>(
    `SELECT 'nodes' AS kind, '' AS name, count(*) AS count FROM nodes
     UNION ALL SELECT 'relationships', '', count(*) FROM relationships
     UNION ALL SELECT 'label', label, count(*) FROM node_labels GROUP BY label
     UNION ALL SELECT 'type', type, count(*) FROM relationships GROUP BY type`,
  );
  const named = (kind: string): NameCount[] => rows.filter((row) => row.kind === kind).map((row) => ({ name: row.name, count: row.count }));
  const total = (kind: string) => rows.find((row) => row.kind === kind)!.count;
  return { nodeCount: total('nodes'), relationshipCount: total('relationships'), labels: named('label'), relationshipTypes: named('type'), storeSizeBytes: 0 };
}

function assertSameGraph(actual: GraphStats, expected: GraphStats, source: string): void {
  const differences = statsDifferences(actual, expected);
  if (differences.length > 0) {
    throw new AppError('INVALID_BACKUP_FILE', `the restored store does not match ${source}: ${differences.join(', ')}`);
  }
}
