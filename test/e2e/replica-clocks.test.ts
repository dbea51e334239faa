// Replicas whose clocks disagree, on one PostgreSQL database and data dir: a replica whose system clock runs ahead
// (a host NTP has not corrected yet) must not take the operations of another for abandoned. Leases are set and judged
// by the database's clock, not by each replica's own.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  createInstance,
  createTestDatabase,
  describePostgres,
  eventually,
  expectData,
  generatedArchive,
  makeTempDir,
  randomToken,
  settledOperation,
  startServer,
  type TestDatabase,
  type TestServer,
  uploadFile,
} from '../support';

const CLOCK_SHIFT = join(__dirname, '..', 'support', 'clock-behind.js');
const LEASE_MS = 6_000;
/** Most of the lease and more: judged by its own clock, this replica found every lease of the other one expired. */
const AHEAD_MS = 20_000;

describePostgres('replicas whose clocks disagree', (postgres) => {
  let database: TestDatabase;
  let replicas: TestServer[] = [];

  before(async function () {
    this.timeout(60_000);
    database = await createTestDatabase(postgres.adminUrl());
    const shared = {
      dataDir: makeTempDir('snapgraph-e2e-clocks-'),
      bootstrapToken: randomToken(),
      env: {
        DATABASE_URL: database.url,
        SNAPGRAPH_MASTER_KEY: randomBytes(32).toString('base64'),
        SNAPGRAPH_OPERATION_LEASE_MS: String(LEASE_MS),
      },
    };
    const onTime = await startServer(shared);
    const ahead = await startServer({
      ...shared,
      env: { ...shared.env, SNAPGRAPH_TEST_CLOCK_BEHIND_MS: String(-AHEAD_MS) },
      nodeArgs: ['--require', CLOCK_SHIFT],
    });
    replicas = [onTime, ahead];
  });
  after(async () => {
    for (const replica of replicas) await replica.stop({ keepDataDir: true });
    await database?.drop();
  });

  it('leaves a live operation of a replica with a clock behind its own to that replica', async function () {
    this.timeout(240_000);
    const [onTime, ahead] = replicas;
    const instanceId = (await createInstance(onTime, { name: 'clocks', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
    const archive = await generatedArchive({ nodes: 150_000, relationships: 300_000 });

    // Queued on the replica on time, which runs it: the other one, frozen meanwhile, cannot claim it first (it polls
    // every second, and a loaded machine may delay the replica on time's own wake-up by more).
    ahead.process.kill('SIGSTOP');
    let operation: { id: string };
    let aheadBackAt: number;
    try {
      operation = expectData(await uploadFile(onTime, { instanceId, file: archive })).restoreFromFile;
      await eventually(() => onTime.logLines().some((line) => line.msg === 'operation started' && line.operationId === operation.id), {
        what: 'the replica on time to start the restore',
      });
    } finally {
      ahead.process.kill('SIGCONT');
      aheadBackAt = Date.now();
    }
    const settled = await settledOperation(onTime, operation.id, onTime.adminKey, 180_000);
    const watchedMs = Date.parse(settled.finishedAt!) - aheadBackAt;
    assert.ok(watchedMs > 2_000, `the restore ended ${watchedMs} ms after the replica ahead was thawed, less than two of its polls: give it more data`);
    const takenOver = ahead.logLines().filter((line) => line.msg === 'recovering an interrupted operation' && line.operationId === operation.id);
    assert.deepEqual(takenOver, [], 'the replica with its clock ahead took the live restore for abandoned');
    assert.deepEqual({ status: settled.status, attempt: settled.attempt }, { status: 'SUCCEEDED', attempt: 1 }, JSON.stringify(settled));
  });
});
