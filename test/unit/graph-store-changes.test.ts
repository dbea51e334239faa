// The change log of the SQLite graph store, and what is built on it: base copies, and restoring by replaying the log.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import sqlite3 from 'sqlite3';
import { MAX_FRAME_BYTES } from '../../src/archive/archive-frame';
import { AppError } from '../../src/errors/app-error';
import type { LogEntry, NodeDraft, StorePosition, WriteLimits } from '../../src/graph/graph-store';
import { lineBatches } from '../../src/graph/line-batches';
import type { DeltaBatch, GraphStats } from '../../src/graph/records';
import { SqliteConnection } from '../../src/graph/sqlite-connection';
import { SqliteGraphLoader, SqliteGraphStore } from '../../src/graph/sqlite-graph-store';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import { EARLIER_RELEASE_STORE_TABLES } from '../support/earlier-release-store';

/** The store's position without `readAt` (the moment it was read, different at every call). */
async function positionOf(store: { position(): Promise<StorePosition & { readAt: number }> }): Promise<StorePosition> {
  const { readAt: _readAt, ...position } = await store.position();
  return position;
}

const LIMITS: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: 1e12 };

/** A deterministic pseudo-random sequence, so a failure can be replayed. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

async function rowsOf<T>(path: string, sql: string): Promise<T[]> {
  const db = await SqliteConnection.open(path, sqlite3.OPEN_READONLY);
  try {
    return await db.all<T>(sql);
  } finally {
    await db.close();
  }
}

async function execOn(path: string, sql: string): Promise<void> {
  const db = await SqliteConnection.open(path);
  try {
    await db.exec(sql);
  } finally {
    await db.close();
  }
}

const metaOf = async (path: string) =>
  Object.fromEntries((await rowsOf<{ key: string; value: number }>(path, `SELECT key, value FROM meta`)).map((row) => [row.key, row.value]));
const tablesOf = async (path: string) =>
  (await rowsOf<{ name: string }>(path, `SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`)).map((row) => row.name);

/** Every node and relationship of a store, parsed, in id order. */
async function contentsOf(store: SqliteGraphStore): Promise<unknown[]> {
  const view = await store.openReadView();
  try {
    const lines: unknown[] = [];
    for await (const batch of view.encodedBatches(97)) lines.push(...batch.lines.map((line) => JSON.parse(line)));
    return lines;
  } finally {
    await view.close();
  }
}

/** The whole log after a seq, read in small pieces. */
async function logAfter(store: SqliteGraphStore, seq: number, maxBytes = 2_000): Promise<LogEntry[]> {
  const entries: LogEntry[] = [];
  for (let after = seq; ; ) {
    const more = await store.readLog(after, maxBytes);
    if (more.length === 0) return entries;
    entries.push(...more);
    after = more[more.length - 1].seq;
  }
}

/** Log entries as shipped bytes (cut at arbitrary places), read back into batches as a restore does. */
function replay(entries: LogEntry[]): AsyncIterable<DeltaBatch> {
  const bytes = Buffer.from(entries.map((entry) => entry.lines.join('\n') + '\n').join(''));
  const pieces = Array.from({ length: Math.ceil(bytes.length / 777) }, (_, i) => bytes.subarray(i * 777, (i + 1) * 777));
  return lineBatches(Readable.from(pieces));
}

async function* batchesOf(...batches: DeltaBatch[]): AsyncIterable<DeltaBatch> {
  yield* batches;
}

const parsed = (entries: LogEntry[]) => entries.map((entry) => entry.lines.map((line) => JSON.parse(line)));

const drafts = (count: number, label = 'Person', extra: Record<string, unknown> = {}): NodeDraft[] =>
  Array.from({ length: count }, (_, index) => ({ labels: [label], properties: { index, ...extra } }));

function assertStatsEqual(actual: GraphStats, expected: GraphStats): void {
  const { storeSizeBytes: _a, ...left } = actual;
  const { storeSizeBytes: _b, ...right } = expected;
  assert.deepEqual(left, right);
}

