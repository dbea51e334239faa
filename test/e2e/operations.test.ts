// Operations survive restarts and can be cancelled (issue 10): SIGTERM and kill -9 in the middle of snapshots and
// restores, bounded attempts, cancelOperation of QUEUED and RUNNING work, the live first event of a subscription,
// and instance deletions finished after a crash.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { OPERATION_PHASES } from '../../src/jobs/operation-phases';
import {
  archiveOf,
  CLI,
  createInstance,
  createKey,
  createNodes,
  eventually,
  exitOf,
  expectCode,
  expectData,
  fillInstance,
  filesUnder,
  gql,
  instanceState,
  listening,
  logSegmentsOf,
  makeTempDir,
  REPO_ROOT,
  OPERATION_FIELDS,
  type OperationJson,
  operationById,
  payloads,
  requestSnapshot,
  RESTORE_SNAPSHOT,
  serverEnv,
  serverPerSuite,
  settledOperation,
  SNAPSHOT_FIELDS,
  snapshotById,
  type SnapshotJson,
  startServer,
  statsOf,
  storeGenerations,
  subscribe,
  takeSnapshot,
  touchEveryNode,
  tempBlobs,
  type TestServer,
  untilCaught,
  uploadFile,
} from '../support';

const OPERATION_PROGRESS = `subscription ($id: ID!) { operationProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const RESTORE_PROGRESS = `subscription ($id: ID!) { restoreProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const CANCEL = `mutation ($id: ID!) { cancelOperation(id: $id) { ${OPERATION_FIELDS} } }`;
const AVAILABILITY = `subscription ($instanceId: ID) { instanceAvailabilityChanged(instanceId: $instanceId) { availability } }`;
const SNAPSHOT_UPDATES = `subscription ($instanceId: ID) { snapshotUpdated(instanceId: $instanceId) { status description removed } }`;
type SnapshotUpdate = { data?: { snapshotUpdated: { status: string; description: string | null; removed: boolean } } | null };

type Progress = { data?: { operationProgress?: OperationJson; restoreProgress?: OperationJson } | null };
const stateOf = (result: Progress) => result.data?.operationProgress ?? result.data?.restoreProgress;
/** A result showing the operation at work: RUNNING in `phase` with some bytes done. */
const workingIn = (phase: string) => (result: Progress) => {
  const state = stateOf(result);
  return state?.status === 'RUNNING' && state.phase === phase && state.bytesDone > 0;
};

/** What an instance holds: its stats without the store file's size, which moves when its change log is shipped and trimmed. */
async function contentsOf(server: TestServer, instanceId: string): Promise<Omit<Awaited<ReturnType<typeof statsOf>>, 'storeSizeBytes'>> {
  const { storeSizeBytes: _size, ...contents } = await statsOf(server, instanceId);
  return contents;
}

const countsOf = (stats: { nodeCount: number; relationshipCount: number }) => ({ nodes: stats.nodeCount, relationships: stats.relationshipCount });

async function startRestore(server: TestServer, snapshotId: string, instanceId: string): Promise<OperationJson> {
  return expectData(await gql(server, RESTORE_SNAPSHOT, { snapshotId, confirm: 'RESTORE', instanceId })).restoreSnapshot;
}

async function snapshotsOf(server: TestServer, instanceId: string, profile: string): Promise<SnapshotJson[]> {
  const query = `query ($id: ID!, $filter: SnapshotFilter) { snapshots(instanceId: $id, first: 100, filter: $filter) { edges { node { ${SNAPSHOT_FIELDS} } } } }`;
  return expectData(await gql(server, query, { id: instanceId, filter: { profile } })).snapshots.edges.map((edge: { node: SnapshotJson }) => edge.node);
}

/** Polls until the operation runs its `attempt`-th attempt. */
function runningAttempt(server: TestServer, id: string, attempt: number): Promise<OperationJson> {
  return eventually(
    async () => {
      const operation = await operationById(server, id);
      return operation?.status === 'RUNNING' && operation.attempt === attempt ? operation : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 10, what: `operation ${id} to run attempt ${attempt}` },
  );
}

/**
 * The large instance: LARGE_NODES nodes and twice as many relationships. Its archive's restore loads for 0.7-1.4 s here
 * (6-9 progress events), time enough to be seen loading and then stopped, cancelled or queued behind, for a third less
 * CPU than the 60,000 nodes it had; a test that relies on it says "make the instance larger" when it ended first.
 */
const LARGE_NODES = 40_000;

describe('operations across restarts, cancellation and live progress', function () {
  // A 1 s lease, no shutdown grace (a SIGTERM hands running work back at once), and one operation at a time, so
  // that a second one waits QUEUED. The change log ships only when a snapshot asks, in small segments: a snapshot
  // after lengthenChangeLog then has a long log to ship, and takes long enough to be interrupted.
  const suite = serverPerSuite({
    env: {
      SNAPGRAPH_OPERATION_LEASE_MS: '1000',
      SNAPGRAPH_SHUTDOWN_GRACE_MS: '0',
      SNAPGRAPH_MAX_CONCURRENT_OPERATIONS: '1',
      SNAPGRAPH_LOG_SHIP_DELAY_MS: '3600000',
      SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '3600000',
      SNAPGRAPH_LOG_SEGMENT_BYTES: '16384',
    },
  });
  let large: string;
  let snapshot: SnapshotJson;

  before(async function () {
    this.timeout(180_000);
    large = (await createInstance(suite.server, { name: 'large', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
    await fillInstance(suite.server, large, { nodes: LARGE_NODES, relationships: 2 * LARGE_NODES });
    snapshot = await takeSnapshot(suite.server, large);
  });

  /**
   * Changes 15,000 of the large instance's nodes, each with an incompressible note of 1 KiB: 15 MB of change log
   * that the next snapshot (or safety snapshot) ships, in 3-4 s here. Bytes, not rows, make the shipping long: the
   * 60,000 notes of 256 bytes this wrote before took as long to ship and twice the CPU to write.
   */
  const lengthenChangeLog = (server: TestServer) => touchEveryNode(server, large, 15_000, { noteBytes: 1024 });

  let largeArchive: Buffer | undefined;
  /**
   * A restore of the large instance from its snapshot's archive, uploaded: what the tests use that stop, cancel or queue
   * behind a restore in its middle. The snapshot's own base loads in 100-200 ms, and CI once saw such a restore end
   * between a subscriber's sight of its load and the SIGTERM that followed; the archive's records take over a second.
   */
  async function startArchiveRestore(server: TestServer): Promise<OperationJson> {
    largeArchive ??= await archiveOf(server, snapshot.id);
    return expectData(await uploadFile(server, { instanceId: large, file: largeArchive })).restoreFromFile;
  }

  describe('a graceful stop (SIGTERM) hands running work back, and the next boot finishes it', () => {
    it('a snapshot: PENDING again on the way, COMPLETED on attempt 2', async function () {
      this.timeout(60_000);
      const server = suite.server;
      // A snapshot ships the log since the last one: a long one, so that it takes a while (progress is paced: an
      // operation of a few hundred milliseconds may show only its first and last states).
      await lengthenChangeLog(server);
      const requested = await requestSnapshot(server, large);
      const operationId = (await instanceState(server, large)).currentOperation!.id;
      await subscribe(server, server.adminKey, OPERATION_PROGRESS, { id: operationId }).waitFor(workingIn('capturing'), 10_000);
      await server.restart();

      const operation = await settledOperation(server, operationId);
      assert.deepEqual([operation.status, operation.attempt], ['SUCCEEDED', 2], 'the snapshot finished before the SIGTERM: make the instance larger');
      const done = (await snapshotById(server, requested.id))!;
      assert.equal(done.status, 'COMPLETED');
      assert.deepEqual(countsOf(done.contents!), countsOf(snapshot.contents!));
      assert.ok((await archiveOf(server, done.id)).length > 0, 'the snapshot has no data');
      assert.deepEqual(tempBlobs(server.dataDir), []);
    });

    it('a restore: the old data in place meanwhile, restored on attempt 2 with one safety snapshot', async function () {
      this.timeout(60_000);
      const server = suite.server;
      await createNodes(server, large, [{ labels: ['AfterTheSnapshot'] }]);
      const before = await contentsOf(server, large);
      const operation = await startArchiveRestore(server);
      await subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id }).waitFor(workingIn('loading'), 10_000);
      await server.restart();

      const after = await settledOperation(server, operation.id);
      assert.deepEqual([after.status, after.attempt], ['SUCCEEDED', 2], JSON.stringify(after));
      assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(countsOf(await statsOf(server, large)), countsOf(snapshot.contents!));
      const safeties = (await snapshotsOf(server, large, 'PRE_RESTORE')).filter((s) => s.description?.includes(operation.id));
      assert.deepEqual(safeties.map((s) => [s.status, s.contents?.nodeCount]), [['COMPLETED', before.nodeCount]]);
      // The replaced generation is removed right after the swap's commit, which clients already see as SUCCEEDED.
      await eventually(() => storeGenerations(server.dataDir, large).length === 1, { what: 'one store generation' });
    });

    it('an operation interrupted on each of its 3 attempts is FAILED with INTERRUPTED, nothing changed', async function () {
      this.timeout(120_000);
      const server = suite.server;
      await createNodes(server, large, [{ labels: ['Marker'] }]);
      const before = await contentsOf(server, large);
      const operation = await startArchiveRestore(server);
      for (let attempt = 1; attempt <= 3; attempt++) {
        await runningAttempt(server, operation.id, attempt);
        await server.restart();
      }
      const failed = await settledOperation(server, operation.id);
      assert.deepEqual([failed.status, failed.error?.code, failed.attempt], ['FAILED', 'INTERRUPTED', 3], JSON.stringify(failed));
      assert.match(failed.error!.message, /3 attempts/);
      assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(await contentsOf(server, large), before);
      assert.deepEqual((await snapshotsOf(server, large, 'PRE_RESTORE')).filter((s) => s.description?.includes(operation.id)), []);
      assert.equal(storeGenerations(server.dataDir, large).length, 1);
    });
  });

  describe('a crash (kill -9) puts running work back at the next boot', () => {
    it('a restore on its last attempt: FAILED with INTERRUPTED, the instance AVAILABLE and writable on its old data, nothing left behind', async function () {
      this.timeout(120_000);
      const server = suite.server;
      await createNodes(server, large, [{ labels: ['BeforeTheCrash'] }]);
      const before = await contentsOf(server, large);
      const uploadsBefore = uploadedFiles(server);
      const operation = await startArchiveRestore(server);
      await subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id }).waitFor(workingIn('loading'), 10_000);
      await server.kill();
      // One attempt allowed: the boot that finds the restore interrupted ends it rather than run it again.
      await server.restart({ env: { SNAPGRAPH_MAX_ATTEMPTS: '1' } });
      try {
        const failed = await settledOperation(server, operation.id);
        assert.deepEqual([failed.status, failed.error?.code, failed.attempt], ['FAILED', 'INTERRUPTED', 1], JSON.stringify(failed));
        assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
        assert.deepEqual(await contentsOf(server, large), before);
        assert.deepEqual((await snapshotsOf(server, large, 'PRE_RESTORE')).filter((s) => s.description?.includes(operation.id)), []);
        assert.equal(storeGenerations(server.dataDir, large).length, 1);
        assert.deepEqual(uploadedFiles(server), uploadsBefore, 'the uploaded file of a restore that ended is kept');
        assert.deepEqual(tempBlobs(server.dataDir), []);
        // The write fence of the interrupted restore is lifted: the instance takes writes.
        await createNodes(server, large, [{ labels: ['AfterTheCrash'] }]);
      } finally {
        await server.restart({ env: { SNAPGRAPH_MAX_ATTEMPTS: '3' } });
      }
    });
  });

  describe('cancelOperation', () => {
    let small: string;
    let smallSnapshot: SnapshotJson;

    before(async function () {
      this.timeout(60_000);
      small = (await createInstance(suite.server, { name: 'small', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      await createNodes(suite.server, small, [{ labels: ['Small'] }]);
      smallSnapshot = await takeSnapshot(suite.server, small);
      await createNodes(suite.server, small, [{ labels: ['NewerThanTheSnapshot'] }]);
    });

    it('cancels QUEUED work at once: a snapshot ends FAILED with the reason, a restore changes nothing', async function () {
      this.timeout(60_000);
      const server = suite.server;
      // The one operation slot is busy with a restore of the large instance; what follows waits QUEUED.
      const busy = await startArchiveRestore(server);
      await runningAttempt(server, busy.id, 1);
      const smallBefore = await statsOf(server, small);

      const queuedSnapshot = await requestSnapshot(server, small);
      const snapshotOperation = (await instanceState(server, small)).currentOperation!;
      assert.equal(snapshotOperation.status, 'QUEUED');
      const cancelled = expectData(await gql(server, CANCEL, { id: snapshotOperation.id })).cancelOperation;
      assert.deepEqual([cancelled.status, cancelled.error?.code, cancelled.attempt], ['CANCELLED', 'CANCELLED', 0]);
      const failedSnapshot = (await snapshotById(server, queuedSnapshot.id))!;
      assert.equal(failedSnapshot.status, 'FAILED');
      assert.match(failedSnapshot.error ?? '', /cancel/);

      const queuedRestore = await startRestore(server, smallSnapshot.id, small);
      assert.equal(queuedRestore.status, 'QUEUED');
      const cancelledRestore = expectData(await gql(server, CANCEL, { id: queuedRestore.id })).cancelOperation;
      assert.equal(cancelledRestore.status, 'CANCELLED');
      assert.deepEqual(await instanceState(server, small), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(await statsOf(server, small), smallBefore);
      assert.deepEqual(await snapshotsOf(server, small, 'PRE_RESTORE'), []);

      assert.equal((await settledOperation(server, busy.id)).status, 'SUCCEEDED', 'the other operation was disturbed');
    });

    it('fails a queued restore whose uploaded file went missing, and the server lives on', async function () {
      this.timeout(120_000);
      const server = suite.server;
      const archive = await archiveOf(server, smallSnapshot.id);
      // The one operation slot is busy with a restore of the large instance; the upload's restore waits QUEUED. Should
      // the large restore end before the upload is removed, once more.
      const { queued, settled, smallBefore } = await untilCaught(
        async () => {
          const smallBefore = await statsOf(server, small);
          const busy = await startArchiveRestore(server);
          await runningAttempt(server, busy.id, 1);
          const uploadsBefore = uploadedFiles(server);
          const upload = expectData(await uploadFile(server, { instanceId: small, file: archive })).restoreFromFile;
          const stored = uploadedFiles(server).filter((path) => !uploadsBefore.includes(path));
          assert.equal(stored.length, 1, `the upload stored once: ${stored.join(', ')}`);
          const queued = (await operationById(server, upload.id))?.status === 'QUEUED';
          // The stored upload vanishes before the restore reads it (a volume lost, an operator's clean-up).
          if (queued) rmSync(stored[0]);
          const settled = await settledOperation(server, upload.id);
          assert.equal((await settledOperation(server, busy.id)).status, 'SUCCEEDED');
          return { queued, settled, smallBefore };
        },
        (run) => run.queued,
      );
      assert.ok(queued, 'the large restore ended before the upload was queued, three times: make the instance larger');
      assert.deepEqual([settled.status, settled.error?.code, settled.error?.message], ['FAILED', 'INVALID_BACKUP_FILE', 'the uploaded file is gone']);
      assert.equal(server.process.exitCode, null, 'the server is still running');
      assert.deepEqual(await instanceState(server, small), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(await statsOf(server, small), smallBefore);
    });

    it('cancels a RUNNING snapshot: CANCELLED, the snapshot FAILED without a blob, the instance free', async function () {
      this.timeout(60_000);
      const server = suite.server;
      // A snapshot ships the log since the last one: a long one, so that it takes a while (progress is paced: an
      // operation of a few hundred milliseconds may show only its first and last states).
      await lengthenChangeLog(server);
      const requested = await requestSnapshot(server, large);
      const operationId = (await instanceState(server, large)).currentOperation!.id;
      const progress = subscribe(server, server.adminKey, OPERATION_PROGRESS, { id: operationId });
      await progress.waitFor(workingIn('capturing'), 10_000);
      const member = await createKey(server, server.adminKey, 'MEMBER');
      const cancelled = expectData(
        await gql(server, CANCEL, { id: operationId }, member.secret),
        'the snapshot may have finished before the cancel: give the instance more data',
      ).cancelOperation;
      assert.deepEqual([cancelled.status, cancelled.error?.code], ['CANCELLED', 'CANCELLED']);
      await progress.complete;
      assert.equal(payloads<OperationJson>(progress, 'operationProgress').at(-1)!.status, 'CANCELLED');
      const failed = (await snapshotById(server, requested.id))!;
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.error ?? '', /cancel/);
      assert.equal(failed.addedBytes ?? null, null, 'a cancelled snapshot stored data');
      assert.deepEqual(tempBlobs(server.dataDir), []);
      assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
    });

    it('cancels a RUNNING restore before its swap: the instance AVAILABLE on its old data, nothing left behind; ADMIN only', async function () {
      this.timeout(60_000);
      const server = suite.server;
      await createNodes(server, large, [{ labels: ['KeepMe'] }]);
      const before = await contentsOf(server, large);
      const availability = subscribe(server, server.adminKey, AVAILABILITY, { instanceId: large });
      await listening(availability);
      const operation = await startArchiveRestore(server);
      await subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id }).waitFor(workingIn('loading'), 10_000);

      const member = await createKey(server, server.adminKey, 'MEMBER');
      expectCode(await gql(server, CANCEL, { id: operation.id }, member.secret), 'FORBIDDEN');
      const cancelled = expectData(await gql(server, CANCEL, { id: operation.id })).cancelOperation;
      assert.deepEqual([cancelled.status, cancelled.error?.code], ['CANCELLED', 'CANCELLED']);

      assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(await contentsOf(server, large), before);
      await availability.waitFor((result) => result.data?.instanceAvailabilityChanged.availability === 'AVAILABLE', 5_000);
      assert.deepEqual(payloads<{ availability: string }>(availability, 'instanceAvailabilityChanged').map((e) => e.availability), ['READ_ONLY', 'AVAILABLE']);
      assert.deepEqual((await snapshotsOf(server, large, 'PRE_RESTORE')).filter((s) => s.description?.includes(operation.id)), []);
      assert.equal(storeGenerations(server.dataDir, large).length, 1);
      // The restore's safety snapshot shipped a long log, after which the base policy takes a base in the background:
      // its blob writes in progress are not the restore's.
      await eventually(() => tempBlobs(server.dataDir).length === 0, { timeoutMs: 30_000, what: 'no blob write in progress' });
      // And the instance takes writes and restores as before.
      await createNodes(server, large, [{ labels: ['AfterCancel'] }]);
    });

    it('cancels a RUNNING creation from a snapshot: CANCELLED, the new instance FAILED with no store, the source untouched', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const before = await contentsOf(server, large);
      const member = await createKey(server, server.adminKey, 'MEMBER');
      // Writing a snapshot's base back takes about a second: should the creation end before the cancel, once more.
      const { created, progress, answer } = await untilCaught(
        async (round) => {
          const { createInstanceFromSnapshot: created } = expectData(
            await gql(
              server,
              `mutation ($snapshotId: ID!, $input: CreateInstanceInput!) { createInstanceFromSnapshot(snapshotId: $snapshotId, input: $input) { id currentOperation { id } } }`,
              { snapshotId: snapshot.id, input: { name: `created then cancelled ${round}`, tier: 'PROFESSIONAL', memoryGB: 4 } },
              member.secret,
            ),
          );
          const operationId = created.currentOperation.id as string;
          const progress = subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operationId });
          await progress.waitFor(workingIn('loading'), 20_000);
          const answer = await gql(server, CANCEL, { id: operationId }, member.secret);
          if (answer.errors) expectData(await gql(server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: created.id }));
          return { created, progress, answer };
        },
        (run) => !run.answer.errors,
      );
      const cancelled = expectData(answer, 'the creation finished before the cancel, three times: give the snapshot more data').cancelOperation;
      assert.deepEqual([cancelled.status, cancelled.error?.code], ['CANCELLED', 'CANCELLED']);
      await progress.complete;
      assert.equal(payloads<OperationJson>(progress, 'restoreProgress').at(-1)!.status, 'CANCELLED');
      const state = await instanceState(server, created.id);
      assert.deepEqual([state.status, state.availability, state.currentOperation], ['FAILED', 'UNAVAILABLE', null]);
      assert.deepEqual(storeGenerations(server.dataDir, created.id), []);
      assert.deepEqual(await contentsOf(server, large), before);
      expectData(await gql(server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: created.id }));
      assert.deepEqual(filesUnder(join(server.dataDir, 'instances', created.id)), []);
    });

    // The safety snapshot is COMPLETED (listed, restorable) while the restore still loads. Its removal by the cancelled
    // restore took it from under the creation queued from it, which then FAILED with NOT_FOUND.
    it('keeps a cancelled restore\'s safety snapshot that an operation queued meanwhile reads: that operation succeeds', async function () {
      this.timeout(90_000);
      const server = suite.server;
      await createNodes(server, large, [{ labels: ['InTheSafetySnapshot'] }]);
      const before = await contentsOf(server, large);
      const operation = await startArchiveRestore(server);
      const safety = await eventually(
        async () => (await snapshotsOf(server, large, 'PRE_RESTORE')).find((s) => s.description?.includes(operation.id) && s.status === 'COMPLETED'),
        { timeoutMs: 20_000, intervalMs: 20, what: 'the restore\'s safety snapshot to complete' },
      );
      assert.equal((await operationById(server, operation.id))?.status, 'RUNNING', 'the restore ended before its safety snapshot was seen: make the instance larger');
      // The one operation slot is the restore's: the creation waits QUEUED.
      const { createInstanceFromSnapshot: copy } = expectData(
        await gql(
          server,
          `mutation ($snapshotId: ID!, $input: CreateInstanceInput!) { createInstanceFromSnapshot(snapshotId: $snapshotId, input: $input) { id currentOperation { id } } }`,
          { snapshotId: safety.id, input: { name: 'from the safety snapshot', tier: 'PROFESSIONAL', memoryGB: 4 } },
        ),
      );
      const cancelled = expectData(await gql(server, CANCEL, { id: operation.id })).cancelOperation;
      assert.equal(cancelled.status, 'CANCELLED');
      assert.deepEqual(await contentsOf(server, large), before);

      const creation = await settledOperation(server, copy.currentOperation.id);
      assert.deepEqual([creation.status, creation.error], ['SUCCEEDED', null], JSON.stringify(creation));
      assert.deepEqual(countsOf(await statsOf(server, copy.id)), countsOf(before));
      assert.equal((await snapshotById(server, safety.id))?.status, 'COMPLETED', 'the snapshot the creation read is gone');
    });

    /**
     * `snapgraph restore-file` of the large snapshot's archive, interrupted once the server is loading it: by `interrupt`,
     * SIGINT unless told otherwise.
     */
    async function restoreFileInterrupted(
      extraArgs: string[],
      interrupt = async (child: ChildProcess, _operationId: string) => void child.kill('SIGINT'),
    ): Promise<{ code: number | null; stderr: string; operationId: string }> {
      const server = suite.server;
      const file = join(makeTempDir(), 'large.backup');
      writeFileSync(file, await archiveOf(server, snapshot.id));
      const env = serverEnv({ SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: server.adminKey, XDG_STATE_HOME: makeTempDir() });
      const child = spawn(process.execPath, [CLI, 'restore-file', large, file, '--confirm', 'RESTORE', ...extraArgs], {
        env,
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const exited = exitOf(child);
      await eventually(() => /^restore: RUNNING \(loading\)/m.test(stderr), { timeoutMs: 30_000, what: `the restore to load:\n${stderr}` });
      await interrupt(child, /operation ([0-9a-f-]{36})/.exec(stderr)?.[1] ?? '');
      const { code } = await exited;
      const operationId = /operation ([0-9a-f-]{36})/.exec(stderr)?.[1] ?? '';
      return { code, stderr, operationId };
    }

    it('snapgraph restore-file --cancel-on-interrupt: Ctrl-C while the server restores cancels it; the instance keeps its data', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const before = await contentsOf(server, large);
      const run = await restoreFileInterrupted(['--cancel-on-interrupt']);
      assert.equal(run.code, 130, run.stderr);
      assert.match(run.stderr, /restore CANCELLED \(operation [0-9a-f-]{36}\): the instance keeps its data/);
      assert.equal((await operationById(server, run.operationId))?.status, 'CANCELLED');
      assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(await contentsOf(server, large), before);
    });

    it('snapgraph restore-file without a terminal: Ctrl-C leaves the restore running and says how to cancel it', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const run = await restoreFileInterrupted([]);
      assert.equal(run.code, 130, run.stderr);
      assert.match(run.stderr, /the restore continues on the server as operation [0-9a-f-]{36}; cancelOperation/);
      assert.doesNotMatch(run.stderr, /waiting for the server to answer/, 'the upload was answered long before');
      assert.equal((await settledOperation(server, run.operationId)).status, 'SUCCEEDED');
      assert.deepEqual(countsOf(await statsOf(server, large)), countsOf(snapshot.contents!));
    });

    // It said "restore FAILED (operation …): CANCELLED: …" for a restore that had not failed.
    it('snapgraph restore-file says CANCELLED (exit 1) when someone else cancels the restore it follows', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const before = await contentsOf(server, large);
      const run = await restoreFileInterrupted([], async (_child, operationId) => {
        expectData(await gql(server, CANCEL, { id: operationId }));
      });
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, new RegExp(`restore CANCELLED \\(operation ${run.operationId}\\): the instance keeps its data`));
      assert.doesNotMatch(run.stderr, /FAILED/);
      assert.deepEqual(await contentsOf(server, large), before);
    });

    it('answers CONFLICT for an operation that has ended, and a CANCELLED one as it is', async () => {
      const server = suite.server;
      const { operations } = expectData(
        await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 50) { edges { node { id status } } } }`, { id: large }),
      );
      const nodes: { id: string; status: string }[] = operations.edges.map((edge: { node: { id: string; status: string } }) => edge.node);
      const succeeded = nodes.find((node) => node.status === 'SUCCEEDED')!;
      const cancelled = nodes.find((node) => node.status === 'CANCELLED')!;
      assert.match(expectCode(await gql(server, CANCEL, { id: succeeded.id }), 'CONFLICT').message, /already ended/);
      assert.equal(expectData(await gql(server, CANCEL, { id: cancelled.id })).cancelOperation.status, 'CANCELLED');
      expectCode(await gql(server, CANCEL, { id: '00000000-0000-4000-8000-000000000000' }), 'NOT_FOUND');
    });
  });

  describe('restoreProgress', () => {
    /**
     * A restore of the large snapshot's archive, uploaded, followed by a subscription until it is well into the load,
     * where the row (persisted at most once a second) lags the live state; `published`: the last state it was sent.
     */
    async function restoreWellIntoItsLoad(server: TestServer) {
      const operation = await startArchiveRestore(server);
      const progress = subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id });
      await progress.waitFor((result) => (stateOf(result)?.progress ?? 0) > 0.2 && stateOf(result)?.phase === 'loading', 20_000);
      return { operation, progress, published: payloads<OperationJson>(progress, 'restoreProgress').at(-1)! };
    }

    it('gives a late subscriber the live state first, and every phase it goes through is a documented one', async function () {
      this.timeout(60_000);
      const server = suite.server;
      const { operation, progress: early, published: seenBefore } = await restoreWellIntoItsLoad(server);
      const late = subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id });
      const first = stateOf(await late.next(5_000))!;
      await Promise.all([early.complete, late.complete]);

      assert.equal(first.status, 'RUNNING');
      assert.ok(first.bytesDone >= seenBefore.bytesDone, `the late subscriber started at ${first.bytesDone} bytes, behind the ${seenBefore.bytesDone} already published`);
      const published = payloads<OperationJson>(early, 'restoreProgress').map((state) => state.bytesDone);
      assert.ok(published.includes(first.bytesDone) || first.bytesDone > seenBefore.bytesDone, 'the first event is no state the runner published');

      // Every phase the runner entered, from its log, in the documented order, "preparing" included.
      const ofThisRestore = (line: Record<string, unknown>) => line.operationId === operation.id;
      await eventually(() => server.logLines().some((line) => ofThisRestore(line) && line.msg === 'operation finished'), {
        what: 'the log line of the finished restore',
      });
      const phases = server
        .logLines()
        .filter((line) => ofThisRestore(line) && line.msg === 'operation phase')
        .map((line) => String(line.phase));
      for (const phase of phases) assert.ok((OPERATION_PHASES as readonly string[]).includes(phase), `undocumented phase ${phase}`);
      // An archive's restore also captures its new base (a snapshot's restore has it already).
      assert.deepEqual(phases, ['preparing', 'loading', 'verifying', 'capturing', 'pre-restore snapshot', 'swapping']);
      assert.equal(stateOf(late.results.at(-1)!)!.phase, 'done');
    });

    it('answers the operation query with the live state on the replica that runs it, not the row persisted up to a second ago', async function () {
      this.timeout(60_000);
      const server = suite.server;
      const { operation, progress, published } = await restoreWellIntoItsLoad(server);
      const { operation: queried } = expectData(
        await gql(server, `query ($id: ID!) { operation(id: $id) { status phase bytesDone } }`, { id: operation.id }),
      );
      await progress.complete;
      assert.equal(queried.status, 'RUNNING');
      assert.ok(queried.bytesDone >= published.bytesDone, `the query answered ${queried.bytesDone} bytes, behind the ${published.bytesDone} already published`);
    });

    // A restore that failed while its safety snapshot was still being taken waited for that snapshot to complete,
    // READ_ONLY all the while, only to remove it.
    it('stops its safety snapshot when it fails before the swap: the instance is AVAILABLE again without waiting for it', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const tenant = expectData(await gql(server, `{ viewer { tenantId } }`)).viewer.tenantId as string;
      // A snapshot of one node whose change log is damaged: its restore fails as soon as it reads it.
      const damaged = (await createInstance(server, { name: 'damaged', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      await createNodes(server, damaged, [{ labels: ['Damaged'] }]);
      const damagedSnapshot = await takeSnapshot(server, damaged);
      const segments = logSegmentsOf(server.dataDir, tenant, damaged);
      assert.ok(segments.length > 0, 'the snapshot has no log segment to damage');
      for (const path of segments) {
        const bytes = readFileSync(path);
        bytes[Math.floor(bytes.length / 2)] ^= 0x20;
        writeFileSync(path, bytes);
      }
      // The safety snapshot ships the log since the last snapshot: a long one.
      await lengthenChangeLog(server);
      const before = await contentsOf(server, large);
      const updates = subscribe(server, server.adminKey, SNAPSHOT_UPDATES, { instanceId: large });
      await listening(updates);
      const operation = await startRestore(server, damagedSnapshot.id, large);
      const failed = await settledOperation(server, operation.id);
      assert.deepEqual([failed.status, failed.error?.code], ['FAILED', 'INVALID_BACKUP_FILE'], JSON.stringify(failed));
      const ofSafety = (result: SnapshotUpdate) => result.data?.snapshotUpdated.description?.includes(operation.id) ?? false;
      await updates.waitFor((result) => ofSafety(result) && result.data!.snapshotUpdated.removed, 30_000);
      const statuses = updates.results.filter(ofSafety).map((result) => result.data!.snapshotUpdated.status);
      assert.ok(statuses.includes('IN_PROGRESS'), `the safety snapshot never started: ${statuses.join(', ')}`);
      assert.ok(!statuses.includes('COMPLETED'), `the failed restore waited for its safety snapshot to complete: ${statuses.join(', ')}`);
      assert.deepEqual(await instanceState(server, large), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(await contentsOf(server, large), before);
      assert.equal(storeGenerations(server.dataDir, large).length, 1);
    });

    // The restore waited for its safety snapshot before it said so: in the phase of its load ("verifying") until the
    // safety snapshot had completed, then in "pre-restore snapshot" for a moment on its way to the swap.
    it('is in the phase "pre-restore snapshot" while it waits for its safety snapshot', async function () {
      this.timeout(90_000);
      const server = suite.server;
      // The safety snapshot ships the log since the last snapshot: a long one, so that it takes far longer than writing
      // back the snapshot restored, of one node. (Last of the suite: the large instance is left with that node.)
      await lengthenChangeLog(server);
      const tiny = (await createInstance(server, { name: 'tiny', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      await createNodes(server, tiny, [{ labels: ['Tiny'] }]);
      const operation = await startRestore(server, (await takeSnapshot(server, tiny)).id, large);
      const progress = subscribe(server, server.adminKey, RESTORE_PROGRESS, { id: operation.id });
      const waiting = (result: Progress) => stateOf(result)?.phase === 'pre-restore snapshot' || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(stateOf(result)?.status ?? '');
      const seen = stateOf(await progress.waitFor(waiting, 60_000))!;
      const safety = (await snapshotsOf(server, large, 'PRE_RESTORE')).find((s) => s.description?.includes(operation.id));
      await progress.complete;
      const phases = payloads<OperationJson>(progress, 'restoreProgress').map((state) => state.phase);
      assert.equal(seen.phase, 'pre-restore snapshot', `the restore never showed that it waited for its safety snapshot: ${phases.join(', ')}`);
      assert.equal(safety?.status, 'IN_PROGRESS', 'the safety snapshot completed before the snapshot\'s data was written back: give it a longer log');
      assert.equal((await settledOperation(server, operation.id)).status, 'SUCCEEDED');
    });
  });
});

describe('deleteInstance after a kill -9', () => {
  it('finishes every interrupted deletion at the next boot: no instance left DESTROYING, no snapshot without its data', async function () {
    this.timeout(120_000);
    const server = await startServer();
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const id = (await createInstance(server, { name: `doomed-${i}`, tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      await fillInstance(server, id, { nodes: 3_000, relationships: 3_000, batch: 3_000 });
      for (let s = 0; s < 3; s++) await takeSnapshot(server, id);
      ids.push(id);
    }
    const snapshotIds = new Map<string, string[]>();
    for (const id of ids) {
      const { snapshots } = expectData(await gql(server, `query ($id: ID!) { snapshots(instanceId: $id) { edges { node { id } } } }`, { id }));
      snapshotIds.set(id, snapshots.edges.map((edge: { node: { id: string } }) => edge.node.id));
    }

    // All eight deletions at once; the process dies as soon as the first one has answered.
    const deletions = ids.map((id) => gql(server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id }).catch(() => null));
    await Promise.race(deletions);
    await server.kill();
    await Promise.all(deletions);

    // What the crash left, read straight from the metadata database.
    const metadata = new Database(join(server.dataDir, 'metadata.sqlite'), { readonly: true });
    const leftover = metadata.prepare(`SELECT id, status FROM instances`).all() as { id: string; status: string }[];
    // A snapshot's data: its restore point's manifest (a base), or for a point on the change log its base's manifest
    // (when it has one) and the log segments up to it.
    const completed = metadata
      .prepare(
        `SELECT s.id, p.id AS point, p."baseId" AS base, COALESCE(p."manifestKey", b."manifestKey") AS "manifestKey",
                (SELECT group_concat(g."blobKey", '|') FROM log_segments g WHERE p.kind = 'LOG' AND g.epoch = p.epoch AND g."firstSeq" <= p.seq) AS segments
         FROM snapshots s LEFT JOIN restore_points p ON p.id = s."restorePointId" LEFT JOIN restore_points b ON b.id = p."baseId"
         WHERE s.status = 'COMPLETED'`,
      )
      .all() as { id: string; point: string | null; base: string | null; manifestKey: string | null; segments: string | null }[];
    const blobExists = (key: string) => existsSync(join(server.dataDir, 'blobs', key));
    const listedWithoutData = completed.filter(
      (row) =>
        row.point === null ||
        (row.base !== null && row.manifestKey === null) ||
        (row.manifestKey !== null && !blobExists(row.manifestKey)) ||
        (row.segments ?? '').split('|').some((key) => key !== '' && !blobExists(key)),
    );
    metadata.close();
    assert.ok(leftover.length > 0, 'every deletion finished before the kill: nothing was interrupted');
    assert.deepEqual(listedWithoutData, [], 'a snapshot is listed COMPLETED while its blob is gone');
    console.log(`      the kill left ${leftover.length} of 8 instances (${leftover.filter((row) => row.status === 'DESTROYING').length} DESTROYING)`);

    await server.restart();
    // Every deletion that had begun is finished; an instance whose request never got in is as it was.
    const destroying = new Set(leftover.filter((row) => row.status === 'DESTROYING').map((row) => row.id));
    const remaining: { id: string; status: string }[] = expectData(await gql(server, `{ instances { id status } }`)).instances;
    assert.deepEqual(remaining.filter((instance) => instance.status !== 'RUNNING'), []);
    assert.deepEqual(remaining.filter((instance) => destroying.has(instance.id)), []);
    for (const { id } of remaining) {
      for (const snapshot of await snapshotsOf(server, id, 'ON_DEMAND')) {
        assert.ok((await archiveOf(server, snapshot.id)).length > 0, `snapshot ${snapshot.id} is listed without its data`);
      }
      expectData(await gql(server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id }));
    }
    assert.deepEqual(expectData(await gql(server, `{ instances { id } }`)).instances, []);
    for (const id of ids) {
      assert.deepEqual(storeGenerations(server.dataDir, id), []);
      for (const snapshotId of snapshotIds.get(id)!) {
        assert.equal(expectData(await gql(server, `query ($id: ID!) { snapshot(id: $id) { id } }`, { id: snapshotId })).snapshot, null);
      }
    }
    assert.deepEqual(filesUnder(join(server.dataDir, 'instances')), []);
  });
});

/** The uploaded files the server holds for restores to come. */
function uploadedFiles(server: TestServer): string[] {
  return filesUnder(join(server.dataDir, 'blobs')).filter((path) => path.split(/[\\/]/).includes('uploads'));
}
