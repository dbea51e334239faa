// Over WebSocket, a bad operation is refused alone: an `error` message for its id, with a code, and the socket and
// the client's other subscriptions live on. Every subscription refuses an id it cannot show the same way.
import assert from 'node:assert/strict';
import type WebSocket from 'ws';
import {
  connectWs,
  createInstance,
  createTenant,
  expectData,
  gql,
  idle,
  requestSnapshot,
  serverPerSuite,
  takeSnapshot,
  within,
  type WsConnection,
} from '../support';

interface Message {
  id?: string;
  type: string;
  payload?: any;
}

/** Every message the server sends for one operation id on a raw graphql-transport-ws socket. */
function track(socket: WebSocket, id: string) {
  const messages: Message[] = [];
  let ended!: () => void;
  const end = new Promise<void>((resolve) => (ended = resolve));
  let wake: (() => void) | null = null;
  socket.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString()) as Message;
    if (message.id !== id) return;
    messages.push(message);
    wake?.();
    if (message.type === 'complete' || message.type === 'error') ended();
  });
  return {
    messages,
    end: () => within(end, 10_000, `the end of operation ${id}`),
    async until(predicate: (messages: Message[]) => boolean) {
      while (!predicate(messages)) await within(new Promise<void>((resolve) => (wake = resolve)), 10_000, `a message for ${id}`);
    },
  };
}

function start(connection: WsConnection, id: string, query: string, variables?: Record<string, unknown>) {
  const tracked = track(connection.socket, id);
  connection.socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
  return tracked;
}

const OPERATION_IDS = `query ($id: ID!) { operations(instanceId: $id) { edges { node { id } } } }`;

