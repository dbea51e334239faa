// Over WebSocket, a bad operation is refused alone: an `error` message for its id, with a code, and the socket and
// the client's other subscriptions live on. Every subscription refuses an id it cannot show the same way.
import assert from 'node:assert/strict';
import type WebSocket from 'ws';
import {
  activeSubscriptions,
  connectWs,
  createInstance,
  createKey,
  createTenant,
  eventually,
  expectData,
  gql,
  idle,
  metricsValue,
  requestSnapshot,
  serverPerSuite,
  takeSnapshot,
  type TestServer,
  untilSubscribed,
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
    const subscribedBefore = await activeSubscriptions(server);
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
    await untilSubscribed(server, subscribedBefore + 2); // the subscriptions start a moment after subscribe
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

  it('runs what a client sent right before it closed the socket: a mutation sent as it leaves', async () => {
    const connection = await connectWs(suite.server, suite.server.adminKey);
    const name = `left-right-after-${Date.now()}`;
    // The operation and the close in one TCP write: ws reads both before the operation's turn comes.
    const tcp = (connection.socket as unknown as { _socket: import('node:net').Socket })._socket;
    tcp.cork();
    connection.socket.send(
      JSON.stringify({
        id: 'leaving',
        type: 'subscribe',
        payload: { query: 'mutation ($input: CreateInstanceInput!) { createInstance(input: $input) { id } }', variables: { input: { name, tier: 'FREE' } } },
      }),
    );
    connection.socket.close(1000, 'done');
    tcp.uncork();
    await connection.closed;
    const named = async () => expectData(await gql<{ instances: { name: string }[] }>(suite.server, '{ instances { name } }')).instances.filter((i) => i.name === name);
    await eventually(async () => (await named()).length === 1, { what: 'the instance the mutation created' });
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

  it('never sends an operation\'s result under its id once the client completed it and reused the id', async () => {
    // graphql-ws sent the first operation's answer under the id as the second's, then a complete that ended the second
    // in the client's eyes, and forgot the second (left running, never stopped, even when its socket closed).
    const { server } = suite;
    const connection = await connectWs(server, server.adminKey);
    const warm = start(connection, 'warm', `{ viewer { role } }`);
    await warm.end(); // the query is checked once; the messages below are then handled in one turn
    const reused = track(connection.socket, 'x');
    // One write: the three messages reach the server together, as a client's burst does.
    const raw = (connection.socket as unknown as { _socket: import('node:net').Socket })._socket;
    raw.cork();
    connection.socket.send(JSON.stringify({ id: 'x', type: 'subscribe', payload: { query: `{ viewer { role } }` } }));
    connection.socket.send(JSON.stringify({ id: 'x', type: 'complete' }));
    connection.socket.send(JSON.stringify({ id: 'x', type: 'subscribe', payload: { query: `subscription { instanceAvailabilityChanged { instanceId } }` } }));
    process.nextTick(() => raw.uncork());
    await reused.until((messages) => messages.length > 0);
    // A query behind them on the same socket: once it is answered, everything for x has been sent.
    const behind = start(connection, 'behind', `{ viewer { role } }`);
    await behind.end();
    assert.ok(
      reused.messages.every((message) => message.payload?.data?.viewer === undefined),
      `the completed query's answer came under the reused id: ${JSON.stringify(reused.messages)}`,
    );
    assert.deepEqual(reused.messages.map((message) => message.type), ['error'], JSON.stringify(reused.messages));
    assert.equal(reused.messages[0].payload[0].extensions.code, 'BAD_USER_INPUT');
    assert.equal(connection.socket.readyState, connection.socket.OPEN);
    await connection.close();
    await eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) === 0, { what: 'no subscription left running' });
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

    it("refuses a later subscriber to a deleted instance's events, though an earlier one's stream runs still", async () => {
      const instance = await createInstance(suite.server, { name: 'deleted while watched', tier: 'FREE' });
      const query = `subscription ($id: ID) { instanceAvailabilityChanged(instanceId: $id) { instanceId } }`;
      const earlier = await connectWs(suite.server, suite.server.adminKey);
      const watching = start(earlier, 'earlier', query, { id: instance.id });
      await eventually(async () => (await metricsValue(suite.server, 'snapgraph_subscriptions_active')) >= 1, { what: 'the earlier subscription' });
      expectData(await gql(suite.server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: instance.id }));
      await eventually(async () => expectData(await gql(suite.server, '{ instances { id } }')).instances.every((i: { id: string }) => i.id !== instance.id), {
        what: 'the instance gone',
      });

      // The same document and variables: it would share the earlier subscriber's stream, whose check ran before.
      const later = await connectWs(suite.server, suite.server.adminKey);
      const refused = start(later, 'later', query, { id: instance.id });
      await refused.end();
      assert.deepEqual(refused.messages.map((message) => message.type), ['error'], JSON.stringify(refused.messages));
      assert.equal(refused.messages[0].payload[0].extensions.code, 'NOT_FOUND');
      assert.ok(watching.messages.every((message) => message.type !== 'error'));
      await later.close();
      await earlier.close();
    });
  });
});

