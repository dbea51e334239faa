// Many requests that find an instance's store not open at once (the first ones after a restart, or those a deletion or
// a restore's swap made wait while it closed the store): one store is opened for all of them. Each opened its own, and
// their writers' schema checks (BEGIN IMMEDIATE) waited on one another: those waiting held every thread of libuv's
// pool, so the one holding the lock could not go on, and every request (and all other SQLite and file work of the
// process) waited out SQLite's busy timeout, once or twice.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GraphStore, WriteLimits } from '../../src/graph/graph-store';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import { openFiles } from '../support/open-files';

const LIMITS: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: 1e12 };
/** Far below SQLite's busy timeout (10 s): slower, the requests waited on a lock. */
const BOUND_MS = 5_000;

describe('a store that many requests find not open at once', () => {
  let dir: string;
  let stores: SqliteGraphStoreProvider;
  const instanceId = randomUUID();

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-store-opens-'));
    const creator = new SqliteGraphStoreProvider(dir);
    await creator.create(instanceId, 1);
    await creator.close();
    stores = new SqliteGraphStoreProvider(dir);
  });

  afterEach(async () => {
    await stores.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is opened once for all of them, and they answer at once', async function () {
    this.timeout(60_000);
    const started = Date.now();
    const used: GraphStore[] = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        stores.use(instanceId, 1, async (store) => {
          if (i % 2 === 0) await store.createNodes([{ labels: ['N'], properties: {} }], LIMITS);
          else await store.stats();
          return store;
        }),
      ),
    );
    const took = Date.now() - started;
    assert.equal(new Set(used).size, 1, 'several stores were opened on one file');
    assert.ok(took < BOUND_MS, `the requests took ${took} ms`);
    assert.equal(await stores.use(instanceId, 1, async (store) => (await store.stats()).nodeCount), 10);
  });

  it('leaves no connection open once the provider is closed', async function () {
    this.timeout(60_000);
    await Promise.all(Array.from({ length: 20 }, () => stores.use(instanceId, 1, (store) => store.stats())));
    await stores.close();
    assert.deepEqual(openFiles(`${instanceId}/graph-1.sqlite`), []);
  });

  it('says to all of them that it is missing when it is', async () => {
    rmSync(join(dir, instanceId), { recursive: true, force: true });
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => stores.use(instanceId, 1, (store) => store.stats())));
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.equal((outcome.reason as Error).name, 'StoreMissingError');
    }
  });
});
