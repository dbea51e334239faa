import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  allNodes,
  allRelationships,
  type BootFailure,
  bootExpectingFailure,
  type CliResult,
  connectWs,
  createInstance,
  createKey,
  createNodes,
  createRelationships,
  createTenant,
  eventually,
  exitOf,
  expectCode,
  expectData,
  filesUnder,
  gql,
  graphOf,
  makeTempDir,
  randomToken,
  restoreAndWait,
  runCli,
  restartableServerPerSuite,
  serverPerSuite,
  startServer,
  statsOf,
  takeSnapshot,
  within,
} from '../support';
import { ENVELOPE_HEADER_BYTES, ENVELOPE_MAGIC, MasterKey, parseEnvelopeHeader } from '../../src/crypto';

/** The master key ids in the headers of the envelope-encrypted blobs under `dir` (not packs or JSON). */
function envelopeKeyIds(dir: string): Set<string> {
  const ids = new Set<string>();
  for (const path of filesUnder(dir)) {
    const head = readFileSync(path).subarray(0, ENVELOPE_HEADER_BYTES);
    if (head.length === ENVELOPE_HEADER_BYTES && head.subarray(0, ENVELOPE_MAGIC.length).equals(ENVELOPE_MAGIC)) ids.add(parseEnvelopeHeader(head).keyId);
  }
  return ids;
}