const SNAPSHOTS = `subscription ($id: ID) { snapshotUpdated(instanceId: $id) { id status } }`;

/** Resolves once the server runs `count` subscriptions: a subscription's stream starts when the server has it. */
const untilActive = (server: TestServer, count: number) =>
  eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) === count, { what: `${count} active subscriptions` });

describe('subscriptions one client may hold', () => {
  // Small caps, so that a test reaches them: 3 on one connection, 5 for one API key on this server.
  const suite = serverPerSuite({ env: { SNAPGRAPH_WS_MAX_SUBSCRIPTIONS: '3', SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS: '5' } });

  it('refuses the subscription over the cap of a connection, then of an API key, alone: the others and the socket go on', async function () {
    this.timeout(60_000);
    const { server } = suite;
    const instanceId = (await createInstance(server, { name: 'capped', tier: 'PROFESSIONAL' })).id;
    const first = await connectWs(server, server.adminKey);
    const held = ['a', 'b', 'c'].map((id) => start(first, id, SNAPSHOTS, { id: instanceId }));
    await untilActive(server, 3);

    const over = start(first, 'd', SNAPSHOTS, { id: instanceId });
    await over.end();
    assert.deepEqual(over.messages.map((message) => message.type), ['error'], JSON.stringify(over.messages));
    const refusal = over.messages[0].payload[0];
    assert.equal(refusal.extensions.code, 'BAD_USER_INPUT', JSON.stringify(refusal));
    assert.equal(refusal.extensions.limit, 'subscriptions');
    assert.equal(refusal.extensions.max, 3);
    assert.match(refusal.message, /3 subscriptions/);

    // Queries are not subscriptions: they still run on the full connection.
    const viewer = start(first, 'viewer', `{ viewer { role } }`);
    await viewer.end();
    assert.equal(viewer.messages[0].payload.data.viewer.role, 'ADMIN');

    // A subscription the client completes makes room at once, for a subscription sent right behind its complete.
    first.socket.send(JSON.stringify({ id: 'a', type: 'complete' }));
    const replacement = start(first, 'e', SNAPSHOTS, { id: instanceId });

    // The key holds 3 here; another connection of the same key gets 2 more, then is refused.
    const second = await connectWs(server, server.adminKey);
    const more = ['f', 'g'].map((id) => start(second, id, SNAPSHOTS, { id: instanceId }));
    await untilActive(server, 5);
    assert.deepEqual(replacement.messages, [], 'the replacement was not refused');
    const overKey = start(second, 'h', SNAPSHOTS, { id: instanceId });
    await overKey.end();
    assert.deepEqual(overKey.messages.map((message) => message.type), ['error'], JSON.stringify(overKey.messages));
    assert.deepEqual(
      [overKey.messages[0].payload[0].extensions.code, overKey.messages[0].payload[0].extensions.limit, overKey.messages[0].payload[0].extensions.max],
      ['BAD_USER_INPUT', 'keySubscriptions', 5],
    );

    // Another key is not held back by this one.
    const viewerKey = await createKey(server, server.adminKey, 'VIEWER');
    const third = await connectWs(server, viewerKey.secret);
    const theirs = start(third, 'v', SNAPSHOTS, { id: instanceId });
    await untilActive(server, 6);

    // Every subscription that was let in delivers; none of the refused ones does.
    await takeSnapshot(server, instanceId);
    const completed = (messages: Message[]) => messages.some((message) => message.type === 'next' && message.payload.data?.snapshotUpdated.status === 'COMPLETED');
    for (const tracked of [...held.slice(1), replacement, ...more, theirs]) await tracked.until(completed);
    assert.equal(over.messages.length, 1);
    assert.equal(overKey.messages.length, 1);
    assert.equal(first.socket.readyState, first.socket.OPEN);
    assert.equal(second.socket.readyState, second.socket.OPEN);

    // The key's subscriptions on a closed connection are given back.
    await first.close();
    await untilActive(server, 3);
    const after = start(second, 'i', SNAPSHOTS, { id: instanceId });
    await untilActive(server, 4);
    assert.deepEqual(after.messages, [], 'the key has room again');
    await Promise.all([second.close(), third.close()]);
  });
});
