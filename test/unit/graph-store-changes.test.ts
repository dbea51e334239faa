// Change tracking in the SQLite graph store, and what is built on it: base copies, deltas, and restoring from them.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import sqlite3 from 'sqlite3';
import { AppError } from '../../src/errors/app-error';
import type { DeltaView, NodeDraft, WriteLimits } from '../../src/graph/graph-store';
import type { DeltaBatch, GraphStats } from '../../src/graph/records';
import { SqliteConnection } from '../../src/graph/sqlite-connection';
import { ChangesUnavailableError, SqliteGraphLoader, SqliteGraphStore } from '../../src/graph/sqlite-graph-store';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';

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

const changesOf = (path: string) =>
  rowsOf<{ kind: string; id: number; seq: number }>(path, `SELECT kind, id, seq FROM changes ORDER BY kind, id`);
const metaOf = async (path: string) =>
  Object.fromEntries((await rowsOf<{ key: string; value: number }>(path, `SELECT key, value FROM meta`)).map((row) => [row.key, row.value]));

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

async function readDelta(view: DeltaView, batchSize?: number): Promise<DeltaBatch[]> {
  const batches: DeltaBatch[] = [];
  for await (const batch of view.batches(batchSize)) batches.push(batch);
  return batches;
}

async function deltaSince(store: SqliteGraphStore, seq: number, batchSize?: number) {
  const view = await store.openDeltaView(seq);
  try {
    return { seq: view.seq, epoch: view.epoch, stats: view.stats, batches: await readDelta(view, batchSize) };
  } finally {
    await view.close();
  }
}

const linesOf = (batches: DeltaBatch[]) => batches.flatMap((batch) => batch.lines.map((line) => JSON.parse(line)));

async function* concat(...deltas: DeltaBatch[][]): AsyncIterable<DeltaBatch> {
  for (const delta of deltas) yield* delta;
}

const drafts = (count: number, label = 'Person', extra: Record<string, unknown> = {}): NodeDraft[] =>
  Array.from({ length: count }, (_, index) => ({ labels: [label], properties: { index, ...extra } }));

function assertStatsEqual(actual: GraphStats, expected: GraphStats): void {
  const { storeSizeBytes: _a, ...left } = actual;
  const { storeSizeBytes: _b, ...right } = expected;
  assert.deepEqual(left, right);
}

