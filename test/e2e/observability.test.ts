import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import WebSocket from 'ws';
import {
  archiveOf,
  connectWs,
  createInstance,
  createKey,
  createNodes,
  eventually,
  expectCode,
  expectData,
  exportLink,
  gql,
  type GraphQLErrorJson,
  post,
  registerCleanup,
  restoreAndWait,
  RESTORE_FROM_FILE,
  serverPerSuite,
  settledOperation,
  type SnapshotJson,
  subscribe,
  subscriptionErrors,
  takeSnapshot,
  type TestServer,
  uploadFile,
  within,
} from '../support';

const IDLE_TIMEOUT_MS = 1_000;

describe('observability', () => {
  const suite = serverPerSuite();

  describe('GET /metrics', () => {
    it('moves the operation, byte and instance metrics through a snapshot, a restore, an export and an upload', async function () {
      this.timeout(60_000);
      const { server } = suite;
      const before = await scrape(server);

      const instance = await createInstance(server, { name: 'metered', tier: 'PROFESSIONAL' });
      await createNodes(server, instance.id, Array.from({ length: 50 }, (_, i) => ({ labels: ['Metered'], properties: { i, text: 'x'.repeat(100) } })));
      const snapshot = await takeSnapshot(server, instance.id);
      const restore = await restoreAndWait(server, snapshot.id);
      assert.equal(restore.status, 'SUCCEEDED');
      const archive = await archiveOf(server, snapshot.id);
      const upload = expectData(await uploadFile(server, { instanceId: instance.id, file: archive })).restoreFromFile;
      assert.equal((await settledOperation(server, upload.id)).status, 'SUCCEEDED');
      const after = await scrape(server);

      const delta = (name: string, labels: Labels = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
      for (const kind of ['SNAPSHOT', 'RESTORE', 'RESTORE_FROM_FILE']) {
        assert.equal(delta('snapgraph_operations_total', { kind, outcome: 'succeeded' }), 1, kind);
        assert.equal(delta('snapgraph_operation_duration_seconds_count', { kind, outcome: 'succeeded' }), 1, kind);
      }
      assert.equal(delta('snapgraph_operations_total', { outcome: 'failed' }), 0);

      // Archived: the archives written to backup storage, i.e. each snapshot's export archive the first time it is
      // produced (snapshots store chunks, not archives): here the exported on-demand snapshot's alone, as the
      // PRE_RESTORE snapshots each restore takes first were never exported (their sizeBytes stay null).
      const snapshots = await snapshotsOf(server, instance.id);
      assert.deepEqual(snapshots.map((s) => s.profile).sort(), ['ON_DEMAND', 'PRE_RESTORE', 'PRE_RESTORE']);
      assert.equal(snapshots.filter((s) => s.sizeBytes !== null).length, 1);
      assert.equal(delta('snapgraph_archived_bytes_total'), archive.length);
      assert.equal(delta('snapgraph_archived_bytes_total'), sum(snapshots.map((s) => s.sizeBytes ?? 0)));
      assert.equal(delta('snapgraph_exported_bytes_total'), archive.length);
      assert.equal(delta('snapgraph_uploaded_bytes_total'), archive.length);
      // Restored: the snapshot's restore point (base file and delta bytes, its operation's bytesTotal), then the archive uploaded.
      assert.ok(restore.bytesTotal !== null && restore.bytesTotal > 0);
      assert.equal(restore.bytesDone, restore.bytesTotal);
      assert.equal(delta('snapgraph_restored_bytes_total'), restore.bytesTotal + archive.length, 'the restore point, then the bytes uploaded');

      const { instances } = expectData(await gql(server, `{ instances { availability } }`));
      const available = instances.filter((i: { availability: string }) => i.availability === 'AVAILABLE').length;
      assert.equal(valueOf(after, 'snapgraph_instances', { availability: 'AVAILABLE' }), available);
      assert.equal(valueOf(after, 'snapgraph_instances', { availability: 'READ_ONLY' }), instances.length - available);
      assert.ok(delta('snapgraph_graphql_requests_total', { operation_type: 'mutation', outcome: 'ok' }) >= 4);
    });

    it('counts open WebSocket connections and active subscriptions, and forgets them when they end', async () => {
      const { server } = suite;
      const gauges = async () => {
        const samples = await scrape(server);
        return { connections: valueOf(samples, 'snapgraph_websocket_connections'), subscriptions: valueOf(samples, 'snapgraph_subscriptions_active') };
      };
      const idle = await gauges();
      const connection = await connectWs(server, server.adminKey);
      assert.ok(connection.acknowledged);
      const watching = subscribe(server, server.adminKey, 'subscription { instanceAvailabilityChanged { instanceId } }');
      await eventually(async () => {
        const now = await gauges();
        return now.connections === idle.connections + 2 && now.subscriptions === idle.subscriptions + 1;
      }, { what: 'two more connections and one more subscription' });
      await watching.close();
      await connection.close();
      await eventually(async () => JSON.stringify(await gauges()) === JSON.stringify(idle), { what: 'the gauges to come back' });
    });

    it("has Node's process metrics, but not those that walk every open socket at each scrape", async () => {
      const samples = await scrape(suite.server);
      const has = (name: string) => samples.some((sample) => sample.name === name);
      for (const name of ['process_open_fds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) assert.ok(has(name), name);
      for (const name of ['nodejs_active_handles', 'nodejs_active_handles_total', 'nodejs_active_resources', 'nodejs_active_resources_total']) {
        assert.equal(has(name), false, name);
      }
    });
  });

  describe('logs', () => {
    it('have one line per GraphQL request with its request id, operation name, duration and error codes', async () => {
      const { server } = suite;
      const requestId = `log-test-${Date.now()}`;
      const response = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}`, 'x-request-id': requestId },
        body: JSON.stringify({ query: 'query WhoAmI { viewer { role } }', operationName: 'WhoAmI' }),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-request-id'), requestId);
      expectCode(await gql(server, 'query MissingInstance { instance(id: "no-such-id") { id } nodes(instanceId: "no-such-id") { totalCount } }'), 'NOT_FOUND');

      const lines = await eventually(() => {
        const found = server.logLines().filter((line) => line.msg === 'graphql request');
        return found.some((line) => line.operationName === 'MissingInstance') && found;
      });
      const whoAmI = lines.find((line) => line.requestId === requestId);
      assert.ok(whoAmI, 'the request id the client sent is the one logged');
      assert.equal(whoAmI.operationName, 'WhoAmI');
      assert.equal(whoAmI.operationType, 'query');
      assert.equal(whoAmI.status, 200);
      assert.equal(typeof whoAmI.ms, 'number');
      assert.equal(whoAmI.errorCodes, undefined);
      const missing = lines.find((line) => line.operationName === 'MissingInstance');
      assert.deepEqual(missing?.errorCodes, ['NOT_FOUND']);
      assert.match(String(missing?.requestId), /^[0-9a-f-]{36}$/);
    });

    it('have the line of a request refused for its key under the request id its answer echoes', async () => {
      const { server } = suite;
      const requestId = `refused-key-${Date.now()}`;
      const response = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sg_never_issued_refused_key', 'x-request-id': requestId },
        body: JSON.stringify({ query: '{ viewer { role } }' }),
      });
      assert.equal(response.status, 401);
      assert.equal(((await response.json()) as { errors: GraphQLErrorJson[] }).errors[0].extensions?.code, 'UNAUTHENTICATED');
      assert.equal(response.headers.get('x-request-id'), requestId);
      assert.equal(response.headers.get('cache-control'), 'no-store');
      const line = await eventually(() => server.logLines().find((candidate) => candidate.requestId === requestId));
      assert.equal(line.msg, 'graphql request refused');
      assert.deepEqual(line.errorCodes, ['UNAUTHENTICATED']);
      assert.equal(line.status, 401);
    });

    it('have the state changes of operations, with their ids', async () => {
      const { server } = suite;
      const instance = await createInstance(server, { name: 'logged' });
      const snapshot = await takeSnapshot(server, instance.id);
      const { id: operationId } = await restoreAndWait(server, snapshot.id);
      // The log reaches the test through a pipe, a moment after the API says the operation ended.
      const ofRestore = await eventually(() => {
        const lines = server.logLines().filter((line) => line.operationId === operationId);
        return lines.some((line) => line.msg === 'operation finished') && lines;
      }, { what: 'the operation\'s "operation finished" log line' });
      assert.deepEqual(
        ofRestore.filter((line) => line.msg !== 'operation phase').map((line) => line.msg),
        ['operation started', 'operation finished'],
      );
      assert.equal(ofRestore.at(-1)?.status, 'SUCCEEDED');
      assert.equal(ofRestore.at(-1)?.kind, 'RESTORE');
      assert.ok(ofRestore.some((line) => line.msg === 'operation phase' && line.phase === 'loading'));
    });

    it('never hold an API key, an export token or the master key, whatever the requests carried', async function () {
      this.timeout(60_000);
      const { server } = suite;
      const member = await createKey(server, server.adminKey, 'MEMBER', 'log-secret');
      const unknownKey = 'sg_never_issued_0123456789abcdef';
      expectData(await gql(server, 'query AsMember { viewer { role } }', {}, member.secret));
      expectCode(await gql(server, 'query WithUnknownKey { viewer { role } }', {}, unknownKey), 'UNAUTHENTICATED');
      // A key in a variable and in a malformed header, as careless clients send them.
      await gql(server, 'query Careless($k: String) { viewer { role } }', { k: member.secret });
      await post(server, { query: '{ viewer { role } }' }, { authorization: `Token ${member.secret}` });
      const instance = await createInstance(server, { name: 'secrets' });
      const snapshot = await takeSnapshot(server, instance.id);
      const link = await exportLink(server, snapshot.id);
      const token = new URL(link.url).pathname.split('/').pop()!;
      assert.equal((await fetch(link.url)).status, 200);
      assert.equal((await fetch(`${link.url}x`)).status, 404);
      const ws = await connectWs(server, member.secret);
      assert.ok(ws.acknowledged);
      await ws.close();
      const refused = await connectWs(server, unknownKey);
      assert.equal(refused.closeCode, 4401);

      const masterKey = readFileSync(join(server.dataDir, 'keys', 'master.key'), 'utf8').trim();
      await eventually(() => server.logLines().some((line) => line.msg === 'websocket closed' && line.code === 4401));
      const logs = server.logs();
      for (const [what, secret] of Object.entries({ adminKey: server.adminKey, memberKey: member.secret, unknownKey, token, masterKey })) {
        assert.ok(!logs.includes(secret), `the logs contain the ${what}`);
      }
      assert.ok(server.logLines().some((line) => line.msg === 'export downloaded' && line.snapshotId === snapshot.id));
    });
  });

  describe('query limits', () => {
    const deep = `{ instances { snapshots { edges { node { instance { snapshots { edges { node { instance {
      snapshots { edges { node { id } } } } } } } } } } } } }`;
    const costly = `{ instances { snapshots(first: 500) { edges { node { instance { snapshots(first: 500) { edges { node { id } } } } } } } } }`;

    it('refuses a query nested deeper than the limit, before running it, with BAD_USER_INPUT', async () => {
      const result = await gql(suite.server, deep);
      assert.equal(result.status, 400);
      assert.equal(result.data, undefined);
      const error = expectCode(result, 'BAD_USER_INPUT');
      assert.match(error.message, /depth is 13, over this server's limit of 12/);
      assert.deepEqual([error.extensions?.limit, error.extensions?.max, error.extensions?.found], ['depth', 12, 13]);
    });

    it('refuses a query whose cost is over the limit, with BAD_USER_INPUT', async () => {
      const error = expectCode(await gql(suite.server, costly), 'BAD_USER_INPUT');
      assert.match(error.message, /cost is \d+, over this server's limit of 100000/);
      assert.equal(error.extensions?.limit, 'cost');
    });

    it('applies the same limits to subscriptions over WebSocket', async () => {
      const subscription = subscribe(
        suite.server,
        suite.server.adminKey,
        `subscription { snapshotUpdated { instance { snapshots { edges { node { instance { snapshots { edges { node {
          instance { snapshots { edges { node { id } } } } } } } } } } } } } }`,
      );
      const [error] = await subscriptionErrors(subscription);
      assert.equal(error.extensions?.code, 'BAD_USER_INPUT');
      assert.match(error.message, /depth is 14, over this server's limit of 12/);
    });
  });

  describe('health', () => {
    it('GET /healthz and GET /readyz answer 200 while the database, the stores, the upload directory and events work', async () => {
      const healthz = await fetch(`${suite.server.url}/healthz`);
      assert.equal(healthz.status, 200);
      const readyz = await fetch(`${suite.server.url}/readyz`);
      assert.equal(readyz.status, 200);
      const body = (await readyz.json()) as ReadinessBody;
      assert.equal(body.status, 'ready');
      assert.deepEqual(Object.keys(body.checks).sort(), ['blobs', 'events', 'instanceStores', 'metadata', 'uploads']);
      assert.ok(Object.values(body.checks).every((check) => (check as { ok: boolean }).ok));
    });
  });
});

describe('with SNAPGRAPH_IDLE_TIMEOUT_MS and SNAPGRAPH_MAX_QUERY_DEPTH set', () => {
  const suite = serverPerSuite({ env: { SNAPGRAPH_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS), SNAPGRAPH_MAX_QUERY_DEPTH: '4' } });

  it('closes a WebSocket that never sends connection_init (4408) after the timeout', async () => {
    const started = Date.now();
    const socket = new WebSocket(suite.server.wsUrl, 'graphql-transport-ws');
    registerCleanup(async () => socket.terminate());
    const closed = await within(
      new Promise<{ code: number }>((resolve) => socket.once('close', (code) => resolve({ code }))),
      IDLE_TIMEOUT_MS + 4_000,
      'the server closing the silent socket',
    );
    assert.equal(closed.code, 4408);
    assert.ok(Date.now() - started >= IDLE_TIMEOUT_MS - 100, 'not before the timeout');
  });

  it('drops a WebSocket that stops answering pings, and keeps one that answers', async () => {
    const stalled = await openAcknowledged(suite.server, { autoPong: false });
    const healthy = await openAcknowledged(suite.server, {});
    const stalledClosed = new Promise<number>((resolve) => stalled.once('close', (code) => resolve(code)));
    await within(stalledClosed, IDLE_TIMEOUT_MS * 3 + 2_000, 'the server dropping the socket that does not pong');
    await new Promise((resolve) => setTimeout(resolve, IDLE_TIMEOUT_MS));
    assert.equal(healthy.readyState, WebSocket.OPEN, 'a socket that answers pings stays open while idle');
    healthy.close();
  });

  it('drops a multipart upload that stops sending', async () => {
    const { server } = suite;
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    registerCleanup(async () => void socket.destroy());
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    const boundary = 'stalled-boundary';
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${server.adminKey}\r\n` +
        `Apollo-Require-Preflight: true\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 1000000\r\n\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query":`,
    );
    const started = Date.now();
    await within(closed, IDLE_TIMEOUT_MS + 4_000, 'the server dropping the stalled upload');
    assert.ok(Date.now() - started >= IDLE_TIMEOUT_MS - 100);
    await eventually(() => server.logLines().some((line) => line.msg === 'dropped an idle HTTP connection'));
  });

  it('lets an upload that is slow but steady run longer than the timeout', async function () {
    this.timeout(30_000);
    const { server } = suite;
    const instance = await createInstance(server, { name: 'slow-upload' });
    await createNodes(server, instance.id, [{ labels: ['Slow'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const archive = await archiveOf(server, snapshot.id);
    const { body, contentType } = multipartUpload(instance.id, archive);
    const pieces = 12;
    const started = Date.now();
    const response = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(server.graphqlUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          'apollo-require-preflight': 'true',
          'content-type': contentType,
          'content-length': String(body.length),
        },
      });
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      let sent = 0;
      const sendNext = () => {
        const end = Math.min(body.length, Math.ceil(((sent + 1) * body.length) / pieces));
        req.write(body.subarray(Math.ceil((sent * body.length) / pieces), end));
        sent += 1;
        if (sent < pieces) setTimeout(sendNext, IDLE_TIMEOUT_MS / 4);
        else req.end();
      };
      sendNext();
    });
    assert.ok(Date.now() - started > IDLE_TIMEOUT_MS * 2, 'the upload took longer than the idle timeout');
    assert.equal(response.status, 200, response.text);
    const { id } = JSON.parse(response.text).data.restoreFromFile;
    assert.equal((await settledOperation(server, id)).status, 'SUCCEEDED');
  });

  it('refuses a query deeper than the configured depth', async () => {
    const history = `query ($id: ID!) { snapshots(instanceId: $id) { edges { node { contents { nodeCount } } } } }`;
    const error = expectCode(await gql(suite.server, history, { id: 'any' }), 'BAD_USER_INPUT');
    assert.match(error.message, /limit of 4/);
    expectData(await gql(suite.server, `{ instances { schedule { enabled } } }`));
  });

  it('advertises a keep-alive time no longer than the idle timeout, so that no client reuses a socket being dropped', async () => {
    const response = await fetch(`${suite.server.url}/healthz`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('keep-alive') ?? '', new RegExp(`timeout=${IDLE_TIMEOUT_MS / 1000}\\b`));
  });

  it('answers GET /readyz with 503, naming the check, while the blob store cannot be written', async () => {
    const blobs = join(suite.server.dataDir, 'blobs');
    renameSync(blobs, `${blobs}.away`);
    writeFileSync(blobs, 'not a directory');
    try {
      const readyz = await fetch(`${suite.server.url}/readyz`);
      assert.equal(readyz.status, 503);
      const body = (await readyz.json()) as ReadinessBody;
      assert.equal(body.checks.blobs.ok, false);
      assert.equal(body.checks.metadata.ok, true);
      assert.equal((await fetch(`${suite.server.url}/healthz`)).status, 200, 'alive all the same');
    } finally {
      rmSync(blobs, { force: true });
      renameSync(`${blobs}.away`, blobs);
    }
    assert.equal((await fetch(`${suite.server.url}/readyz`)).status, 200);
  });

  it('answers GET /readyz with 503 while a store or upload directory is gone (a lost mount), without making an empty one', async () => {
    const { dataDir } = suite.server;
    // The test servers keep partial uploads beside the data dir (SNAPGRAPH_UPLOAD_DIR).
    for (const [check, dir] of [['blobs', join(dataDir, 'blobs')], ['instanceStores', join(dataDir, 'instances')], ['uploads', `${dataDir}-uploads`]] as const) {
      const name = basename(dir);
      renameSync(dir, `${dir}.away`);
      try {
        const readyz = await fetch(`${suite.server.url}/readyz`);
        assert.equal(readyz.status, 503, `${name} gone`);
        const body = (await readyz.json()) as ReadinessBody;
        assert.equal(body.checks[check].ok, false, JSON.stringify(body));
        assert.ok(!existsSync(dir), `the readiness check made ${name} again`);
      } finally {
        renameSync(`${dir}.away`, dir);
      }
      assert.equal((await fetch(`${suite.server.url}/readyz`)).status, 200);
    }
  });
});

interface ReadinessBody {
  status: string;
  checks: Record<string, { ok: boolean; error?: string }>;
}

type Labels = Record<string, string>;
interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

async function scrape(server: TestServer): Promise<Sample[]> {
  const response = await fetch(`${server.url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
  return parsePrometheusText(await response.text());
}

function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of every series of `name` whose labels include `labels`. */
function valueOf(samples: Sample[], name: string, labels: Labels = {}): number {
  return sum(
    samples
      .filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
      .map((sample) => sample.value),
  );
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

type SnapshotSummary = Pick<SnapshotJson, 'id' | 'status' | 'profile' | 'sizeBytes'>;

async function snapshotsOf(server: TestServer, instanceId: string): Promise<SnapshotSummary[]> {
  const { snapshots } = expectData(
    await gql(server, `query ($id: ID!) { snapshots(instanceId: $id, first: 100) { edges { node { id status profile sizeBytes } } } }`, { id: instanceId }),
  );
  return snapshots.edges.map((edge: { node: SnapshotSummary }) => edge.node);
}

/** restoreFromFile as one multipart body, for sending at a chosen pace (uploadFile sends it at once). */
function multipartUpload(instanceId: string, archive: Buffer): { body: Buffer; contentType: string } {
  const boundary = `snapgraph-test-${Date.now()}`;
  const part = (name: string, content: string, fileName?: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${fileName ? `; filename="${fileName}"` : ''}\r\n` +
    `${fileName ? 'Content-Type: application/octet-stream\r\n' : ''}\r\n${content}`;
  const body = Buffer.concat([
    Buffer.from(part('operations', JSON.stringify({ query: RESTORE_FROM_FILE, variables: { instanceId, file: null, confirm: 'RESTORE' } })) + '\r\n'),
    Buffer.from(part('map', JSON.stringify({ 0: ['variables.file'] })) + '\r\n'),
    Buffer.from(part('0', '', 'upload.backup')),
    archive,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

/** A raw graphql-transport-ws socket that has been acknowledged; closed after the test at the latest. */
function openAcknowledged(server: TestServer, options: { autoPong?: boolean }): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws', options);
    registerCleanup(async () => socket.terminate());
    socket.once('error', reject);
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${server.adminKey}` } })));
    socket.on('message', (data) => {
      if (JSON.parse(String(data)).type === 'connection_ack') resolve(socket);
    });
    socket.once('close', (code) => reject(new Error(`closed with ${code} before connection_ack`)));
  });
}
