// API keys as an administrator manages them (issue 10): listing without secrets, lastUsedAt, and revocation that
// reaches open WebSockets and export links at once, on every replica.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { request } from 'node:http';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  archiveOf,
  bootExpectingFailure,
  connectWs,
  createInstance,
  createKey,
  createNodes,
  createTenant,
  createTestDatabase,
  describePostgres,
  expectCode,
  expectData,
  exportLink,
  gql,
  listening,
  makeTempDir,
  operationCount,
  paddedArchive,
  RESTORE_FROM_FILE,
  serverPerSuite,
  startServer,
  subscribe,
  takeSnapshot,
  type TestDatabase,
  createTusUpload,
  cuttableProxy,
  refusalCode,
  type TestServer,
  uploadBlobs,
  eventually,
  tusCreationHeaders,
  withClient,
  within,
} from '../support';

const API_KEYS = `{ apiKeys { id name role createdAt lastUsedAt } }`;
const VIEWER = `{ viewer { role } }`;
const REVOKE = `mutation ($id: ID!) { revokeApiKey(id: $id) }`;
const AVAILABILITY = `subscription ($id: ID!) { instanceAvailabilityChanged(instanceId: $id) { availability } }`;
const SNAPSHOT_UPDATES = `subscription ($id: ID!) { snapshotUpdated(instanceId: $id) { status } }`;

interface ApiKeyJson {
  id: string;
  name: string;
  role: string;
  createdAt: string;
  lastUsedAt: string | null;
}

async function apiKeys(server: TestServer, key = server.adminKey): Promise<ApiKeyJson[]> {
  return expectData(await gql(server, API_KEYS, {}, key)).apiKeys;
}

/** Asserts the JSON refusal shape of export links and the other endpoints. */
async function assertRefusal(response: Response, status: number, code: string): Promise<string> {
  const body = await response.text();
  assert.equal(response.status, status, body);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const { errors } = JSON.parse(body) as { errors: { message: string; extensions: { code: string } }[] };
  assert.equal(errors.length, 1);
  assert.equal(errors[0].extensions.code, code);
  assert.ok(errors[0].message.length > 0);
  return errors[0].message;
}

/** Opens a graphql-ws socket with the key and starts a subscription on it; resolves with the socket's close. */
async function openSubscription(server: TestServer, key: string, instanceId: string) {
  const connection = await connectWs(server, key);
  assert.ok(connection.acknowledged, `the socket was refused: ${connection.closeCode}`);
  connection.socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: AVAILABILITY, variables: { id: instanceId } } }));
  return connection;
}

/**
 * Requests with one key, back to back on every server given (a few in flight on each), until stopped: some of them
 * are under way whenever a revocation happens. `started` resolves once each server has answered one.
 */
