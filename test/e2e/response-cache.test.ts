// The response cache (docs/api.md): a query that reads only a tenant's instance rows is answered again from memory
// while none of them changed, and never after a change is committed, whoever commits it; never across API keys; never
// past authentication. Each test checks through /metrics what the cache did, so that none passes with it absent.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  createInstance,
  createKey,
  createNodes,
  createTenant,
  describePostgres,
  expectCode,
  expectData,
  gql,
  metricsValue,
  post,
  postgresServerPerSuite,
  serverPerSuite,
  takeSnapshot,
  type TestServer,
  withClient,
} from '../support';

const LIST = '{ instances { id name status availability } }';
const names = async (server: TestServer, key = server.adminKey): Promise<string[]> =>
  expectData(await gql(server, LIST, {}, key)).instances.map((instance: { name: string }) => instance.name);

const cacheCount = (server: TestServer, outcome: 'hit' | 'miss') => metricsValue(server, 'snapgraph_graphql_response_cache_total', `outcome="${outcome}"`);

/** What `work` made the cache do: answers it gave, and queries it had to execute. */
async function cacheUse(server: TestServer, work: () => Promise<unknown>): Promise<{ hits: number; misses: number }> {
  const [hits, misses] = [await cacheCount(server, 'hit'), await cacheCount(server, 'miss')];
  await work();
  return { hits: (await cacheCount(server, 'hit')) - hits, misses: (await cacheCount(server, 'miss')) - misses };
}

/** Tests for any metadata database: `rename` commits a new name from another connection than the server's. */
function itKeepsAnswersOnlyUntilACommit(getServer: () => TestServer, rename: (instanceId: string, name: string) => Promise<void>): void {
  it('answers a repeated query from the cache, and shows a write at once', async () => {
    const server = getServer();
    const first = await createInstance(server, { name: 'cached-1' });
    assert.ok((await names(server)).includes('cached-1'));
    const repeated = await cacheUse(server, async () => {
      assert.ok((await names(server)).includes('cached-1'));
      assert.ok((await names(server)).includes('cached-1'));
    });
    assert.deepEqual(repeated, { hits: 2, misses: 0 });

    await createInstance(server, { name: 'cached-2' });
    const afterCreate = await cacheUse(server, async () => assert.ok((await names(server)).includes('cached-2')));
    assert.deepEqual(afterCreate, { hits: 0, misses: 1 });

    const listed = async () => expectData(await gql(server, LIST)).instances as { id: string; status: string }[];
    assert.equal((await listed()).find((instance) => instance.id === first.id)?.status, 'RUNNING');
    expectData(await gql(server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: first.id }));
    assert.notEqual((await listed()).find((instance) => instance.id === first.id)?.status ?? 'gone', 'RUNNING');
  });

  it('answers repeated snapshot history from the cache, and shows a new snapshot and a deletion at once', async function () {
    this.timeout(60_000);
    const server = getServer();
    const instance = await createInstance(server, { name: 'history' });
    const HISTORY = `query ($id: ID!) { snapshots(instanceId: $id, first: 10) { totalCount edges { node { id status } } } }`;
    const history = async () => expectData(await gql(server, HISTORY, { id: instance.id })).snapshots as { totalCount: number; edges: { node: { id: string; status: string } }[] };
    const first = await takeSnapshot(server, instance.id);
    assert.deepEqual((await history()).edges.map((edge) => edge.node), [{ id: first.id, status: 'COMPLETED' }]);
    assert.deepEqual(await cacheUse(server, history), { hits: 1, misses: 0 });

    const second = await takeSnapshot(server, instance.id);
    assert.deepEqual((await history()).edges.map((edge) => edge.node.id), [second.id, first.id]);
    expectData(await gql(server, `mutation ($id: ID!) { deleteSnapshot(id: $id) }`, { id: first.id }));
    const after = await history();
    assert.equal(after.totalCount, 1);
    assert.deepEqual(after.edges.map((edge) => edge.node.id), [second.id]);
  });

  it('shows at once what another connection committed (another replica, the CLI, an operator)', async () => {
    const server = getServer();
    const instance = await createInstance(server, { name: 'before-rename' });
    await names(server);
    assert.deepEqual(await cacheUse(server, () => names(server)), { hits: 1, misses: 0 });
    await rename(instance.id, 'renamed-elsewhere');
    const after = await names(server);
    assert.ok(after.includes('renamed-elsewhere') && !after.includes('before-rename'), JSON.stringify(after));
  });
}

