// Three real server processes on one PostgreSQL database, Redis, one S3 bucket and one shared data dir
// (docs/replicas.md): any replica answers any request, a subscription on one sees an operation run by another, writes
// racing a restore on other replicas are in its safety point or refused, never lost, replicas keep no store another
// one replaced, a tus upload moves between replicas, and kill -9 of the restoring replica leaves another to settle it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  archiveOf,
  createInstance,
  createNodes,
  createTusUpload,
  describeReplicas,
  eventually,
  expectData,
  fillInstance,
  gql,
  graphOf,
  graphOfArchive,
  idle,
  instanceState,
  makeTempDir,
  metricsValue,
  OPERATION_FIELDS,
  type OperationJson,
  patchTusUpload,
  payloads,
  RESTORE_SNAPSHOT,
  type ReplicaSet,
  settledOperation,
  type SnapshotJson,
  SNAPSHOT_FIELDS,
  startReplicas,
  startServer,
  statsOf,
  subscribe,
  takeSnapshot,
  type TestServer,
  untilCaught,
} from '../support';

const LEASE_MS = 6_000;
const OPERATION_PROGRESS = `subscription ($id: ID!) { operationProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const AVAILABILITY = `subscription ($instanceId: ID) { instanceAvailabilityChanged(instanceId: $instanceId) { instanceId availability at } }`;

async function startRestore(server: TestServer, snapshotId: string): Promise<OperationJson> {
  return expectData(await gql(server, RESTORE_SNAPSHOT, { snapshotId, confirm: 'RESTORE' })).restoreSnapshot;
}

async function safetySnapshotOf(server: TestServer, instanceId: string, operationId: string): Promise<SnapshotJson> {
  const query = `query ($id: ID!) { snapshots(instanceId: $id, first: 100, filter: { profile: PRE_RESTORE }) { edges { node { ${SNAPSHOT_FIELDS} } } } }`;
  const { snapshots } = expectData(await gql(server, query, { id: instanceId }));
  const found = snapshots.edges.map((edge: { node: SnapshotJson }) => edge.node).filter((s: SnapshotJson) => s.description?.includes(operationId));
  assert.equal(found.length, 1, `one safety snapshot of ${operationId}: ${JSON.stringify(found)}`);
  return found[0];
}

/** The replica whose runner started the operation (its "operation started" log line). */
function runnerOf(servers: TestServer[], operationId: string): TestServer | undefined {
  return servers.find((server) => server.logLines().some((line) => line.msg === 'operation started' && line.operationId === operationId));
}

/** Files under `dir` that the process holds open: [path, deleted]. */
function openFilesUnder(pid: number, dir: string): { path: string; deleted: boolean }[] {
  const found: { path: string; deleted: boolean }[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target.startsWith(dir)) found.push({ path: target.replace(/ \(deleted\)$/, ''), deleted: target.endsWith(' (deleted)') });
  }
  return found;
}

type WriteOutcome = { tag: string; ok: true } | { tag: string; ok: false; code: string };

/** Writes one tagged node after another through `server` until stopped; every outcome is recorded. */
function writeUntilStopped(server: TestServer, instanceId: string, lane: string): { stop(): Promise<WriteOutcome[]> } {
  let running = true;
  const outcomes: WriteOutcome[] = [];
  const done = (async () => {
    for (let i = 0; running; i++) {
      const tag = `${lane}-${i}`;
      const result = await gql(
        server,
        `mutation ($instanceId: ID!, $nodes: [NodeInput!]!) { createNodes(instanceId: $instanceId, nodes: $nodes) { id } }`,
        { instanceId, nodes: [{ labels: ['Racing'], properties: { tag } }] },
      );
      if (result.errors?.length) {
        outcomes.push({ tag, ok: false, code: String(result.errors[0].extensions?.code) });
        await new Promise((resolve) => setTimeout(resolve, 5));
      } else outcomes.push({ tag, ok: true });
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return outcomes;
    },
  };
}

const tagsOf = (nodes: { properties: Record<string, unknown> }[]) =>
  new Set(nodes.map((node) => node.properties.tag).filter((tag): tag is string => typeof tag === 'string'));

describeReplicas('three replicas on one PostgreSQL, Redis, S3 bucket and data dir', (backends) => {
  let replicas: ReplicaSet;
  let servers: TestServer[];
  before(async function () {
    this.timeout(180_000);
    replicas = await startReplicas(
      { s3: backends.s3(), adminUrl: backends.adminUrl() },
      { env: { SNAPGRAPH_OPERATION_LEASE_MS: String(LEASE_MS) } },
    );
    servers = replicas.servers;
  });

  it('answer any request on any replica: what one writes, the others read', async function () {
    this.timeout(60_000);
    const [a, b, c] = servers;
    const instance = await createInstance(a, { name: 'spread' });
    // Thirty writes spread over the three replicas, five at a time.
    for (let round = 0; round < 6; round++) {
      await Promise.all(servers.flatMap((server, i) => (i < 2 || round % 2 === 0 ? [createNodes(server, instance.id, [{ labels: ['Spread'], properties: { round, i } }])] : [])));
    }
    const counts = await Promise.all(servers.map(async (server) => (await statsOf(server, instance.id)).nodeCount));
    assert.deepEqual(counts, [15, 15, 15]);
    const snapshot = await takeSnapshot(b, instance.id);
    const seen = await Promise.all(
      [a, c].map(async (server) => expectData(await gql(server, `query ($id: ID!) { snapshot(id: $id) { status } }`, { id: snapshot.id })).snapshot.status),
    );
    assert.deepEqual(seen, ['COMPLETED', 'COMPLETED']);
    assert.deepEqual(await graphOf(c, instance.id), await graphOf(a, instance.id));
  });

  it("answer a polled list from their response caches, and show at once what another replica committed", async function () {
    this.timeout(60_000);
    const [a, b, c] = servers;
    const LIST = '{ instances { id name availability } }';
    const names = async (server: TestServer) => expectData(await gql(server, LIST)).instances.map((instance: { name: string }) => instance.name) as string[];
    await createInstance(a, { name: 'polled-1' });
    for (const server of servers) await names(server);
    const hits = (server: TestServer) => metricsValue(server, 'snapgraph_graphql_response_cache_total', 'outcome="hit"');
    const before = await Promise.all(servers.map(hits));
    for (const server of servers) assert.ok((await names(server)).includes('polled-1'));
    const after = await Promise.all(servers.map(hits));
    assert.deepEqual(after.map((value, i) => value - before[i]), [1, 1, 1], 'each replica answered the repeated list from its cache');

    await createInstance(b, { name: 'polled-2' });
    for (const server of [a, c, b]) assert.ok((await names(server)).includes('polled-2'), `${server.url} shows what replica b committed`);
  });

  it('show every replica\'s subscribers an operation another replica runs', async function () {
    this.timeout(90_000);
    const [a, b] = servers;
    const instance = await createInstance(a, { name: 'watched' });
    await createNodes(a, instance.id, [{ labels: ['Before'] }]);
    const snapshot = await takeSnapshot(a, instance.id);
    await createNodes(b, instance.id, [{ labels: ['After'] }]);
    const availability = servers.map((server) => subscribe(server, server.adminKey, AVAILABILITY, { instanceId: instance.id }));
    await Promise.all(availability.map((subscription) => subscription.connected));
    await new Promise((resolve) => setTimeout(resolve, 300)); // the subscriptions start a moment after the connection
    const operation = await startRestore(b, snapshot.id);
    // Subscribed on every replica: at least two of them did not run it.
    const progress = servers.map((server) => subscribe(server, server.adminKey, OPERATION_PROGRESS, { id: operation.id }));
    for (const subscription of progress) {
      await subscription.waitFor((result) => result.data?.operationProgress.status === 'SUCCEEDED', 60_000);
    }
    for (const subscription of availability) {
      await subscription.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'AVAILABLE', 30_000);
      const events = payloads<{ availability: string }>(subscription, 'instanceAvailabilityChanged').map((event) => event.availability);
      assert.deepEqual(events, ['READ_ONLY', 'UNAVAILABLE', 'AVAILABLE']);
    }
    const runner = runnerOf(servers, operation.id);
    assert.ok(runner, 'no replica logged running the restore');
    assert.ok(servers.filter((server) => server !== runner).length === 2);
    for (const server of servers) assert.equal((await statsOf(server, instance.id)).nodeCount, 1);
  });

  describe('restores while the other replicas write', () => {
    let instanceId: string;
    let snapshot: SnapshotJson;
    before(async function () {
      this.timeout(120_000);
      const [a] = servers;
      instanceId = (await createInstance(a, { name: 'raced' })).id;
      // Enough data that the restore's READ_ONLY phase lasts a while.
      await fillInstance(a, instanceId, { nodes: 30_000, relationships: 10_000 });
      snapshot = await takeSnapshot(a, instanceId);
    });

    for (const round of [1, 2]) {
      it(`keeps every write acknowledged during restore ${round}: in the safety point, or refused (never lost)`, async function () {
        this.timeout(180_000);
        const [a, b, c] = servers;
        const lanes = [b, c, a, b].map((server, i) => writeUntilStopped(server, instanceId, `r${round}-w${i}`));
        await new Promise((resolve) => setTimeout(resolve, 300));
        const operation = await startRestore(round === 1 ? a : c, snapshot.id);
        const settled = await settledOperation(a, operation.id, a.adminKey, 150_000);
        assert.equal(settled.status, 'SUCCEEDED', JSON.stringify(settled));
        await new Promise((resolve) => setTimeout(resolve, 300));
        const outcomes = (await Promise.all(lanes.map((lane) => lane.stop()))).flat();

        const acknowledged = outcomes.filter((outcome) => outcome.ok).map((outcome) => outcome.tag);
        const refused = outcomes.filter((outcome): outcome is Extract<WriteOutcome, { ok: false }> => !outcome.ok);
        assert.deepEqual([...new Set(refused.map((outcome) => outcome.code))], ['INSTANCE_UNAVAILABLE'], JSON.stringify(refused.slice(0, 3)));
        assert.ok(refused.length > 0, 'no write was refused: the writes did not race the restore');
        // Each acknowledged write is in the safety snapshot (written before the freeze) or in the restored data
        // (written after the swap); none is lost in between.
        const safety = await safetySnapshotOf(a, instanceId, operation.id);
        assert.equal(safety.status, 'COMPLETED');
        const inSafety = tagsOf(graphOfArchive(await archiveOf(b, safety.id)).nodes as { properties: Record<string, unknown> }[]);
        const inData = tagsOf((await graphOf(c, instanceId)).nodes);
        const lost = acknowledged.filter((tag) => !inSafety.has(tag) && !inData.has(tag));
        assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.length} acknowledged writes were lost`);
        // And no refused write landed anywhere.
        const landed = refused.filter((outcome) => inSafety.has(outcome.tag) || inData.has(outcome.tag));
        assert.deepEqual(landed, []);
        console.log(
          `      restore ${round}: ${acknowledged.length} writes acknowledged (${acknowledged.filter((tag) => inSafety.has(tag)).length} in the safety point), ${refused.length} refused`,
        );

        // No replica keeps a store another one removed: every replica reads the instance, then holds open only the
        // current generation of it, and no deleted file of the data dir.
        for (const server of servers) await statsOf(server, instanceId);
        const storeDir = join(replicas.dataDir, 'instances', instanceId);
        for (const server of servers) {
          await eventually(
            () => {
              const open = openFilesUnder(server.process.pid!, replicas.dataDir);
              const stale = open.filter((file) => file.deleted || (file.path.startsWith(storeDir) && !/graph-\d+\.sqlite/.test(file.path)));
              const generations = new Set(open.filter((file) => file.path.startsWith(storeDir)).map((file) => /graph-(\d+)/.exec(file.path)![1]));
              return stale.length === 0 && generations.size === 1 ? true : undefined;
            },
            { timeoutMs: 10_000, what: `replica ${server.url} to hold only the current store (open: ${JSON.stringify(openFilesUnder(server.process.pid!, replicas.dataDir))})` },
          );
        }
      });
    }
  });

  it('resumes a tus upload on another replica, and tells a third one it is complete', async function () {
    this.timeout(120_000);
    const [a, b, c] = servers;
    const source = await createInstance(a, { name: 'tus source' });
    await createNodes(a, source.id, Array.from({ length: 50 }, (_, i) => ({ labels: ['Uploaded'], properties: { i } })));
    const file = await archiveOf(a, (await takeSnapshot(a, source.id)).id);
    const target = await createInstance(b, { name: 'tus target' });
    const { status, body, location, auth } = await createTusUpload(a, { instanceId: target.id, length: file.length });
    assert.equal(status, 201, body);
    const path = new URL(location!).pathname;
    const half = Math.floor(file.length / 2);
    const first = await patchTusUpload(`${a.url}${path}`, auth, 0, file.subarray(0, half));
    assert.equal(first.status, 204, first.body);
    // Resumed on B: it knows how far the upload got, and takes the rest.
    const head = await fetch(`${b.url}${path}`, { method: 'HEAD', headers: auth });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-offset'), String(half));
    const rest = await patchTusUpload(`${b.url}${path}`, auth, half, file.subarray(half));
    assert.equal(rest.status, 204, rest.body);
    const operationId = rest.operationId;
    assert.ok(operationId, 'no operation id');
    // C and A know it is complete, with the same operation (a client that lost the answer resumes anywhere).
    for (const server of [c, a]) {
      const again = await fetch(`${server.url}${path}`, { method: 'HEAD', headers: auth });
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('upload-offset'), String(file.length));
      assert.equal(again.headers.get('snapgraph-operation-id'), operationId);
    }
    const repeated = await patchTusUpload(`${c.url}${path}`, auth, file.length, Buffer.alloc(0));
    assert.equal(repeated.status, 204);
    assert.equal(repeated.operationId, operationId);
    const operation = await settledOperation(c, operationId);
    assert.equal(operation.status, 'SUCCEEDED', JSON.stringify(operation));
    assert.equal((await statsOf(a, target.id)).nodeCount, 50);
    // B got only the second half: it read the whole file back from the shared upload directory to check it.
    const received = b.logLines().find((line) => line.msg === 'restore upload received' && line.operationId === operationId);
    assert.equal(received?.checked, 'read back', JSON.stringify(received));
    const operations = expectData(await gql(a, `query ($id: ID!) { operations(instanceId: $id, first: 10) { totalCount } }`, { id: target.id }));
    assert.equal(operations.operations.totalCount, 1, 'one restore for one upload');
  });

  it('stores a tus upload that one replica receives whole in the bucket as it checks it, and keeps nothing of it after', async function () {
    this.timeout(120_000);
    const [a] = servers;
    const source = await createInstance(a, { name: 'tus whole source' });
    await createNodes(a, source.id, Array.from({ length: 40 }, (_, i) => ({ labels: ['Whole'], properties: { i } })));
    const file = await archiveOf(a, (await takeSnapshot(a, source.id)).id);
    const target = await createInstance(a, { name: 'tus whole target' });
    const { status, body, location, auth } = await createTusUpload(a, { instanceId: target.id, length: file.length });
    assert.equal(status, 201, body);
    let offset = 0;
    let operationId: string | null = null;
    for (const end of [Math.floor(file.length / 3), file.length]) {
      const patch = await patchTusUpload(location!, auth, offset, file.subarray(offset, end));
      assert.equal(patch.status, 204, patch.body);
      operationId = patch.operationId;
      offset = end;
    }
    assert.ok(operationId, 'no operation id');
    assert.equal((await settledOperation(a, operationId)).status, 'SUCCEEDED');
    assert.equal((await statsOf(a, target.id)).nodeCount, 40);
    const received = a.logLines().find((line) => line.msg === 'restore upload received' && line.operationId === operationId);
    assert.equal(received?.checked, 'as received', JSON.stringify(received));
    await eventually(() => readdirSync(replicas.uploadDir).length === 0, { what: 'the upload directory is empty' });
  });

  it('let go of the store of an instance another replica deleted: no replica keeps its files open', async function () {
    this.timeout(60_000);
    const [a, b, c] = servers;
    const instance = await createInstance(a, { name: 'deleted elsewhere' });
    await fillInstance(a, instance.id, { nodes: 2_000, relationships: 1_000 });
    // Every replica reads it (and ships its change log), so each has its store open.
    for (const server of servers) assert.equal((await statsOf(server, instance.id)).nodeCount, 2_000);
    const storeDir = join(replicas.dataDir, 'instances', instance.id);
    for (const server of servers) {
      assert.ok(openFilesUnder(server.process.pid!, storeDir).length > 0, `replica ${server.url} does not have the store open`);
    }
    expectData(await gql(a, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: instance.id }));
    // Nobody asks the others for it again: they held its deleted files open (disk space and descriptors) until restarted.
    for (const server of [b, c, a]) {
      await eventually(() => (openFilesUnder(server.process.pid!, storeDir).length === 0 ? true : undefined), {
        timeoutMs: 15_000,
        what: `replica ${server.url} to close the deleted store (open: ${JSON.stringify(openFilesUnder(server.process.pid!, storeDir))})`,
      });
    }
  });

  // Last: it kills a replica.
  describe('kill -9', () => {
    it('of the replica running a restore leaves another to settle it within the lease; no instance is stuck', async function () {
      this.timeout(240_000);
      const [a] = servers;
      const instance = await createInstance(a, { name: 'orphaned' });
      await fillInstance(a, instance.id, { nodes: 60_000, relationships: 20_000 });
      const snapshot = await takeSnapshot(a, instance.id);
      // Killed in the middle: once it is building the new store. The restore takes 270-360 ms and swaps 150-250 ms after
      // another replica sees it load (measured): should the kill come after the swap, all once more, the killed replica
      // back first.
      const killedWhileRestoring = async (round: number) => {
        await createNodes(a, instance.id, [{ labels: ['AfterSnapshot'] }]);
        const before = await statsOf(a, instance.id);
        const operation = await startRestore(a, snapshot.id);
        const runner = await eventually(() => runnerOf(servers, operation.id), { timeoutMs: 30_000, what: 'a replica to start the restore' });
        const survivor = servers.find((server) => server !== runner)!;
        const watching = subscribe(survivor, survivor.adminKey, OPERATION_PROGRESS, { id: operation.id });
        await watching
          .waitFor((result) => ['loading', 'pre-restore snapshot', 'capturing'].includes(result.data?.operationProgress.phase ?? '') || (result.data?.operationProgress.bytesDone ?? 0) > 0, 60_000)
          .catch(() => undefined); // ended before it was seen to load: the kill below comes too late, and the run is tried again
        await runner.kill();
        const killedAt = Date.now();

        // Undone (the old data back, AVAILABLE) by another replica once the lease has expired, then run again to the end.
        const recovered = await eventually(
          () => settledOperationOrRunningAgain(survivor, operation.id),
          { timeoutMs: LEASE_MS * 4, intervalMs: 100, what: 'another replica to take the restore over' },
        );
        const undoneSeconds = (Date.now() - killedAt) / 1000;
        const settled = await settledOperation(survivor, operation.id, survivor.adminKey, 120_000);
        const settledSeconds = (Date.now() - killedAt) / 1000;
        if (settled.attempt === 1) await runner.restart(); // the race lost: the replica back for the next round
        return { before, runner, survivor, recovered, undoneSeconds, settled, settledSeconds, round };
      };
      const { before, runner, survivor, recovered, undoneSeconds, settled, settledSeconds, round } = await untilCaught(
        killedWhileRestoring,
        (run) => run.settled.attempt > 1,
      );
      console.log(
        `      kill -9 of the restoring replica: undone by another within ${undoneSeconds.toFixed(1)} s (lease ${LEASE_MS / 1000} s, seen as ${recovered.status} attempt ${recovered.attempt}), ` +
          `${settled.status} at attempt ${settled.attempt} after ${settledSeconds.toFixed(1)} s (round ${round})`,
      );
      assert.ok(undoneSeconds < (LEASE_MS + 4_000) / 1000, `taken over after ${undoneSeconds} s`);
      assert.equal(settled.status, 'SUCCEEDED', JSON.stringify(settled));
      assert.equal(settled.attempt, 2);
      await idle(survivor, instance.id);
      assert.deepEqual(await instanceState(survivor, instance.id), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.equal((await statsOf(survivor, instance.id)).nodeCount, snapshot.contents!.nodeCount);
      assert.equal(before.nodeCount, snapshot.contents!.nodeCount + 1);
      // Writable again from every replica still up.
      for (const server of servers.filter((server) => server !== runner)) await createNodes(server, instance.id, [{ labels: ['AfterKill'] }]);
    });
  });
});