function raceRequests(servers: TestServer[], key: string) {
  let running = true;
  const answered: Promise<void>[] = [];
  const loops = servers.flatMap((server) => {
    let first!: () => void;
    answered.push(new Promise<void>((resolve) => (first = resolve)));
    return Array.from({ length: 4 }, async () => {
      while (running) {
        await gql(server, VIEWER, {}, key);
        first();
      }
    });
  });
  return {
    started: Promise.all(answered),
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** What a multipart restoreFromFile sends around its file (GraphQL multipart request spec), and its headers. */
function multipartRestore(key: string, instanceId: string) {
  const boundary = `snapgraph-${Date.now()}`;
  const field = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const head = Buffer.from(
    field('operations', JSON.stringify({ query: RESTORE_FROM_FILE, variables: { instanceId, file: null, confirm: 'RESTORE' } })) +
      field('map', JSON.stringify({ 0: ['variables.file'] })) +
      `--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="graph.backup"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const headers = {
    authorization: `Bearer ${key}`,
    'apollo-require-preflight': 'true',
    'content-type': `multipart/form-data; boundary=${boundary}`,
  };
  return { head, tail, headers };
}

/**
 * A request of known length: `head`, the file's chunks (sent as the connection takes them), then `tail`; `between`
 * runs once `holdAfter` bytes of the file are sent. A client that pays no heed to an answer that comes before it has
 * sent everything: it goes on sending, until the server closes the connection (given up 10 s after the answer).
 * Resolves with the answer, how many bytes of the file had been handed to the connection when it came, and, for an
 * answer that came first, how long after it the server closed the connection (null: never, or not asked).
 */
async function sendUntilAnswered(
  url: string,
  method: string,
  headers: Record<string, string>,
  { head, file, fileLength, tail }: { head: Buffer; file: AsyncIterable<Buffer> | Iterable<Buffer>; fileLength: number; tail: Buffer },
  holdAfter: number,
  between: () => Promise<void>,
): Promise<{ status: number; headers: Record<string, unknown>; body: string; sent: number; closedAfterMs: number | null }> {
  const req = request(url, { method, headers: { ...headers, 'content-length': String(head.length + fileLength + tail.length) } });
  let answeredAt: number | null = null;
  let closedAt: number | null = null;
  const closed = new Promise<void>((resolve) =>
    req.once('close', () => {
      closedAt = Date.now();
      resolve();
    }),
  );
  const answer = new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      answeredAt = Date.now();
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  answer.catch(() => undefined);
  /** Ten seconds after the answer, or never before it. */
  const givenUp = answer.then(
    () => new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref()),
    () => undefined,
  );
  const send = async (chunk: Buffer) => {
    if (!req.write(chunk)) await Promise.race([once(req, 'drain').catch(() => undefined), closed, givenUp]);
  };
  await send(head);
  let sent = 0;
  let held = false;
  for await (const chunk of file) {
    if (closedAt !== null || (answeredAt !== null && Date.now() - answeredAt > 10_000)) break;
    if (!held && sent >= holdAfter) {
      held = true;
      await between();
    }
    // Counted as it is handed over: the server cannot have read more than this before it answered.
    if (answeredAt === null) sent += chunk.length;
    await send(chunk);
  }
  /** Whether the answer came before the whole request was handed over. */
  const cutShort = answeredAt !== null;
  if (closedAt === null) req.end(tail);
  try {
    const answered = await answer;
    if (cutShort) await Promise.race([closed, givenUp]);
    return { ...answered, sent, closedAfterMs: cutShort && closedAt !== null ? closedAt - answeredAt! : null };
  } finally {
    req.destroy();
  }
}

describe('API keys', () => {
  const suite = serverPerSuite();

  describe('apiKeys', () => {
    it('lists the tenant\'s keys for an ADMIN, without secrets; MEMBER and VIEWER are FORBIDDEN', async () => {
      const server = suite.server;
      const member = await createKey(server, server.adminKey, 'MEMBER', 'ci member');
      const viewer = await createKey(server, server.adminKey, 'VIEWER', 'dashboard');
      const other = await createTenant(server, 'other-keys');

      const keys = await apiKeys(server);
      const byName = new Map(keys.map((key) => [key.name, key]));
      assert.equal(byName.get('ci member')?.role, 'MEMBER');
      assert.equal(byName.get('ci member')?.id, member.id);
      assert.equal(byName.get('dashboard')?.role, 'VIEWER');
      assert.equal(byName.get('admin')?.role, 'ADMIN');
      for (const key of keys) {
        assert.deepEqual(Object.keys(key).sort(), ['createdAt', 'id', 'lastUsedAt', 'name', 'role']);
        assert.ok(!Number.isNaN(Date.parse(key.createdAt)));
      }
      const text = JSON.stringify(keys);
      for (const secret of [server.adminKey, member.secret, viewer.secret, other.apiKey]) assert.ok(!text.includes(secret));
      assert.equal((await apiKeys(server, other.apiKey)).length, 1, "another tenant sees only its own key");

      expectCode(await gql(server, API_KEYS, {}, member.secret), 'FORBIDDEN');
      expectCode(await gql(server, API_KEYS, {}, viewer.secret), 'FORBIDDEN');
      expectCode(await gql(server, API_KEYS, {}, null), 'UNAUTHENTICATED');
    });

    it('records lastUsedAt when a key is used, to the minute (one write, not one per request)', async () => {
      const server = suite.server;
      const started = Date.now();
      const viewer = await createKey(server, server.adminKey, 'VIEWER', 'seldom used');
      const find = async () => (await apiKeys(server)).find((key) => key.id === viewer.id)!;
      assert.equal((await find()).lastUsedAt, null, 'never used yet');

      expectData(await gql(server, `{ viewer { role } }`, {}, viewer.secret));
      const first = (await find()).lastUsedAt;
      assert.ok(first, 'lastUsedAt was not recorded');
      assert.ok(Date.parse(first) >= started - 1000 && Date.parse(first) <= Date.now() + 1000);
      for (let i = 0; i < 5; i += 1) expectData(await gql(server, `{ viewer { role } }`, {}, viewer.secret));
      assert.equal((await find()).lastUsedAt, first, 'written again within the minute');
    });

    it('leaves revoked keys out', async () => {
      const server = suite.server;
      const member = await createKey(server, server.adminKey, 'MEMBER', 'to revoke');
      expectData(await gql(server, REVOKE, { id: member.id }));
      assert.ok(!(await apiKeys(server)).some((key) => key.id === member.id));
      expectCode(await gql(server, REVOKE, { id: member.id }), 'NOT_FOUND');
    });
  });

  describe('revokeApiKey', () => {
    it('refuses the key at once, though the server had been answering it from memory', async () => {
      const server = suite.server;
      const viewer = await createKey(server, server.adminKey, 'VIEWER', 'cached');
      for (let i = 0; i < 5; i += 1) expectData(await gql(server, VIEWER, {}, viewer.secret));

      expectData(await gql(server, REVOKE, { id: viewer.id }));
      expectCode(await gql(server, VIEWER, {}, viewer.secret), 'UNAUTHENTICATED');
      const ws = await connectWs(server, viewer.secret);
      assert.equal(ws.acknowledged, false);
    });

    it('lets no request racing the revocation bring the key back', async () => {
      const server = suite.server;
      const member = await createKey(server, server.adminKey, 'MEMBER', 'raced');
      const racing = raceRequests([server], member.secret);
      await racing.started;
      expectData(await gql(server, REVOKE, { id: member.id }));
      await racing.stop();
      for (let i = 0; i < 10; i += 1) expectCode(await gql(server, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
    });

    it("closes the key's open WebSockets with 4403 at once; other keys' sockets live on", async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'watched' });
      const doomed = await createKey(server, server.adminKey, 'VIEWER', 'doomed');
      const kept = await createKey(server, server.adminKey, 'VIEWER', 'kept');
      const doomedSockets = [await openSubscription(server, doomed.secret, instance.id), await openSubscription(server, doomed.secret, instance.id)];
      const keptSocket = await openSubscription(server, kept.secret, instance.id);

      expectData(await gql(server, REVOKE, { id: doomed.id }));
      for (const socket of doomedSockets) {
        const closed = await within(socket.closed, 5_000, 'the revoked key\'s socket closing');
        assert.equal(closed.code, 4403);
      }
      const refused = await connectWs(server, doomed.secret);
      assert.equal(refused.acknowledged, false);
      assert.equal(refused.closeCode, 4401);

      // The other key's subscription still delivers.
      const live = subscribe(server, kept.secret, SNAPSHOT_UPDATES, { id: instance.id });
      await listening(live);
      await takeSnapshot(server, instance.id);
      await live.waitFor((result) => result.data?.snapshotUpdated.status === 'COMPLETED');
      assert.equal(keptSocket.socket.readyState, keptSocket.socket.OPEN);
    });

    // The server's close (4403) waits for the client's: a client that never sends it keeps the socket open for ws's
    // close timeout (30 s), and the server still reads what it sends meanwhile.
    it("runs nothing a revoked key's socket sends after its close, though its client never answers the close", async () => {
      const server = suite.server;
      const stubborn = await createKey(server, server.adminKey, 'ADMIN', 'stubborn');
      const connection = await connectWs(server, stubborn.secret);
      assert.ok(connection.acknowledged);
      const socket = connection.socket as typeof connection.socket & { _closeFrameReceived: boolean };
      // ws answers a close frame with its own from close(): this client does not.
      socket.close = () => undefined;
      const answers: unknown[] = [];
      socket.on('message', (data) => answers.push(JSON.parse(data.toString())));

      expectData(await gql(server, REVOKE, { id: stubborn.id }));
      const revoked = Date.now();
      while (!socket._closeFrameReceived) {
        assert.ok(Date.now() - revoked < 5_000, 'the server never closed the revoked key\'s socket');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const name = 'made by a revoked key';
      socket.send(
        JSON.stringify({
          id: 'after-close',
          type: 'subscribe',
          payload: { query: `mutation ($name: String!) { createInstance(input: { name: $name, tier: FREE }) { id } }`, variables: { name } },
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const { instances } = expectData(await gql(server, `{ instances { name } }`));
      assert.deepEqual(
        instances.filter((instance: { name: string }) => instance.name === name),
        [],
        `the revoked key created an instance after its socket was closed: ${JSON.stringify(answers)}`,
      );
      (connection.socket as unknown as { terminate(): void }).terminate();
    });

    it("runs nothing on an open WebSocket with a role the key no longer has (changed in the database): it closes with 4403", async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'kept from a demoted key' });
      const demoted = await createKey(server, server.adminKey, 'ADMIN', 'demoted');
      const socket = await openSubscription(server, demoted.secret, instance.id);
      const answers = new Map<string, { errors?: { extensions: { code: string } }[]; data?: unknown }>();
      socket.socket.on('message', (data) => {
        const message = JSON.parse(data.toString()) as { id?: string; type: string; payload?: never };
        if (message.type === 'next' && message.id) answers.set(message.id, message.payload!);
      });
      const run = async (id: string, query: string, variables: Record<string, unknown> = {}) => {
        if (socket.socket.readyState !== socket.socket.OPEN) return null;
        socket.socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
        const deadline = Date.now() + 5_000;
        while (!answers.has(id) && socket.socket.readyState === socket.socket.OPEN && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
        return answers.get(id) ?? null;
      };
      assert.deepEqual((await run('a', VIEWER))?.data, { viewer: { role: 'ADMIN' } });

      // The operator demotes the key in the metadata database (the only way a role changes): requests see it within
      // SNAPGRAPH_API_KEY_CACHE_MS (1 s by default); so must the key's open sockets.
      const db = new Database(join(server.dataDir, 'metadata.sqlite'), { timeout: 10_000 });
      try {
        db.prepare(`UPDATE api_keys SET role = 'VIEWER' WHERE id = ?`).run(demoted.id);
      } finally {
        db.close();
      }
      const changed = Date.now();
      while (expectData(await gql(server, VIEWER, {}, demoted.secret)).viewer.role !== 'VIEWER') {
        assert.ok(Date.now() - changed < 5_000, 'HTTP requests never saw the new role');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await new Promise((resolve) => setTimeout(resolve, 1_500));

      const deletion = await run('b', `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: instance.id });
      if (deletion) assert.equal(deletion.errors?.[0]?.extensions.code, 'FORBIDDEN', `ran as ADMIN: ${JSON.stringify(deletion)}`);
      const closed = await within(socket.closed, 5_000, "the socket of the key whose role changed closing");
      assert.equal(closed.code, 4403);
      const { instance: still } = expectData(await gql(server, `query ($id: ID!) { instance(id: $id) { status } }`, { id: instance.id }));
      assert.deepEqual(still, { status: 'RUNNING' });
      // Connected again, it has the new role.
      const again = subscribe(server, demoted.secret, VIEWER);
      assert.deepEqual((await again.next()).data, { viewer: { role: 'VIEWER' } });
    });

    it('closes the open WebSockets of a tenant deleted in the database, as its requests are refused', async () => {
      const server = suite.server;
      const doomed = await createTenant(server, 'deleted-in-sql');
      const instance = await createInstance(server, { name: 'of a deleted tenant' }, doomed.apiKey);
      const socket = await openSubscription(server, doomed.apiKey, instance.id);
      const db = new Database(join(server.dataDir, 'metadata.sqlite'), { timeout: 10_000 });
      try {
        db.prepare(`DELETE FROM tenants WHERE id = ?`).run(doomed.tenantId);
      } finally {
        db.close();
      }
      const deleted = Date.now();
      while ((await gql(server, VIEWER, {}, doomed.apiKey)).errors?.[0]?.extensions?.code !== 'UNAUTHENTICATED') {
        assert.ok(Date.now() - deleted < 5_000, 'HTTP requests of the deleted tenant were still served');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const closed = await within(socket.closed, 5_000, "the deleted tenant's socket closing");
      assert.equal(closed.code, 4403);
      const refused = await connectWs(server, doomed.apiKey);
      assert.equal(refused.closeCode, 4401);
    });

    /**
     * A file uploaded over multipart, then over tus, by a new ADMIN key that `change` alters (once the server has the
     * request, and its key, in hand, before the last bytes): each is refused with `code`, and no restore is queued.
     */
    async function refusedMidUpload(what: string, change: (server: TestServer, keyId: string) => Promise<void>, code: string): Promise<void> {
      const server = suite.server;
      const instance = await createInstance(server, { name: `restored by a key ${what}` });
      await createNodes(server, instance.id, [{ labels: ['Kept'] }]);
      const archive = await archiveOf(server, (await takeSnapshot(server, instance.id)).id);
      const operations = await operationCount(server, instance.id);
      const changeAfterAWhile = (id: string) => async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        await change(server, id);
      };

      const multipart = await createKey(server, server.adminKey, 'ADMIN', `${what} mid-upload`);
      // The file in two parts: its first bytes, then, after the change, the rest.
      const inTwoParts = { file: [archive.subarray(0, 100), archive.subarray(100)], fileLength: archive.length };
      const { head, tail, headers } = multipartRestore(multipart.secret, instance.id);
      const answer = await sendUntilAnswered(server.graphqlUrl, 'POST', headers, { head, tail, ...inTwoParts }, 100, changeAfterAWhile(multipart.id));
      const { errors } = JSON.parse(answer.body) as { errors?: { extensions: { code: string } }[] };
      assert.equal(errors?.[0]?.extensions.code, code, answer.body);

      const tus = await createKey(server, server.adminKey, 'ADMIN', `${what} mid-tus-upload`);
      const created = await createTusUpload(server, { instanceId: instance.id, length: archive.length, key: tus.secret });
      assert.ok(created.location, created.body);
      // One PATCH carrying the whole file, whose last bytes come after the change.
      const patched = await sendUntilAnswered(
        created.location,
        'PATCH',
        { ...created.auth, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
        { head: Buffer.alloc(0), tail: Buffer.alloc(0), ...inTwoParts },
        100,
        changeAfterAWhile(tus.id),
      );
      assert.equal(patched.headers['snapgraph-operation-id'], undefined, `the upload of a key ${what} was restored (${patched.status})`);
      assert.equal(refusalCode(patched.body), code, patched.body);

      assert.equal(await operationCount(server, instance.id), operations, `a restore was queued for a key ${what}`);
    }

    it('queues no restore of a file whose key was revoked while it was uploaded, over multipart or tus', () =>
      refusedMidUpload('revoked', async (server, id) => void expectData(await gql(server, REVOKE, { id })), 'UNAUTHENTICATED'));

    it('cuts off an upload under way at the revocation, over multipart and tus: refused at once, the rest never read, the multipart file not kept', async function () {
      this.timeout(120_000);
      const server = suite.server;
      const instance = await createInstance(server, { name: 'restored by a key revoked mid-file' });
      const operations = await operationCount(server, instance.id);
      // About 48 MiB of sound archive that does not compress: far more than the socket buffers between the two ends hold.
      const archive = { nodes: 384, padBytes: 128 * 1024 };
      let fileLength = 0;
      for await (const chunk of paddedArchive(archive)) fileLength += chunk.length;
      const holdAfter = 2 * 1024 * 1024;
      const uploadsBefore = new Set(uploadBlobs(server.dataDir));
      const logsBefore = server.logs().length;
      const revoke = (keyId: string) => async () => void expectData(await gql(server, REVOKE, { id: keyId }));
      const assertCutOff = async (what: string, answer: { status: number; headers: Record<string, unknown>; body: string; sent: number; closedAfterMs: number | null }, keyId: string) => {
        assert.equal(answer.status, 401, `${what}: ${answer.body}`);
        assert.equal(refusalCode(answer.body), 'UNAUTHENTICATED', answer.body);
        assert.match(answer.body, /revoked while the file was uploaded/);
        assert.equal(answer.headers.connection, 'close', `${what}: the connection would be used again`);
        assert.ok(answer.sent < fileLength / 2, `${what}: the server read on after the revocation (${answer.sent} of ${fileLength} bytes sent)`);
        // A client that goes on sending is not waited for: the connection closes a second after the answer.
        assert.ok(answer.closedAfterMs !== null && answer.closedAfterMs < 4_000, `${what}: the connection was closed ${answer.closedAfterMs} ms after the answer`);
        // The log reaches the test through a pipe, which may deliver it after the answer.
        const ended = await eventually(() => server.logLines().find((line) => line.msg === 'ended the connections of a revoked API key' && line.apiKeyId === keyId), {
          what: `${what}: the log line of the cut-off`,
        });
        assert.equal(ended.uploads, 1, `${what}: ${JSON.stringify(ended)}`);
      };

      const multipartKey = await createKey(server, server.adminKey, 'ADMIN', 'multipart upload revoked mid-file');
      const { head, tail, headers } = multipartRestore(multipartKey.secret, instance.id);
      const multipart = await sendUntilAnswered(server.graphqlUrl, 'POST', headers, { head, file: paddedArchive(archive), fileLength, tail }, holdAfter, revoke(multipartKey.id));
      await assertCutOff('multipart', multipart, multipartKey.id);
      // What was stored of the file goes with it.
      await eventually(() => uploadBlobs(server.dataDir).every((path) => uploadsBefore.has(path)) || undefined, { timeoutMs: 10_000, what: "the cut-off upload's blob removed" });

      const tusKey = await createKey(server, server.adminKey, 'ADMIN', 'tus upload revoked mid-file');
      const created = await createTusUpload(server, { instanceId: instance.id, length: fileLength, key: tusKey.secret });
      assert.ok(created.location, created.body);
      const tus = await sendUntilAnswered(
        created.location,
        'PATCH',
        { ...created.auth, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
        { head: Buffer.alloc(0), file: paddedArchive(archive), fileLength, tail: Buffer.alloc(0) },
        holdAfter,
        revoke(tusKey.id),
      );
      await assertCutOff('tus', tus, tusKey.id);
      // The upload keeps what it wrote, as after a broken connection (for the tenant's other keys to see, until it expires).
      const kept = await fetch(created.location, { method: 'HEAD', headers: { ...created.auth, Authorization: `Bearer ${server.adminKey}` } });
      assert.equal(kept.status, 200);
      // Nothing sent after the answer was taken: the write stopped when the refusal left.
      assert.ok(Number(kept.headers.get('upload-offset')) <= tus.sent, `the upload holds ${kept.headers.get('upload-offset')} bytes, of ${tus.sent} sent before the refusal`);

      // A creation that carries the file's first bytes (creation-with-upload): its client, refused instead of told where
      // the upload is, could never resume or end it, so nothing of it is kept.
      const partialUploads = () => readdirSync(server.env.SNAPGRAPH_UPLOAD_DIR!).sort();
      const partialsBefore = partialUploads();
      const creationKey = await createKey(server, server.adminKey, 'ADMIN', 'tus creation revoked mid-file');
      const creation = await sendUntilAnswered(
        `${server.url}/uploads`,
        'POST',
        { ...tusCreationHeaders({ instanceId: instance.id, length: fileLength, key: creationKey.secret }), 'content-type': 'application/offset+octet-stream' },
        { head: Buffer.alloc(0), file: paddedArchive(archive), fileLength, tail: Buffer.alloc(0) },
        holdAfter,
        revoke(creationKey.id),
      );
      await assertCutOff('tus creation', creation, creationKey.id);
      assert.equal(creation.headers.location, undefined);
      await eventually(() => (JSON.stringify(partialUploads()) === JSON.stringify(partialsBefore) ? true : undefined), { timeoutMs: 10_000 }).catch(() => undefined);
      assert.deepEqual(partialUploads(), partialsBefore, "the cut-off creation's upload is kept");

      assert.equal(await operationCount(server, instance.id), operations);
      // A cut-off is no failure of the server (the resolver's late answer once threw ERR_HTTP_HEADERS_SENT into express,
      // whose handler printed it and reset the connection).
      const failures = server.logs().slice(logsBefore).split('\n').filter((line) => /ERR_|"level":(50|60)/.test(line));
      assert.deepEqual(failures, []);
    });

    it('queues no restore of a file whose key lost the ADMIN role (in the database) while it was uploaded, over multipart or tus', () =>
      refusedMidUpload(
        'demoted',
        async (server, id) => {
          const db = new Database(join(server.dataDir, 'metadata.sqlite'), { timeout: 10_000 });
          try {
            db.prepare(`UPDATE api_keys SET role = 'VIEWER' WHERE id = ?`).run(id);
          } finally {
            db.close();
          }
        },
        'FORBIDDEN',
      ));

    it('ends the export links the key created, with the JSON refusal; links of other keys keep working', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'exported' });
      await createNodes(server, instance.id, [{ labels: ['A'] }]);
      const snapshot = await takeSnapshot(server, instance.id);
      const member = await createKey(server, server.adminKey, 'MEMBER', 'exporter');
      const theirs = await exportLink(server, snapshot.id, member.secret);
      const mine = await exportLink(server, snapshot.id);
      assert.equal((await fetch(theirs.url)).status, 200);

      expectData(await gql(server, REVOKE, { id: member.id }));
      const message = await assertRefusal(await fetch(theirs.url), 403, 'FORBIDDEN');
      assert.match(message, /revoked/);
      assert.equal((await fetch(mine.url)).status, 200);
    });

    it("cuts off a download of the key's export link under way; another key's goes on to its end", async function () {
      this.timeout(120_000);
      const server = suite.server;
      const instance = await createInstance(server, { name: 'exported at length' });
      // About 16 MiB of archive, random text: several times what loopback's socket buffers hold between the two ends,
      // so that most of it is still to be sent when the key is revoked.
      for (let batch = 0; batch < 16; batch++) {
        await createNodes(server, instance.id, Array.from({ length: 500 }, (_, i) => ({ labels: ['Blob'], properties: { i, text: randomBytes(2048).toString('base64') } })));
      }
      const snapshot = await takeSnapshot(server, instance.id);
      const member = await createKey(server, server.adminKey, 'MEMBER', 'downloader');
      const theirs = await exportLink(server, snapshot.id, member.secret);
      const mine = await exportLink(server, snapshot.id);

      /** Starts a download and reads its first bytes; `rest()` reads on to the end or the cut, counting. */
      const startDownload = async (url: string) => {
        const response = await fetch(url);
        assert.equal(response.status, 200);
        const size = Number(response.headers.get('content-length'));
        const reader = response.body!.getReader();
        let received = (await reader.read()).value?.length ?? 0;
        const rest = async (): Promise<{ size: number; received: number; error: unknown }> => {
          try {
            for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += chunk.value.length;
            return { size, received, error: null };
          } catch (error) {
            return { size, received, error };
          }
        };
        return { size, rest };
      };
      const doomed = await startDownload(theirs.url);
      const kept = await startDownload(mine.url);
      assert.ok(doomed.size > 12 * 1024 * 1024, `the archive is only ${doomed.size} bytes: too little to be under way`);

      expectData(await gql(server, REVOKE, { id: member.id }));
      const cut = await doomed.rest();
      assert.ok(cut.error !== null && cut.received < cut.size, `the download went on after the revocation: ${cut.received} of ${cut.size} bytes, ${String(cut.error)}`);
      const whole = await kept.rest();
      assert.deepEqual(whole, { size: whole.size, received: whole.size, error: null }, "another key's download was cut off");
    });
  });
});

