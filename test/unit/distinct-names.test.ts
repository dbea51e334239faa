// How many distinct labels and relationship types a graph may hold (MAX_DISTINCT_NAMES): a foreign file is refused as
// soon as it is past the bound, and so is a write to a store that would take it past it. Unbounded, one file with a
// million distinct labels made the server hold, sort and answer all of them for any key that inspected it.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isArchiveError } from '../../src/archive';
import { isAppError } from '../../src/errors/app-error';
import { MAX_DISTINCT_NAMES } from '../../src/graph/graph-rules';
import type { WriteLimits } from '../../src/graph/graph-store';
import { SqliteConnection } from '../../src/graph/sqlite-connection';
import { SqliteGraphStore } from '../../src/graph/sqlite-graph-store';
import type { ForeignRecord, GraphFileReader } from '../../src/graph-files/graph-file-format';
import { takeCensus } from '../../src/graph-files/graph-file-census';

const LIMITS: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: 1e12 };

/** A file of one node per line, each with a label of its own (and one shared), read in batches of 1,000. */
function fileOfLabels(count: number): GraphFileReader & { linesRead: () => number } {
  let read = 0;
  return {
    async *records() {
      for (let start = 0; start < count; start += 1_000) {
        const batch: ForeignRecord[] = [];
        for (let line = start; line < Math.min(count, start + 1_000); line++) {
          batch.push({ kind: 'node', id: String(line), labels: ['Shared', `L${line}`], properties: {}, at: line + 1 } as unknown as ForeignRecord);
        }
        read += batch.length;
        yield batch;
      }
    },
    describe: (at) => `line ${at}`,
    bytesRead: () => 0,
    linesRead: () => read,
  };
}

describe('distinct labels and relationship types', () => {
  it('a foreign file is counted whole up to the bound, and refused past it, naming where', async () => {
    const census = await takeCensus(fileOfLabels(MAX_DISTINCT_NAMES - 1));
    assert.equal(census.labels.length, MAX_DISTINCT_NAMES);
    const past = fileOfLabels(5 * MAX_DISTINCT_NAMES);
    await assert.rejects(takeCensus(past), (error: Error) => {
      assert.ok(isArchiveError(error), String(error));
      assert.match(error.message, new RegExp(`at line ${MAX_DISTINCT_NAMES}, it would hold ${MAX_DISTINCT_NAMES + 1} distinct labels; a graph holds at most ${MAX_DISTINCT_NAMES}`));
      return true;
    });
    assert.ok(past.linesRead() <= MAX_DISTINCT_NAMES + 1_000, `read ${past.linesRead()} lines past the bound`);
  });

  describe('a store', () => {
    let dir: string;
    let store: SqliteGraphStore;

    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'snapgraph-names-'));
      store = await SqliteGraphStore.open(join(dir, 'store.sqlite'), { create: true });
    });

    afterEach(async () => {
      await store.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    });

    const nodesLabelled = (from: number, count: number) => Array.from({ length: count }, (_, i) => ({ labels: [`L${from + i}`], properties: {} }));

    it('takes writes up to the bound, refuses one that would pass it whole (CAPACITY_EXCEEDED), and takes the names it has', async () => {
      await store.createNodes(nodesLabelled(0, MAX_DISTINCT_NAMES - 1), LIMITS);
      await assert.rejects(store.createNodes(nodesLabelled(MAX_DISTINCT_NAMES - 1, 2), LIMITS), (error: Error) => {
        assert.ok(isAppError(error) && error.code === 'CAPACITY_EXCEEDED', String(error));
        assert.match(error.message, new RegExp(`it would hold ${MAX_DISTINCT_NAMES + 1} distinct labels`));
        return true;
      });
      assert.equal((await store.stats()).labels.length, MAX_DISTINCT_NAMES - 1, 'nothing of the refused write');
      await store.createNodes(nodesLabelled(MAX_DISTINCT_NAMES - 1, 1), LIMITS);
      await store.createNodes(nodesLabelled(0, 3), LIMITS);
      const [node] = await store.createNodes([{ labels: ['Extra'], properties: {} }], LIMITS).catch((error: Error) => [error]);
      assert.ok(isAppError(node) && node.code === 'CAPACITY_EXCEEDED');
      assert.equal((await store.stats()).labels.length, MAX_DISTINCT_NAMES);
    });

    it('judges each kind on its own: a store from before the bound, over it in labels, still takes a new type', async () => {
      await store.createNodes(nodesLabelled(0, MAX_DISTINCT_NAMES), LIMITS);
      // One label more, as a store restored from a snapshot taken before the bound may hold.
      const raw = await SqliteConnection.open(join(dir, 'store.sqlite'));
      await raw.run(`INSERT INTO counts (kind, name, count) VALUES ('label', 'Legacy', 1)`);
      await raw.close();
      const [a, b] = await store.createNodes(nodesLabelled(0, 2), LIMITS);
      await store.createRelationships([{ type: 'KNOWS', startNodeId: a.id, endNodeId: b.id, properties: {} }], LIMITS);
      await assert.rejects(store.createNodes([{ labels: ['New'], properties: {} }], LIMITS), /distinct labels/);
    });
  });
});