describeReplicas('a replica configured with another master key', (backends) => {
  it('is refused at boot on a deployment that has stored nothing yet, and the others serve on', async function () {
    this.timeout(180_000);
    // A fresh deployment: nothing encrypted is stored yet (no snapshot, no change log), so the stored data cannot tell
    // which key is the deployment's. A replica with a key of its own (a mistyped secret) served beside the others, and
    // the change-log segments and chunk keys each one wrote were unreadable to the others.
    const replicas = await startReplicas({ s3: backends.s3(), adminUrl: backends.adminUrl() }, { count: 1 });
    const [first] = replicas.servers;
    const keyFile = join(replicas.dataDir, 'keys', 'master.key');
    const own = readFileSync(keyFile, 'utf8').trim();
    const other = randomBytes(32).toString('base64');
    await assert.rejects(
      startServer({ dataDir: replicas.dataDir, bootstrapToken: replicas.adminKey, env: { ...first.env, PORT: '0', SNAPGRAPH_MASTER_KEY: other }, bootTimeoutMs: 60_000 }),
      (error: Error) => {
        assert.match(error.message, /SNAPGRAPH_MASTER_KEY holds master key [0-9a-f]{16}, but this deployment's servers write under master key [0-9a-f]{16}/);
        assert.ok(!error.message.includes(other) && !error.message.includes(own), 'a key was printed');
        return true;
      },
    );
    assert.equal(readFileSync(keyFile, 'utf8').trim(), own, 'the key file changed');
    // The deployment's own key, given in the variable rather than the file, is the same key: it boots.
    const second = await startServer({ dataDir: replicas.dataDir, bootstrapToken: replicas.adminKey, env: { ...first.env, PORT: '0', SNAPGRAPH_MASTER_KEY: own }, bootTimeoutMs: 60_000 });
    const instance = await createInstance(first, { name: 'one key' });
    await createNodes(second, instance.id, [{ labels: ['Written'] }]);
    const snapshot = await takeSnapshot(first, instance.id);
    assert.equal(snapshot.contents?.nodeCount, 1);
  });
});

describeReplicas('a replica on a data dir of its own', (backends) => {
  it('is refused at boot (a volume not mounted), and boots once told the dir replaces a lost one', async function () {
    this.timeout(180_000);
    // The master key in the variable, as many deployments give it: the key file cannot tell the data dirs apart then.
    const key = randomBytes(32).toString('base64');
    const replicas = await startReplicas({ s3: backends.s3(), adminUrl: backends.adminUrl() }, { count: 1, env: { SNAPGRAPH_MASTER_KEY: key } });
    const [first] = replicas.servers;
    const instance = await createInstance(first, { name: 'on the shared volume' });
    await createNodes(first, instance.id, [{ labels: ['Kept'] }]);
    // A replica whose shared volume was not mounted: it served, answered INTERNAL_SERVER_ERROR for every instance, and
    // a restore it ran took the store for lost (no safety snapshot) and put the new one in its own dir, where no other
    // replica finds it: the instance then failed on all of them.
    const elsewhere = makeTempDir('snapgraph-not-shared-');
    const env = { ...first.env, PORT: '0', SNAPGRAPH_DATA_DIR: elsewhere, SNAPGRAPH_UPLOAD_DIR: `${elsewhere}-uploads` };
    const boot = () => startServer({ dataDir: elsewhere, bootstrapToken: replicas.adminKey, env, bootTimeoutMs: 60_000 });
    let marker = '';
    await assert.rejects(boot(), (error: Error) => {
      const found = /SNAPGRAPH_DATA_DIR .* is not the data dir this deployment's servers share: .*write ([0-9a-f-]{36}) into (\S+deployment\.id)/.exec(error.message);
      assert.ok(found, error.message);
      assert.equal(found[2], join(elsewhere, 'deployment.id'));
      marker = found[1];
      return true;
    });
    assert.equal(readFileSync(join(replicas.dataDir, 'deployment.id'), 'utf8').trim(), marker);
    assert.deepEqual(readdirSync(elsewhere).filter((name) => name === 'deployment.id'), [], 'the refused boot marked the dir');
    assert.equal((await statsOf(first, instance.id)).nodeCount, 1);
    // An operator who lost the shared volume and mounted an empty one in its place says so, as the refusal told.
    writeFileSync(join(elsewhere, 'deployment.id'), `${marker}\n`);
    const replacement = await boot();
    assert.equal((await instanceState(replacement, instance.id)).status, 'RUNNING');
  });
});

/** The operation once another runner has taken it over: settled, or queued/running again at a later attempt. */
async function settledOperationOrRunningAgain(server: TestServer, id: string): Promise<OperationJson | undefined> {
  const operation = expectData(await gql(server, `query ($id: ID!) { operation(id: $id) { ${OPERATION_FIELDS} } }`, { id })).operation as OperationJson;
  if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(operation.status) || operation.attempt > 1 || operation.status === 'QUEUED') return operation;
  return undefined;
}