describe('restarts', () => {
  // A boot is most of what a test here costs: the tests that keep the server's keys as they are share one server (and
  // its data dir), each on an instance of its own, booted again (as configured: the generated master key) when a test
  // left it down or with other settings.
  const shared = restartableServerPerSuite();

  it('keep instances, graph data, tenants and keys, and do not bootstrap again', async () => {
    const server = shared.server;
    const member = await createKey(server, server.adminKey, 'MEMBER');
    const revoked = await createKey(server, server.adminKey, 'VIEWER');
    expectData(await gql(server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: revoked.id }));
    const acme = await createTenant(server, 'acme');
    const instance = await createInstance(server, { name: 'durable', tier: 'BUSINESS_CRITICAL', memoryGB: 2, engineVersion: 'V4' });
    const nodes = await createNodes(server, instance.id, [
      { labels: ['Kept'], properties: { n: 1, nested: { ok: true } } },
      { labels: ['Kept', 'Twice'], properties: { emoji: '💾' } },
    ]);
    const relationships = await createRelationships(server, instance.id, [{ type: 'LINK', startNodeId: nodes[0].id, endNodeId: nodes[1].id }]);
    const statsBefore = await statsOf(server, instance.id);
    const schedule = `query ($id: ID!) { instance(id: $id) { schedule { nextSnapshotAt } } }`;
    const scheduleBefore = expectData(await gql(server, schedule, { id: instance.id })).instance.schedule;

    // A different bootstrap token on the next boot must not create a second default tenant or a new key.
    const otherToken = randomToken();
    await server.restart({ env: { SNAPGRAPH_BOOTSTRAP_TOKEN: otherToken } });

    assert.doesNotMatch(server.logs(), /created tenant/);
    assert.doesNotMatch(server.logs(), /migrations applied/);
    expectCode(await gql(server, `{ viewer { role } }`, {}, otherToken), 'UNAUTHENTICATED');
    assert.equal(expectData(await gql(server, `{ viewer { role } }`)).viewer.role, 'ADMIN');
    assert.equal(expectData(await gql(server, `{ viewer { role } }`, {}, member.secret)).viewer.role, 'MEMBER');
    assert.equal(expectData(await gql(server, `{ viewer { tenantName } }`, {}, acme.apiKey)).viewer.tenantName, 'acme');
    expectCode(await gql(server, `{ viewer { role } }`, {}, revoked.secret), 'UNAUTHENTICATED');

    const { instances } = expectData(await gql(server, `{ instances { id name tier memoryGB storageGB engineVersion status availability createdAt } }`));
    assert.deepEqual(instances, [instance]);
    assert.deepEqual(await allNodes(server, instance.id), nodes);
    assert.deepEqual(await allRelationships(server, instance.id), relationships);
    assert.deepEqual(await statsOf(server, instance.id), statsBefore);
    assert.deepEqual(expectData(await gql(server, schedule, { id: instance.id })).instance.schedule, scheduleBefore);

    const [next] = await createNodes(server, instance.id, [{ labels: ['After'] }], member.secret);
    assert.ok(Number(next.id) > Number(nodes[1].id), 'ids restarted from the beginning');
  });

  it('refuse a master key other than the one the stored data is under, and go on with the right one', async () => {
    const server = shared.server;
    const instance = await createInstance(server, { name: 'sealed' });
    await createNodes(server, instance.id, [{ labels: ['Kept'] }]);
    const graph = await graphOf(server, instance.id);
    const snapshot = await takeSnapshot(server, instance.id);
    // A key of its own, as a mistyped variable or a replica configured apart would give: serving with it would seal
    // the change log written meanwhile under a key the data's own cannot open.
    const other = randomBytes(32).toString('base64');
    await assert.rejects(server.restart({ env: { SNAPGRAPH_MASTER_KEY: other } }), (error: Error) => {
      assert.match(error.message, /SNAPGRAPH_MASTER_KEY holds master key [0-9a-f]{16}, but the stored data is encrypted under master key [0-9a-f]{16}/);
      assert.ok(!error.message.includes(other), 'the key was printed');
      return true;
    });
    await server.restart({ env: { SNAPGRAPH_MASTER_KEY: undefined } });
    await createNodes(server, instance.id, [{ labels: ['After'] }]);
    assert.equal((await restoreAndWait(server, snapshot.id)).status, 'SUCCEEDED');
    assert.deepEqual(await graphOf(server, instance.id), graph);
  });

  it('refuse to start without the master key file the stored data needs, and leave the data dir as it was', async () => {
    const server = shared.server;
    const instance = await createInstance(server, { name: 'keyless' });
    await createNodes(server, instance.id, [{ labels: ['Kept'] }]);
    const graph = await graphOf(server, instance.id);
    await takeSnapshot(server, instance.id);
    // A data dir restored without keys/: the boot must not leave a key of its own there, which the next boot (and the
    // data dir's backups) would take for the data's, and which is not the key the operator has to put back.
    const keyFile = join(server.dataDir, 'keys', 'master.key');
    const key = readFileSync(keyFile);
    rmSync(keyFile);
    try {
      await assert.rejects(server.restart(), (error: Error) => {
        assert.match(error.message, /holds master key [0-9a-f]{16}, but the stored data is encrypted under master key [0-9a-f]{16}: .*nothing was changed/);
        return true;
      });
      assert.equal(existsSync(keyFile), false, 'the refused boot left a master key file of its own');
    } finally {
      // Put back whatever happened: the shared data dir needs it.
      writeFileSync(keyFile, key, { mode: 0o600 });
    }
    await server.restart();
    assert.deepEqual(await graphOf(server, instance.id), graph);
  });

  it('rotate the master key: the old one as previous reads, rotate-master-key moves everything, then the new one alone boots', async function () {
    // Five boots, two CLI runs, two snapshots and three restores: 17 s on a quiet machine.
    this.timeout(90_000);
    const server = await startServer();
    const instance = await createInstance(server, { name: 'rotated' });
    // Enough records that the snapshot takes a base: chunk keys and packs, not only change-log segments.
    for (let batch = 0; batch < 6; batch++) await createNodes(server, instance.id, Array.from({ length: 500 }, (_, i) => ({ labels: ['Kept'], properties: { batch, i } })));
    const graph = await graphOf(server, instance.id);
    const before = await takeSnapshot(server, instance.id);
    const keyFile = join(server.dataDir, 'keys', 'master.key');
    const oldKey = readFileSync(keyFile, 'utf8').trim();
    const newKey = randomBytes(32).toString('base64');
    const [oldId, newId] = [oldKey, newKey].map((key) => MasterKey.fromBytes(Buffer.from(key, 'base64')).keyId);
    const blobsDir = join(server.dataDir, 'blobs');
    assert.deepEqual(envelopeKeyIds(blobsDir), new Set([oldId]));

    // Only the new key: everything stored is under the old one.
    await assert.rejects(server.restart({ env: { SNAPGRAPH_MASTER_KEY: newKey } }), (error: Error) => {
      assert.match(error.message, new RegExp(`SNAPGRAPH_MASTER_KEY holds master key ${newId}, but the stored data is encrypted under master key ${oldId}: .*SNAPGRAPH_PREVIOUS_MASTER_KEYS`));
      assert.ok(!error.message.includes(newKey) && !error.message.includes(oldKey), 'a key was printed');
      return true;
    });

    // The new key, and the old one as previous: the old data reads, new data is written under the new key.
    await server.restart({ env: { SNAPGRAPH_MASTER_KEY: newKey, SNAPGRAPH_PREVIOUS_MASTER_KEYS: oldKey } });
    assert.deepEqual(await graphOf(server, instance.id), graph);
    const added = await createNodes(server, instance.id, [{ labels: ['Later'] }]);
    const after = await takeSnapshot(server, instance.id);
    assert.deepEqual(envelopeKeyIds(blobsDir), new Set([oldId, newId]));
    assert.equal((await restoreAndWait(server, before.id)).status, 'SUCCEEDED');
    assert.deepEqual(await graphOf(server, instance.id), graph);

    // Removing the old key before the rotation is refused, though the chunk keys it used are under the new key now.
    await assert.rejects(server.restart({ env: { SNAPGRAPH_PREVIOUS_MASTER_KEYS: undefined } }), (error: Error) => {
      assert.match(error.message, new RegExp(`holds master key ${newId}, but master key ${oldId} was named in SNAPGRAPH_PREVIOUS_MASTER_KEYS at an earlier boot`));
      return true;
    });
    await server.stop({ keepDataDir: true });

    const rotateEnv = { ...server.env, SNAPGRAPH_PREVIOUS_MASTER_KEYS: oldKey };
    const rotated = await runCli(['rotate-master-key'], rotateEnv, 60_000);
    assert.equal(rotated.code, 0, `${rotated.stdout}${rotated.stderr}`);
    assert.match(rotated.stdout, new RegExp(`sealed again under master key ${newId}: \\d+ tenant chunk key\\(s\\), 0 export destination\\(s\\), [1-9]\\d* of \\d+ blob\\(s\\)`));
    assert.match(rotated.stdout, /nothing is under a previous key any more: SNAPGRAPH_PREVIOUS_MASTER_KEYS can be emptied/);
    for (const key of [oldKey, newKey]) assert.ok(!`${rotated.stdout}${rotated.stderr}`.includes(key), 'a key was printed');
    assert.deepEqual(envelopeKeyIds(blobsDir), new Set([newId]));
    const chunkKeyCopies = filesUnder(blobsDir).filter((path) => path.endsWith(join('chunks', 'keys')));
    assert.equal(chunkKeyCopies.length, 1, 'the snapshot took no base');
    assert.equal(JSON.parse(readFileSync(chunkKeyCopies[0], 'utf8')).masterKeyId, newId);
    const again = await runCli(['rotate-master-key'], rotateEnv, 60_000);
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
    assert.match(again.stdout, /: 0 tenant chunk key\(s\), 0 export destination\(s\), 0 of \d+ blob\(s\)/);

    // The new key alone: everything reads.
    await server.restart({ env: { SNAPGRAPH_PREVIOUS_MASTER_KEYS: undefined } });
    assert.deepEqual(await graphOf(server, instance.id), graph);
    assert.equal((await restoreAndWait(server, after.id)).status, 'SUCCEEDED');
    assert.deepEqual((await graphOf(server, instance.id)).nodes.length, graph.nodes.length + added.length);
    assert.equal((await restoreAndWait(server, before.id)).status, 'SUCCEEDED');
    assert.deepEqual(await graphOf(server, instance.id), graph);
  });

  it('refuse a rotate-master-key run with a current key the servers do not write under, and change nothing', async function () {
    this.timeout(90_000);
    const server = await startServer();
    const instance = await createInstance(server, { name: 'stray rotation' });
    await createNodes(server, instance.id, [{ labels: ['Before'] }]);
    const oldKey = readFileSync(join(server.dataDir, 'keys', 'master.key'), 'utf8').trim();
    const newKey = randomBytes(32).toString('base64');
    // Step 1 of a rotation: the servers write under the new key; the old one only reads.
    await server.restart({ env: { SNAPGRAPH_MASTER_KEY: newKey, SNAPGRAPH_PREVIOUS_MASTER_KEYS: oldKey } });
    await createNodes(server, instance.id, [{ labels: ['After'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const graph = await graphOf(server, instance.id);
    await server.stop({ keepDataDir: true });
    const blobsDir = join(server.dataDir, 'blobs');
    const before = envelopeKeyIds(blobsDir);

    // Run with a key the servers never had (a typo in the variable, a key generated for the command): what is under the
    // old key would be sealed under that one, which no server can read.
    const stray = randomBytes(32).toString('base64');
    const [newId, strayId] = [newKey, stray].map((key) => MasterKey.fromBytes(Buffer.from(key, 'base64')).keyId);
    const refused = await runCli(['rotate-master-key'], { ...server.env, SNAPGRAPH_MASTER_KEY: stray, SNAPGRAPH_PREVIOUS_MASTER_KEYS: oldKey }, 60_000);
    assert.equal(refused.code, 1, `${refused.stdout}${refused.stderr}`);
    assert.match(refused.stderr, new RegExp(`master key ${strayId}.*this deployment's servers write under master key ${newId}.*nothing was changed`));
    for (const key of [oldKey, newKey, stray]) assert.ok(!`${refused.stdout}${refused.stderr}`.includes(key), 'a key was printed');
    assert.deepEqual(envelopeKeyIds(blobsDir), before);

    // The servers' own keys still read everything.
    await server.restart({ env: { SNAPGRAPH_MASTER_KEY: newKey, SNAPGRAPH_PREVIOUS_MASTER_KEYS: oldKey } });
    assert.equal((await restoreAndWait(server, snapshot.id)).status, 'SUCCEEDED');
    assert.deepEqual(await graphOf(server, instance.id), graph);
  });

  it('refuse a second server on the embedded data dir while the first runs, which goes on undisturbed', async function () {
    this.timeout(60_000);
    const server = shared.server;
    const instance = await createInstance(server, { name: 'held' });
    // Booted beside it, a second process would take itself for the only one: it would fail the first one's running
    // operations as a crash's orphans, remove its partial blobs and scratch copies, and run a second scheduler.
    const second = await runCli(['serve'], { ...server.env, PORT: '0' });
    assert.equal(second.code, 1, `${second.stdout}${second.stderr}`);
    assert.match(second.stderr, /SNAPGRAPH_DATA_DIR/);
    assert.match(second.stderr, new RegExp(server.dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    // Nor does rotate-master-key run beside it: it rewrites blobs the server may delete meanwhile.
    const rotation = await runCli(['rotate-master-key'], server.env);
    assert.equal(rotation.code, 1, `${rotation.stdout}${rotation.stderr}`);
    assert.match(rotation.stderr, /a snapgraph server runs on the data dir .*: stop it first; nothing was changed/);
    expectData(await gql(server, `query ($id: ID!) { instance(id: $id) { status } }`, { id: instance.id }));
    // Once the first has stopped, the data dir is free for the next one.
    await server.restart();
    expectData(await gql(server, `query ($id: ID!) { instance(id: $id) { status } }`, { id: instance.id }));
  });

  it('keep every acknowledged write after a crash (SIGKILL)', async () => {
    const server = shared.server;
    const instance = await createInstance(server, { name: 'crashy', tier: 'PROFESSIONAL' });
    const written = [];
    for (let batch = 0; batch < 5; batch++) {
      written.push(...(await createNodes(server, instance.id, Array.from({ length: 200 }, (_, i) => ({ labels: ['W'], properties: { batch, i } })))));
    }
    await server.kill();
    await server.restart();
    assert.deepEqual(await allNodes(server, instance.id), written);
    assert.equal((await statsOf(server, instance.id)).nodeCount, 1000);
  });

  it('remove the scratch copies a crash left, and nothing an instance owns', async () => {
    // A server of its own: the scratch copies its boot reports must be only the test's (not a base another test began).
    const server = await startServer();
    const instance = await createInstance(server, { name: 'kept' });
    await createNodes(server, instance.id, [{ labels: ['Kept'] }, { labels: ['Kept'] }]);
    const before = await statsOf(server, instance.id);
    await server.kill();
    // As an export or a verification leaves them when the process dies mid-way: a scratch store under an id no instance
    // has, and a copy a base was being cut from.
    const stray = join(server.dataDir, 'instances', randomUUID());
    mkdirSync(stray);
    copyFileSync(join(server.dataDir, 'instances', instance.id, 'graph-1.sqlite'), join(stray, 'graph-1.sqlite'));
    mkdirSync(join(server.dataDir, 'scratch'), { recursive: true });
    writeFileSync(join(server.dataDir, 'scratch', `base-${randomUUID()}.sqlite`), 'a copy cut short');
    await server.restart();
    assert.ok(!existsSync(stray), 'the scratch store is gone');
    assert.deepEqual(readdirSync(join(server.dataDir, 'scratch')), []);
    assert.ok(server.logLines().some((line) => line.msg === 'removed scratch copies an earlier crash left' && line.scratchStores === 1 && line.scratchFiles === 1));
    assert.deepEqual(await statsOf(server, instance.id), before);
  });

  // A restore's swap commits with its SUCCEEDED; the store it replaced is removed right after. A crash in between left
  // that store, the instance's whole old data in plaintext, on disk until the instance's next restore, if ever.
  it('remove the store a restore replaced when a crash came between its swap and the removal', async () => {
    const server = shared.server;
    const instance = await createInstance(server, { name: 'restored' });
    await createNodes(server, instance.id, [{ labels: ['Snapshotted'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    await createNodes(server, instance.id, [{ labels: ['Overwritten'] }]);
    assert.equal((await restoreAndWait(server, snapshot.id)).status, 'SUCCEEDED');
    const dir = join(server.dataDir, 'instances', instance.id);
    const generations = () => readdirSync(dir).filter((name) => /^graph-\d+\.sqlite$/.test(name)).sort();
    await eventually(() => generations().length === 1, { what: 'the replaced store to be removed after the swap' });
    const [current] = generations();
    const before = await statsOf(server, instance.id);
    await server.kill();
    // As the crash leaves it: the replaced store beside the one the instance now uses.
    const replaced = `graph-${Number(/\d+/.exec(current)![0]) - 1}.sqlite`;
    copyFileSync(join(dir, current), join(dir, replaced));
    await server.restart();
    assert.deepEqual(generations(), [current]);
    assert.deepEqual(await statsOf(server, instance.id), before);
  });
});

describe('configuration errors stop the boot', () => {
  const configDir = () => {
    const dir = makeTempDir();
    writeFileSync(join(dir, 'broken.json'), '{"tiers": ');
    writeFileSync(join(dir, 'bad-tier.json'), JSON.stringify({ tiers: { FREE: { memoryGB: [3] } } }));
    writeFileSync(join(dir, 'unknown.json'), JSON.stringify({ tier: {} }));
    return dir;
  };
  // Every refused boot is a separate process: start them all at once, then read each outcome in its own test.
  const cases = {
    portText: { PORT: 'abc' },
    portRange: { PORT: '70000' },
    masterKey: { SNAPGRAPH_MASTER_KEY: 'short-master-key-Zq9' },
    previousMasterKeys: { SNAPGRAPH_PREVIOUS_MASTER_KEYS: `${randomBytes(32).toString('base64')},short-previous-key-Zq9` },
    bootstrapToken: { SNAPGRAPH_BOOTSTRAP_TOKEN: 'tiny-Zq9' },
    databaseUrl: { DATABASE_URL: 'mysql://admin:pw-Zq9-secret@localhost/db' },
    redisUrl: { REDIS_URL: 'http://localhost:6379' },
    configMissing: (dir: string) => ({ SNAPGRAPH_CONFIG: join(dir, 'missing.json') }),
    configBroken: (dir: string) => ({ SNAPGRAPH_CONFIG: join(dir, 'broken.json') }),
    configBadTier: (dir: string) => ({ SNAPGRAPH_CONFIG: join(dir, 'bad-tier.json') }),
    configUnknownField: (dir: string) => ({ SNAPGRAPH_CONFIG: join(dir, 'unknown.json') }),
    several: { PORT: 'abc', LOG_LEVEL: 'loud', REDIS_URL: 'nope' },
  };
  let outcomes: Record<keyof typeof cases, BootFailure>;

  before(async function () {
    this.timeout(60_000);
    const dir = configDir();
    const entries = await Promise.all(
      Object.entries(cases).map(async ([name, env]) => [name, await bootExpectingFailure(typeof env === 'function' ? env(dir) : env)] as const),
    );
    outcomes = Object.fromEntries(entries) as typeof outcomes;
  });

  const expectRefusal = (name: keyof typeof cases, variable: string, secret?: string): CliResult => {
    const result = outcomes[name];
    assert.ok(result.code !== null, 'the process was killed rather than exiting');
    assert.notEqual(result.code, 0, `the server booted (${name})`);
    assert.match(result.stderr, new RegExp(variable), `stderr does not name ${variable}:\n${result.stderr}`);
    if (secret) {
      assert.ok(!result.stderr.includes(secret) && !result.stdout.includes(secret), `the value of ${variable} was printed`);
    }
    return result;
  };

  it('PORT that is not a number', () => {
    expectRefusal('portText', 'PORT');
  });

  it('PORT out of range', () => {
    expectRefusal('portRange', 'PORT');
  });

  it('SNAPGRAPH_MASTER_KEY that is not 32 bytes of base64, without printing it', () => {
    expectRefusal('masterKey', 'SNAPGRAPH_MASTER_KEY', 'short-master-key-Zq9');
  });

  it('SNAPGRAPH_PREVIOUS_MASTER_KEYS with an entry that is not 32 bytes of base64, by its position, without printing any', () => {
    const result = expectRefusal('previousMasterKeys', 'SNAPGRAPH_PREVIOUS_MASTER_KEYS: entry 2 must be the base64 encoding of exactly 32 bytes', 'short-previous-key-Zq9');
    const [valid] = cases.previousMasterKeys.SNAPGRAPH_PREVIOUS_MASTER_KEYS.split(',');
    assert.ok(!`${result.stdout}${result.stderr}`.includes(valid), 'the valid key was printed');
  });

  it('SNAPGRAPH_BOOTSTRAP_TOKEN shorter than 16 characters, without printing it', () => {
    expectRefusal('bootstrapToken', 'SNAPGRAPH_BOOTSTRAP_TOKEN', 'tiny-Zq9');
  });

  it('DATABASE_URL that is not postgres://, without printing its password', () => {
    expectRefusal('databaseUrl', 'DATABASE_URL', 'pw-Zq9-secret');
  });

  it('REDIS_URL that is not redis://', () => {
    expectRefusal('redisUrl', 'REDIS_URL');
  });

  it('SNAPGRAPH_CONFIG naming a missing file, holding broken JSON, an unknown field or a bad tier value', () => {
    expectRefusal('configMissing', 'SNAPGRAPH_CONFIG');
    expectRefusal('configBroken', 'SNAPGRAPH_CONFIG');
    expectRefusal('configUnknownField', 'SNAPGRAPH_CONFIG');
    assert.match(expectRefusal('configBadTier', 'SNAPGRAPH_CONFIG').stderr, /tiers\.FREE\.memoryGB/);
  });

  it('lists every bad variable at once', () => {
    const result = expectRefusal('several', 'PORT');
    assert.match(result.stderr, /LOG_LEVEL/);
    assert.match(result.stderr, /REDIS_URL/);
  });

  describe('beside a server that booted', () => {
    // One server for both: the one that booted with empty variables holds the port the next boot is refused.
    const running = serverPerSuite({
      env: { LOG_LEVEL: '', DATABASE_URL: '', REDIS_URL: '', SNAPGRAPH_MASTER_KEY: '', SNAPGRAPH_CONFIG: '', SNAPGRAPH_PUBLIC_URL: '' },
    });

    it('but empty variables count as unset', async () => {
      expectData(await gql(running.server, `{ viewer { role } }`));
    });

    it('a port that is already taken', async () => {
      const server = running.server;
      const port = new URL(server.url).port;
      const result = await bootExpectingFailure({ PORT: port });
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, new RegExp(`EADDRINUSE|${port}`));
      // One line naming the variables, not graphql-ws's "Internal error … check your implementation" and a stack trace.
      assert.equal(result.stderr, `snapgraph: cannot listen on 127.0.0.1:${port} (HOST, PORT): address already in use (EADDRINUSE)\n`);
      // Refused before anything booted: no migrations, keys or default tenant made only to be closed again (beside
      // replicas, no queued operation claimed by a runner that could never answer).
      assert.deepEqual(readdirSync(result.dataDir), []);
      expectData(await gql(server, `{ viewer { role } }`));
    });
  });

  it('a HOST that is no address', async () => {
    const result = await bootExpectingFailure({ HOST: 'localhost:4000' });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr, 'snapgraph: cannot listen on localhost:4000:0 (HOST, PORT): no such host (ENOTFOUND)\n');
  });
});

describe('shutdown', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`on ${signal}: closes open WebSockets, stops serving and exits 0`, async () => {
      const server = await startServer();
      await createNodes(server, (await createInstance(server, { tier: 'FREE' })).id, [{ labels: ['Before'] }]);
      const socket = await connectWs(server, server.adminKey);
      assert.equal(socket.acknowledged, true);

      const exited = exitOf(server.process);
      server.process.kill(signal);
      const closed = await within(socket.closed, 10_000, 'closing the WebSocket');
      assert.ok(closed.code >= 1000, `close code ${closed.code}`);
      assert.deepEqual(await within(exited, 15_000, 'the exit'), { code: 0, signal: null });
      assert.match(server.logs(), /snapgraph stopped/);
      await assert.rejects(fetch(`${server.url}/healthz`));
    });
  }

  it('leaves the data dir ready for the next boot', async () => {
    const server = await startServer();
    const instance = await createInstance(server, { tier: 'FREE' });
    const nodes = await createNodes(server, instance.id, [{ labels: ['Clean'] }]);
    assert.deepEqual(await server.stop({ keepDataDir: true }), { code: 0, signal: null });
    await server.restart();
    assert.deepEqual(await allNodes(server, instance.id), nodes);
  });
});