describe('the response cache (embedded SQLite)', () => {
  const suite = serverPerSuite();

  itKeepsAnswersOnlyUntilACommit(
    () => suite.server,
    async (instanceId, name) => {
      // Another process's connection, as the operator CLI's would be.
      const db = new Database(join(suite.server.dataDir, 'metadata.sqlite'), { timeout: 10_000 });
      try {
        db.prepare('UPDATE instances SET name = ? WHERE id = ?').run(name, instanceId);
      } finally {
        db.close();
      }
    },
  );

  it("never answers one API key with what another key's query was answered", async () => {
    const { server } = suite;
    const other = await createTenant(server, 'cache-other-tenant');
    await createInstance(server, { name: 'other-tenant-only' }, other.apiKey);
    const viewer = await createKey(server, server.adminKey, 'VIEWER', 'cache-viewer');
    await names(server);
    await names(server, viewer.secret);
    const { hits } = await cacheUse(server, async () => {
      const [mine, theirs, viewers] = [await names(server), await names(server, other.apiKey), await names(server, viewer.secret)];
      assert.ok(!mine.includes('other-tenant-only'));
      assert.deepEqual(theirs, ['other-tenant-only']);
      assert.deepEqual(viewers, mine);
    });
    assert.equal(hits, 2, 'the default tenant\'s two keys were answered from the cache; the other tenant\'s first query was not');
  });

  it('refuses a revoked key although an answer to it is kept', async () => {
    const { server } = suite;
    const key = await createKey(server, server.adminKey, 'VIEWER', 'cache-revoked');
    await names(server, key.secret);
    assert.deepEqual(await cacheUse(server, () => names(server, key.secret)), { hits: 1, misses: 0 });
    expectData(await gql(server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: key.id }));
    expectCode(await gql(server, LIST, {}, key.secret), 'UNAUTHENTICATED');
  });

  it('keeps answers by the variables the query declares: others sent along, however nested, change nothing', async () => {
    const { server } = suite;
    const instance = await createInstance(server, { name: 'cache-variables' });
    const query = 'query ($id: ID!) { instance(id: $id) { name } }';
    // JSON.parse reads nesting this deep; JSON.stringify of it overflows the stack (the request was a 500).
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    const send = (variables: string) => post(server, `{"query": ${JSON.stringify(query)}, "variables": ${variables}}`, { authorization: `Bearer ${server.adminKey}` });
    expectData(await gql(server, query, { id: instance.id }));
    const use = await cacheUse(server, async () => {
      assert.equal(expectData(await send(`{"id": "${instance.id}", "unused": ${deep}}`)).instance.name, 'cache-variables');
      assert.equal(expectData(await gql(server, query, { id: instance.id, other: 1 })).instance.name, 'cache-variables');
    });
    assert.deepEqual(use, { hits: 2, misses: 0 });
    // A declared variable nested that deep is the client's error, as it is in a query the cache does not keep.
    expectCode(await send(`{"id": ${deep}}`), 'BAD_USER_INPUT');
    // A declared variable left out (its default applies) and one given as null (the argument's own default) differ.
    await takeSnapshot(server, instance.id);
    await takeSnapshot(server, instance.id);
    const history = 'query ($id: ID!, $first: Int = 1) { snapshots(instanceId: $id, first: $first) { edges { node { id } } } }';
    const pageSize = async (variables: Record<string, unknown>) => expectData(await gql(server, history, variables)).snapshots.edges.length;
    assert.deepEqual([await pageSize({ id: instance.id }), await pageSize({ id: instance.id, first: null })], [1, 2]);
    assert.deepEqual([await pageSize({ id: instance.id }), await pageSize({ id: instance.id, first: null })], [1, 2]);
  });

  it("never keeps an answer that reads more than metadata (an instance's store)", async () => {
    const { server } = suite;
    const instance = await createInstance(server, { name: 'stats-not-cached' });
    const query = `query ($id: ID!) { instance(id: $id) { name stats { nodeCount } } }`;
    const count = async () => expectData(await gql(server, query, { id: instance.id })).instance.stats.nodeCount as number;
    const use = await cacheUse(server, async () => {
      assert.equal(await count(), 0);
      await createNodes(server, instance.id, [{ labels: ['Cached'], properties: {} }]);
      assert.equal(await count(), 1);
    });
    assert.deepEqual(use, { hits: 0, misses: 0 });
  });
});

describePostgres('the response cache (PostgreSQL)', (postgres) => {
  const suite = postgresServerPerSuite(postgres);

  // Another connection's commit is what another replica's is.
  itKeepsAnswersOnlyUntilACommit(
    () => suite.server,
    (instanceId, name) => withClient(suite.database.url, async (client) => void (await client.query('UPDATE instances SET name = $1 WHERE id = $2', [name, instanceId]))),
  );
});
