// A server on Redis (REDIS_URL): it lets go of a channel once nobody listens, and while Redis goes away and comes
// back it keeps serving, events flow again after, and an operation that ended meanwhile is still seen to end. Runs its own redis-server (Debian's redis-server package) on a free port, so that stopping it disturbs nothing
// else; skipped with a message when there is none.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import {
  connectWs,
  createInstance,
  createKey,
  createNodes,
  eventually,
  expectData,
  fillInstance,
  gql,
  metricsValue,
  redisUnavailable,
  registerCleanup,
  RESTORE_SNAPSHOT,
  restoreAndWait,
  serverPerSuite,
  settledOperation,
  subscribe,
  type Subscription,
  takeSnapshot,
  within,
} from '../support';

const AVAILABILITY = `subscription ($instanceId: ID) { instanceAvailabilityChanged(instanceId: $instanceId) { availability } }`;
const SNAPSHOTS = `subscription ($instanceId: ID) { snapshotUpdated(instanceId: $instanceId) { id status } }`;
const OPERATION_PROGRESS = `subscription ($id: ID!) { operationProgress(operationId: $id) { status attempt bytesDone } }`;

describe('events over Redis', function () {
  let port = 0;
  let redis: ChildProcess | null = null;
  before(async function () {
    if (spawnSync('redis-server', ['--version']).status !== 0) {
      console.log('      (skipped: no redis-server on PATH; install Debian\'s redis-server package to run it)');
      this.skip();
    }
    port = await freePort();
    redis = await startRedis(port);
  });

  // Booted after the hook above (hooks run in order), on the Redis it started.
  const suite = serverPerSuite(() => ({ env: { REDIS_URL: `redis://127.0.0.1:${port}` } }));

  after(async () => {
    redis?.kill('SIGKILL');
  });

  it('lets go of a channel as soon as its last subscription ends, on a quiet tenant too', async function () {
    this.timeout(30_000);
    const { server } = suite;
    const instance = await createInstance(server, { name: 'quiet' });
    const redisClient = new Redis(`redis://127.0.0.1:${port}`);
    registerCleanup(async () => void redisClient.disconnect());
    const subscribed = async (pattern: string) => ((await redisClient.pubsub('CHANNELS', pattern)) as string[]).length;
    const subscriptions = [
      subscribe(server, server.adminKey, AVAILABILITY, { instanceId: instance.id }),
      subscribe(server, server.adminKey, SNAPSHOTS, { instanceId: instance.id }),
      subscribe(server, server.adminKey, SNAPSHOTS),
    ];
    await eventually(async () => (await subscribed('instance.availability:*')) === 1 && (await subscribed('snapshot.updated:*')) === 1, {
      what: "the server to subscribe to the tenant's channels",
    });
    // The clients leave while the server waits for the next event, which on this tenant does not come.
    for (const subscription of subscriptions) await subscription.close();
    await eventually(async () => (await subscribed('instance.availability:*')) + (await subscribed('snapshot.updated:*')) === 0, {
      timeoutMs: 5_000,
      what: "the server to unsubscribe from the tenant's channels",
    });
  });

  it('keeps serving while Redis is away, and delivers events again once it is back', async function () {
    this.timeout(90_000);
    const { server } = suite;
    const instance = await createInstance(server, { name: 'through-an-outage' });
    await createNodes(server, instance.id, [{ labels: ['Before'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const readOnlySeen = (subscription: Subscription) =>
      subscription.results.filter((result) => result.data?.instanceAvailabilityChanged?.availability === 'READ_ONLY').length;
    /** Restores until each subscription has seen a restore it had not seen yet (events are lost until it is live). */
    const restoresReach = async (what: string, subscriptions: Subscription[]) => {
      const seen = subscriptions.map(readOnlySeen);
      await eventually(
        async () => {
          assert.equal((await restoreAndWait(server, snapshot.id)).status, 'SUCCEEDED');
          await new Promise((resolve) => setTimeout(resolve, 300));
          return subscriptions.every((subscription, i) => readOnlySeen(subscription) > seen[i]);
        },
        { timeoutMs: 30_000, intervalMs: 100, what },
      );
    };
    const before = subscribe(server, server.adminKey, AVAILABILITY, { instanceId: instance.id });
    await restoresReach('the subscription to deliver before the outage', [before]);

    redis!.kill('SIGKILL');
    await once(redis!, 'exit');
    // Work that publishes (operation progress, snapshot and availability events) and a subscription that subscribes,
    // while Redis is away for longer than ioredis retries a command (3 reconnections).
    await takeSnapshot(server, instance.id);
    const during = subscribe(server, server.adminKey, AVAILABILITY, { instanceId: instance.id });
    await eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) === 2, { what: 'the second subscription to start' });
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    assert.equal(server.process.exitCode, null, 'the server is still running');
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    await eventually(() => server.logLines().some((line) => /^Redis (publish|subscribe) failed/.test(String(line.msg))), {
      what: 'the failed Redis commands to be logged',
    });

    // Both see restores again: the one made before (ioredis subscribes again) and the one made while Redis was away
    // (its SUBSCRIBE failed, and is sent again).
    redis = await startRedis(port);
    await restoresReach('both subscriptions to deliver after the outage', [before, during]);
    assert.equal(server.process.exitCode, null);
  });

  it("closes the WebSockets of a key revoked while Redis is away, though the revocation's event is lost", async function () {
    this.timeout(60_000);
    const { server } = suite;
    const viewer = await createKey(server, server.adminKey, 'VIEWER', 'revoked during an outage');
    const kept = await createKey(server, server.adminKey, 'VIEWER', 'kept through an outage');
    const connection = await connectWs(server, viewer.secret);
    const keptConnection = await connectWs(server, kept.secret);
    assert.ok(connection.acknowledged && keptConnection.acknowledged, 'a socket was refused');

    // Away (a Redis started inside an earlier test has gone with its clean-up already).
    if (redis!.exitCode === null && redis!.signalCode === null) {
      redis!.kill('SIGKILL');
      await once(redis!, 'exit');
    }
    expectData(await gql(server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: viewer.id }));
    const closed = await within(connection.closed, 10_000, "the revoked key's socket closing");
    assert.equal(closed.code, 4403);
    assert.equal(keptConnection.socket.readyState, keptConnection.socket.OPEN, "another key's socket was closed");
  });

  it('answers GET /readyz with 503 while Redis is away, saying so, and 200 once it is back', async function () {
    this.timeout(60_000);
    const { server } = suite;
    const readiness = async () => {
      const response = await fetch(`${server.url}/readyz`);
      return { status: response.status, events: ((await response.json()) as { checks: Record<string, { ok: boolean; error?: string }> }).checks.events };
    };
    // Up (an earlier test's outage may have left it away).
    if ((await redisUnavailable(`redis://127.0.0.1:${port}`, 500)) !== null) redis = await startRedis(port);
    await eventually(async () => (await readiness()).status === 200, { what: 'ready on Redis' });
    redis!.kill('SIGKILL');
    await once(redis!, 'exit');
    const away = await eventually(async () => {
      const answer = await readiness();
      return answer.status === 503 && answer;
    }, { what: 'not ready without Redis' });
    assert.equal(away.events.ok, false);
    assert.match(away.events.error ?? '', /Redis/);
    redis = await startRedis(port);
    await eventually(async () => (await readiness()).status === 200, { what: 'ready again once Redis is back' });
  });

  it('completes an operation subscription whose final event was published while Redis was away, once it is back', async function () {
    this.timeout(120_000);
    const { server } = suite;
    // The previous test's redis-server went with that test.
    if ((await redisUnavailable(`redis://127.0.0.1:${port}`, 500)) !== null) redis = await startRedis(port);
    const instance = await createInstance(server, { name: 'ends-during-an-outage' });
    await fillInstance(server, instance.id, { nodes: 40_000, relationships: 0 });
    const snapshot = await takeSnapshot(server, instance.id);
    // The server is subscribed in Redis again (after an earlier test's outage) before the restore starts.
    subscribe(server, server.adminKey, AVAILABILITY, { instanceId: instance.id });
    const redisClient = new Redis(`redis://127.0.0.1:${port}`);
    try {
      await eventually(async () => ((await redisClient.pubsub('CHANNELS', 'instance.availability:*')) as string[]).length > 0, {
        what: 'the server to subscribe in Redis',
      });
    } finally {
      redisClient.disconnect();
    }

    const { restoreSnapshot } = expectData(await gql(server, RESTORE_SNAPSHOT, { snapshotId: snapshot.id, confirm: 'RESTORE' }));
    const progress = subscribe(server, server.adminKey, OPERATION_PROGRESS, { id: restoreSnapshot.id });
    let completed = false;
    void progress.complete.then(() => (completed = true), () => undefined);
    await progress.next(10_000);
    redis!.kill('SIGKILL');
    await once(redis!, 'exit');
    assert.equal(completed, false, 'the restore ended before Redis went away: make the instance larger');
    assert.equal((await settledOperation(server, restoreSnapshot.id)).status, 'SUCCEEDED');
    // Away for longer than ioredis holds a command for the reconnection (3 attempts): the final event is lost.
    await new Promise((resolve) => setTimeout(resolve, 2_000));

    redis = await startRedis(port);
    await within(progress.complete, 15_000, 'the subscription to complete once Redis is back');
    assert.equal(progress.results.at(-1)?.data?.operationProgress.status, 'SUCCEEDED');
  });
});

describe('events over a Redis that asks for a password', function () {
  const password = `redis-password-${Date.now()}`;
  let port = 0;
  before(async function () {
    if (spawnSync('redis-server', ['--version']).status !== 0) {
      console.log('      (skipped: no redis-server on PATH; install Debian\'s redis-server package to run it)');
      this.skip();
    }
    port = await freePort();
    await startRedis(port, password);
  });

  const suite = serverPerSuite(() => ({ env: { REDIS_URL: `redis://:${password}@127.0.0.1:${port}` } }));

  it('never logs the password of REDIS_URL, not even when Redis refuses it', async function () {
    this.timeout(30_000);
    const { server } = suite;
    // The password changes under the server (a rotation, a Redis restarted with another configuration): its connections
    // are cut, and each reconnection's AUTH is refused. ioredis's error names the AUTH command with its arguments.
    const admin = new Redis(`redis://:${password}@127.0.0.1:${port}`);
    registerCleanup(async () => void admin.disconnect());
    await admin.config('SET', 'requirepass', `${password}-rotated`);
    await admin.client('KILL', 'TYPE', 'normal');
    await admin.client('KILL', 'TYPE', 'pubsub');
    await eventually(() => server.logLines().some((line) => /^the (publishing|subscribing) connection to Redis failed/.test(String(line.msg))), {
      what: 'the refused reconnection to be logged',
    });
    assert.ok(!server.logs().includes(password), 'the logs hold the password of REDIS_URL');
  });
});

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as { port: number };
  probe.close();
  await once(probe, 'close');
  return port;
}

/** redis-server in the foreground, without persistence (and with a password, when given), once it answers PING. */
async function startRedis(port: number, password?: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(password ? ['--requirepass', password] : [])];
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  registerCleanup(async () => void child.kill('SIGKILL'));
  // A PING before AUTH is answered NOAUTH: it answers all the same.
  const answers = (why: string | null) => why === null || (password !== undefined && why.includes('-NOAUTH'));
  await eventually(async () => answers(await redisUnavailable(`redis://127.0.0.1:${port}`, 500)), { what: `redis-server on port ${port}` });
  return child;
}
