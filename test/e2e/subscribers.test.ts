// Many subscribers to one restore: each sees the live state first and then every change in order, whoever else is
// subscribed; another tenant sees nothing; a client that stops reading holds up nobody and is dropped once too far
// behind. Tens of subscribers, not thousands: the figures at scale are bench:fanout's.
import assert from 'node:assert/strict';
import {
  assertProgressSequence,
  connectWs,
  createInstance,
  createKey,
  createTenant,
  eventually,
  expectData,
  fillInstance,
  gql,
  type NewTenant,
  OPERATION_FIELDS,
  type OperationJson,
  payloads,
  RESTORE_SNAPSHOT,
  serverPerSuite,
  settledOperation,
  type SnapshotJson,
  subscribe,
  subscriptionErrors,
  takeSnapshot,
  type TestServer,
  untilSubscribed,
} from '../support';

const RESTORE_PROGRESS = `subscription ($id: ID!) { restoreProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const AVAILABILITY = `subscription ($instanceId: ID) {
  instanceAvailabilityChanged(instanceId: $instanceId) { instanceId instance { id name } availability previousAvailability status at }
}`;
const BIG_PAGE = `query ($id: ID!) { nodes(instanceId: $id, first: 500) { edges { node { id labels properties } } } }`;

interface AvailabilityEvent {
  instanceId: string;
  instance: { id: string; name: string } | null;
  availability: string;
  previousAvailability: string | null;
  status: string;
  at: string;
}

/** Backlog past which the server drops a WebSocket (small here, so that a test fills it quickly). */
const MAX_BUFFERED_BYTES = 256 * 1024;

async function startRestore(server: TestServer, snapshotId: string): Promise<OperationJson> {
  return expectData(await gql(server, RESTORE_SNAPSHOT, { snapshotId, confirm: 'RESTORE' })).restoreSnapshot;
}

const STATUS_RANK: Record<string, number> = { QUEUED: 0, RUNNING: 1, SUCCEEDED: 2, FAILED: 2, CANCELLED: 2 };

describe('many subscribers to one restore', () => {
  const suite = serverPerSuite({ env: { SNAPGRAPH_WS_MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES) } });
  let instanceId: string;
  let snapshot: SnapshotJson;
  let other: NewTenant;

  before(async function () {
    this.timeout(120_000);
    other = await createTenant(suite.server, 'subscribers-bystander');
    instanceId = (await createInstance(suite.server, { name: 'watched', tier: 'BUSINESS_CRITICAL', memoryGB: 64 })).id;
    await fillInstance(suite.server, instanceId, { nodes: 20_000, relationships: 20_000 });
    snapshot = await takeSnapshot(suite.server, instanceId);
  });

  it('gives every subscriber the live state first, then every change in order, the same availability events, and another tenant nothing', async function () {
    this.timeout(120_000);
    const server = suite.server;
    const viewer = await createKey(server, server.adminKey, 'VIEWER');
    const keys = [server.adminKey, viewer.secret];
    const watchers = Array.from({ length: 12 }, (_, i) => subscribe<{ instanceAvailabilityChanged: AvailabilityEvent }>(server, keys[i % 2], AVAILABILITY, { instanceId }));
    const everything = subscribe(server, server.adminKey, AVAILABILITY);
    const bystander = subscribe(server, other.apiKey, AVAILABILITY);
    await untilSubscribed(server, 14);

    const operation = await startRestore(server, snapshot.id);
    const early = Array.from({ length: 10 }, (_, i) => subscribe<{ restoreProgress: OperationJson }>(server, keys[i % 2], RESTORE_PROGRESS, { id: operation.id }));
    const foreign = subscribe(server, other.apiKey, RESTORE_PROGRESS, { id: operation.id });
    assert.deepEqual((await subscriptionErrors(foreign)).map((error) => error.extensions?.code), ['NOT_FOUND']);

    // Latecomers join a stream that others have been following: their first event is the state as it is now.
    await early[0].waitFor((result) => result.data?.restoreProgress.phase !== 'preparing', 60_000);
    const seenBeforeJoining = payloads<OperationJson>(early[0], 'restoreProgress').at(-1)!;
    const late = Array.from({ length: 10 }, (_, i) => subscribe<{ restoreProgress: OperationJson }>(server, keys[i % 2], RESTORE_PROGRESS, { id: operation.id }));

    await Promise.all([...early, ...late].map((progress) => progress.complete));
    for (const progress of [...early, ...late]) assertProgressSequence(payloads(progress, 'restoreProgress'), 'SUCCEEDED');
    for (const progress of late) {
      const first = payloads<OperationJson>(progress, 'restoreProgress')[0];
      assert.ok(STATUS_RANK[first.status] >= STATUS_RANK[seenBeforeJoining.status], `a latecomer started at ${first.status}, behind ${seenBeforeJoining.status}`);
      assert.ok(first.bytesDone >= seenBeforeJoining.bytesDone, `a latecomer started behind: ${first.bytesDone} < ${seenBeforeJoining.bytesDone} bytes`);
    }
    assert.equal((await settledOperation(server, operation.id)).status, 'SUCCEEDED');

    // Every watcher: READ_ONLY → UNAVAILABLE → AVAILABLE, each change once, the same events (same times) for all.
    await Promise.all(watchers.map((watcher) => watcher.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'AVAILABLE', 30_000)));
    const seen = watchers.map((watcher) => payloads<AvailabilityEvent>(watcher, 'instanceAvailabilityChanged'));
    for (const events of seen) {
      assert.deepEqual(
        events.map((event) => [event.previousAvailability, event.availability]),
        [['AVAILABLE', 'READ_ONLY'], ['READ_ONLY', 'UNAVAILABLE'], ['UNAVAILABLE', 'AVAILABLE']],
      );
      assert.deepEqual(events, seen[0]);
      assert.deepEqual(events[0].instance, { id: instanceId, name: 'watched' });
    }
    await everything.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'AVAILABLE', 30_000);

    // The other tenant, subscribed to all of its instances the whole time, saw none of it.
    assert.deepEqual(bystander.results, []);
    // And a late subscriber to the ended restore gets its final state, then the end.
    const after = subscribe<{ restoreProgress: OperationJson }>(server, viewer.secret, RESTORE_PROGRESS, { id: operation.id });
    await after.complete;
    assert.deepEqual(payloads<OperationJson>(after, 'restoreProgress').map((state) => state.status), ['SUCCEEDED']);
  });

  it('writes one socket\'s subscriptions in order, each event\'s frames together, and the last event with its complete', async function () {
    this.timeout(120_000);
    const server = suite.server;
    // One raw socket with three availability subscriptions and, once the restore runs, two to its progress; what
    // arrives is read as the TCP chunks it came in.
    const connection = await connectWs(server, server.adminKey);
    assert.ok(connection.acknowledged);
    const raw = (connection.socket as unknown as { _socket: NodeJS.EventEmitter })._socket;
    const chunks: string[] = [];
    raw.on('data', (chunk: Buffer) => chunks.push(chunk.toString('latin1')));
    const messages: { id: string; type: string; payload?: { data?: Record<string, any> } }[] = [];
    connection.socket.on('message', (data) => messages.push(JSON.parse(String(data))));
    const send = (message: unknown) => connection.socket.send(JSON.stringify(message));
    for (const id of ['a1', 'a2', 'a3']) send({ id, type: 'subscribe', payload: { query: AVAILABILITY, variables: { instanceId } } });
    await untilSubscribed(server, 3);
    const operation = await startRestore(server, snapshot.id);
    for (const id of ['p1', 'p2']) send({ id, type: 'subscribe', payload: { query: RESTORE_PROGRESS, variables: { id: operation.id } } });
    await eventually(() => messages.filter((m) => m.type === 'complete').length === 2, { what: 'both progress subscriptions to complete', timeoutMs: 60_000 });
    await eventually(() => messages.filter((m) => m.id === 'a1' && m.type === 'next').length === 3, { what: 'three availability events', timeoutMs: 30_000 });

    const of = (id: string) => messages.filter((m) => m.id === id);
    const availability = ['a1', 'a2', 'a3'].map((id) => of(id).map((m) => m.payload!.data!.instanceAvailabilityChanged));
    for (const events of availability) {
      assert.deepEqual(events.map((e: AvailabilityEvent) => e.availability), ['READ_ONLY', 'UNAVAILABLE', 'AVAILABLE']);
      assert.deepEqual(events, availability[0]);
    }
    for (const id of ['p1', 'p2']) {
      const frames = of(id);
      assert.equal(frames.at(-1)!.type, 'complete');
      assert.ok(frames.slice(0, -1).every((m) => m.type === 'next'), JSON.stringify(frames.map((m) => m.type)));
      const states = frames.slice(0, -1).map((m) => m.payload!.data!.restoreProgress as OperationJson);
      assertProgressSequence(states, 'SUCCEEDED');
      // The last event and the complete went out in one write: they arrive in the same chunk.
      const complete = `{"id":"${id}","type":"complete"}`;
      const last = chunks.find((chunk) => chunk.includes(complete));
      assert.ok(last, `no chunk holds ${complete}`);
      assert.ok(last.indexOf(`{"id":"${id}","type":"next"`) >= 0 && last.indexOf('"SUCCEEDED"') < last.indexOf(complete), `the last event of ${id} came apart from its complete`);
    }
    // Each availability event went to the three subscriptions in one write.
    for (const availabilityNow of ['READ_ONLY', 'UNAVAILABLE', 'AVAILABLE']) {
      const together = chunks.some((chunk) => ['a1', 'a2', 'a3'].every((id) => new RegExp(`\\{"id":"${id}","type":"next","payload":\\{"data":\\{"instanceAvailabilityChanged":\\{"instanceId":"[^"]+","instance":\\{[^}]*\\},"availability":"${availabilityNow}"`).test(chunk)));
      assert.ok(together, `the ${availabilityNow} event came to the three subscriptions in separate writes`);
    }
    await connection.close();
  });

  it('sends a restore\'s AVAILABLE before its final state on one socket, as the swap happened', async function () {
    this.timeout(120_000);
    const server = suite.server;
    // Fields of the event itself only: one that reads the database (instance { … }) is answered when its read returns.
    const eventFields = `subscription ($instanceId: ID) { instanceAvailabilityChanged(instanceId: $instanceId) { availability } }`;
    const connection = await connectWs(server, server.adminKey);
    assert.ok(connection.acknowledged);
    const messages: { id: string; type: string; payload?: { data?: Record<string, any> } }[] = [];
    connection.socket.on('message', (data) => messages.push(JSON.parse(String(data))));
    const send = (message: unknown) => connection.socket.send(JSON.stringify(message));
    send({ id: 'a', type: 'subscribe', payload: { query: eventFields, variables: { instanceId } } });
    await untilSubscribed(server, 1);
    const operation = await startRestore(server, snapshot.id);
    send({ id: 'p', type: 'subscribe', payload: { query: RESTORE_PROGRESS, variables: { id: operation.id } } });
    await eventually(() => messages.some((m) => m.id === 'p' && m.type === 'complete'), { what: 'the progress subscription to complete', timeoutMs: 60_000 });
    await eventually(() => messages.some((m) => m.id === 'a' && m.payload?.data?.instanceAvailabilityChanged.availability === 'AVAILABLE'), {
      what: 'the AVAILABLE event',
      timeoutMs: 30_000,
    });
    const available = messages.findIndex((m) => m.id === 'a' && m.payload?.data?.instanceAvailabilityChanged.availability === 'AVAILABLE');
    const final = messages.findIndex((m) => m.id === 'p' && m.payload?.data?.restoreProgress.status === 'SUCCEEDED');
    assert.ok(available < final, `the final state came before AVAILABLE: ${JSON.stringify(messages.map((m) => [m.id, m.type, m.payload?.data?.instanceAvailabilityChanged?.availability ?? m.payload?.data?.restoreProgress?.status]))}`);
    await connection.close();
  });

  it('does not let a client that stops reading hold up the others, and drops it once too far behind', async function () {
    this.timeout(120_000);
    const server = suite.server;
    const others = Array.from({ length: 5 }, () => subscribe<{ instanceAvailabilityChanged: AvailabilityEvent }>(server, server.adminKey, AVAILABILITY, { instanceId }));
    const stuck = await connectWs(server, server.adminKey);
    assert.ok(stuck.acknowledged);
    stuck.socket.send(JSON.stringify({ id: 'a', type: 'subscribe', payload: { query: AVAILABILITY, variables: { instanceId } } }));
    await untilSubscribed(server, 6);
    // It stops reading its socket, and goes on asking: far more answers than the socket buffers and the bound hold.
    const received: { id?: string; type: string }[] = [];
    stuck.socket.on('message', (data) => received.push(JSON.parse(String(data))));
    (stuck.socket as unknown as { _socket: { pause(): void } })._socket.pause();
    const asked = 120;
    for (let i = 0; i < asked; i++) {
      stuck.socket.send(JSON.stringify({ id: `q${i}`, type: 'subscribe', payload: { query: BIG_PAGE, variables: { id: instanceId } } }));
    }

    const operation = await startRestore(server, snapshot.id);
    // The stuck client follows the same progress: its stream is shared with the others, who must not wait for it.
    stuck.socket.send(JSON.stringify({ id: 'p', type: 'subscribe', payload: { query: RESTORE_PROGRESS, variables: { id: operation.id } } }));
    const progress = Array.from({ length: 5 }, () => subscribe<{ restoreProgress: OperationJson }>(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id }));
    await Promise.all(progress.map((p) => p.complete));
    for (const p of progress) assertProgressSequence(payloads(p, 'restoreProgress'), 'SUCCEEDED');
    await Promise.all(others.map((watcher) => watcher.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'AVAILABLE', 30_000)));

    // The server dropped it: its backlog is gone with it.
    await eventually(() => server.logLines().some((line) => line.msg === 'dropped a WebSocket whose client stopped reading'), {
      what: 'the stuck socket to be dropped',
      timeoutMs: 30_000,
    });
    (stuck.socket as unknown as { _socket: { resume(): void } })._socket.resume();
    const closed = await stuck.closed;
    assert.equal(closed.code, 1006);
    const answers = received.filter((message) => message.id?.startsWith('q') && message.type === 'next');
    assert.ok(answers.length < asked, `all ${asked} answers were kept for a client that did not read`);
  });
});
