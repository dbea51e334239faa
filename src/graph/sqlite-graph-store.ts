// An instance's graph in one SQLite file (WAL mode), through the async `sqlite3` driver.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { MAX_FRAME_BYTES } from '../archive/archive-frame';
import { AppError, badInput, capacityExceeded } from '../errors/app-error';
import { isStorageFull } from '../errors/storage-full';
import { distinctNamesProblem, nameProblem } from './graph-rules';
import type {
  BaseCapture,
  GraphLoader,
  GraphReadView,
  GraphStore,
  LogEntry,
  NodeDraft,
  NodeUpdate,
  Page,
  PageRequest,
  RelationshipDraft,
  SealedStore,
  StorePosition,
  UpdatedNodes,
  WriteLimits,
} from './graph-store';
import { WritesFencedError } from './graph-store';
import type { EncodedBatch, GraphStats, NameCount, NodeRecord, RelationshipRecord } from './records';
import { Mutex, SqliteConnection } from './sqlite-connection';
import { nodeFields, relationshipFields } from './tuple-fields';
import sqlite3 from 'sqlite3';

// meta keys: next_node_id, next_relationship_id; epoch, seq and last_at (the change log: see graph-store.ts; last_at
// is the latest entry's commit time, kept here so that trimming the log keeps it); read_at (see READ_AT).
// `frozen` (the restore's operation id; 1 from earlier versions) while a restore replaces the store: the write fence
// (see freezeWrites); a new epoch starts unfrozen.
// change_log: one entry per write transaction, its tuple lines newline-separated.
export const TABLES = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, labels TEXT NOT NULL, properties TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS node_labels (label TEXT NOT NULL, node_id INTEGER NOT NULL, PRIMARY KEY (label, node_id)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS relationships (
    id INTEGER PRIMARY KEY, type TEXT NOT NULL, start_id INTEGER NOT NULL, end_id INTEGER NOT NULL, properties TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS counts (kind TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS change_log (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, lines TEXT NOT NULL);
`;
// Built after a bulk load rather than maintained row by row during it.
export const INDEXES = `
  CREATE INDEX IF NOT EXISTS rel_by_type ON relationships (type, id);
  CREATE INDEX IF NOT EXISTS rel_by_start ON relationships (start_id);
  CREATE INDEX IF NOT EXISTS rel_by_end ON relationships (end_id);
`;
/**
 * Every graph-store connection of the process (live stores' writers and readers, read views, base captures,
 * materialisations) shares one SQLite heap of at most about this size: past it, SQLite recycles the least recently
 * used cached page of any of them instead of allocating another. Without it each connection's cache grows to its own
 * cache_size, and memory grows with the number of stores open and the work on them.
 */
export const SQLITE_HEAP_BYTES = 32 * 1024 * 1024;
export const TUNING = `PRAGMA busy_timeout = 10000; PRAGMA cache_size = -16000; PRAGMA soft_heap_limit = ${SQLITE_HEAP_BYTES};`;

/** counts rows: ('nodes',''), ('relationships',''), ('label', <label>), ('type', <type>). */
type CountKind = 'nodes' | 'relationships' | 'label' | 'type';
type CountDelta = [CountKind, string, number];

const READ_BATCH = 5_000;
/** The meta key of the write fence. */
const FROZEN = 'frozen';
/**
 * The meta key of the newest readAt position() has handed out: no write takes a commit time below it. Kept by a new
 * epoch (a restore's store, built from a base of another): its writes then stay after what the old one offered.
 */
const READ_AT = 'read_at';

// The same tuple lines as EncodedBatch's (ENCODED_READS) for the change log, joined by newlines, from the rows of nodes `n` or relationships `r` a
// write selects. Spliced rather than rendered by json_array: the labels and properties columns only ever receive
// compact JSON text (from SQLite's JSON functions, or cut verbatim out of compact, checked lines: tuple-fields.ts),
// and json() of them would cost as much again as the rest of the log.
const NODE_LINES = `group_concat('["N","' || n.id || '",' || n.labels || ',' || n.properties || ']', char(10))`;
const RELATIONSHIP_LINES = `group_concat('["R","' || r.id || '",' || json_quote(r.type) || ',"' || r.start_id || '","' || r.end_id || '",' || r.properties || ']', char(10))`;

// Entries after a seq, in seq order, while their lines fit in a number of bytes (the first one whatever its size):
// one statement, so the entries are one point in time, walking the log's primary key only as far as it returns.
const READ_LOG = `
  WITH RECURSIVE entries (seq, at, lines, bytes) AS (
    SELECT * FROM (SELECT seq, at, lines, octet_length(lines) FROM change_log WHERE seq > ?1 ORDER BY seq LIMIT 1)
    UNION ALL
    SELECT c.seq, c.at, c.lines, e.bytes + octet_length(c.lines)
    FROM entries e JOIN change_log c ON c.seq = (SELECT min(seq) FROM change_log WHERE seq > e.seq)
    WHERE e.bytes + octet_length(c.lines) <= ?2)
  SELECT seq, at, lines FROM entries`;

interface NodeRow {
  id: number;
  labels: string;
  properties: string;
}
interface RelationshipRow {
  id: number;
  type: string;
  start_id: number;
  end_id: number;
  properties: string;
}

const toNode = (row: NodeRow): NodeRecord => ({
  id: String(row.id),
  labels: JSON.parse(row.labels),
  properties: JSON.parse(row.properties),
});
const toRelationship = (row: RelationshipRow): RelationshipRecord => ({
  id: String(row.id),
  type: row.type,
  startNodeId: String(row.start_id),
  endNodeId: String(row.end_id),
  properties: JSON.parse(row.properties),
});

/**
 * Bytes of stored JSON (labels or type, and properties) a page of nodes or relationships reads at most: past them the
 * page ends early, with hasNextPage. `first` alone bounded the items, not their size, and a page of large nodes (a
 * FREE instance holds 2 GiB) was held in the heap whole, several times over (rows, parsed maps, the response): the
 * process died of it. An item larger than this comes alone in its page.
 */
export const PAGE_BYTES = 16 * 1024 * 1024;

/** A page's candidate rows (`size` of each), at most first + 1 of them, and `fetched`: how many there were. */
interface PageRow {
  fetched: number;
  /** Null but in the row of the page's total (withTotal), whose other columns are. */
  total: number | null;
}

/**
 * The ids of the candidates (?1 after, ?2 first + 1: a query of `id` and `size`) that a page takes: in order, while the
 * sizes before each stay under ?3 bytes (the first one whatever its size), with how many candidates there were. One
 * statement with the rows it is joined to, so the page is one point in time.
 */
const pageOf = (candidates: string) => `
  SELECT id, fetched FROM (
    SELECT id, sum(size) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - size AS before, count(*) OVER () AS fetched FROM (${candidates}))
  WHERE before < ?3`;

/**
 * Stored JSON (labels or type, and properties) one batch of a read view's encodedBatches() holds at most before its
 * last item, beside its count: a batch of 5,000 large nodes (one may hold 64 MiB), and the one read ahead, were in
 * the heap whole, as the lines SQLite built and the frame compressed from them.
 */
export const READ_BATCH_BYTES = 8 * 1024 * 1024;

/** Bytes of stored JSON a node or relationship row holds: what pages and batches are bounded by. */
const NODE_SIZE = 'octet_length(labels) + octet_length(properties)';
const RELATIONSHIP_SIZE = 'octet_length(type) + octet_length(properties)';

/** Candidate rows of a page or batch: at most ?2 of `table` after id ?1, with their `size`. */
const sizedRowsAfter = (table: 'nodes' | 'relationships', size: string) => `SELECT id, ${size} AS size FROM ${table} WHERE id > ?1 ORDER BY id LIMIT ?2`;

/**
 * The last id of a read view's batch after ?1: of at most ?2 rows, and ?3 bytes of `size` before the last. When the ?2
 * rows fit, their sum says so and the window (pageOf's), which costs as much as reading the lines, is not run.
 */
const lastOfBatch = (table: 'nodes' | 'relationships', size: string) => {
  const candidates = sizedRowsAfter(table, size);
  return `(SELECT CASE WHEN sum(size) < ?3 THEN max(id) ELSE (SELECT max(id) FROM (${pageOf(candidates)})) END FROM (${candidates}))`;
};

// The tuple lines of EncodedBatch (graph/records.ts), built by SQLite in its own thread: a read view's batches, the
// rows of an id range in order (a range of the primary key, sorted as they are read).
const ENCODED_READS: [EncodedBatch['kind'], string][] = [
  ['node', `SELECT id, json_array('N', CAST(id AS TEXT), json(labels), json(properties)) AS line
            FROM nodes WHERE id > ?1 AND id <= ${lastOfBatch('nodes', NODE_SIZE)} ORDER BY id`],
  ['relationship', `SELECT id, json_array('R', CAST(id AS TEXT), type, CAST(start_id AS TEXT), CAST(end_id AS TEXT), json(properties)) AS line
                    FROM relationships WHERE id > ?1 AND id <= ${lastOfBatch('relationships', RELATIONSHIP_SIZE)} ORDER BY id`],
];

/**
 * A page's rows (`rows`, selecting NULL then `columns` and `fetched`) after a row of their total: the count the counts
 * table holds for ?5 (kind) and ?6 (name), beside nulls. One statement, so that the total is of the moment the page
 * is: read in a statement of its own, it was of another, and a write committed between the two gave a page of the
 * whole graph a totalCount other than its length. (A compound, not a join: joined, the rows were copied once more.)
 */
const withTotal = (columns: string[], rows: string) => `
  SELECT coalesce((SELECT count FROM counts WHERE kind = ?5 AND name = ?6), 0) AS total, ${columns.map((column) => `NULL AS ${column}`).join(', ')}, NULL AS fetched
  UNION ALL ${rows}
  ORDER BY id`;

/** The first `first` rows of a page, whether anything follows them (a candidate left out, by count or by size), and its total. */
function pageFrom<R extends PageRow & { properties: string }, T>(found: R[], first: number, to: (row: R) => T, labelsOf: (row: R) => string): Page<T> {
  const rows = found.filter((row) => row.total === null).slice(0, first);
  const bytes = rows.reduce((sum, row) => sum + Buffer.byteLength(labelsOf(row)) + Buffer.byteLength(row.properties), 0);
  const items = rows.map(to);
  return { items, hasNextPage: (found.find((row) => row.total === null)?.fetched ?? 0) > items.length, totalCount: found.find((row) => row.total !== null)?.total ?? 0, bytes };
}

/** The bound of a page's stored data: its request's, never more than PAGE_BYTES. */
const pageBytesOf = (page: PageRequest) => Math.min(page.maxBytes ?? PAGE_BYTES, PAGE_BYTES);

/**
 * A page's label or type filter as bound to SQLite: null, which no row equals, for one that no name can be. A lone
 * surrogate arrived in SQLite's UTF-8 as U+FFFD, and the filter matched the names that hold one.
 */
function filterName(what: string, name: string | undefined): string | null {
  return name === undefined || nameProblem(what, name) ? null : name;
}

/** Parses a client-supplied id; ids are positive integers. */
export function parseEntityId(id: string, what = 'id'): number {
  const value = Number(id);
  // Above 2^53 distinct ids would round to the same number (and could address another node).
  if (!/^[1-9]\d{0,15}$/.test(id) || !Number.isSafeInteger(value)) throw badInput(`${what} "${id}" is not a valid id`);
  return value;
}

export class SqliteGraphStore implements GraphStore {
  /** Serialises this process's writers on the connection; SQLite's own write lock serialises processes. */
  private readonly writeLock = new Mutex();
  /**
   * A readAt position() handed out but could not keep in the store (its volume full): this process's next write
   * records it before it takes its commit time (see position).
   */
  private unrecordedReadAt = 0;

  private constructor(
    readonly path: string,
    private readonly writer: SqliteConnection,
    private readonly reader: SqliteConnection,
  ) {}

  /** Opens an existing store; `create` makes a new file instead (an instance's first store). */
  static async open(path: string, { create = false } = {}): Promise<SqliteGraphStore> {
    const writer = await SqliteConnection.open(path, sqlite3.OPEN_READWRITE | (create ? sqlite3.OPEN_CREATE : 0));
    try {
      await writer.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; ${TUNING}`);
      await writer.transaction(() => upgradeSchema(writer));
      const reader = await SqliteConnection.open(path, sqlite3.OPEN_READONLY);
      await reader.exec(TUNING);
      return new SqliteGraphStore(path, writer, reader);
    } catch (error) {
      await writer.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.writeLock.run(async () => {
      await this.reader.close();
      await this.writer.close();
    });
  }

  async createNodes(drafts: NodeDraft[], limits: WriteLimits): Promise<NodeRecord[]> {
    const payload = batchPayload(
      drafts.map((draft) => [draft.labels, draft.properties]),
      // The line's punctuation for the row's `[` `,` `]`, and the id (not yet taken) a digit at least.
      () => NODE_LINE_PUNCTUATION - 3 + 1,
      (_, index) => `node ${index + 1} of the batch`,
    );
    // The labels alone for node_labels: a statement over the whole payload passed (and parsed) every property again.
    const labels = JSON.stringify(drafts.map((draft) => draft.labels));
    return this.write(async () => {
      const used = await usedBytes(this.writer);
      const counts = await readCounts(this.writer);
      if (limits.maxNodes !== null && counts.nodes + drafts.length > limits.maxNodes) {
        throw capacityExceeded(
          `the instance holds ${counts.nodes} nodes; ${drafts.length} more would exceed its limit of ${limits.maxNodes}`,
        );
      }
      await assertFits(this.writer, used, payload.length, limits.maxBytes);
      const firstId = await nextId(this.writer, 'next_node_id', drafts.length);
      await this.writer.run(
        `INSERT INTO nodes (id, labels, properties) SELECT ?1 + key, value ->> 0, value ->> 1 FROM json_each(?2)`,
        [firstId, payload],
      );
      await this.writer.run(
        `INSERT INTO node_labels (label, node_id) SELECT l.value, ?1 + n.key FROM json_each(?2) n, json_each(n.value) l`,
        [firstId, labels],
      );
      const deltas: CountDelta[] = [['nodes', '', drafts.length]];
      for (const [label, count] of tally(drafts.flatMap((draft) => draft.labels))) deltas.push(['label', label, count]);
      await applyCounts(this.writer, deltas);
      await setMeta(this.writer, 'next_node_id', firstId + drafts.length);
      await assertRecordsFit(this.writer, `${NODE_RECORD_BYTES} FROM nodes WHERE id BETWEEN ?1 AND ?2`, [firstId, firstId + drafts.length - 1], (id) => `node ${id - firstId + 1} of the batch`);
      await logWrite(this.writer, `SELECT ${NODE_LINES} FROM nodes n WHERE n.id BETWEEN ?1 AND ?2`, [firstId, firstId + drafts.length - 1]);
      await assertStillFits(this.writer, limits.maxBytes);
      return drafts.map((draft, index) => ({ id: String(firstId + index), labels: draft.labels, properties: draft.properties }));
    });
  }

  async createRelationships(drafts: RelationshipDraft[], limits: WriteLimits): Promise<RelationshipRecord[]> {
    const rows = drafts.map((draft) => [
      draft.type,
      parseEntityId(draft.startNodeId, 'startNodeId'),
      parseEntityId(draft.endNodeId, 'endNodeId'),
      draft.properties,
    ] as const);
    const payload = batchPayload(
      rows,
      // The line's punctuation for the row's `[` `,` `,` `,` `]`, the id (not yet taken) a digit at least, and the type
      // its quotes alone for its JSON in the row: SQLite unescapes it (->>) and json_quote escapes it again, not always
      // as JSON.stringify did (a lone surrogate's `\udc00` comes back as its 3 bytes of UTF-8). Names are short.
      ([type]) => RELATIONSHIP_LINE_PUNCTUATION - 5 + 1 + 2 - Buffer.byteLength(JSON.stringify(type)),
      (_, index) => `relationship ${index + 1} of the batch`,
    );
    const endpoints = JSON.stringify([...new Set(rows.flatMap((row) => [row[1], row[2]]))]);
    return this.write(async () => {
      const missing = await this.writer.all<{ id: number }>(
        `SELECT e.value AS id FROM json_each(?1) e WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE id = e.value) LIMIT 10`,
        [endpoints],
      );
      if (missing.length > 0) {
        throw badInput(`relationships refer to nodes that do not exist: ${missing.map((row) => row.id).join(', ')}`);
      }
      const counts = await readCounts(this.writer);
      if (limits.maxRelationships !== null && counts.relationships + drafts.length > limits.maxRelationships) {
        throw capacityExceeded(
          `the instance holds ${counts.relationships} relationships; ${drafts.length} more would exceed its limit of ${limits.maxRelationships}`,
        );
      }
      await assertFits(this.writer, await usedBytes(this.writer), payload.length, limits.maxBytes);
      const firstId = await nextId(this.writer, 'next_relationship_id', drafts.length);
      await this.writer.run(
        `INSERT INTO relationships (id, type, start_id, end_id, properties)
         SELECT ?1 + key, value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?2)`,
        [firstId, payload],
      );
      const deltas: CountDelta[] = [['relationships', '', drafts.length]];
      for (const [type, count] of tally(drafts.map((draft) => draft.type))) deltas.push(['type', type, count]);
      await applyCounts(this.writer, deltas);
      await setMeta(this.writer, 'next_relationship_id', firstId + drafts.length);
      await assertRecordsFit(this.writer, `${RELATIONSHIP_RECORD_BYTES} FROM relationships WHERE id BETWEEN ?1 AND ?2`, [firstId, firstId + drafts.length - 1], (id) => `relationship ${id - firstId + 1} of the batch`);
      await logWrite(this.writer, `SELECT ${RELATIONSHIP_LINES} FROM relationships r WHERE r.id BETWEEN ?1 AND ?2`, [
        firstId,
        firstId + drafts.length - 1,
      ]);
      await assertStillFits(this.writer, limits.maxBytes);
      return drafts.map((draft, index) => ({ id: String(firstId + index), ...draft }));
    });
  }

  async updateNodes(
    updates: NodeUpdate[],
    limits: WriteLimits,
    { withProperties = true, maxAnswerBytes = UPDATE_ANSWER_BYTES }: { withProperties?: boolean; maxAnswerBytes?: number } = {},
  ): Promise<UpdatedNodes> {
    const rows = updates.map((update) => [
      parseEntityId(update.id),
      update.labels === undefined ? null : [...new Set(update.labels)],
      update.properties === undefined ? null : update.properties,
    ] as const);
    const ids = rows.map((row) => row[0]);
    if (new Set(ids).size !== ids.length) throw badInput('a batch of updates names a node more than once');
    if (ids.length === 0) return { nodes: [], bytes: 0 };
    const payload = batchPayload(
      rows,
      // The line's punctuation for the row's `[` `,` `,` `]`, and what the node keeps, at least `[]` or `{}`, for a `null`.
      ([, nodeLabels, properties]) => NODE_LINE_PUNCTUATION - 4 - (nodeLabels === null ? 2 : 0) - (properties === null ? 2 : 0),
      ([id]) => `node ${id}`,
    );
    // Ids and labels alone, for the statements that need no property: one over the whole payload passed (and parsed)
    // every property again.
    const labels = JSON.stringify(rows.map(([id, nodeLabels]) => [id, nodeLabels]));
    const relabelled = JSON.stringify(rows.filter((row) => row[1] !== null).map((row) => row[0]));
    return this.write(async () => {
      const missing = await this.writer.all<{ id: number }>(
        `SELECT e.value ->> 0 AS id FROM json_each(?1) e WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE id = e.value ->> 0) LIMIT 10`,
        [labels],
      );
      if (missing.length > 0) {
        throw new AppError('NOT_FOUND', `no node has the id ${missing.map((row) => row.id).join(', ')}: nothing was updated`);
      }
      await assertFits(this.writer, await usedBytes(this.writer), payload.length, limits.maxBytes);
      const previous = await this.writer.all<{ labels: string }>(
        `SELECT labels FROM nodes WHERE id IN (SELECT value FROM json_each(?1))`,
        [relabelled],
      );
      await this.writer.run(
        `DELETE FROM node_labels WHERE (label, node_id) IN
           (SELECT l.value, n.id FROM nodes n, json_each(n.labels) l WHERE n.id IN (SELECT value FROM json_each(?1)))`,
        [relabelled],
      );
      await this.writer.run(
        `UPDATE nodes SET labels = coalesce(u.value ->> 1, nodes.labels), properties = coalesce(u.value ->> 2, nodes.properties)
         FROM json_each(?1) u WHERE nodes.id = u.value ->> 0`,
        [payload],
      );
      await this.writer.run(
        `INSERT INTO node_labels (label, node_id) SELECT l.value, u.value ->> 0 FROM json_each(?1) u, json_each(u.value, '$[1]') l
         WHERE u.value ->> 1 IS NOT NULL`,
        [labels],
      );
      const deltas: CountDelta[] = [];
      for (const [label, count] of tally(previous.flatMap((row) => JSON.parse(row.labels) as string[]))) deltas.push(['label', label, -count]);
      for (const [label, count] of tally(rows.flatMap((row) => row[1] ?? []))) deltas.push(['label', label, count]);
      await applyCounts(this.writer, deltas);
      await assertRecordsFit(this.writer, `${NODE_RECORD_BYTES} FROM nodes WHERE id IN (SELECT value FROM json_each(?1))`, [JSON.stringify(ids)], (id) => `node ${id}`);
      await logNodes(this.writer, ids);
      await assertStillFits(this.writer, limits.maxBytes);
      if (withProperties) await assertAnswerFits(this.writer, ids, Math.min(maxAnswerBytes, UPDATE_ANSWER_BYTES));
      const updated = await this.writer.all<NodeRow>(
        `SELECT n.id, n.labels, ${withProperties ? 'n.properties' : `'{}' AS properties`} FROM json_each(?1) u JOIN nodes n ON n.id = u.value ORDER BY u.key`,
        [JSON.stringify(ids)],
      );
      return { nodes: updated.map(toNode), bytes: withProperties ? updated.reduce((sum, row) => sum + Buffer.byteLength(row.properties), 0) : 0 };
    });
  }

  deleteNodes(ids: string[]): Promise<number> {
    const payload = JSON.stringify([...new Set(ids.map((id) => parseEntityId(id)))]);
    return this.write(async () => {
      const nodes = await this.writer.all<{ id: number; labels: string }>(
        `SELECT id, labels FROM nodes WHERE id IN (SELECT value FROM json_each(?1))`,
        [payload],
      );
      if (nodes.length === 0) return 0;
      const existing = JSON.stringify(nodes.map((node) => node.id));
      // The relationships that go with the nodes, as many as their degrees add up to: in a table of the connection's
      // own (temp_store is a file's), read once, and logged in entries of at most LOG_ENTRY_LINES lines.
      await this.writer.exec(`CREATE TEMP TABLE IF NOT EXISTS detached (id INTEGER PRIMARY KEY); DELETE FROM temp.detached;`);
      try {
        await this.writer.run(
          `INSERT INTO temp.detached (id) SELECT id FROM relationships WHERE start_id IN (SELECT value FROM json_each(?1))
           UNION SELECT id FROM relationships WHERE end_id IN (SELECT value FROM json_each(?1))`,
          [existing],
        );
        const types = await this.writer.all<{ type: string; count: number }>(
          `SELECT type, count(*) AS count FROM relationships WHERE id IN (SELECT id FROM temp.detached) GROUP BY type`,
        );
        const removedRelationships = types.reduce((sum, row) => sum + row.count, 0);
        // Logged before the rows go: the relationships' deletions first, so that no replayed state has dangling ends.
        await logDetach(this.writer, removedRelationships, existing);
        await this.writer.run(`DELETE FROM relationships WHERE id IN (SELECT id FROM temp.detached)`);
        await this.writer.run(
          `DELETE FROM node_labels WHERE (label, node_id) IN
             (SELECT l.value, n.id FROM nodes n, json_each(n.labels) l WHERE n.id IN (SELECT value FROM json_each(?1)))`,
          [existing],
        );
        await this.writer.run(`DELETE FROM nodes WHERE id IN (SELECT value FROM json_each(?1))`, [existing]);
        const deltas: CountDelta[] = [
          ['nodes', '', -nodes.length],
          ['relationships', '', -removedRelationships],
        ];
        for (const [label, count] of tally(nodes.flatMap((node) => JSON.parse(node.labels) as string[]))) {
          deltas.push(['label', label, -count]);
        }
        for (const row of types) deltas.push(['type', row.type, -row.count]);
        await applyCounts(this.writer, deltas);
        return nodes.length;
      } finally {
        await this.writer.exec(`DELETE FROM temp.detached`).catch(() => undefined);
      }
    });
  }

  async nodes(label: string | undefined, page: PageRequest): Promise<Page<NodeRecord>> {
    const after = page.afterId === undefined ? 0 : parseEntityId(page.afterId, 'cursor');
    const name = filterName('label', label);
    const candidates =
      label === undefined
        ? sizedRowsAfter('nodes', NODE_SIZE)
        : `SELECT n.id, octet_length(n.labels) + octet_length(n.properties) AS size FROM node_labels l JOIN nodes n ON n.id = l.node_id
           WHERE l.label = ?4 AND l.node_id > ?1 ORDER BY l.node_id LIMIT ?2`;
    const rows = await this.reader.all<NodeRow & PageRow>(
      withTotal(['id', 'labels', 'properties'], `SELECT NULL, n.id, n.labels, n.properties, p.fetched FROM (${pageOf(candidates)}) p JOIN nodes n ON n.id = p.id`),
      [after, page.first + 1, pageBytesOf(page), name, ...(label === undefined ? ['nodes', ''] : ['label', name])],
    );
    return pageFrom(rows, page.first, toNode, (row) => row.labels);
  }

  async relationships(type: string | undefined, page: PageRequest): Promise<Page<RelationshipRecord>> {
    const after = page.afterId === undefined ? 0 : parseEntityId(page.afterId, 'cursor');
    const name = filterName('relationship type', type);
    const candidates =
      type === undefined
        ? sizedRowsAfter('relationships', RELATIONSHIP_SIZE)
        : `SELECT id, ${RELATIONSHIP_SIZE} AS size FROM relationships WHERE type = ?4 AND id > ?1 ORDER BY type, id LIMIT ?2`;
    const rows = await this.reader.all<RelationshipRow & PageRow>(
      withTotal(
        ['id', 'type', 'start_id', 'end_id', 'properties'],
        `SELECT NULL, r.id, r.type, r.start_id, r.end_id, r.properties, p.fetched FROM (${pageOf(candidates)}) p JOIN relationships r ON r.id = p.id`,
      ),
      [after, page.first + 1, pageBytesOf(page), name, ...(type === undefined ? ['relationships', ''] : ['type', name])],
    );
    return pageFrom(rows, page.first, toRelationship, (row) => row.type);
  }

  stats(): Promise<GraphStats> {
    return readStats(this.reader);
  }

  async openReadView(): Promise<GraphReadView> {
    const connection = await SqliteConnection.open(this.path, sqlite3.OPEN_READONLY);
    await connection.exec(TUNING);
    // A deferred read transaction starts at its first SELECT; everything after sees that one point in time.
    await connection.exec('BEGIN');
    try {
      const stats = await readStats(connection);
      return new SqliteReadView(connection, stats);
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
  }

  position(atLeast = 0): Promise<StorePosition & { readAt: number }> {
    // Under SQLite's write lock (BEGIN IMMEDIATE) no write of any process sharing the file is in flight: every write
    // that took a commit time before readAt has committed, and every later one takes a later time (the change log's
    // `latest` and a restore's safety point rely on this). Later by the clock is not enough: one stepped back (or
    // another replica's, behind this one's) would give a write made after `latest` was offered a commit time at or
    // before it. So readAt is kept in the store (READ_AT), and no write takes a commit time below it; while the clock
    // is behind the newest commit time, readAt moves on past each write instead of with the clock.
    return this.writeLock.run(async () => {
      let answer = null as (StorePosition & { readAt: number }) | null;
      try {
        const kept = await this.writer.transaction(async () => {
          const position = await readPosition(this.writer);
          const promised = (await this.writer.get<{ value: number }>(`SELECT value FROM meta WHERE key = ?`, [READ_AT]))?.value ?? 0;
          const readAt = Math.max(Date.now(), (position.at ?? 0) + 1, promised, atLeast, this.unrecordedReadAt);
          answer = { ...position, readAt };
          if (readAt > promised) await setMeta(this.writer, READ_AT, readAt);
          return answer;
        });
        this.unrecordedReadAt = 0;
        return kept;
      } catch (error) {
        // The store's volume is full (its WAL has no room for the row): shipping, and the restore window, must not
        // stop for that - nothing can be written meanwhile anyway. The promise is kept in memory instead, and this
        // process's next write records it first (a restore's new store, closed after this, gets no such answer).
        // Left open: another replica whose clock is behind, writing to the store the moment space returns.
        if (!answer || atLeast > 0 || !isStorageFull(error)) throw error;
        this.unrecordedReadAt = Math.max(this.unrecordedReadAt, answer.readAt);
        return answer;
      }
    });
  }

  /**
   * Starts a new history for what the store holds (see GraphStore.startHistory): in one write transaction with the
   * position it returns, so that a write after it is the new epoch's seq 1, never one taken for its starting point.
   */
  startHistory(fromEpoch: number, atLeast: number): Promise<StorePosition & { readAt: number }> {
    return this.writeLock.run(() =>
      this.writer.transaction(async () => {
        if ((await readPosition(this.writer)).epoch === fromEpoch) {
          // The write fence stays as it is: a restore that froze the store still owns it.
          await this.writer.run(`DELETE FROM change_log`);
          await this.writer.run(`DELETE FROM meta WHERE key = 'last_at'`);
          await setMeta(this.writer, 'epoch', newEpoch());
          await setMeta(this.writer, 'seq', 0);
        }
        const position = await readPosition(this.writer);
        const promised = (await this.writer.get<{ value: number }>(`SELECT value FROM meta WHERE key = ?`, [READ_AT]))?.value ?? 0;
        const readAt = Math.max(Date.now(), (position.at ?? 0) + 1, promised, atLeast, this.unrecordedReadAt);
        if (readAt > promised) await setMeta(this.writer, READ_AT, readAt);
        return { ...position, readAt };
      }),
    );
  }

  async readLog(afterSeq: number, maxBytes: number): Promise<LogEntry[]> {
    const rows = await this.reader.all<{ seq: number; at: number; lines: string }>(READ_LOG, [afterSeq, maxBytes]);
    return rows.map((row) => ({ seq: row.seq, at: row.at, lines: row.lines.split('\n') }));
  }

  async logBytesAfter(afterSeq: number): Promise<number> {
    const row = await this.reader.get<{ bytes: number }>(`SELECT coalesce(sum(length(CAST(lines AS BLOB))), 0) AS bytes FROM change_log WHERE seq > ?`, [afterSeq]);
    return row?.bytes ?? 0;
  }

  trimLog(throughSeq: number): Promise<void> {
    // Under the lock, as the writer connection's statements must be, but not refused while frozen: it changes no data.
    return this.writeLock.run(async () => {
      await this.writer.run(`DELETE FROM change_log WHERE seq <= ?`, [throughSeq]);
    });
  }

  async captureBase(destPath: string): Promise<BaseCapture> {
    await removeStoreFiles(destPath);
    try {
      // The backup runs inside the read transaction, so the position read there describes the copy exactly.
      return await this.inReadTransaction(async (source) => {
        const position = await readPosition(source);
        const page = await source.get<{ size: number }>(`SELECT page_size AS size FROM pragma_page_size`);
        await source.backupTo(destPath);
        return { ...position, sizeBytes: (await stat(destPath)).size, pageSize: page!.size };
      });
    } catch (error) {
      await removeStoreFiles(destPath);
      throw error;
    }
  }

  /** Runs fn in a read transaction of its own connection: everything it reads is one point in time. */
  private async inReadTransaction<T>(fn: (connection: SqliteConnection) => Promise<T>): Promise<T> {
    const connection = await SqliteConnection.open(this.path, sqlite3.OPEN_READONLY);
    try {
      await connection.exec(TUNING);
      await connection.exec('BEGIN');
      const result = await fn(connection);
      await connection.exec('COMMIT');
      return result;
    } finally {
      await connection.close().catch(() => undefined);
    }
  }

  /**
   * The fence is a row in the store itself, written in a write transaction: every process that shares the file (the
   * replicas of a deployment) sees it in its next write transaction, under the same SQLite write lock. Once this
   * resolves, every write that any of them committed is in the store, and every later one is refused.
   */
  async freezeWrites(owner: string): Promise<void> {
    await this.writeLock.run(() =>
      this.writer.transaction(() => this.writer.run(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [FROZEN, owner])),
    );
  }

  async thawWrites(owner?: string): Promise<void> {
    const [condition, parameters] = owner === undefined ? ['', [FROZEN]] : [' AND CAST(value AS TEXT) = ?', [FROZEN, owner]];
    await this.writeLock.run(() => this.writer.transaction(() => this.writer.run(`DELETE FROM meta WHERE key = ?${condition}`, parameters)));
  }

  private write<T>(fn: () => Promise<T>): Promise<T> {
    return this.writeLock.run(async () => {
      const unrecorded = this.unrecordedReadAt;
      try {
        const result = await this.writer.transaction(async () => {
          // Checked inside the write transaction: a write admitted (on any replica) before the instance became
          // READ_ONLY may only reach the store now, and then lands before the safety point or is refused.
          const fence = await this.writer.get<{ owner: string }>(`SELECT CAST(value AS TEXT) AS owner FROM meta WHERE key = ?`, [FROZEN]);
          if (fence) throw new WritesFencedError(fence.owner);
          // Before the write takes its commit time (logWrite), which then is not below it.
          if (unrecorded > 0) {
            await this.writer.run(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`, [READ_AT, unrecorded]);
          }
          return fn();
        });
        // Under the lock: no position() handed out a later one meanwhile.
        if (unrecorded > 0) this.unrecordedReadAt = 0;
        return result;
      } catch (error) {
        // The batch grew the WAL until the disk was full before it was rolled back, and a WAL keeps its size:
        // truncate it so the space goes back to the volume (the metadata, snapshots) rather than to this store.
        if (isStorageFull(error)) await this.writer.exec('PRAGMA wal_checkpoint(TRUNCATE)').catch(() => undefined);
        throw error;
      }
    });
  }
}

class SqliteReadView implements GraphReadView {
  constructor(
    private readonly connection: SqliteConnection,
    private readonly snapshotStats: GraphStats,
  ) {}

  async stats(): Promise<GraphStats> {
    return this.snapshotStats;
  }

  /** Reads ahead one batch, so SQLite builds the next lines while the current ones are compressed. */
  async *encodedBatches(batchSize = READ_BATCH, batchBytes = READ_BATCH_BYTES): AsyncIterable<EncodedBatch> {
    for (const [kind, sql] of ENCODED_READS) {
      let next = this.connection.all<{ id: number; line: string }>(sql, [0, batchSize, batchBytes]);
      for (;;) {
        const rows = await next;
        if (rows.length === 0) break;
        next = this.connection.all(sql, [rows[rows.length - 1].id, batchSize, batchBytes]);
        // Observed now, awaited at the next turn: a read that fails while the reader works on this batch, or after it
        // stopped reading, is not an unhandled rejection.
        next.catch(() => undefined);
        yield { kind, lines: rows.map((row) => row.line) };
      }
    }
  }

  async nodeLabels(ids: string[]): Promise<Map<string, string[]>> {
    const rows = await this.connection.all<{ id: number; labels: string }>(
      `SELECT id, labels FROM nodes WHERE id IN (SELECT value FROM json_each(?1))`,
      [JSON.stringify([...new Set(ids)].map(Number))],
    );
    return new Map(rows.map((row) => [String(row.id), JSON.parse(row.labels) as string[]]));
  }

  async close(): Promise<void> {
    await this.connection.exec('COMMIT').catch(() => undefined);
    await this.connection.close();
  }
}

// The archive reader has checked every line (archive/record-validation.ts: shapes, canonical ids, labels, types,
// properties); what needs the whole graph is checked here: unique ids (the primary keys), relationship ends (in
// finish()) and capacity. Lines that are not compact are parsed in SQLite's thread (compact ones are cut on the event
// loop, about a millisecond per 512 KiB batch: insertRows). The label index (node_labels) is derived from the
// nodes table in finish(): one pass over small arrays instead of a second parse of every batch. (Indexing the labels
// of bound rows as they were inserted measured no faster: 1.3M nodes, what finish() saved the load spent.)
const LOAD: Record<EncodedBatch['kind'], string> = {
  node: `INSERT INTO nodes (id, labels, properties) SELECT value ->> 1, value -> 2, value -> 3 FROM json_each(?1)`,
  relationship: `INSERT INTO relationships (id, type, start_id, end_id, properties)
                 SELECT value ->> 1, value ->> 2, value ->> 3, value ->> 4, value -> 5 FROM json_each(?1)`,
};
// A batch of compact lines (nearly all: every Snapgraph writer's) skips SQLite's JSON parser, which was most of a
// load's time: their fields are cut out in JavaScript (tuple-fields.ts) and bound as values, many rows per statement.
// 100k nodes of about 1 KiB (104 MiB): 1.8 s through json_each, 0.65 s bound. Each kind's table, and the columns
// a bound row fills, in the order tuple-fields.ts cuts them.
const TABLE_OF: Record<EncodedBatch['kind'], { name: string; columns: string[] }> = {
  node: { name: 'nodes', columns: ['id', 'labels', 'properties'] },
  relationship: { name: 'relationships', columns: ['id', 'type', 'start_id', 'end_id', 'properties'] },
};
/** Up to 2,500 parameters a statement, well within SQLite's 32,766. */
const ROWS_PER_STATEMENT = 500;

/** Every line's fields, or null when one of them is not compact (the batch then goes through LOAD). */
function fieldsOf(batch: EncodedBatch): string[][] | null {
  const split = batch.kind === 'node' ? nodeFields : relationshipFields;
  const rows: string[][] = new Array(batch.lines.length);
  for (let i = 0; i < batch.lines.length; i++) {
    const fields = split(batch.lines[i]);
    if (fields === null) return null;
    rows[i] = fields;
  }
  return rows;
}

// The key map of a foreign file: its node keys with the ids they were given, and the keys of its relationships (only
// to refuse a repeated one); `at` is where the record is in the file, for messages.
const KEY_MAP = `
  CREATE TABLE keyed.node_keys (key TEXT PRIMARY KEY, id INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE keyed.relationship_keys (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;`;
// Tuple lines of GraphLoader.insertKeyed. A repeated key is skipped (and then reported): the count of changes says.
const KEYED_LOAD = {
  nodeKeys: `INSERT INTO keyed.node_keys (key, id, at) SELECT value ->> 1, value ->> 2, value ->> 0 FROM json_each(?1) WHERE true
             ON CONFLICT DO NOTHING`,
  nodes: `INSERT INTO nodes (id, labels, properties) SELECT value ->> 2, value -> 3, value -> 4 FROM json_each(?1)`,
  relationshipKeys: `INSERT INTO keyed.relationship_keys (key, at) SELECT value ->> 6, value ->> 0 FROM json_each(?1)
                     WHERE value ->> 6 IS NOT NULL ON CONFLICT DO NOTHING`,
  // Relationships whose ends are not (yet) in the map are left out: the count of changes says so.
  relationships: `INSERT INTO relationships (id, type, start_id, end_id, properties)
                  SELECT j.value ->> 1, j.value ->> 2, s.id, e.id, j.value -> 5
                  FROM json_each(?1) j JOIN keyed.node_keys s ON s.key = j.value ->> 3 JOIN keyed.node_keys e ON e.key = j.value ->> 4`,
};

/** The key map of a loader's foreign file: beside the store, removed with it. */
export const keyMapPath = (storePath: string) => `${storePath}-keys`;
const sqlString = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** Fills a fresh file as fast as SQLite allows (no journal: a crash just means the shadow is discarded). */
export class SqliteGraphLoader implements GraphLoader {
  /** Records loaded so far, per kind: record numbers in messages count from here. */
  private readonly loaded: Record<EncodedBatch['kind'], number> = { node: 0, relationship: 0 };

  /**
   * Rows SQLite inserted, per kind: the store's counts at the end. Counting them again read the whole store (1.3M
   * nodes of ~1 KiB: finish() took 4.4–4.7 s with the count, 3.3 s without). Exact because insert() and
   * insertKeyed() are the only writers of these tables in a load, plain INSERTs (no OR REPLACE, no triggers) that
   * either take every row or fail the load.
   */
  private readonly inserted: Record<EncodedBatch['kind'], number> = { node: 0, relationship: 0 };

  /** Whether the key map's tables exist (made at the first insertKeyed). */
  private keyed = false;

  private constructor(
    private readonly connection: SqliteConnection,
    private readonly path: string,
    private readonly limits: WriteLimits,
    private readonly onAbort: () => Promise<void>,
  ) {}

  static async create(path: string, limits: WriteLimits, onAbort: () => Promise<void>): Promise<SqliteGraphLoader> {
    const connection = await SqliteConnection.open(path);
    // One transaction for the whole load: without a journal there is nothing to roll back to anyway. The key map of a
    // foreign file (insertKeyed) is a file of its own beside the store, so that the store holds nothing of it after.
    await connection.exec(
      `PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; ${TUNING} ${TABLES}
       ATTACH DATABASE ${sqlString(keyMapPath(path))} AS keyed;
       PRAGMA keyed.journal_mode = OFF; PRAGMA keyed.synchronous = OFF; PRAGMA keyed.cache_size = -16000;
       BEGIN;`,
    );
    return new SqliteGraphLoader(connection, path, limits, onAbort);
  }

  async insert(batch: EncodedBatch): Promise<void> {
    if (batch.lines.length === 0) return;
    try {
      const rows = fieldsOf(batch);
      if (rows) await this.insertRows(batch.kind, rows);
      else await this.insertJson(batch.kind, LOAD[batch.kind], `[${batch.lines.join(',')}]`);
    } catch (error) {
      // Lines were validated before they got here: a repeated id is the archive's fault, anything else (a full disk) is not.
      throw /UNIQUE constraint failed: (nodes|relationships)\.id/.test((error as Error).message) ? await this.repeatedIdError(batch) : error;
    }
    await this.counted(batch);
  }

  /** Rows of fields bound as they are, many to a statement (see tuple-fields.ts). */
  private async insertRows(kind: EncodedBatch['kind'], rows: string[][]): Promise<void> {
    const { name: table, columns } = TABLE_OF[kind];
    const placeholders = `(${columns.map(() => '?').join(',')})`;
    for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
      const group = rows.slice(start, start + ROWS_PER_STATEMENT);
      const sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${Array(group.length).fill(placeholders).join(',')}`;
      this.inserted[kind] += (await this.connection.run(sql, group.flat())).changes;
    }
  }

  /** A batch as one JSON array, parsed by SQLite (`sql`'s ?1). */
  private async insertJson(kind: EncodedBatch['kind'], sql: string, json: string): Promise<number> {
    const { changes } = await this.connection.run(sql, [json]);
    this.inserted[kind] += changes;
    return changes;
  }

  async insertKeyed(batch: EncodedBatch, describe: (at: number) => string): Promise<void> {
    if (batch.lines.length === 0) return;
    if (!this.keyed) {
      await this.connection.exec(KEY_MAP);
      this.keyed = true;
    }
    const json = `[${batch.lines.join(',')}]`;
    const db = this.connection;
    if (batch.kind === 'node') {
      const { changes } = await db.run(KEYED_LOAD.nodeKeys, [json]);
      if (changes < batch.lines.length) throw await this.repeatedKeyError(json, 'nodeKeys', describe);
      await this.insertJson('node', KEYED_LOAD.nodes, json);
    } else {
      const withKeys = batch.lines.filter((line) => !line.endsWith(',null]')).length;
      if (withKeys > 0) {
        const { changes } = await db.run(KEYED_LOAD.relationshipKeys, [json]);
        if (changes < withKeys) throw await this.repeatedKeyError(json, 'relationshipKeys', describe);
      }
      const changes = await this.insertJson('relationship', KEYED_LOAD.relationships, json);
      if (changes < batch.lines.length) throw await this.missingEndError(json, describe);
    }
    await this.counted(batch);
  }

  private async counted(batch: EncodedBatch): Promise<void> {
    this.loaded[batch.kind] += batch.lines.length;
    const { maxNodes, maxRelationships } = this.limits;
    const max = batch.kind === 'node' ? maxNodes : maxRelationships;
    if (max !== null && this.loaded[batch.kind] > max) {
      throw capacityExceeded(`the archive holds more than ${max} ${TABLE_OF[batch.kind].name}, the most the instance may hold`);
    }
    await this.assertFitsStorage(`after ${this.loaded[batch.kind]} ${TABLE_OF[batch.kind].name}`);
  }

  async finish(): Promise<SealedStore> {
    const db = this.connection;
    await db.exec(`INSERT INTO node_labels (label, node_id) SELECT l.value, n.id FROM nodes n, json_each(n.labels) l; COMMIT; ${INDEXES}`);
    await db.exec('DETACH DATABASE keyed');
    await rm(keyMapPath(this.path), { force: true });
    await this.assertEndsExist();
    await this.assertFitsStorage('with its indexes');
    await db.exec(`BEGIN;
      DELETE FROM counts;
      INSERT INTO counts VALUES ('nodes', '', ${this.inserted.node}), ('relationships', '', ${this.inserted.relationship});
      INSERT INTO counts SELECT 'label', label, count(*) FROM node_labels GROUP BY label;
      INSERT INTO counts SELECT 'type', type, count(*) FROM relationships GROUP BY type;
      INSERT OR REPLACE INTO meta SELECT 'next_node_id', coalesce(max(id), 0) + 1 FROM nodes;
      INSERT OR REPLACE INTO meta SELECT 'next_relationship_id', coalesce(max(id), 0) + 1 FROM relationships;`);
    await startEpoch(db);
    await db.exec('COMMIT');
    const position = await readPosition(db);
    const page = await db.get<{ size: number }>(`SELECT page_size AS size FROM pragma_page_size`);
    // Seal it as a live store would be: WAL mode, and everything on disk before the swap points at it. Closing the
    // last connection checkpoints the (empty) WAL and removes it: the file alone is the store.
    await db.exec(`PRAGMA synchronous = FULL; PRAGMA journal_mode = WAL; PRAGMA wal_checkpoint(TRUNCATE);`);
    await db.close();
    const path = this.path;
    return {
      base: { ...position, sizeBytes: (await stat(path)).size, pageSize: page!.size },
      read: (pieceBytes) => createReadStream(path, { highWaterMark: pieceBytes }),
    };
  }

  async abort(): Promise<void> {
    await this.connection.close().catch(() => undefined);
    await this.onAbort();
  }

  /** The real size of the data so far against the instance's storage: what a header claims decides nothing. */
  private async assertFitsStorage(when: string): Promise<void> {
    const used = await usedBytes(this.connection);
    if (used > this.limits.maxBytes) {
      throw capacityExceeded(`the restored data takes ${used} bytes ${when}; the instance has room for ${this.limits.maxBytes}`);
    }
  }

  /**
   * A primary key refused the batch: names the record whose id an earlier record already has. Without a journal
   * the rows of the batch before it stay in the table, so their number says which record was refused.
   */
  private async repeatedIdError(batch: EncodedBatch): Promise<AppError> {
    const row = await this.connection.get<{ count: number }>(`SELECT count(*) AS count FROM ${TABLE_OF[batch.kind].name}`);
    const at = Math.min(Math.max((row?.count ?? 0) - this.loaded[batch.kind], 0), batch.lines.length - 1);
    const id = (JSON.parse(batch.lines[at]) as string[])[1];
    return new AppError(
      'INVALID_BACKUP_FILE',
      `The archive is invalid: ${batch.kind} record ${this.loaded[batch.kind] + at + 1}: id "${id}" is already used by an earlier ${batch.kind} record.`,
    );
  }

  /** The first record of the batch whose key an earlier record (of this batch or before) already has. */
  private async repeatedKeyError(json: string, table: 'nodeKeys' | 'relationshipKeys', describe: (at: number) => string): Promise<AppError> {
    const keyField = table === 'nodeKeys' ? 1 : 6;
    const row = await this.connection.get<{ at: number; key: string; first: number }>(
      `SELECT j.value ->> 0 AS at, j.value ->> ${keyField} AS key, k.at AS first
       FROM json_each(?1) j JOIN keyed.${table === 'nodeKeys' ? 'node_keys' : 'relationship_keys'} k ON k.key = j.value ->> ${keyField}
       WHERE k.at <> j.value ->> 0 ORDER BY j.key LIMIT 1`,
      [json],
    );
    const what = table === 'nodeKeys' ? 'node' : 'relationship';
    if (!row) return new AppError('INVALID_BACKUP_FILE', `The file is invalid: a ${what} id is used twice.`);
    return new AppError(
      'INVALID_BACKUP_FILE',
      `The file is invalid at ${describe(row.at)}: ${what} id ${JSON.stringify(row.key)} is already used by the ${what} at ${describe(row.first)}.`,
    );
  }

  /** The first relationship of the batch with an end that names no node loaded before it. */
  private async missingEndError(json: string, describe: (at: number) => string): Promise<AppError> {
    const row = await this.connection.get<{ at: number; startKey: string; endKey: string; start: number | null }>(
      `SELECT j.value ->> 0 AS at, j.value ->> 3 AS startKey, j.value ->> 4 AS endKey, s.id AS start
       FROM json_each(?1) j LEFT JOIN keyed.node_keys s ON s.key = j.value ->> 3 LEFT JOIN keyed.node_keys e ON e.key = j.value ->> 4
       WHERE s.id IS NULL OR e.id IS NULL ORDER BY j.key LIMIT 1`,
      [json],
    );
    if (!row) return new AppError('INVALID_BACKUP_FILE', 'The file is invalid: a relationship names a node the file does not hold.');
    const [end, key] = row.start === null ? ['start', row.startKey] : ['end', row.endKey];
    return new AppError(
      'INVALID_BACKUP_FILE',
      `The file is invalid at ${describe(row.at)}: the relationship's ${end} node ${JSON.stringify(key)} is not a node of the file ` +
        '(or comes after the relationship: nodes must come first).',
    );
  }

  /** Every relationship's ends are nodes of the archive; checked per distinct id, walking the new indexes in order. */
  private async assertEndsExist(): Promise<void> {
    const db = this.connection;
    const dangling = await db.get<{ count: number }>(
      `SELECT (SELECT count(*) FROM (SELECT DISTINCT start_id AS id FROM relationships) e WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE id = e.id))
            + (SELECT count(*) FROM (SELECT DISTINCT end_id AS id FROM relationships) e WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE id = e.id))
            AS count`,
    );
    if (!dangling || dangling.count === 0) return;
    const row = await db.get<{ id: number; field: string; node: number }>(
      `SELECT id, 'startNodeId' AS field, start_id AS node FROM relationships WHERE start_id NOT IN (SELECT id FROM nodes)
       UNION ALL SELECT id, 'endNodeId', end_id FROM relationships WHERE end_id NOT IN (SELECT id FROM nodes)
       ORDER BY id LIMIT 1`,
    );
    throw new AppError(
      'INVALID_BACKUP_FILE',
      `The archive is invalid: the relationship record with id "${row?.id}": ${row?.field} "${row?.node}" is not a node of the archive.`,
    );
  }
}

async function readCounts(db: SqliteConnection): Promise<{ nodes: number; relationships: number }> {
  const rows = await db.all<{ kind: string; count: number }>(
    `SELECT kind, count FROM counts WHERE kind IN ('nodes', 'relationships') AND name = ''`,
  );
  const of = (kind: string) => rows.find((row) => row.kind === kind)?.count ?? 0;
  return { nodes: of('nodes'), relationships: of('relationships') };
}

export async function readStats(db: SqliteConnection): Promise<GraphStats> {
  const rows = await db.all<{ kind: CountKind; name: string; count: number }>(
    `SELECT kind, name, count FROM counts WHERE count > 0 ORDER BY kind, name`,
  );
  const named = (kind: CountKind): NameCount[] =>
    rows.filter((row) => row.kind === kind).map((row) => ({ name: row.name, count: row.count }));
  const total = (kind: CountKind) => rows.find((row) => row.kind === kind)?.count ?? 0;
  return {
    nodeCount: total('nodes'),
    relationshipCount: total('relationships'),
    labels: named('label'),
    relationshipTypes: named('type'),
    storeSizeBytes: await usedBytes(db),
  };
}

/** Bytes the data occupies: allocated pages minus free ones. */
async function usedBytes(db: SqliteConnection): Promise<number> {
  const row = await db.get<{ pages: number; free: number; size: number }>(
    `SELECT (SELECT page_count FROM pragma_page_count) AS pages, (SELECT freelist_count FROM pragma_freelist_count) AS free,
            (SELECT page_size FROM pragma_page_size) AS size`,
  );
  return row ? (row.pages - row.free) * row.size : 0;
}

// What a row's tuple line (as a change log or an archive holds it: NODE_LINES, RELATIONSHIP_LINES) takes in UTF-8 with
// its newline, counted without building it: `SELECT id, bytes`, to be followed by the rows' FROM and WHERE.
/** `["N","` `",` `,` `]` and the newline. */
const NODE_LINE_PUNCTUATION = 11;
/** `["R","` `",` `,"` `","` `",` `]` and the newline. */
const RELATIONSHIP_LINE_PUNCTUATION = 17;
const NODE_RECORD_BYTES = `SELECT id, octet_length(labels) + octet_length(properties) + length(id) + ${NODE_LINE_PUNCTUATION} AS bytes`;
const RELATIONSHIP_RECORD_BYTES =
  'SELECT id, octet_length(json_quote(type)) + octet_length(properties) + length(id) + length(start_id) + length(end_id) + ' +
  `${RELATIONSHIP_LINE_PUNCTUATION} AS bytes`;

/**
 * A batch as json_each takes it, refusing first, before anything is bound or written, a row whose tuple line its own
 * JSON already puts past MAX_FRAME_BYTES: SQLite stores a row's labels and properties as JSON.stringify wrote them
 * (`value ->> n` of an array or an object gives back compact JSON byte for byte: escapes, numbers, a lone surrogate's
 * `\udc00`), and `beyondRow` gives the bytes the line takes at least beyond the row's (negative when it takes fewer).
 * Only lower bounds, so it never refuses what assertRecordsFit, the authority after the write, would take. A refused
 * node of one 64 MiB string took 2.6-3.0 s of the server's CPU when only assertRecordsFit caught it, after binding,
 * json_each and the insert into the WAL; refused here, 0.84-0.88 s: the batch's JSON, then each row's (3 runs each).
 * A batch too small for any of its rows to pass (a third of a frame) is encoded whole only, as before: a JSON.stringify
 * per row costs about 1 µs a row more than one for the whole batch (100,000 small nodes: 80-100 ms -> 160-190 ms).
 */
function batchPayload<R>(rows: R[], beyondRow: (row: R) => number, describe: (row: R, index: number) => string): string {
  const whole = JSON.stringify(rows);
  // Each row's JSON is shorter than the batch's, takes at most 3 bytes a UTF-16 unit, and no line adds more than its punctuation.
  if (3 * whole.length + RELATIONSHIP_LINE_PUNCTUATION <= MAX_FRAME_BYTES) return whole;
  const records = rows.map((row, index) => {
    const record = JSON.stringify(row);
    const beyond = beyondRow(row);
    // A UTF-16 unit takes 1 to 3 bytes of UTF-8: most rows need no count, and a long one rarely its bytes (0.2 s for 64 MiB).
    if (beyond + 3 * record.length > MAX_FRAME_BYTES) {
      const bytes = beyond + (beyond + record.length > MAX_FRAME_BYTES ? record.length : Buffer.byteLength(record));
      if (bytes > MAX_FRAME_BYTES) throw recordTooLarge(describe(row, index), `at least ${bytes}`);
    }
    return record;
  });
  return `[${records.join(',')}]`;
}

/**
 * Refuses (rolling the write back) a row whose tuple line passes what one archive frame holds (MAX_FRAME_BYTES, its
 * newline included: docs/archive-format.md, Limits), which no export of a snapshot holding it could then write; an
 * imported file's record that large is refused for it. A request's size does not bound it: a number is stored as
 * JSON writes it (`1e20` as `100000000000000000000`, 5 times the bytes), and updateNodes joins new labels or
 * properties to the node's own. `rows` selects the written rows' id and bytes (?1…); `describe` names one for the message.
 */
async function assertRecordsFit(db: SqliteConnection, rows: string, params: unknown[], describe: (id: number) => string): Promise<void> {
  const row = await db.get<{ id: number; bytes: number }>(`SELECT id, bytes FROM (${rows}) WHERE bytes > ${MAX_FRAME_BYTES} ORDER BY id LIMIT 1`, params);
  if (row) throw recordTooLarge(describe(row.id), String(row.bytes));
}

function recordTooLarge(what: string, bytes: string): AppError {
  return badInput(
    `${what} takes ${bytes} bytes once encoded (numbers as JSON writes them), more than the ${MAX_FRAME_BYTES} bytes a record may ` +
      'take (an archive frame: a snapshot holding it could never be exported); nothing was written',
  );
}

/**
 * Bytes of properties an updateNodes answer carries at most: the size of a request's body (docs/api.md, Limits). The
 * nodes it answers are as large as they were made, whatever the update sent (a relabelling sends none of their
 * properties), and they were read into the heap whole: relabelling large nodes took the process down.
 */
export const UPDATE_ANSWER_BYTES = 64 * 1024 * 1024;

/** Refuses (rolling the update back) an answer whose nodes' properties pass `maxBytes` (UPDATE_ANSWER_BYTES at most). */
async function assertAnswerFits(db: SqliteConnection, ids: number[], maxBytes: number): Promise<void> {
  const row = await db.get<{ bytes: number }>(
    `SELECT coalesce(sum(octet_length(properties)), 0) AS bytes FROM nodes WHERE id IN (SELECT value FROM json_each(?1))`,
    [JSON.stringify(ids)],
  );
  if (row && row.bytes > maxBytes) {
    throw badInput(
      `the updated nodes hold ${row.bytes} bytes of properties, more than ${maxBytes === UPDATE_ANSWER_BYTES ? 'an' : "this operation's"} answer carries (${maxBytes}): ` +
        'ask for no properties, or update fewer nodes at a time; nothing was updated',
    );
  }
}

/** Refuses a batch that clearly will not fit before it is written (assertStillFits then counts what it really took). */
async function assertFits(db: SqliteConnection, usedBytes: number, incomingBytes: number, maxBytes: number): Promise<void> {
  // Text plus row and index overhead: an estimate, which UTF-16 lengths of multi-byte text and small rows undercount.
  const estimate = Math.ceil(incomingBytes * 1.5) + 4096;
  if (usedBytes + estimate > maxBytes) {
    throw await storageFull(db, usedBytes, `${usedBytes} of ${maxBytes} bytes used, and this batch needs about ${estimate} more`);
  }
}

/**
 * What the write really took, counted inside its transaction once its rows and its change log are in: over the
 * instance's storage, the batch is refused and rolled back. (Without it a batch of multi-byte text passed the estimate
 * and left the store larger than its storage, and its snapshots would not restore into it.)
 */
async function assertStillFits(db: SqliteConnection, maxBytes: number): Promise<void> {
  const used = await usedBytes(db);
  if (used > maxBytes) {
    throw await storageFull(db, used, `this batch would take it to ${used} of ${maxBytes} bytes; nothing was written`);
  }
}

/**
 * CAPACITY_EXCEEDED for a full storage. The change log waiting to be shipped is in the store, so it counts (it takes
 * that disk); when shipping stalls (the blob store away) it can fill the storage of a small graph. The message then
 * says so: deleting data would not help (a deletion adds entries of its own), waiting for the shipping does.
 */
async function storageFull(db: SqliteConnection, usedBytes: number, detail: string): Promise<AppError> {
  const row = await db.get<{ bytes: number }>(`SELECT coalesce(sum(octet_length(lines)), 0) AS bytes FROM change_log`);
  const unshipped = row?.bytes ?? 0;
  const why =
    unshipped * 4 >= usedBytes
      ? `; about ${unshipped} bytes of it are changes not yet copied to backup storage, which give their room back once copied`
      : '';
  return capacityExceeded(`the instance's storage is full: ${detail}${why}`);
}

/** The first of `count` new ids. Ids stay JavaScript-safe integers (a restored archive may already use the highest). */
async function nextId(db: SqliteConnection, key: string, count: number): Promise<number> {
  const row = await db.get<{ value: number }>(`SELECT value FROM meta WHERE key = ?`, [key]);
  const first = row?.value ?? 1;
  // Compared this way round: first + count would round above 2^53.
  if (first > Number.MAX_SAFE_INTEGER - (count - 1)) {
    throw capacityExceeded(`the instance has no ids left: ids end at ${Number.MAX_SAFE_INTEGER}, and the next free one is ${first}`);
  }
  return first;
}

export async function setMeta(db: SqliteConnection, key: string, value: number): Promise<void> {
  await db.run(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [key, value]);
}

export async function applyCounts(db: SqliteConnection, deltas: CountDelta[]): Promise<void> {
  const json = JSON.stringify(deltas);
  // A label or type new to the graph: the graph's distinct names are counted once it is in (MAX_DISTINCT_NAMES), and
  // the write refused past the bound. Looked for first, so that a write of names the graph has counts nothing.
  const named = await db.all<{ kind: 'label' | 'type' }>(
    `SELECT DISTINCT j.value ->> 0 AS kind FROM json_each(?1) j WHERE j.value ->> 0 IN ('label', 'type') AND j.value ->> 2 > 0
       AND NOT EXISTS (SELECT 1 FROM counts c WHERE c.kind = j.value ->> 0 AND c.name = j.value ->> 1)`,
    [json],
  );
  await db.run(
    `INSERT INTO counts (kind, name, count) SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true
     ON CONFLICT (kind, name) DO UPDATE SET count = count + excluded.count`,
    [json],
  );
  // Only the names this write counted can have dropped to none (a scan of every label and type per write grew with them).
  await db.run(
    `DELETE FROM counts WHERE (kind, name) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1)) AND count <= 0 AND kind IN ('label', 'type')`,
    [json],
  );
  // Only the kind that gained a name: a store restored from before the bound may hold more of the other.
  for (const { kind } of named) {
    const row = await db.get<{ names: number }>(`SELECT count(*) AS names FROM counts WHERE kind = ?1`, [kind]);
    const problem = distinctNamesProblem(kind, row?.names ?? 0);
    if (problem) throw capacityExceeded(`the write is refused: ${problem}`);
  }
}

function tally(names: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}

/** A new random epoch: 53 bits, so it is exact as a JavaScript number and as an SQLite integer. */
export function newEpoch(): number {
  return Number(randomBytes(8).readBigUInt64BE() >> 11n) || 1;
}

/**
 * Brings a store file to this release's schema: the tables a new file lacks, and the change log in place of the
 * previous release's change tracking (a table of the latest seq per row), keeping the epoch and the seq it reached.
 * A store with no history yet starts one.
 */
export async function upgradeSchema(db: SqliteConnection): Promise<void> {
  await db.exec(`${TABLES} ${INDEXES}`);
  if (await db.get(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'changes'`)) {
    await db.exec(`DROP TABLE changes; DELETE FROM meta WHERE key = 'changes_trimmed_through';`);
  }
  if (!(await db.get(`SELECT 1 FROM meta WHERE key = 'epoch'`))) await startEpoch(db);
}

/** Starts a new history for what the store now holds: a new epoch at seq 0, an empty log, no write time yet. */
export async function startEpoch(db: SqliteConnection): Promise<void> {
  await db.run(`DELETE FROM change_log`);
  // A base copied from a frozen store (a restore's safety snapshot) must not carry the fence into the new store.
  await db.run(`DELETE FROM meta WHERE key IN ('last_at', '${FROZEN}')`);
  await setMeta(db, 'epoch', newEpoch());
  await setMeta(db, 'seq', 0);
}

export async function readPosition(db: SqliteConnection): Promise<StorePosition> {
  const rows = await db.all<{ key: string; value: number }>(`SELECT key, value FROM meta WHERE key IN ('epoch', 'seq', 'last_at')`);
  const of = (key: string) => rows.find((row) => row.key === key)?.value ?? null;
  const [epoch, seq] = [of('epoch'), of('seq')];
  if (epoch === null || seq === null) throw new Error('the store has no change log position (its epoch or seq is missing)');
  return { epoch, seq, at: of('last_at'), stats: await readStats(db) };
}

/**
 * Logs the write transaction: the next seq, a commit time that never goes back (nor below the last readAt handed out:
 * see position), and the newline-separated tuple lines
 * `lines` selects (in replay order; parameters ?1…?n) from the rows as the transaction leaves them. No lines (NULL or
 * empty) log nothing: the write changed nothing. A transaction logged in several entries (logDetach) gives each the
 * same `now`: they then share one commit time, so a moment in time holds all of them or none.
 */
async function logWrite(db: SqliteConnection, lines: string, params: unknown[], now = Date.now()): Promise<void> {
  const nowParam = params.length + 1;
  // The lines are built once, in a materialised CTE: as a scalar subquery filtered by WHERE, SQLite built (and copied)
  // them several times, which for one node of 8 MiB took 470 ms of a 1.1 s write.
  const entry = await db.get<{ seq: number; at: number }>(
    `WITH entry (lines) AS MATERIALIZED (${lines})
     INSERT INTO change_log (seq, at, lines)
     SELECT (SELECT value + 1 FROM meta WHERE key = 'seq'),
            max(?${nowParam}, coalesce((SELECT value FROM meta WHERE key = 'last_at'), 0), coalesce((SELECT value FROM meta WHERE key = '${READ_AT}'), 0)),
            lines
     FROM entry WHERE lines <> ''
     RETURNING seq, at`,
    [...params, now],
  );
  if (!entry) return;
  await db.run(`INSERT INTO meta (key, value) VALUES ('seq', ?1), ('last_at', ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [
    entry!.seq,
    entry!.at,
  ]);
}

/**
 * Lines in one change-log entry at most, where a transaction's lines are not bounded by its request: the deletion of
 * nodes takes every relationship they have. One entry is read, shipped and replayed whole (segments hold whole entries,
 * the first one whatever its size), so a hub's deletion was once an entry of one line per relationship (10M: a string
 * of 170 MiB in SQLite and in the heap, several times over). 10,000: the lines of the largest write batch.
 */
export const LOG_ENTRY_LINES = 10_000;

/** Characters of lines in one change-log entry at most, where a transaction's lines are not bounded by its request. */
export const LOG_ENTRY_CHARS = 4 * 1024 * 1024;

/**
 * Logs updateNodes: the nodes `ids` as the transaction leaves them, whose rows are as large as they were made (a
 * request of 10,000 ids that changes only labels logs every one of those nodes whole). In one entry when their rows
 * fit LOG_ENTRY_CHARS, else in entries of about that many characters (a node larger is one entry), in id order, all
 * at one commit time (see logWrite).
 */
async function logNodes(db: SqliteConnection, ids: number[]): Promise<void> {
  const sizes = await db.all<{ id: number; chars: number }>(
    `SELECT id, length(labels) + length(properties) + 16 AS chars FROM nodes WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id`,
    [JSON.stringify(ids)],
  );
  const pieces: number[][] = [];
  let chars = Infinity;
  for (const { id, chars: size } of sizes) {
    if (chars + size > LOG_ENTRY_CHARS) {
      pieces.push([]);
      chars = 0;
    }
    pieces[pieces.length - 1].push(id);
    chars += size;
  }
  const now = Date.now();
  for (const piece of pieces) await logWrite(db, `SELECT ${NODE_LINES} FROM nodes n WHERE n.id IN (SELECT value FROM json_each(?1))`, [JSON.stringify(piece)], now);
}

/**
 * Logs deleteNodes: a `-R` line for each relationship of temp.detached (`count` of them), then a `-N` line for each
 * node of `nodes` (a JSON array of ids, at most a write batch), in one entry when they fit LOG_ENTRY_LINES, else in
 * entries of that many `-R` lines, in id order, and one of the `-N` lines, all at one commit time (see logWrite).
 */
async function logDetach(db: SqliteConnection, count: number, nodes: string): Promise<void> {
  const nodeLines = `SELECT group_concat('["-N","' || value || '"]', char(10)) FROM json_each(?1)`;
  if (count + JSON.parse(nodes).length <= LOG_ENTRY_LINES) {
    await logWrite(db, `SELECT concat_ws(char(10), (SELECT group_concat('["-R","' || id || '"]', char(10)) FROM temp.detached), (${nodeLines}))`, [nodes]);
    return;
  }
  const now = Date.now();
  for (let after = 0; ; ) {
    const piece = await db.get<{ last: number | null }>(`SELECT max(id) AS last FROM (SELECT id FROM temp.detached WHERE id > ?1 ORDER BY id LIMIT ?2)`, [after, LOG_ENTRY_LINES]);
    if (piece?.last == null) break;
    await logWrite(db, `SELECT group_concat('["-R","' || id || '"]', char(10)) FROM (SELECT id FROM temp.detached WHERE id > ?1 AND id <= ?2 ORDER BY id)`, [after, piece.last], now);
    after = piece.last;
  }
  await logWrite(db, nodeLines, [nodes], now);
}

export async function removeStoreFiles(path: string): Promise<void> {
  await Promise.all(['', '-wal', '-shm', '-journal', '-keys'].map((suffix) => rm(path + suffix, { force: true })));
}