describe('graph store change log, base copies and replay', function () {
  this.timeout(120_000);
  let dir: string;
  let store: SqliteGraphStore;
  let path: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-changes-'));
    path = join(dir, 'source.sqlite');
    store = await SqliteGraphStore.open(path, { create: true });
  });

  afterEach(async () => {
    await store.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  describe('change log', () => {
    it('starts a new store at seq 0 with a random epoch, an empty log and no write time; reopening keeps its position', async () => {
      const position = await positionOf(store);
      assert.deepEqual({ ...position, epoch: 0 }, { epoch: 0, seq: 0, at: null, stats: await store.stats() });
      assert.ok(Number.isSafeInteger(position.epoch) && position.epoch > 0);
      assert.deepEqual(await store.readLog(0, 1_000), []);
      const other = await SqliteGraphStore.open(join(dir, 'other.sqlite'), { create: true });
      assert.notEqual((await positionOf(other)).epoch, position.epoch);
      await other.close();
      await store.createNodes(drafts(1), LIMITS);
      const written = await positionOf(store);
      await store.close();
      store = await SqliteGraphStore.open(path);
      assert.deepEqual(await positionOf(store), written);
    });

    it('logs each write transaction once: the rows it touched as it left them, in replay order, cascades included', async () => {
      const before = Date.now();
      const nodes = await store.createNodes(
        [
          { labels: ['Person'], properties: { name: 'a', nested: { list: [1, 'two', null] } } },
          { labels: [], properties: { quote: 'say "hi"\n', é: 'ü' } },
          { labels: ['Person', 'Admin'], properties: {} },
        ],
        LIMITS,
      );
      await store.createRelationships(
        [
          { type: 'KNOWS', startNodeId: nodes[0].id, endNodeId: nodes[1].id, properties: { w: 1.5 } },
          { type: 'ODD "TYPE"', startNodeId: nodes[2].id, endNodeId: nodes[0].id, properties: {} },
          { type: 'LIKES', startNodeId: nodes[1].id, endNodeId: nodes[2].id, properties: {} },
        ],
        LIMITS,
      );
      await store.updateNodes([{ id: nodes[1].id, properties: { changed: true } }, { id: nodes[2].id, labels: ['Robot'] }], LIMITS);
      // Deleting node 1 takes relationships 1 and 2 with it, logged before the node.
      assert.equal(await store.deleteNodes([nodes[0].id, '999']), 1);
      const entries = await store.readLog(0, 1e9);
      assert.deepEqual(entries.map((entry) => entry.seq), [1, 2, 3, 4]);
      assert.deepEqual(parsed(entries), [
        [
          ['N', '1', ['Person'], { name: 'a', nested: { list: [1, 'two', null] } }],
          ['N', '2', [], { quote: 'say "hi"\n', é: 'ü' }],
          ['N', '3', ['Person', 'Admin'], {}],
        ],
        [
          ['R', '1', 'KNOWS', '1', '2', { w: 1.5 }],
          ['R', '2', 'ODD "TYPE"', '3', '1', {}],
          ['R', '3', 'LIKES', '2', '3', {}],
        ],
        [
          ['N', '2', [], { changed: true }],
          ['N', '3', ['Robot'], {}],
        ],
        [['-R', '1'], ['-R', '2'], ['-N', '1']],
      ]);
      // The lines are the ones a snapshot's read view builds for the same rows.
      const current = new Set((await contentsOf(store)).map((line) => JSON.stringify(line)));
      for (const line of [...entries[2].lines, entries[1].lines[2]]) assert.ok(current.has(line), line);
      const ats = entries.map((entry) => entry.at);
      assert.ok(ats[0] >= before && ats[3] <= Date.now(), JSON.stringify(ats));
      assert.deepEqual([...ats].sort((a, b) => a - b), ats);
      assert.deepEqual(await positionOf(store), { epoch: (await positionOf(store)).epoch, seq: 4, at: ats[3], stats: await store.stats() });
    });

    it('logs a deletion that detaches many relationships in entries of at most 10,000 lines, all at one commit time', async () => {
      // A hub: the lines of its deletion grow with its degree, not with the write's batch (at most 10,000 ids).
      const [hub, other] = await store.createNodes(drafts(2), LIMITS);
      const spokes = Array.from({ length: 25_000 }, (_, i) => ({ type: 'KNOWS', startNodeId: i % 2 ? hub.id : other.id, endNodeId: i % 2 ? other.id : hub.id, properties: {} }));
      await store.createRelationships(spokes, LIMITS);
      const { seq: before } = await positionOf(store);
      assert.equal(await store.deleteNodes([hub.id]), 1);
      const entries = await logAfter(store, before, 1);
      assert.ok(entries.every((entry) => entry.lines.length <= 10_000), `entries of ${entries.map((entry) => entry.lines.length).join(', ')} lines`);
      assert.deepEqual(new Set(entries.map((entry) => entry.at)).size, 1, 'one commit time: a moment in time holds the whole deletion or none of it');
      const lines = entries.flatMap((entry) => entry.lines.map((line) => JSON.parse(line) as string[]));
      assert.deepEqual(lines.at(-1), ['-N', hub.id]);
      assert.deepEqual(lines.slice(0, -1).map(([tag, id]) => [tag, Number(id)]), Array.from({ length: 25_000 }, (_, i) => ['-R', i + 1]));
      assert.deepEqual(await positionOf(store), { ...(await positionOf(store)), seq: entries.at(-1)!.seq, at: entries[0].at });
      assert.equal((await store.stats()).relationshipCount, 0);
    });

    it('logs an update of large nodes in entries of about 4 MiB, all at one commit time', async () => {
      // Relabelling logs each node whole: the lines grow with the nodes, not with the request (10,000 ids at most).
      const nodes = await store.createNodes(drafts(2_000, 'Big', { text: 'x'.repeat(10_000) }), LIMITS);
      const { seq: before } = await positionOf(store);
      await store.updateNodes(nodes.map((node) => ({ id: node.id, labels: ['Relabelled'] })), LIMITS);
      const entries = await logAfter(store, before, 1);
      const chars = entries.map((entry) => entry.lines.join('\n').length);
      assert.ok(entries.length >= 5 && chars.every((size) => size <= 4 * 1024 * 1024 + 10_100), `entries of ${chars.join(', ')} characters`);
      assert.deepEqual(new Set(entries.map((entry) => entry.at)).size, 1, 'one commit time: a moment in time holds the whole update or none of it');
      const lines = entries.flatMap((entry) => entry.lines.map((line) => JSON.parse(line) as [string, string, string[]]));
      assert.deepEqual(lines.map(([tag, id, labels]) => [tag, id, labels]), nodes.map((node) => ['N', node.id, ['Relabelled']]));
      assert.deepEqual(await positionOf(store), { ...(await positionOf(store)), seq: entries.at(-1)!.seq, at: entries[0].at });
    });

    it('logs nothing for a refused or failed write, or one that changes nothing', async () => {
      await store.createNodes(drafts(2), LIMITS);
      const [entry] = await store.readLog(0, 1e9);
      await assert.rejects(store.createNodes(drafts(5), { ...LIMITS, maxNodes: 4 }), (error: AppError) => error.code === 'CAPACITY_EXCEEDED');
      await assert.rejects(
        store.createRelationships([{ type: 'T', startNodeId: '1', endNodeId: '99', properties: {} }], LIMITS),
        (error: AppError) => error.code === 'BAD_USER_INPUT',
      );
      await assert.rejects(store.updateNodes([{ id: '1', labels: ['X'] }, { id: '42', labels: ['X'] }], LIMITS), (error: AppError) => error.code === 'NOT_FOUND');
      // Fails after its nodes are written (a label twice breaks the label index's key): the whole batch rolls back.
      await assert.rejects(store.createNodes([{ labels: ['Twice', 'Twice'], properties: {} }], LIMITS), /UNIQUE/);
      assert.equal(await store.deleteNodes(['77']), 0);
      assert.deepEqual(await store.createNodes([], LIMITS), []);
      assert.deepEqual(await store.readLog(0, 1e9), [entry]);
      assert.deepEqual(await positionOf(store), { ...(await positionOf(store)), seq: 1, at: entry.at });
      assert.equal((await store.stats()).nodeCount, 2);
    });

    it('never moves commit times back, even when the clock does', async () => {
      await store.createNodes(drafts(1), LIMITS);
      // As if the previous write had committed a minute from now and the clock had since been set back.
      const ahead = Date.now() + 60_000;
      await execOn(path, `UPDATE meta SET value = ${ahead} WHERE key = 'last_at'`);
      await store.createNodes(drafts(1), LIMITS);
      await store.updateNodes([{ id: '1', properties: { later: true } }], LIMITS);
      assert.deepEqual((await store.readLog(1, 1e9)).map((entry) => entry.at), [ahead, ahead]);
      assert.equal((await positionOf(store)).at, ahead);
    });

    it('reads entries in seq order within about maxBytes, always at least one', async () => {
      for (let i = 0; i < 6; i++) await store.createNodes(drafts(10, 'Person', { pad: 'x'.repeat(50) }), LIMITS);
      const all = await store.readLog(0, 1e9);
      assert.deepEqual(all.map((entry) => entry.seq), [1, 2, 3, 4, 5, 6]);
      const size = (entry: LogEntry) => Buffer.byteLength(entry.lines.join('\n'));
      assert.deepEqual(await store.readLog(0, 1), [all[0]]);
      assert.deepEqual(await store.readLog(2, size(all[2]) + size(all[3]) + size(all[4]) - 1), [all[2], all[3]]);
      assert.deepEqual(await store.readLog(2, size(all[2]) + size(all[3]) + size(all[4])), [all[2], all[3], all[4]]);
      assert.deepEqual(await logAfter(store, 0, 1), all);
      assert.deepEqual(await store.readLog(6, 1e9), []);
    });

    it('trims shipped entries and keeps the position', async () => {
      await store.createNodes(drafts(5), LIMITS);
      await store.updateNodes([{ id: '1', properties: { a: 1 } }], LIMITS);
      await store.updateNodes([{ id: '2', properties: { a: 2 } }], LIMITS);
      const position = await positionOf(store);
      await store.trimLog(2);
      assert.deepEqual(parsed(await store.readLog(0, 1e9)), [[['N', '2', ['Person'], { a: 2 }]]]);
      // Also while writes are frozen (a restore), and past the end.
      await store.freezeWrites('a-restore');
      await store.trimLog(99);
      await store.thawWrites();
      assert.deepEqual(await store.readLog(0, 1e9), []);
      assert.deepEqual(await positionOf(store), position);
      await store.createNodes(drafts(1), LIMITS);
      assert.deepEqual((await store.readLog(0, 1e9)).map((entry) => entry.seq), [4]);
    });

    it('reads a position whose seq, time and stats describe the same moment while writes go on', async () => {
      let writing = true;
      const writer = (async () => {
        while (writing) await store.createNodes(drafts(10), LIMITS);
      })();
      const positions = [];
      for (let i = 0; i < 40; i++) positions.push(await positionOf(store));
      writing = false;
      await writer;
      const times = new Map((await store.readLog(0, 1e12)).map((entry) => [entry.seq, entry.at]));
      assert.ok(positions[positions.length - 1].seq > positions[0].seq, 'writes went on');
      for (const position of positions) {
        assert.equal(position.stats.nodeCount, 10 * position.seq);
        assert.equal(position.at, position.seq === 0 ? null : times.get(position.seq));
      }
    });
  });

  describe('records larger than an archive frame', () => {
    it('refuses a write whose row would take more than a frame holds once encoded, though its request was smaller, writing nothing', async () => {
      // Through the API a request's size does not bound a row: a number is stored as JSON writes it (`1e20`, 4 bytes in
      // a request, takes 21 as `100000000000000000000`), so a body well within its limit made a node no archive frame
      // holds, and no export of a snapshot holding it could be written (an imported file's record that large is refused
      // for that). Here, a string as long as a frame.
      const [node] = await store.createNodes(drafts(1), LIMITS);
      const written = await positionOf(store);
      const oversized = { text: 'x'.repeat(MAX_FRAME_BYTES) };
      const refusal = (error: AppError) => error.code === 'BAD_USER_INPUT' && /more than the 67108864 bytes a record may take.*nothing was written/.test(error.message);
      await assert.rejects(store.createNodes([{ labels: ['Oversized'], properties: oversized }], LIMITS), refusal);
      await assert.rejects(store.createRelationships([{ type: 'OVERSIZED', startNodeId: node.id, endNodeId: node.id, properties: oversized }], LIMITS), refusal);
      // An update is measured with what the node keeps: its labels joined to new properties.
      await assert.rejects(store.updateNodes([{ id: node.id, properties: oversized }], LIMITS), refusal);
      assert.deepEqual(await positionOf(store), written);
      assert.deepEqual(await contentsOf(store), [['N', node.id, ['Person'], node.properties]]);
    });

    it('refuses a record its request alone makes larger than a frame before writing any of it: the write-ahead log stays empty', async () => {
      // Refused only after the insert, such a record had the server bind it, parse it and write it into the WAL (2.7-3.0 s
      // of CPU for 64 MiB) before rolling back, for any client that may write.
      const [node] = await store.createNodes(drafts(1), LIMITS);
      const oversized = { text: 'x'.repeat(MAX_FRAME_BYTES) };
      const walBytes = () => statSync(`${path}-wal`).size;
      for (const write of [
        () => store.createNodes([{ labels: ['Oversized'], properties: oversized }], LIMITS),
        () => store.createRelationships([{ type: 'OVERSIZED', startNodeId: node.id, endNodeId: node.id, properties: oversized }], LIMITS),
        () => store.updateNodes([{ id: node.id, properties: oversized }], LIMITS),
      ]) {
        await execOn(path, 'PRAGMA wal_checkpoint(TRUNCATE)');
        assert.equal(walBytes(), 0);
        await assert.rejects(write(), (error: AppError) => error.code === 'BAD_USER_INPUT' && /more than the 67108864 bytes a record may take/.test(error.message));
        assert.equal(walBytes(), 0);
      }
    });

    it('refuses an update that the labels its node keeps put past a frame, which its request alone could not tell', async () => {
      const [node] = await store.createNodes([{ labels: ['A'], properties: {} }], LIMITS);
      const before = await contentsOf(store);
      // `["N","1",["A"],{"text":"…"}]` and its newline take 3 bytes more than a frame; the request, `[1,null,{"text":"…"}]`,
      // tells only that they take a frame at least (as they would, had the node kept labels of `[]`).
      const properties = { text: 'x'.repeat(MAX_FRAME_BYTES - 25) };
      await assert.rejects(store.updateNodes([{ id: node.id, properties }], LIMITS), (error: AppError) =>
        error.code === 'BAD_USER_INPUT' && /^node 1 takes 67108867 bytes once encoded.*more than the 67108864 bytes a record may take.*nothing was written/.test(error.message),
      );
      assert.deepEqual(await contentsOf(store), before);
    });
  });

  describe('read views', () => {
    // Batches were bounded by their count alone: 5,000 large nodes, and the batch read ahead, were in the heap whole.
    it('reads batches of a bounded size (past the bound by their last item at most), every item once and in order', async () => {
      const big = 'x'.repeat(300 * 1024);
      const nodes = await store.createNodes(
        Array.from({ length: 24 }, (_, i) => ({ labels: ['Big'], properties: { i, text: i === 5 ? big.repeat(4) : big } })),
        LIMITS,
      );
      await store.createRelationships(
        nodes.slice(1).map((node, i) => ({ type: 'NEXT', startNodeId: nodes[i].id, endNodeId: node.id, properties: { text: big } })),
        LIMITS,
      );
      const view = await store.openReadView();
      try {
        const batchBytes = 1024 * 1024;
        const batches: number[][] = [];
        const ids: string[] = [];
        for await (const batch of view.encodedBatches(100, batchBytes)) {
          batches.push(batch.lines.map((line) => Buffer.byteLength(line)));
          ids.push(...batch.lines.map((line) => (JSON.parse(line) as string[]).slice(0, 2).join('')));
        }
        assert.deepEqual(ids, [...nodes.map((node) => `N${node.id}`), ...Array.from({ length: 23 }, (_, i) => `R${i + 1}`)]);
        // 300 KiB items: four to a batch of 1 MiB (the fourth starts before the bound), the 1.2 MiB one last in its own.
        for (const sizes of batches) {
          const beforeLast = sizes.slice(0, -1).reduce((sum, size) => sum + size, 0);
          assert.ok(beforeLast < batchBytes && sizes.length <= 4, `a batch of ${sizes.length} lines: ${sizes.join(', ')} bytes`);
        }
        assert.ok(batches.length >= 12, `${batches.length} batches`);
      } finally {
        await view.close();
      }
    });
  });

  describe('updateNodes', () => {
    it('replaces labels, properties or both, and keeps the label counts and index right', async () => {
      const [a, b, c] = await store.createNodes(
        [
          { labels: ['Person', 'Admin'], properties: { name: 'a' } },
          { labels: ['Person'], properties: { name: 'b' } },
          { labels: ['Admin'], properties: { name: 'c' } },
        ],
        LIMITS,
      );
      const { nodes: updated, bytes } = await store.updateNodes(
        [
          { id: c.id, labels: ['Robot', 'Robot'] },
          { id: a.id, labels: ['Person'], properties: { name: 'a2', nested: { x: [1, 2] } } },
          { id: b.id, properties: {} },
        ],
        LIMITS,
      );
      assert.equal(bytes, Buffer.byteLength('{"name":"c"}{"name":"a2","nested":{"x":[1,2]}}{}'), 'the stored properties the answer carries');
      assert.deepEqual(updated, [
        { id: c.id, labels: ['Robot'], properties: { name: 'c' } },
        { id: a.id, labels: ['Person'], properties: { name: 'a2', nested: { x: [1, 2] } } },
        { id: b.id, labels: ['Person'], properties: {} },
      ]);
      const stats = await store.stats();
      assert.deepEqual(stats.labels, [
        { name: 'Person', count: 2 },
        { name: 'Robot', count: 1 },
      ]);
      assert.equal(stats.nodeCount, 3);
      assert.deepEqual((await store.nodes('Admin', { first: 10 })).items, []);
      assert.deepEqual((await store.nodes('Robot', { first: 10 })).items.map((node) => node.id), [c.id]);
      assert.deepEqual((await store.nodes('Person', { first: 10 })).totalCount, 2);
    });

    it('refuses a missing id (naming it) or a repeated one, and writes nothing', async () => {
      const [a] = await store.createNodes(drafts(1), LIMITS);
      const before = await contentsOf(store);
      await assert.rejects(store.updateNodes([{ id: a.id, labels: ['Other'] }, { id: '12345', properties: {} }], LIMITS), (error: AppError) => {
        assert.equal(error.code, 'NOT_FOUND');
        assert.match(error.message, /12345/);
        return true;
      });
      await assert.rejects(store.updateNodes([{ id: a.id, labels: ['X'] }, { id: a.id, labels: ['Y'] }], LIMITS), (error: AppError) => error.code === 'BAD_USER_INPUT');
      assert.deepEqual(await contentsOf(store), before);
      assert.deepEqual((await store.stats()).labels, [{ name: 'Person', count: 1 }]);
    });
  });

  describe('base copies', () => {
    it('copy the store at one point in time while writes go on', async () => {
      for (let i = 0; i < 40; i++) await store.createNodes(drafts(5_000, 'Bulk', { padding: 'x'.repeat(100) }), LIMITS);
      const before = (await positionOf(store)).seq;
      let capturing = true;
      let writesDuringCapture = 0;
      const writer = (async () => {
        for (let round = 0; capturing; round++) {
          await store.createNodes(drafts(1_000, 'During', { round }), LIMITS);
          await store.updateNodes([{ id: String(1 + round), properties: { round } }], LIMITS);
          if (capturing) writesDuringCapture += 1;
        }
      })();
      const copyPath = join(dir, 'base.sqlite');
      await new Promise((resolve) => setImmediate(resolve));
      const base = await store.captureBase(copyPath);
      capturing = false;
      await writer;
      assert.ok(writesDuringCapture > 0, 'writes went on while the copy was taken');

      const after = await positionOf(store);
      assert.ok(base.seq >= before && base.seq < after.seq);
      assert.equal(base.epoch, after.epoch);
      assert.equal(base.at, (await store.readLog(base.seq - 1, 1))[0].at);
      assert.equal(base.pageSize, 4096);
      assert.equal(base.sizeBytes, readFileSync(copyPath).length);
      assert.equal(base.sizeBytes % base.pageSize, 0);
      // One point: the copy's counts, rows, seq and log all agree with each other and with what it returned.
      const [check] = await rowsOf<{ quick_check: string }>(copyPath, 'PRAGMA quick_check');
      assert.equal(check.quick_check, 'ok');
      const [copy] = await rowsOf<{ nodes: number; counted: number; during: number; seq: number; maxSeq: number; at: number }>(
        copyPath,
        `SELECT (SELECT count(*) FROM nodes) AS nodes, (SELECT count FROM counts WHERE kind = 'nodes') AS counted,
                (SELECT count(*) FROM node_labels WHERE label = 'During') AS during,
                (SELECT value FROM meta WHERE key = 'seq') AS seq, (SELECT max(seq) FROM change_log) AS maxSeq,
                (SELECT value FROM meta WHERE key = 'last_at') AS at`,
      );
      assert.equal(copy.nodes, base.stats.nodeCount);
      assert.equal(copy.counted, copy.nodes);
      assert.deepEqual([copy.seq, copy.maxSeq, copy.at], [base.seq, base.seq, base.at]);
      // Every round is two transactions (create, update): the copy holds whole rounds or a round's create alone.
      assert.equal(copy.during, 1_000 * Math.ceil((base.seq - before) / 2));
      const copied = await SqliteGraphStore.open(copyPath);
      assertStatsEqual(await copied.stats(), base.stats);
      await copied.close();
    });

    it('are byte-identical for an unchanged store', async () => {
      await store.createNodes(drafts(2_000), LIMITS);
      await store.deleteNodes(['5', '6']);
      const first = await store.captureBase(join(dir, 'one.sqlite'));
      const second = await store.captureBase(join(dir, 'two.sqlite'));
      assert.deepEqual(first, second);
      assert.ok(readFileSync(join(dir, 'one.sqlite')).equals(readFileSync(join(dir, 'two.sqlite'))));
    });
  });

  describe('materialise', () => {
    let provider: SqliteGraphStoreProvider;
    const instanceId = randomUUID();
    const fileOf = (generation: number) => join(dir, 'instances', instanceId, `graph-${generation}.sqlite`);

    beforeEach(() => {
      provider = new SqliteGraphStoreProvider(join(dir, 'instances'));
    });
    afterEach(async () => {
      await provider.close();
    });

    /** Random writes of every kind, ids chosen among those that may or may not exist. */
    async function churn(random: () => number, rounds: number): Promise<void> {
      for (let round = 0; round < rounds; round++) {
        const { nodeCount } = await store.stats();
        const maxId = Number((await metaOf(path)).next_node_id ?? 1);
        const someId = () => String(1 + Math.floor(random() * (maxId - 1)));
        const existing = async (count: number) => {
          const page = await store.nodes(undefined, { first: 1000 });
          return Array.from({ length: count }, () => page.items[Math.floor(random() * page.items.length)]?.id).filter(Boolean) as string[];
        };
        const pick = random();
        if (pick < 0.3 || nodeCount < 10) {
          const labels = ['A', 'B', 'C', 'D'];
          await store.createNodes(
            Array.from({ length: 1 + Math.floor(random() * 30) }, () => ({
              labels: labels.filter(() => random() < 0.4),
              properties: { r: random(), s: 'é'.repeat(Math.floor(random() * 5)), n: null, deep: { list: [round, true] } },
            })),
            LIMITS,
          );
        } else if (pick < 0.55) {
          const ends = await existing(20);
          const types = ['KNOWS', 'LIKES', 'OWNS'];
          await store.createRelationships(
            ends.slice(0, 10).map((start, i) => ({
              type: types[Math.floor(random() * types.length)],
              startNodeId: start,
              endNodeId: ends[10 + i] ?? start,
              properties: { w: random() },
            })),
            LIMITS,
          );
        } else if (pick < 0.8) {
          const ids = [...new Set(await existing(15))];
          await store.updateNodes(
            ids.map((id) => ({
              id,
              ...(random() < 0.5 ? { labels: random() < 0.5 ? [] : ['B', 'E'] } : {}),
              ...(random() < 0.7 ? { properties: { updated: round, r: random() } } : {}),
            })),
            LIMITS,
          );
        } else {
          await store.deleteNodes(Array.from({ length: 1 + Math.floor(random() * 6) }, someId));
        }
      }
    }

    /** The restored generation holds exactly what the source holds, label and type indexes and counts included. */
    async function assertSameAsSource(generation: number): Promise<void> {
      await provider.use(instanceId, generation, async (restored) => {
        assert.deepEqual(await contentsOf(restored as SqliteGraphStore), await contentsOf(store));
        assertStatsEqual(await restored.stats(), await store.stats());
        for (const label of ['A', 'B', 'C', 'D', 'E']) {
          assert.deepEqual(await restored.nodes(label, { first: 1000 }), await store.nodes(label, { first: 1000 }));
        }
        for (const type of ['KNOWS', 'LIKES', 'OWNS']) {
          assert.deepEqual(await restored.relationships(type, { first: 1000 }), await store.relationships(type, { first: 1000 }));
        }
      });
      // Ids the source handed out (even to rows since deleted) are not handed out again.
      const [sourceMeta, restoredMeta] = [await metaOf(path), await metaOf(fileOf(generation))];
      assert.equal(restoredMeta.next_node_id, sourceMeta.next_node_id);
      assert.equal(restoredMeta.next_relationship_id, sourceMeta.next_relationship_id);
      const [check] = await rowsOf<{ integrity_check: string }>(fileOf(generation), 'PRAGMA integrity_check');
      assert.equal(check.integrity_check, 'ok');
    }

    /** The batches of a replay in which some id appears more than once within one batch. */
    function assertIdsRepeatWithinBatches(entries: LogEntry[]): void {
      let run: string[] = [];
      let kind = '';
      for (const line of entries.flatMap((entry) => entry.lines)) {
        const [tag, id] = JSON.parse(line) as string[];
        if (tag.replace('-', '') !== kind) [run, kind] = [[], tag.replace('-', '')];
        if (run.includes(id)) return;
        run.push(id);
      }
      assert.fail('no id repeats within a batch of the replay');
    }

    it('replays the log onto a base copy taken mid-way and reproduces the store exactly', async () => {
      const random = rng(7);
      await churn(random, 40);
      const basePath = join(dir, 'base.sqlite');
      const base = await store.captureBase(basePath);
      await churn(random, 120);
      // A node created, changed and deleted after the base: lines for a row the base never had, the last one a deletion.
      const [ghost] = await store.createNodes(drafts(1, 'A'), LIMITS);
      await store.updateNodes([{ id: ghost.id, labels: ['B'] }], LIMITS);
      await store.deleteNodes([ghost.id]);
      const entries = await logAfter(store, base.seq);
      assert.equal(entries[0].seq, base.seq + 1);
      const lines = entries.flatMap((entry) => entry.lines.map((line) => JSON.parse(line)[0]));
      assert.ok(lines.includes('-R') && lines.includes('-N'), 'the replay deletes nodes and relationships');
      assertIdsRepeatWithinBatches(entries);

      const position = await positionOf(store);
      const stats = await provider.materialise(instanceId, 3, createReadStream(basePath), replay(entries), position.stats);
      assertStatsEqual(stats, position.stats);
      await assertSameAsSource(3);
      await provider.use(instanceId, 3, async (restored) => {
        // A history of its own: a new epoch at seq 0, nothing logged yet.
        const restoredPosition = await positionOf(restored);
        assert.notEqual(restoredPosition.epoch, base.epoch);
        assert.deepEqual([restoredPosition.seq, restoredPosition.at], [0, null]);
        assert.deepEqual(await restored.readLog(0, 1e9), []);
      });
      // Open through the provider, hence its WAL files.
      assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)).filter((name) => !/-(wal|shm)$/.test(name)), ['graph-3.sqlite']);
    });

    it('replays the whole log from seq 0 onto an empty store, checking the result against its own rows', async () => {
      await churn(rng(5), 150);
      const entries = await logAfter(store, 0);
      assert.equal(entries.length, (await positionOf(store)).seq);
      assertIdsRepeatWithinBatches(entries);
      const stats = await provider.materialise(instanceId, 1, null, replay(entries), null);
      assertStatsEqual(stats, await store.stats());
      await assertSameAsSource(1);
    });

    it("stops with CAPACITY_EXCEEDED once the lines left could no longer bring the counts within the target's limits", async () => {
      const creations = (from: number) => Array.from({ length: 10 }, (_, i) => `["N","${from + i}",[],{}]`);
      let readPastTheExcess = false;
      async function* batches(): AsyncGenerator<DeltaBatch> {
        yield { kind: 'node', lines: creations(1) };
        yield { kind: 'node', lines: creations(11) };
        // 20 nodes, and the 5 lines left could delete 5 at most: more than 5 remain, whatever they do.
        readPastTheExcess = true;
        yield { kind: 'node', lines: Array.from({ length: 5 }, (_, i) => `["-N","${i + 1}"]`) };
      }
      const within = { maxNodes: 5, maxRelationships: null, lines: 25 };
      await assert.rejects(provider.materialise(instanceId, 1, null, batches(), null, { within }), (error: AppError) => {
        assert.equal(error.code, 'CAPACITY_EXCEEDED');
        assert.match(error.message, /at least 15 nodes/);
        return true;
      });
      assert.equal(readPastTheExcess, false, 'the replay went on after the limit could no longer be met');
      assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)), []);
      // Lines that may still delete enough: replayed to the end, where the counts decide.
      const stats = await provider.materialise(instanceId, 1, null, batches(), null, { within: { ...within, maxNodes: 15 } });
      assert.equal(stats.nodeCount, 15);
    });

    it('lets the last line for an id win within a batch', async () => {
      const lines = [
        '["N","1",["A"],{"v":1}]',
        '["N","2",["A"],{}]',
        '["N","1",["B"],{"v":2}]',
        '["N","3",[],{}]',
        '["-N","2"]',
        '["N","1",["B","C"],{"v":3}]',
      ];
      const relationships = ['["R","1","T","1","3",{}]', '["R","1","U","3","1",{"w":1}]', '["R","2","T","1","1",{}]', '["-R","2"]'];
      const stats = await provider.materialise(instanceId, 1, null, batchesOf({ kind: 'node', lines }, { kind: 'relationship', lines: relationships }), null);
      assert.deepEqual(
        { ...stats, storeSizeBytes: 0 },
        { nodeCount: 2, relationshipCount: 1, labels: [{ name: 'B', count: 1 }, { name: 'C', count: 1 }], relationshipTypes: [{ name: 'U', count: 1 }], storeSizeBytes: 0 },
      );
      await provider.use(instanceId, 1, async (restored) => {
        assert.deepEqual(await contentsOf(restored as SqliteGraphStore), [
          ['N', '1', ['B', 'C'], { v: 3 }],
          ['N', '3', [], {}],
          ['R', '1', 'U', '3', '1', { w: 1 }],
        ]);
        assert.deepEqual((await restored.nodes('A', { first: 10 })).items, []);
      });
      assert.deepEqual([(await metaOf(fileOf(1))).next_node_id, (await metaOf(fileOf(1))).next_relationship_id], [4, 3]);
    });

    it("applies a previous release's delta (each changed row once, nodes then relationships, in id order)", async () => {
      await churn(rng(9), 40);
      const basePath = join(dir, 'base.sqlite');
      const base = await store.captureBase(basePath);
      await churn(rng(10), 40);
      // What the previous release's delta view read: the latest line of every row changed since the base.
      const latest = new Map<string, string>();
      for (const line of (await logAfter(store, base.seq)).flatMap((entry) => entry.lines)) {
        const [tag, id] = JSON.parse(line) as string[];
        latest.set(`${tag.endsWith('N') ? 'node' : 'relationship'} ${id.padStart(12, '0')}`, line);
      }
      const keys = [...latest.keys()].sort();
      const delta = (['node', 'relationship'] as const).map((kind) => ({ kind, lines: keys.filter((key) => key.startsWith(kind)).map((key) => latest.get(key)!) }));
      const stats = await provider.materialise(instanceId, 2, createReadStream(basePath), batchesOf(...delta), (await positionOf(store)).stats);
      assertStatsEqual(stats, await store.stats());
      await assertSameAsSource(2);
    });

    it('restores a base alone', async () => {
      await churn(rng(3), 30);
      const basePath = join(dir, 'base.sqlite');
      const base = await store.captureBase(basePath);
      const stats = await provider.materialise(instanceId, 1, createReadStream(basePath), batchesOf(), base.stats);
      assertStatsEqual(stats, base.stats);
      await provider.use(instanceId, 1, async (restored) => assert.deepEqual(await contentsOf(restored as SqliteGraphStore), await contentsOf(store)));
    });

    describe('leaves nothing behind and changes nothing when', () => {
      let basePath: string;
      let base: Awaited<ReturnType<SqliteGraphStore['captureBase']>>;
      let entries: LogEntry[];
      let expected: GraphStats;

      beforeEach(async () => {
        await churn(rng(11), 30);
        basePath = join(dir, 'base.sqlite');
        base = await store.captureBase(basePath);
        await store.updateNodes([{ id: (await store.nodes(undefined, { first: 1 })).items[0].id, labels: ['Changed'] }], LIMITS);
        entries = await logAfter(store, base.seq);
        expected = (await positionOf(store)).stats;
      });

      async function assertRefused(run: Promise<unknown>, pattern: RegExp): Promise<void> {
        await assert.rejects(run, (error: AppError) => {
          assert.equal(error.code, 'INVALID_BACKUP_FILE');
          assert.match(error.message, pattern);
          return true;
        });
        assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)), []);
      }

      it('a line is malformed', async () => {
        for (const line of ['["X","1"]', '["N","abc",[],{}]', '["N","0",[],{}]', '{"not":"a tuple"}', '["N","5",[], {"broken"', '["N","7","A",{}]', '["N","7",[],[]]', '["R","7","T","1","2",{}]']) {
          await assertRefused(provider.materialise(instanceId, 2, createReadStream(basePath), batchesOf({ kind: 'node', lines: [line] }), expected), /delta/);
          await assertRefused(provider.materialise(instanceId, 2, null, batchesOf({ kind: 'node', lines: [line] }), null), /delta/);
        }
      });

      it('the lines leave a relationship without its end', async () => {
        const lines = ['["R","999","KNOWS","1","123456",{}]'];
        await assertRefused(provider.materialise(instanceId, 2, createReadStream(basePath), batchesOf({ kind: 'relationship', lines }), expected), /missing nodes/);
        await assertRefused(
          provider.materialise(instanceId, 2, null, batchesOf({ kind: 'node', lines: ['["N","1",[],{}]', '["N","2",[],{}]'] }, { kind: 'relationship', lines: ['["R","1","T","1","2",{}]'] }, { kind: 'node', lines: ['["-N","2"]'] }), null),
          /deleted nodes that relationships still refer to/,
        );
      });

      it('the result does not match the expected stats', async () => {
        await assertRefused(provider.materialise(instanceId, 2, createReadStream(basePath), batchesOf(), expected), /does not match its snapshot/);
      });

      it('with no expected stats, the counts do not match the rows', async () => {
        const tampered = join(dir, 'tampered.sqlite');
        writeFileSync(tampered, readFileSync(basePath));
        await execOn(tampered, `UPDATE counts SET count = count + 1 WHERE kind = 'label' AND name = 'A'`);
        await assertRefused(provider.materialise(instanceId, 2, createReadStream(tampered), replay(entries), null), /does not match its own rows: different label counts/);
      });

      it('the base is damaged', async () => {
        const bytes = readFileSync(basePath);
        // Garbage over a whole page in the middle of the file: a b-tree page no longer parses.
        bytes.fill(0x5a, base.pageSize * 3, base.pageSize * 4);
        const damaged = join(dir, 'damaged.sqlite');
        writeFileSync(damaged, bytes);
        await assertRefused(
          provider.materialise(instanceId, 2, createReadStream(damaged), replay(entries), expected, { quickCheck: true }),
          /the base store is damaged/,
        );
      });

      it('it is aborted', async () => {
        const controller = new AbortController();
        controller.abort(new Error('cancelled by the test'));
        await assert.rejects(
          provider.materialise(instanceId, 2, Readable.from([readFileSync(basePath)]), replay(entries), expected, { signal: controller.signal }),
          /cancelled by the test/,
        );
        assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)), []);
      });
    });
  });

  describe('stores of earlier releases', () => {
    // The tables as the releases before the change log created them.
    const OLD_TABLES = `${EARLIER_RELEASE_STORE_TABLES}
      INSERT INTO nodes VALUES (1, '["Person"]', '{"name":"old"}'), (2, '[]', '{}');
      INSERT INTO node_labels VALUES ('Person', 1);
      INSERT INTO relationships VALUES (1, 'KNOWS', 1, 2, '{}');
      INSERT INTO counts VALUES ('nodes', '', 2), ('relationships', '', 1), ('label', 'Person', 1), ('type', 'KNOWS', 1);
      INSERT INTO meta VALUES ('next_node_id', 3), ('next_relationship_id', 2);`;
    // The previous release's change tracking: the latest seq per row, and how far it was trimmed.
    const CHANGE_TRACKING = `
      CREATE TABLE changes (kind TEXT NOT NULL, id INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
      INSERT INTO changes VALUES ('N', 2, 7), ('R', 1, 6);
      INSERT INTO meta VALUES ('epoch', 123456789), ('seq', 7), ('changes_trimmed_through', 5);`;

    async function oldStore(file: string, sql: string): Promise<string> {
      await execOn(join(dir, file), `PRAGMA journal_mode = WAL; ${sql}`);
      return join(dir, file);
    }

    it("are migrated on open from the previous release's change tracking: same epoch and seq, an empty log", async () => {
      const oldPath = await oldStore('previous.sqlite', OLD_TABLES + CHANGE_TRACKING);
      const old = await SqliteGraphStore.open(oldPath);
      assert.deepEqual(await tablesOf(oldPath), ['change_log', 'counts', 'meta', 'node_labels', 'nodes', 'relationships']);
      assert.equal((await metaOf(oldPath)).changes_trimmed_through, undefined);
      assert.deepEqual(await positionOf(old), { epoch: 123456789, seq: 7, at: null, stats: await old.stats() });
      assert.deepEqual(await old.readLog(0, 1e9), []);
      await old.updateNodes([{ id: '2', labels: ['New'] }], LIMITS);
      const [entry] = await old.readLog(0, 1e9);
      assert.deepEqual([entry.seq, parsed([entry])], [8, [[['N', '2', ['New'], {}]]]]);
      assert.deepEqual(await positionOf(old), { epoch: 123456789, seq: 8, at: entry.at, stats: await old.stats() });
      await old.close();
    });

    it("materialise a previous release's base into a store with a change log", async () => {
      const oldBase = await oldStore('previous-base.sqlite', OLD_TABLES + CHANGE_TRACKING);
      await execOn(oldBase, `PRAGMA journal_mode = DELETE`);
      const provider = new SqliteGraphStoreProvider(join(dir, 'instances'));
      const instanceId = randomUUID();
      try {
        const stats = await provider.materialise(instanceId, 1, createReadStream(oldBase), batchesOf({ kind: 'node', lines: ['["N","3",["New"],{}]'] }), null);
        assert.equal(stats.nodeCount, 3);
        const restoredPath = join(dir, 'instances', instanceId, 'graph-1.sqlite');
        assert.deepEqual(await tablesOf(restoredPath), ['change_log', 'counts', 'meta', 'node_labels', 'nodes', 'relationships']);
        await provider.use(instanceId, 1, async (restored) => {
          const position = await positionOf(restored);
          assert.notEqual(position.epoch, 123456789);
          assert.deepEqual([position.seq, position.at], [0, null]);
        });
      } finally {
        await provider.close();
      }
    });

    it('that never had change tracking start a history at seq 0', async () => {
      const old = await SqliteGraphStore.open(await oldStore('untracked.sqlite', OLD_TABLES));
      const position = await positionOf(old);
      assert.deepEqual([position.seq, position.at, position.stats.nodeCount], [0, null, 2]);
      assert.ok(position.epoch > 0);
      await old.close();
    });

    it('loaded from an archive start a history of their own at seq 0', async () => {
      const loadedPath = join(dir, 'loaded.sqlite');
      const loader = await SqliteGraphLoader.create(loadedPath, { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER }, async () => undefined);
      await loader.insert({ kind: 'node', lines: ['["N","4",["A"],{}]'] });
      const sealed = await loader.finish();
      const loaded = await SqliteGraphStore.open(loadedPath);
      const position = await positionOf(loaded);
      assert.deepEqual([position.seq, position.at, position.stats.nodeCount], [0, null, 1]);
      assert.deepEqual(sealed.base, { ...position, sizeBytes: statSync(loadedPath).size, pageSize: 4096 });
      assert.deepEqual(await loaded.readLog(0, 1e9), []);
      await loaded.close();
      assert.ok(existsSync(loadedPath));
    });

    it('sealed by their loader are a base by themselves: their file, read as it is, materialises into the same graph', async () => {
      const loadedPath = join(dir, 'sealed.sqlite');
      const loader = await SqliteGraphLoader.create(loadedPath, { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER }, async () => undefined);
      const nodes = Array.from({ length: 3_000 }, (_, i) => JSON.stringify(['N', String(i + 1), i % 2 ? ['A'] : ['A', 'B'], { n: i, text: 'x'.repeat(i % 700) }]));
      await loader.insert({ kind: 'node', lines: nodes });
      await loader.insert({ kind: 'relationship', lines: nodes.slice(1).map((_, i) => JSON.stringify(['R', String(i + 1), 'NEXT', String(i + 1), String(i + 2), {}])) });
      const sealed = await loader.finish();
      // Nothing beside the file: the WAL was checkpointed and removed when the loader closed it.
      assert.deepEqual(readdirSync(dir).filter((name) => name.startsWith('sealed.sqlite')), ['sealed.sqlite']);
      const pieces: Buffer[] = [];
      for await (const piece of sealed.read(64 * 1024)) pieces.push(piece as Buffer);
      assert.ok(pieces.slice(0, -1).every((piece) => piece.length === 64 * 1024), 'every piece but the last is whole');
      assert.equal(Buffer.concat(pieces).length, sealed.base.sizeBytes);

      const provider = new SqliteGraphStoreProvider(join(dir, 'instances'));
      const instanceId = randomUUID();
      try {
        const stats = await provider.materialise(instanceId, 1, Readable.from(pieces), batchesOf(), sealed.base.stats);
        assertStatsEqual(stats, sealed.base.stats);
        assert.deepEqual([stats.nodeCount, stats.relationshipCount], [3_000, 2_999]);
        const restoredPath = join(dir, 'instances', instanceId, 'graph-1.sqlite');
        for (const sql of ['SELECT * FROM nodes ORDER BY id', 'SELECT * FROM node_labels ORDER BY label, node_id', 'SELECT * FROM relationships ORDER BY id']) {
          assert.deepEqual(await rowsOf(restoredPath, sql), await rowsOf(loadedPath, sql), sql);
        }
      } finally {
        await provider.close();
      }
    });
  });
});
