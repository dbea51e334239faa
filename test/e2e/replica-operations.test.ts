// Operations seen and steered across two replicas on one PostgreSQL database, Redis and data dir: a subscriber on one
// replica follows, and a client on it cancels, an operation the other one runs, also while Redis cannot reach one of
// them. Each replica reaches Redis through a path of its own that the tests can cut.
import assert from 'node:assert/strict';
import {
  assertProgressSequence,
  createInstance,
  createNodes,
  createTestDatabase,
  type CuttableProxy,
  cuttableProxy,
  describePostgres,
  eventually,
  expectData,
  generatedArchive,
  gql,
  idle,
  instanceState,
  listening,
  makeTempDir,
  OPERATION_FIELDS,
  type OperationJson,
  payloads,
  requestSnapshot,
  redisUnavailable,
  settledOperation,
  settledSnapshot,
  startServer,
  statsOf,
  subscribe,
  touchEveryNode,
  type TestDatabase,
  type TestServer,
  TEST_REDIS_URL,
  untilCaught,
  uploadFile,
  within,
} from '../support';

const RESTORE_PROGRESS = `subscription ($id: ID!) { restoreProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const OPERATION_PROGRESS = `subscription ($id: ID!) { operationProgress(operationId: $id) { ${OPERATION_FIELDS} attempt } }`;
const SNAPSHOTS = `subscription ($instanceId: ID) { snapshotUpdated(instanceId: $instanceId) { id status } }`;
const AVAILABILITY = `subscription ($instanceId: ID) { instanceAvailabilityChanged(instanceId: $instanceId) { availability } }`;
const CANCEL = `mutation ($id: ID!) { cancelOperation(id: $id) { ${OPERATION_FIELDS} } }`;

const LEASE_MS = 3_000;

/** The replica whose runner started the operation (its "operation started" log line). */
function runnerOf(servers: TestServer[], operationId: string): TestServer | undefined {
  return servers.find((server) => server.logLines().some((line) => line.msg === 'operation started' && line.operationId === operationId));
}

describePostgres('operations across two replicas', (postgres) => {
  let database: TestDatabase;
  let replicas: TestServer[];
  let redisPaths: CuttableProxy[];
  let instanceId: string;
  let archive: Buffer;

  before(async function () {
    this.timeout(180_000);
    const redisMissing = await redisUnavailable();
    if (redisMissing !== null) {
      console.log(`      (skipped: no Redis at ${TEST_REDIS_URL}: ${redisMissing})`);
      this.skip();
    }
    database = await createTestDatabase(postgres.adminUrl());
    const redisUrl = new URL(TEST_REDIS_URL);
    redisPaths = [
      await cuttableProxy(redisUrl.hostname, Number(redisUrl.port || 6379)),
      await cuttableProxy(redisUrl.hostname, Number(redisUrl.port || 6379)),
    ];
    const dataDir = makeTempDir('snapgraph-e2e-replicas-');
    // The change log ships only when a snapshot asks, in small segments: a snapshot after every node changed then has a
    // long log to ship, and takes long enough to be interrupted.
    const env = (i: number) => ({
      DATABASE_URL: database.url,
      REDIS_URL: `redis://127.0.0.1:${redisPaths[i].port}`,
      SNAPGRAPH_OPERATION_LEASE_MS: String(LEASE_MS),
      // A graceful stop hands running work back at once.
      SNAPGRAPH_SHUTDOWN_GRACE_MS: '0',
      SNAPGRAPH_LOG_SHIP_DELAY_MS: '3600000',
      SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '3600000',
      SNAPGRAPH_LOG_SEGMENT_BYTES: '16384',
    });
    const first = await startServer({ dataDir, env: env(0) });
    const second = await startServer({ dataDir, env: env(1), bootstrapToken: first.adminKey });
    replicas = [first, second];
    // A restore from a file whose records take over a second to load: long enough to be caught in its middle.
    instanceId = (await createInstance(first, { name: 'large', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
    // Loaded from it too (quicker than writing the records through GraphQL): the snapshot test touches every node.
    archive = await generatedArchive({ nodes: 60_000, relationships: 120_000 });
    const loaded = await settledOperation(first, expectData(await uploadFile(first, { instanceId, file: archive })).restoreFromFile.id);
    assert.equal(loaded.status, 'SUCCEEDED', JSON.stringify(loaded));
  });
  after(async () => {
    for (const replica of replicas ?? []) await replica.stop({ keepDataDir: true });
    for (const path of redisPaths ?? []) await path.close();
    await database?.drop();
  });
  afterEach(() => {
    for (const path of redisPaths ?? []) path.mend();
  });

  const startRestore = async (server: TestServer): Promise<OperationJson> =>
    expectData(await uploadFile(server, { instanceId, file: archive })).restoreFromFile;

  it("completes a subscription on one replica whose operation ended on the other while Redis could not take that one's events", async function () {
    this.timeout(180_000);
    const run = await untilCaught(
      async () => {
        const operation = await startRestore(replicas[0]);
        const runner = await eventually(() => runnerOf(replicas, operation.id), { what: 'a replica to start the restore' });
        const observer = replicas.find((server) => server !== runner)!;
        // Redis out of the runner's reach (its connections dropped): its events, the last one too, are lost.
        redisPaths[replicas.indexOf(runner)].cut();
        const progress = subscribe(observer, observer.adminKey, RESTORE_PROGRESS, { id: operation.id });
        const first = (await progress.next(10_000)).data!.restoreProgress as OperationJson;
        const settled = await settledOperation(observer, operation.id);
        // Cut off for longer than ioredis holds a command for its reconnection (3 attempts), then the partition heals.
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        redisPaths[replicas.indexOf(runner)].mend();
        return { first, settled, progress };
      },
      (run) => run.first.status === 'RUNNING',
    );
    assert.equal(run.first.status, 'RUNNING', 'the restore ended before the subscription started: give it more data');
    assert.equal(run.settled.status, 'SUCCEEDED', JSON.stringify(run.settled));
    await within(run.progress.complete, 15_000, 'the subscription to complete');
    assertProgressSequence(payloads<OperationJson>(run.progress, 'restoreProgress'), 'SUCCEEDED');
  });

  /** A restore started on the first replica, caught loading on the replica that runs it, and the other one. */
  async function restoreCaughtLoading(): Promise<{ operation: OperationJson; runner: TestServer; other: TestServer; loading: boolean }> {
    const operation = await startRestore(replicas[0]);
    const runner = await eventually(() => runnerOf(replicas, operation.id), { what: 'a replica to start the restore' });
    const other = replicas.find((server) => server !== runner)!;
    const progress = subscribe(runner, runner.adminKey, RESTORE_PROGRESS, { id: operation.id });
    const loading = await progress
      .waitFor((result) => result.data?.restoreProgress.phase === 'loading' && result.data.restoreProgress.bytesDone > 0, 30_000)
      .then(() => true, () => false);
    await progress.close();
    return { operation, runner, other, loading };
  }

  for (const cutOff of [false, true]) {
    it(`cancels on one replica a restore the other runs${cutOff ? ', Redis out of the runner\'s reach' : ''}: CANCELLED at once, the old data kept`, async function () {
      this.timeout(240_000);
      const run = await untilCaught(
        async (round) => {
          // Each round from data of its own, Redis in reach of both: a round that lost the race let its restore run on
          // (to its end: the archive's data in place of the node kept), with the runner's Redis cut.
          for (const path of redisPaths) path.mend();
          await eventually(async () => (await Promise.all(replicas.map(async (server) => (await fetch(`${server.url}/readyz`)).ok))).every(Boolean) || undefined, {
            timeoutMs: 30_000,
            what: 'both replicas ready, Redis answering',
          });
          await idle(replicas[0], instanceId);
          await createNodes(replicas[0], instanceId, [{ labels: [`${cutOff ? 'KeptCutOff' : 'Kept'}${round}`] }]);
          const before = await statsOf(replicas[0], instanceId);
          const caught = await restoreCaughtLoading();
          if (cutOff) redisPaths[replicas.indexOf(caught.runner)].cut();
          const asked = Date.now();
          const answer = await gql(caught.other, CANCEL, { id: caught.operation.id });
          return { ...caught, before, answer, answeredInMs: Date.now() - asked };
        },
        (run) => run.loading && !run.answer.errors,
      );
      const cancelled = expectData(run.answer, 'the restore ended before the cancel: give it more data').cancelOperation as OperationJson;
      assert.deepEqual([cancelled.status, cancelled.error?.code], ['CANCELLED', 'CANCELLED']);
      // The runner hears the request at once over Redis, or within a lease renewal (a third of the lease) without it.
      assert.ok(run.answeredInMs < 5_000, `cancelOperation answered after ${run.answeredInMs} ms`);
      for (const server of replicas) {
        assert.deepEqual(await instanceState(server, instanceId), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
        assert.deepEqual(await statsOf(server, instanceId), run.before);
      }
    });
  }

  it('delivers events across replicas again once Redis, out of reach of both for a while, answers again', async function () {
    this.timeout(180_000);
    const availability = subscribe(replicas[1], replicas[1].adminKey, AVAILABILITY, { instanceId });
    await listening(availability);
    for (const path of redisPaths) path.cut();
    // Away for longer than ioredis holds a command for its reconnection (3 attempts).
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    for (const path of redisPaths) path.mend();
    await eventually(() => replicas.every((server) => server.logLines().filter((line) => /connection to Redis failed/.test(String(line.msg))).length > 0), {
      what: 'both replicas to see Redis go',
    });
    // Reconnected (ioredis waits up to 2 s between tries), the subscription made before the outage sees a restore that
    // one of them runs, and the other one cancels.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const run = await untilCaught(
      async () => {
        const caught = await restoreCaughtLoading();
        return { ...caught, answer: await gql(caught.other, CANCEL, { id: caught.operation.id }) };
      },
      (run) => run.loading && !run.answer.errors,
    );
    const cancelled = expectData(run.answer, 'the restore ended before the cancel: give it more data').cancelOperation as OperationJson;
    assert.equal(cancelled.status, 'CANCELLED');
    await availability.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'READ_ONLY', 10_000);
    await availability.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'AVAILABLE', 10_000);
  });

  it('runs at once, on the other replica, the restore a replica stopped with SIGTERM hands back', async function () {
    this.timeout(180_000);
    const run = await untilCaught(
      async () => {
        const caught = await restoreCaughtLoading();
        const progress = subscribe(caught.other, caught.other.adminKey, OPERATION_PROGRESS, { id: caught.operation.id });
        await progress.next(10_000);
        // Its log is read before it boots again (a restart starts a new log).
        const stoppedLog = caught.runner.stop({ keepDataDir: true }).then(() => caught.runner.logLines());
        const settled = await settledOperation(caught.other, caught.operation.id);
        const runnerLog = await stoppedLog;
        await caught.runner.restart();
        await within(progress.complete, 15_000, 'the progress subscription to complete');
        return { ...caught, settled, progress, runnerLog };
      },
      (run) => run.loading && run.settled.attempt > 1,
    );
    assert.deepEqual([run.settled.status, run.settled.attempt], ['SUCCEEDED', 2], JSON.stringify(run.settled));
    // Not once the lease had run out: the stopping replica queued it again itself, and the other one claimed it.
    const about = (log: Record<string, unknown>[], msg: string) => log.filter((line) => line.msg === msg && line.operationId === run.operation.id);
    assert.deepEqual(about(run.other.logLines(), 'operation started').map((line) => line.attempt), [2]);
    assert.deepEqual(about(run.other.logLines(), 'recovering an interrupted operation'), []);
    assert.deepEqual(about(run.runnerLog, 'operation handed back to the queue').map((line) => line.attempt), [1]);
    // The subscriber sees the attempts in order and the end. It may not see the QUEUED state between them: the other
    // replica can claim the operation before the stopping one's event about it arrives over Redis, and an event older
    // than one already sent is dropped.
    const states = payloads<OperationJson & { attempt: number }>(run.progress, 'operationProgress');
    const attempts = states.map((state) => state.attempt);
    assert.deepEqual(attempts, [...attempts].sort((a, b) => a - b), JSON.stringify(states.map((s) => [s.status, s.attempt])));
    assert.ok(states.some((state) => state.attempt === 1) && states.every((state) => state.status !== 'QUEUED' || state.attempt === 1));
    assert.deepEqual([states.at(-1)!.status, states.at(-1)!.attempt], ['SUCCEEDED', 2]);
  });

  // Last: it kills a replica.
  it('takes over a snapshot whose replica was killed: a subscriber on the other sees every attempt in order, and the end', async function () {
    this.timeout(240_000);
    const run = await untilCaught(
      async () => {
        await touchEveryNode(replicas[0], instanceId, 60_000, { noteBytes: 256 });
        // Which replica runs the snapshot is known only once it starts: the snapshot's subscribers are on both, and
        // the survivor's are looked at (the runner's die with it).
        const snapshotEventsOn = new Map(replicas.map((server) => [server, subscribe(server, server.adminKey, SNAPSHOTS, { instanceId })]));
        await listening(...snapshotEventsOn.values());
        const requested = await requestSnapshot(replicas[0], instanceId);
        const operationId = (await instanceState(replicas[0], instanceId)).currentOperation!.id;
        const runner = await eventually(() => runnerOf(replicas, operationId), { what: 'a replica to start the snapshot' });
        const survivor = replicas.find((server) => server !== runner)!;
        const progress = subscribe(survivor, survivor.adminKey, OPERATION_PROGRESS, { id: operationId });
        const caught = await progress
          .waitFor((result) => result.data?.operationProgress.phase === 'capturing' && result.data.operationProgress.bytesDone > 0, 30_000)
          .then(() => true, () => false);
        await runner.kill();
        const settled = await settledOperation(survivor, operationId, survivor.adminKey, 120_000);
        await within(progress.complete, 15_000, 'the progress subscription to complete');
        const snapshot = await settledSnapshot(survivor, requested.id);
        await runner.restart();
        return { caught, settled, progress, snapshot, snapshotEvents: snapshotEventsOn.get(survivor)!, requested, survivor };
      },
      (run) => run.caught && run.settled.attempt > 1,
    );
    assert.deepEqual([run.settled.status, run.settled.attempt], ['SUCCEEDED', 2], JSON.stringify(run.settled));
    assert.equal(run.snapshot.status, 'COMPLETED');
    // Attempt by attempt: RUNNING with bytes that never go back, QUEUED once handed back, then the next attempt.
    const states = payloads<OperationJson & { attempt: number }>(run.progress, 'operationProgress');
    for (let i = 1; i < states.length; i++) {
      const [before, after] = [states[i - 1], states[i]];
      const rank = (state: typeof before) => [state.attempt, { RUNNING: 0, QUEUED: 1, SUCCEEDED: 2 }[state.status as string] ?? 3, state.bytesDone];
      const [a, b] = [rank(before), rank(after)];
      const forward = a[0] !== b[0] ? b[0] > a[0] : a[1] !== b[1] ? b[1] > a[1] : b[2] >= a[2];
      assert.ok(forward, `went back at event ${i}: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
    }
    assert.equal(states[0].attempt, 1);
    assert.deepEqual([states.at(-1)!.status, states.at(-1)!.attempt], ['SUCCEEDED', 2]);
    // The snapshot's subscribers on the surviving replica saw it end too, and no attempt left a snapshot behind.
    await run.snapshotEvents.waitFor((result) => result.data?.snapshotUpdated.id === run.requested.id && result.data.snapshotUpdated.status === 'COMPLETED', 10_000);
    const { snapshots } = expectData(await gql(run.survivor, `query ($id: ID!) { snapshots(instanceId: $id, first: 100) { edges { node { id status } } } }`, { id: instanceId }));
    assert.deepEqual(snapshots.edges.filter((edge: { node: { status: string } }) => edge.node.status !== 'COMPLETED'), []);
    assert.deepEqual(await instanceState(run.survivor, instanceId), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
  });
});