describe('export links and the Host header', () => {
  const plain = serverPerSuite();

  async function linkWithHost(server: TestServer, host: string): Promise<URL> {
    const instance = await createInstance(server, { name: 'hosted' });
    await createNodes(server, instance.id, [{ labels: ['A'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    // fetch does not let a caller set Host; node:http does.
    const body = JSON.stringify({ query: `mutation ($id: ID!) { exportSnapshot(id: $id) { url } }`, variables: { id: snapshot.id } });
    const url = new URL(server.graphqlUrl);
    const answer = await new Promise<string>((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { host, 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}` } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    const { data } = JSON.parse(answer) as { data: { exportSnapshot: { url: string } } };
    return new URL(data.exportSnapshot.url);
  }

  it('never builds a link on an arbitrary Host header: the listening address when nothing is configured', async () => {
    const link = await linkWithHost(plain.server, 'attacker.example');
    assert.equal(link.origin, plain.server.url);
    assert.equal((await fetch(link)).status, 200);
  });

  it('uses the Host header only when SNAPGRAPH_ALLOWED_HOSTS lists it, else the first allowed host', async () => {
    const server = await startServer({ env: { SNAPGRAPH_ALLOWED_HOSTS: 'files.example:8443, https://backup.example' } });
    assert.equal((await linkWithHost(server, 'backup.example')).origin, 'https://backup.example');
    assert.equal((await linkWithHost(server, 'files.example:8443')).origin, 'http://files.example:8443');
    assert.equal((await linkWithHost(server, 'attacker.example')).origin, 'http://files.example:8443');
  });

  it('refuses a malformed SNAPGRAPH_ALLOWED_HOSTS at boot, naming the variable', async () => {
    const result = await bootExpectingFailure({ SNAPGRAPH_ALLOWED_HOSTS: 'ftp://files.example' });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /SNAPGRAPH_ALLOWED_HOSTS/);
  });

  it('answers an unknown or expired link, and /graphql without a valid key, with the same JSON refusal', async () => {
    await assertRefusal(await fetch(`${plain.server.url}/exports/${'x'.repeat(43)}`), 404, 'NOT_FOUND');
    await assertRefusal(await fetch(`${plain.server.url}/exports/short`), 404, 'NOT_FOUND');
    const graphql = await fetch(plain.server.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sg_not_a_key' },
      body: JSON.stringify({ query: '{ viewer { role } }' }),
    });
    await assertRefusal(graphql, 401, 'UNAUTHENTICATED');
  });
});

describePostgres('revocation across replicas (PostgreSQL + Redis)', (postgres) => {
  let database: TestDatabase;
  let replicas: TestServer[];

  before(async function () {
    this.timeout(90_000);
    database = await createTestDatabase(postgres.adminUrl());
    // Replicas share PostgreSQL, Redis and the data dir (the stores every replica can reach).
    const dataDir = makeTempDir('snapgraph-e2e-replicas-');
    const env = { DATABASE_URL: database.url, REDIS_URL: process.env.SNAPGRAPH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379' };
    const first = await startServer({ dataDir, env });
    const second = await startServer({ dataDir, env, bootstrapToken: first.adminKey });
    replicas = [first, second];
  });
  after(async () => {
    for (const replica of replicas ?? []) await replica.stop({ keepDataDir: true });
    await database?.drop();
  });

  it("closes the key's WebSockets and ends its export links on the other replica too", async () => {
    const [first, second] = replicas;
    const instance = await createInstance(first, { name: 'replicated' });
    await createNodes(first, instance.id, [{ labels: ['A'] }]);
    const snapshot = await takeSnapshot(first, instance.id);
    const member = await createKey(first, first.adminKey, 'MEMBER', 'roaming');
    const link = await exportLink(second, snapshot.id, member.secret);
    const socket = await openSubscription(second, member.secret, instance.id);

    // The other replica has been answering the key from memory.
    for (let i = 0; i < 5; i += 1) expectData(await gql(second, VIEWER, {}, member.secret));

    expectData(await gql(first, REVOKE, { id: member.id }));
    expectCode(await gql(second, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
    expectCode(await gql(first, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
    const closed = await within(socket.closed, 5_000, 'the socket on the other replica closing');
    assert.equal(closed.code, 4403);
    await assertRefusal(await fetch(link.url), 403, 'FORBIDDEN');
    await assertRefusal(await fetch(link.url.replace(new URL(link.url).origin, first.url)), 403, 'FORBIDDEN');
  });

  it('cuts off an upload under way on the other replica', async function () {
    this.timeout(60_000);
    const [first, second] = replicas;
    const instance = await createInstance(first, { name: 'uploaded across' });
    const uploader = await createKey(first, first.adminKey, 'ADMIN', 'uploading across');
    const archive = { nodes: 256, padBytes: 128 * 1024 };
    let fileLength = 0;
    for await (const chunk of paddedArchive(archive)) fileLength += chunk.length;
    const { head, tail, headers } = multipartRestore(uploader.secret, instance.id);
    const answer = await sendUntilAnswered(second.graphqlUrl, 'POST', headers, { head, file: paddedArchive(archive), fileLength, tail }, 2 * 1024 * 1024, async () => {
      expectData(await gql(first, REVOKE, { id: uploader.id }));
    });
    assert.equal(answer.status, 401, answer.body);
    assert.equal(refusalCode(answer.body), 'UNAUTHENTICATED', answer.body);
    assert.ok(answer.sent < fileLength / 2, `the other replica read on after the revocation (${answer.sent} of ${fileLength} bytes sent)`);
    assert.ok(answer.closedAfterMs !== null && answer.closedAfterMs < 4_000, `the connection was closed ${answer.closedAfterMs} ms after the answer`);
  });

  it('answers true to one of several revocations of one key at once, on either replica, NOT_FOUND to the others', async () => {
    // Each read the key as active, then revoked it: every one answered true, and the last moved revokedAt later.
    const doomed = await createKey(replicas[0], replicas[0].adminKey, 'VIEWER', 'revoked at once');
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => gql(replicas[i % 2], REVOKE, { id: doomed.id })));
    const revoked = answers.filter((answer) => answer.data?.revokeApiKey === true);
    assert.equal(revoked.length, 1, JSON.stringify(answers));
    for (const answer of answers.filter((each) => each !== revoked[0])) expectCode(answer, 'NOT_FOUND');
    for (const replica of replicas) expectCode(await gql(replica, VIEWER, {}, doomed.secret), 'UNAUTHENTICATED');
  });

  it('lets no request racing the revocation, on either replica, bring the key back', async () => {
    const [first, second] = replicas;
    const member = await createKey(first, first.adminKey, 'MEMBER', 'raced across');
    const racing = raceRequests(replicas, member.secret);
    await racing.started;
    expectData(await gql(first, REVOKE, { id: member.id }));
    await racing.stop();
    for (let i = 0; i < 5; i += 1) {
      expectCode(await gql(first, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
      expectCode(await gql(second, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
    }
  });

  it('closes the sockets of the key that were connecting, on either replica, when it was revoked', async function () {
    this.timeout(60_000);
    const [first, second] = replicas;
    let connected = 0;
    for (let round = 0; round < 3; round += 1) {
      const key = await createKey(first, first.adminKey, 'VIEWER', `connecting ${round}`);
      // Clients connecting with the key, on both replicas, until it is revoked (the first ones are still being
      // authenticated when it is).
      const acknowledged: Awaited<ReturnType<typeof connectWs>>[] = [];
      let connecting = true;
      const clients = Array.from({ length: 8 }, async (_, i) => {
        while (connecting) {
          const connection = await connectWs(replicas[i % 2], key.secret);
          if (!connection.acknowledged) return;
          acknowledged.push(connection);
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 30));
      expectData(await gql(first, REVOKE, { id: key.id }));
      connecting = false;
      await Promise.all(clients);
      connected += acknowledged.length;
      for (const connection of acknowledged) {
        const closed = await within(connection.closed, 5_000, `round ${round}: a socket of the revoked key closing`);
        assert.equal(closed.code, 4403);
      }
      expectCode(await gql(second, VIEWER, {}, key.secret), 'UNAUTHENTICATED');
    }
    assert.ok(connected > 0, 'no client connected before a revocation: nothing raced it');
  });

  it('serves a role change or a deleted tenant made in the database itself within SNAPGRAPH_API_KEY_CACHE_MS (1 s)', async () => {
    const [first, second] = replicas;
    const { apiKey: secret } = await createTenant(first, 'short-lived');
    for (const replica of replicas) assert.equal(expectData(await gql(replica, VIEWER, {}, secret)).viewer.role, 'ADMIN');

    // Changed behind the servers' backs: no event tells them.
    await withClient(database.url, (client) => client.query(`UPDATE api_keys SET role = 'VIEWER' WHERE "tenantId" = (SELECT id FROM tenants WHERE name = 'short-lived')`));
    const changed = Date.now();
    await Promise.all(replicas.map((replica) => until(async () => expectData(await gql(replica, VIEWER, {}, secret)).viewer.role === 'VIEWER')));
    assert.ok(Date.now() - changed < 1_000 + SLACK_MS, `the old role was served for ${Date.now() - changed} ms`);

    await withClient(database.url, async (client) => {
      await client.query(`DELETE FROM api_keys WHERE "tenantId" = (SELECT id FROM tenants WHERE name = 'short-lived')`);
      await client.query(`DELETE FROM tenants WHERE name = 'short-lived'`);
    });
    const deleted = Date.now();
    await Promise.all(replicas.map((replica) => until(async () => (await gql(replica, VIEWER, {}, secret)).errors?.[0]?.extensions?.code === 'UNAUTHENTICATED')));
    assert.ok(Date.now() - deleted < 1_000 + SLACK_MS, `the deleted tenant was served for ${Date.now() - deleted} ms`);
    expectCode(await gql(second, VIEWER, {}, secret), 'UNAUTHENTICATED');
  });
});

// One replica cut off from Redis while the other still hears it: the revocation's PUBLISH fails, and nothing the
// other replica listens to tells it. It answered the key from memory until its cache entry expired (up to
// SNAPGRAPH_API_KEY_CACHE_MS, 60 s at most) and kept the key's WebSockets, which run queries and mutations as the key,
// open for good, while revokeApiKey had answered true.
describePostgres('revocation across replicas when Redis does not take the revocation', (postgres) => {
  let database: TestDatabase;
  let replicas: TestServer[];
  let redisPath: Awaited<ReturnType<typeof cuttableProxy>>;

  before(async function () {
    this.timeout(90_000);
    database = await createTestDatabase(postgres.adminUrl());
    const redisUrl = new URL(process.env.SNAPGRAPH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
    redisPath = await cuttableProxy(redisUrl.hostname, Number(redisUrl.port || 6379));
    const dataDir = makeTempDir('snapgraph-e2e-replicas-');
    // Long enough that an entry outlives the test: only the revocation may take the key out of the cache.
    const env = { DATABASE_URL: database.url, SNAPGRAPH_API_KEY_CACHE_MS: '60000' };
    const revoking = await startServer({ dataDir, env: { ...env, REDIS_URL: `redis://127.0.0.1:${redisPath.port}` } });
    const other = await startServer({ dataDir, env: { ...env, REDIS_URL: redisUrl.href }, bootstrapToken: revoking.adminKey });
    replicas = [revoking, other];
  });
  after(async () => {
    for (const replica of replicas ?? []) await replica.stop({ keepDataDir: true });
    await redisPath?.close();
    await database?.drop();
  });

  it('answers revokeApiKey only once the other replica refuses the key and has closed its sockets', async function () {
    this.timeout(60_000);
    const [revoking, other] = replicas;
    const instance = await createInstance(revoking, { name: 'cut off' });
    const member = await createKey(revoking, revoking.adminKey, 'MEMBER', 'revoked without Redis');
    const socket = await openSubscription(other, member.secret, instance.id);
    for (let i = 0; i < 3; i += 1) expectData(await gql(other, VIEWER, {}, member.secret));

    redisPath.cut();
    expectData(await gql(revoking, REVOKE, { id: member.id }));
    const answered = Date.now();
    expectCode(await gql(other, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
    expectCode(await gql(revoking, VIEWER, {}, member.secret), 'UNAUTHENTICATED');
    const closed = await within(socket.closed, 10_000, 'the socket on the other replica closing');
    assert.equal(closed.code, 4403);
    assert.ok(Date.now() - answered < 1_000, `the socket closed ${Date.now() - answered} ms after revokeApiKey answered`);
    // A key that was not revoked still works on both, from the database.
    for (const replica of replicas) assert.equal(expectData(await gql(replica, VIEWER)).viewer.role, 'ADMIN');
  });
});

/** What a loaded CI machine may add to the cache's bound before a change shows. */
const SLACK_MS = 2_000;

/** Polls every 50 ms until `check` holds (10 s at most). */
async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('the change never showed');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
