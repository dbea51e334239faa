// deleteInstance while a client writes and reads the instance's graph: every request, and the deletion, answers at
// once (data, NOT_FOUND or INSTANCE_UNAVAILABLE), never after waiting out SQLite's lock timeout.
import assert from 'node:assert/strict';
import { createInstance, expectData, gql, serverPerSuite } from '../support';

const CREATE_NODES = `mutation ($i: ID!) { createNodes(instanceId: $i, nodes: [{ labels: ["Busy"], properties: { n: 1 } }]) { id } }`;
const NODES = `query ($i: ID!) { nodes(instanceId: $i, first: 10) { totalCount edges { node { id } } } }`;
const DELETE = `mutation ($id: ID!) { deleteInstance(id: $id) }`;
/** Far below SQLite's busy timeout (10 s): a request this slow waited on a lock. */
const BOUND_MS = 5_000;
const ROUNDS = 12;
const REQUESTS = 20;

describe('deleteInstance under graph load', () => {
  const suite = serverPerSuite();

  it('answers every graph request in flight and the deletion itself without waiting on a store lock', async function () {
    this.timeout(ROUNDS * 60_000);
    const slow: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const instance = await createInstance(suite.server, { name: `busy-${round}`, tier: 'PROFESSIONAL' });
      expectData(await gql(suite.server, CREATE_NODES, { i: instance.id }));
      const timed = async (what: string, query: string, variables: Record<string, unknown>) => {
        const started = Date.now();
        const result = await gql(suite.server, query, variables);
        const took = Date.now() - started;
        if (took > BOUND_MS) slow.push(`round ${round}: ${what} took ${took} ms`);
        assert.ok(result.data || result.errors, `round ${round}: ${what} answered HTTP ${result.status}: ${result.text.slice(0, 500)}`);
        const codes = (result.errors ?? []).map((error) => error.extensions?.code);
        assert.ok(
          codes.every((code) => code === 'NOT_FOUND' || code === 'INSTANCE_UNAVAILABLE'),
          `round ${round}: ${what} answered ${JSON.stringify(result.errors)}`,
        );
        return result;
      };
      const requests: Promise<unknown>[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        if (i === REQUESTS / 2) requests.push(timed('deleteInstance', DELETE, { id: instance.id }).then((result) => expectData(result)));
        requests.push(i % 2 === 0 ? timed('createNodes', CREATE_NODES, { i: instance.id }) : timed('nodes', NODES, { i: instance.id }));
      }
      await Promise.all(requests);
    }
    assert.deepEqual(slow, [], 'requests waited on a lock');
  });
});