describe('WebSocket errors', () => {
  const suite = serverPerSuite();

  it('refuses a syntax or validation error as an error message for that operation; the socket and the others go on', async () => {
    const { server } = suite;
    const instanceId = (await createInstance(server, { name: 'ws-errors', tier: 'PROFESSIONAL' })).id;
    const connection = await connectWs(server, server.adminKey);
    const good = start(connection, 'good', `subscription ($id: ID) { snapshotUpdated(instanceId: $id) { id status } }`, { id: instanceId });
    const other = start(connection, 'other', `subscription { instanceAvailabilityChanged { instanceId availability } }`);

    const bad = [
      ['syntax', `subscription { snapshotUpdated { id `],
      ['unknown field', `subscription { snapshotUpdated { nope } }`],
      ['missing argument', `{ nodes { totalCount } }`],
      ['wrong variable', `query ($f: Int) { nodes(instanceId: "x", first: $f) { totalCount } }`, { f: 'ten' }],
      ['no such operation', `query A { viewer { role } } query B { viewer { role } }`],
    ] as const;
    for (const [what, query, variables] of bad) {
      const refused = start(connection, what, query, variables as Record<string, unknown> | undefined);
      await refused.end();
      assert.deepEqual(
        refused.messages.map((message) => message.type),
        ['error'],
        `${what}: ${JSON.stringify(refused.messages)}`,
      );
      assert.equal(refused.messages[0].payload[0].extensions.code, 'BAD_USER_INPUT', `${what}: ${JSON.stringify(refused.messages)}`);
    }

    assert.equal(connection.socket.readyState, connection.socket.OPEN, 'the socket is still open');
    await new Promise((resolve) => setTimeout(resolve, 250)); // the subscriptions start a moment after subscribe
    await takeSnapshot(server, instanceId);
    await good.until((messages) => messages.some((message) => message.type === 'next' && message.payload.data?.snapshotUpdated.status === 'COMPLETED'));
    assert.ok(good.messages.every((message) => message.type === 'next'), JSON.stringify(good.messages));
    assert.ok(other.messages.every((message) => message.type === 'next'));
    const [answer] = await (async () => {
      const viewer = start(connection, 'viewer', `{ viewer { role } }`);
      await viewer.end();
      return viewer.messages;
    })();
    assert.equal(answer.payload.data.viewer.role, 'ADMIN');
    await connection.close();
  });

  it('runs an operation whose message carries a variable it does not declare, nested deeper than JSON.stringify can go', async () => {
    // Written by hand: JSON.stringify itself cannot write it. The server's check of the operation stringified every
    // variable to remember the operation: the socket was closed with 4500 and the error's message, graphql-ws's
    // plain-text stack trace on stderr, and every other subscription on the socket went with it. Over HTTP the same
    // variables change nothing (response-cache.test.ts).
    const { server } = suite;
    const connection = await connectWs(server, server.adminKey);
    const other = start(connection, 'other', `subscription { instanceAvailabilityChanged { instanceId availability } }`);
    const depth = 100_000;
    const deep = track(connection.socket, 'deep');
    connection.socket.send(
      `{"id":"deep","type":"subscribe","payload":{"query":"{ viewer { role } }","variables":{"extra":${'['.repeat(depth)}${']'.repeat(depth)}}}}`,
    );
    const closed = new Promise<never>((_, reject) =>
      connection.socket.once('close', (code: number, reason: Buffer) => reject(new Error(`the socket was closed: ${code} ${reason.toString()}`))),
    );
    closed.catch(() => undefined); // the socket closes at the end all the same
    await Promise.race([deep.end(), closed]);
    assert.deepEqual(
      deep.messages.map((message) => message.type),
      ['next', 'complete'],
      JSON.stringify(deep.messages),
    );
    assert.equal(deep.messages[0].payload.data.viewer.role, 'ADMIN');
    assert.equal(connection.socket.readyState, connection.socket.OPEN, 'the socket is still open');
    assert.deepEqual(other.messages, [], 'the other subscription goes on');
    assert.doesNotMatch(server.logs(), /Internal error occurred during message handling/);
    await connection.close();
  });

  describe('every subscription refuses a missing or foreign id with one error message, NOT_FOUND', () => {
    let foreignInstanceId: string;
    let foreignOperationId: string;

    before(async function () {
      this.timeout(30_000);
      const { server } = suite;
      const other = await createTenant(server, 'other-tenant');
      const otherServer = { ...server, graphqlUrl: server.graphqlUrl, adminKey: other.apiKey };
      foreignInstanceId = (await createInstance(otherServer, { name: 'theirs', tier: 'PROFESSIONAL' })).id;
      await requestSnapshot(otherServer, foreignInstanceId);
      await idle(otherServer, foreignInstanceId);
      foreignOperationId = expectData(await gql(otherServer, OPERATION_IDS, { id: foreignInstanceId })).operations.edges[0].node.id;
    });

    const missing = '00000000-0000-4000-8000-000000000000';
    const cases = () =>
      [
        ['restoreProgress', `subscription ($id: ID!) { restoreProgress(operationId: $id) { id } }`, foreignOperationId],
        ['operationProgress', `subscription ($id: ID!) { operationProgress(operationId: $id) { id } }`, foreignOperationId],
        ['instanceAvailabilityChanged', `subscription ($id: ID) { instanceAvailabilityChanged(instanceId: $id) { instanceId } }`, foreignInstanceId],
        ['snapshotUpdated', `subscription ($id: ID) { snapshotUpdated(instanceId: $id) { id } }`, foreignInstanceId],
      ] as const;

    it('the same for all four', async () => {
      const connection = await connectWs(suite.server, suite.server.adminKey);
      for (const [name, query, foreignId] of cases()) {
        for (const [whose, id] of [
          ['missing', missing],
          ['foreign', foreignId],
        ]) {
          const refused = start(connection, `${name}-${whose}`, query, { id });
          await refused.end();
          assert.deepEqual(
            refused.messages.map((message) => message.type),
            ['error'],
            `${name} (${whose}): ${JSON.stringify(refused.messages)}`,
          );
          assert.equal(refused.messages[0].payload[0].extensions.code, 'NOT_FOUND', `${name} (${whose}): ${JSON.stringify(refused.messages)}`);
        }
      }
      assert.equal(connection.socket.readyState, connection.socket.OPEN);
      await connection.close();
    });
  });
});