describe('graph store change tracking, base copies and deltas', function () {
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

  describe('change tracking', () => {
    it('starts a new store at seq 0 with a random epoch, different for every store', async () => {
      const tracking = await store.changeTracking();
      assert.equal(tracking.seq, 0);
      assert.equal(tracking.trimmedThrough, 0);
      assert.ok(Number.isSafeInteger(tracking.epoch) && tracking.epoch > 0);
      const other = await SqliteGraphStore.open(join(dir, 'other.sqlite'), { create: true });
      assert.notEqual((await other.changeTracking()).epoch, tracking.epoch);
      await other.close();
      // Reopening keeps the history.
      await store.close();
      store = await SqliteGraphStore.open(path);
      assert.deepEqual(await store.changeTracking(), tracking);
    });

    it('records each write transaction once, with every row it touched, cascades included', async () => {
      const nodes = await store.createNodes(drafts(3), LIMITS);
      assert.deepEqual(await changesOf(path), [
        { kind: 'N', id: 1, seq: 1 },
        { kind: 'N', id: 2, seq: 1 },
        { kind: 'N', id: 3, seq: 1 },
      ]);
      await store.createRelationships(
        [
          { type: 'KNOWS', startNodeId: nodes[0].id, endNodeId: nodes[1].id, properties: {} },
          { type: 'KNOWS', startNodeId: nodes[2].id, endNodeId: nodes[0].id, properties: {} },
          { type: 'LIKES', startNodeId: nodes[1].id, endNodeId: nodes[2].id, properties: {} },
        ],
        LIMITS,
      );
      assert.deepEqual((await changesOf(path)).filter((row) => row.kind === 'R'), [
        { kind: 'R', id: 1, seq: 2 },
        { kind: 'R', id: 2, seq: 2 },
        { kind: 'R', id: 3, seq: 2 },
      ]);
      await store.updateNodes([{ id: nodes[1].id, properties: { changed: true } }], LIMITS);
      assert.deepEqual((await changesOf(path)).find((row) => row.kind === 'N' && row.id === 2), { kind: 'N', id: 2, seq: 3 });
      // Deleting node 1 takes relationships 1 and 2 with it: all three are recorded in the same seq.
      assert.equal(await store.deleteNodes([nodes[0].id]), 1);
      assert.deepEqual(await changesOf(path), [
        { kind: 'N', id: 1, seq: 4 },
        { kind: 'N', id: 2, seq: 3 },
        { kind: 'N', id: 3, seq: 1 },
        { kind: 'R', id: 1, seq: 4 },
        { kind: 'R', id: 2, seq: 4 },
        { kind: 'R', id: 3, seq: 2 },
      ]);
      assert.equal((await store.changeTracking()).seq, 4);
    });

    it('records nothing for a refused write or one that changes nothing', async () => {
      await store.createNodes(drafts(2), LIMITS);
      const before = await changesOf(path);
      await assert.rejects(store.createNodes(drafts(5), { ...LIMITS, maxNodes: 4 }), (error: AppError) => error.code === 'CAPACITY_EXCEEDED');
      await assert.rejects(
        store.createRelationships([{ type: 'T', startNodeId: '1', endNodeId: '99', properties: {} }], LIMITS),
        (error: AppError) => error.code === 'BAD_USER_INPUT',
      );
      await assert.rejects(store.updateNodes([{ id: '1', labels: ['X'] }, { id: '42', labels: ['X'] }], LIMITS), (error: AppError) => error.code === 'NOT_FOUND');
      assert.equal(await store.deleteNodes(['77']), 0);
      assert.deepEqual(await changesOf(path), before);
      assert.equal((await store.changeTracking()).seq, 1);
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
      const updated = await store.updateNodes(
        [
          { id: c.id, labels: ['Robot', 'Robot'] },
          { id: a.id, labels: ['Person'], properties: { name: 'a2', nested: { x: [1, 2] } } },
          { id: b.id, properties: {} },
        ],
        LIMITS,
      );
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

  describe('delta views', () => {
    it("give each changed row's current tuple line, or its deletion, in id order", async () => {
      await store.createNodes(drafts(3), LIMITS);
      await store.createRelationships([{ type: 'KNOWS', startNodeId: '1', endNodeId: '2', properties: { w: 1 } }], LIMITS);
      const since = (await store.changeTracking()).seq;
      await store.updateNodes([{ id: '3', labels: ['Tag'], properties: { v: 'x' } }], LIMITS);
      await store.deleteNodes(['2']);
      const [created] = await store.createNodes([{ labels: [], properties: { fresh: 1.5 } }], LIMITS);
      await store.createRelationships([{ type: 'LIKES', startNodeId: '3', endNodeId: created.id, properties: {} }], LIMITS);
      const delta = await deltaSince(store, since);
      assert.deepEqual(
        delta.batches.map((batch) => [batch.kind, batch.lines.map((line) => JSON.parse(line))]),
        [
          ['node', [['-N', '2'], ['N', '3', ['Tag'], { v: 'x' }], ['N', '4', [], { fresh: 1.5 }]]],
          ['relationship', [['-R', '1'], ['R', '2', 'LIKES', '3', '4', {}]]],
        ],
      );
      assert.equal(delta.seq, (await store.changeTracking()).seq);
      assertStatsEqual(delta.stats, await store.stats());
      // Nothing changed since the view's own seq.
      assert.deepEqual((await deltaSince(store, delta.seq)).batches, []);
    });

    it('are one point in time while writes go on', async () => {
      await store.createNodes(drafts(500), LIMITS);
      const since = (await store.changeTracking()).seq;
      await store.updateNodes(Array.from({ length: 200 }, (_, i) => ({ id: String(1 + i * 2), properties: { round: 1 } })), LIMITS);
      await store.deleteNodes(['400', '402']);
      const expected = await deltaSince(store, since, 50);

      const view = await store.openDeltaView(since);
      const iterator = view.batches(50)[Symbol.asyncIterator]();
      const first = await iterator.next();
      // Writes between the view's batches: updates of rows it has not read yet, new rows, deletions.
      await store.updateNodes(Array.from({ length: 200 }, (_, i) => ({ id: String(1 + i * 2), properties: { round: 2 } })), LIMITS);
      await store.createNodes(drafts(10), LIMITS);
      await store.deleteNodes(['399', '301']);
      const rest: DeltaBatch[] = [];
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) rest.push(next.value);
      await view.close();
      assert.deepEqual([first.value, ...rest], expected.batches);
      assert.equal(view.seq, expected.seq);
      assertStatsEqual(view.stats, expected.stats);
    });

    it('are refused below the trim horizon (and beyond the current seq); trimming removes the older changes', async () => {
      await store.createNodes(drafts(5), LIMITS);
      await store.updateNodes([{ id: '1', properties: { a: 1 } }], LIMITS);
      await store.updateNodes([{ id: '2', properties: { a: 2 } }], LIMITS);
      await store.trimChanges(2);
      assert.deepEqual(await store.changeTracking(), { ...(await store.changeTracking()), seq: 3, trimmedThrough: 2 });
      assert.deepEqual(await changesOf(path), [{ kind: 'N', id: 2, seq: 3 }]);
      await assert.rejects(store.openDeltaView(1), (error: unknown) => {
        assert.ok(error instanceof ChangesUnavailableError);
        assert.equal(error.tracking.trimmedThrough, 2);
        return true;
      });
      await assert.rejects(store.openDeltaView(4), ChangesUnavailableError);
      assert.deepEqual(linesOf((await deltaSince(store, 2)).batches), [['N', '2', ['Person'], { a: 2 }]]);
      // The horizon never moves back, nor beyond what has happened.
      await store.trimChanges(1);
      await store.trimChanges(99);
      assert.deepEqual((await store.changeTracking()).trimmedThrough, 3);
      assert.deepEqual(await changesOf(path), []);
      assert.deepEqual((await deltaSince(store, 3)).batches, []);
    });
  });

  describe('base copies', () => {
    it('copy the store at one point in time while writes go on', async () => {
      for (let i = 0; i < 40; i++) await store.createNodes(drafts(5_000, 'Bulk', { padding: 'x'.repeat(100) }), LIMITS);
      const before = (await store.changeTracking()).seq;
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

      assert.ok(base.seq >= before && base.seq < (await store.changeTracking()).seq);
      assert.equal(base.epoch, (await store.changeTracking()).epoch);
      assert.equal(base.pageSize, 4096);
      assert.equal(base.sizeBytes, readFileSync(copyPath).length);
      assert.equal(base.sizeBytes % base.pageSize, 0);
      // One point: the copy's counts, rows, seq and recorded changes all agree with each other and with what it returned.
      const [check] = await rowsOf<{ quick_check: string }>(copyPath, 'PRAGMA quick_check');
      assert.equal(check.quick_check, 'ok');
      const [copy] = await rowsOf<{ nodes: number; counted: number; during: number; seq: number; maxSeq: number }>(
        copyPath,
        `SELECT (SELECT count(*) FROM nodes) AS nodes, (SELECT count FROM counts WHERE kind = 'nodes') AS counted,
                (SELECT count(*) FROM node_labels WHERE label = 'During') AS during,
                (SELECT value FROM meta WHERE key = 'seq') AS seq, (SELECT max(seq) FROM changes) AS maxSeq`,
      );
      assert.equal(copy.nodes, base.stats.nodeCount);
      assert.equal(copy.counted, copy.nodes);
      assert.equal(copy.seq, base.seq);
      assert.equal(copy.maxSeq, base.seq);
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

    it('rebuilds exactly the source at the last delta from a base and a chain of deltas', async () => {
      const random = rng(7);
      await churn(random, 40);
      const basePath = join(dir, 'base.sqlite');
      const base = await store.captureBase(basePath);
      const chain: DeltaBatch[][] = [];
      let seq = base.seq;
      let last!: Awaited<ReturnType<typeof deltaSince>>;
      for (let i = 0; i < 5; i++) {
        await churn(random, 25);
        last = await deltaSince(store, seq, 7);
        assert.equal(last.epoch, base.epoch);
        chain.push(last.batches);
        seq = last.seq;
      }
      // A node created and deleted between two deltas is a deletion of a row the base never had.
      const [ghost] = await store.createNodes(drafts(1), LIMITS);
      await store.deleteNodes([ghost.id]);
      last = await deltaSince(store, seq);
      chain.push(last.batches);
      assert.ok(linesOf(chain.flat()).some((line) => line[0] === '-R'), 'the chain deletes relationships');

      const expected = await contentsOf(store);
      const sourceMeta = await metaOf(path);
      const stats = await provider.materialise(instanceId, 3, createReadStream(basePath), concat(...chain), last.stats);
      assertStatsEqual(stats, last.stats);
      await provider.use(instanceId, 3, async (restored) => {
        assert.deepEqual(await contentsOf(restored as SqliteGraphStore), expected);
        assertStatsEqual(await restored.stats(), await store.stats());
        for (const label of ['A', 'B', 'E']) {
          assert.deepEqual(await restored.nodes(label, { first: 1000 }), await store.nodes(label, { first: 1000 }));
        }
        for (const type of ['KNOWS', 'LIKES', 'OWNS']) {
          assert.deepEqual(await restored.relationships(type, { first: 1000 }), await store.relationships(type, { first: 1000 }));
        }
        const tracking = await restored.changeTracking();
        assert.notEqual(tracking.epoch, base.epoch);
        assert.deepEqual([tracking.seq, tracking.trimmedThrough], [base.seq, base.seq]);
        await assert.rejects(restored.openDeltaView(0), ChangesUnavailableError);
      });
      const restoredPath = join(dir, 'instances', instanceId, 'graph-3.sqlite');
      assert.deepEqual(await changesOf(restoredPath), []);
      const restoredMeta = await metaOf(restoredPath);
      // Ids the source handed out (even to rows since deleted) are not handed out again.
      assert.equal(restoredMeta.next_node_id, sourceMeta.next_node_id);
      assert.equal(restoredMeta.next_relationship_id, sourceMeta.next_relationship_id);
      // Open through the provider, hence its WAL files.
      assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)).filter((name) => !/-(wal|shm)$/.test(name)), ['graph-3.sqlite']);
      const [check] = await rowsOf<{ integrity_check: string }>(restoredPath, 'PRAGMA integrity_check');
      assert.equal(check.integrity_check, 'ok');
    });

    it('restores a base alone', async () => {
      await churn(rng(3), 30);
      const basePath = join(dir, 'base.sqlite');
      const base = await store.captureBase(basePath);
      const stats = await provider.materialise(instanceId, 1, createReadStream(basePath), concat(), base.stats);
      assertStatsEqual(stats, base.stats);
      await provider.use(instanceId, 1, async (restored) => assert.deepEqual(await contentsOf(restored as SqliteGraphStore), await contentsOf(store)));
    });

    describe('leaves nothing behind and changes nothing when', () => {
      let basePath: string;
      let base: Awaited<ReturnType<SqliteGraphStore['captureBase']>>;
      let delta: Awaited<ReturnType<typeof deltaSince>>;

      beforeEach(async () => {
        await churn(rng(11), 30);
        basePath = join(dir, 'base.sqlite');
        base = await store.captureBase(basePath);
        await store.updateNodes([{ id: (await store.nodes(undefined, { first: 1 })).items[0].id, labels: ['Changed'] }], LIMITS);
        delta = await deltaSince(store, base.seq);
      });

      async function assertRefused(run: Promise<unknown>, pattern: RegExp): Promise<void> {
        await assert.rejects(run, (error: AppError) => {
          assert.equal(error.code, 'INVALID_BACKUP_FILE');
          assert.match(error.message, pattern);
          return true;
        });
        assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)), []);
      }

      it('a delta line is malformed', async () => {
        for (const line of ['["X","1"]', '["N","abc",[],{}]', '["N","0",[],{}]', '{"not":"a tuple"}', '["N","5",[], {"broken"', '["N","7","A",{}]', '["N","7",[],[]]', '["R","7","T","1","2",{}]']) {
          await assertRefused(
            provider.materialise(instanceId, 2, createReadStream(basePath), concat([{ kind: 'node', lines: [line] }]), delta.stats),
            /delta/,
          );
        }
      });

      it('a delta leaves a relationship without its end', async () => {
        const lines = ['["R","999","KNOWS","1","123456",{}]'];
        await assertRefused(
          provider.materialise(instanceId, 2, createReadStream(basePath), concat([{ kind: 'relationship', lines }]), delta.stats),
          /missing nodes/,
        );
      });

      it('the result does not match the expected stats', async () => {
        await assertRefused(
          provider.materialise(instanceId, 2, createReadStream(basePath), concat(), delta.stats),
          /does not match/,
        );
      });

      it('the base is damaged', async () => {
        const bytes = readFileSync(basePath);
        // Garbage over a whole page in the middle of the file: a b-tree page no longer parses.
        bytes.fill(0x5a, base.pageSize * 3, base.pageSize * 4);
        const damaged = join(dir, 'damaged.sqlite');
        writeFileSync(damaged, bytes);
        await assertRefused(
          provider.materialise(instanceId, 2, createReadStream(damaged), concat(delta.batches), delta.stats, { quickCheck: true }),
          /the base store is damaged/,
        );
      });

      it('it is aborted', async () => {
        const controller = new AbortController();
        controller.abort(new Error('cancelled by the test'));
        await assert.rejects(
          provider.materialise(instanceId, 2, Readable.from([readFileSync(basePath)]), concat(delta.batches), delta.stats, {
            signal: controller.signal,
          }),
          /cancelled by the test/,
        );
        assert.deepEqual(readdirSync(join(dir, 'instances', instanceId)), []);
      });
    });
  });

  describe('stores written before change tracking', () => {
    // The tables as the release before change tracking created them.
    const OLD_TABLES = `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE nodes (id INTEGER PRIMARY KEY, labels TEXT NOT NULL, properties TEXT NOT NULL);
      CREATE TABLE node_labels (label TEXT NOT NULL, node_id INTEGER NOT NULL, PRIMARY KEY (label, node_id)) WITHOUT ROWID;
      CREATE TABLE relationships (id INTEGER PRIMARY KEY, type TEXT NOT NULL, start_id INTEGER NOT NULL, end_id INTEGER NOT NULL, properties TEXT NOT NULL);
      CREATE TABLE counts (kind TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;
      CREATE INDEX rel_by_type ON relationships (type, id);
      CREATE INDEX rel_by_start ON relationships (start_id);
      CREATE INDEX rel_by_end ON relationships (end_id);`;

    async function oldStore(file: string, withData: boolean): Promise<string> {
      const db = await SqliteConnection.open(join(dir, file));
      await db.exec(`PRAGMA journal_mode = WAL; ${OLD_TABLES}`);
      if (withData) {
        await db.exec(`
          INSERT INTO nodes VALUES (1, '["Person"]', '{"name":"old"}'), (2, '[]', '{}');
          INSERT INTO node_labels VALUES ('Person', 1);
          INSERT INTO relationships VALUES (1, 'KNOWS', 1, 2, '{}');
          INSERT INTO counts VALUES ('nodes', '', 2), ('relationships', '', 1), ('label', 'Person', 1), ('type', 'KNOWS', 1);
          INSERT INTO meta VALUES ('next_node_id', 3), ('next_relationship_id', 2);`);
      }
      await db.close();
      return join(dir, file);
    }

    it('are upgraded on open: their rows are before the trim horizon, so their first delta is refused and a base is taken', async () => {
      const old = await SqliteGraphStore.open(await oldStore('old.sqlite', true));
      const tracking = await old.changeTracking();
      assert.equal(tracking.seq, 1);
      assert.equal(tracking.trimmedThrough, 1);
      await assert.rejects(old.openDeltaView(0), ChangesUnavailableError);
      const base = await old.captureBase(join(dir, 'old-base.sqlite'));
      assert.equal(base.seq, 1);
      await old.updateNodes([{ id: '2', labels: ['New'] }], LIMITS);
      assert.deepEqual(linesOf((await deltaSince(old, base.seq)).batches), [['N', '2', ['New'], {}]]);
      await old.close();
    });

    it('that are empty start at seq 0', async () => {
      const old = await SqliteGraphStore.open(await oldStore('empty.sqlite', false));
      assert.deepEqual({ ...(await old.changeTracking()), epoch: 0 }, { epoch: 0, seq: 0, trimmedThrough: 0 });
      await old.close();
    });

    it('loaded from an archive start a history of their own', async () => {
      const loadedPath = join(dir, 'loaded.sqlite');
      const loader = await SqliteGraphLoader.create(loadedPath, { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER }, async () => undefined);
      await loader.insert({ kind: 'node', lines: ['["N","4",["A"],{}]'] });
      await loader.finish();
      const loaded = await SqliteGraphStore.open(loadedPath);
      const tracking = await loaded.changeTracking();
      assert.deepEqual([tracking.seq, tracking.trimmedThrough], [1, 1]);
      await loaded.close();
      assert.ok(existsSync(loadedPath));
    });
  });
});
