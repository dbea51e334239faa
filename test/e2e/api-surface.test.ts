// What a client written elsewhere meets, in every mode: graphql-http's audits, introspection and the playground
// (on by default, switchable, the same over HTTP and WebSocket), errors without internals, JSON refusals of
// malformed bodies, and CORS from configured origins only.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { getIntrospectionQuery } from 'graphql';
import { serverAudits } from 'graphql-http';
import {
  connectWs,
  createInstance,
  createNodes,
  expectCode,
  eventually,
  expectData,
  gql,
  NODES_PAGE,
  post,
  serverPerSuite,
  type TestServer,
  type WsConnection,
} from '../support';

const DASHBOARD = 'https://dashboard.example.com';

/** Runs one operation over a raw graphql-transport-ws socket and returns every message sent for it. */
export async function wsOperation(connection: WsConnection, id: string, query: string, variables?: Record<string, unknown>) {
  const messages: { type: string; payload?: any }[] = [];
  const done = new Promise<void>((resolve) => {
    const onMessage = (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: string; type: string; payload?: unknown };
      if (message.id !== id) return;
      messages.push(message);
      if (message.type === 'complete' || message.type === 'error') {
        connection.socket.off('message', onMessage);
        resolve();
      }
    };
    connection.socket.on('message', onMessage);
  });
  connection.socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
  await done;
  return messages;
}

const introspects = async (server: TestServer) => gql(server, getIntrospectionQuery());

for (const nodeEnv of [undefined, 'production']) {
  describe(`the API surface with NODE_ENV=${nodeEnv ?? '(unset)'}`, () => {
    const suite = serverPerSuite({ env: { NODE_ENV: nodeEnv } });

    it("passes every MUST of graphql-http's server audits", async function () {
      this.timeout(60_000);
      const { server } = suite;
      const fetchFn = (input: Parameters<typeof fetch>[0], init: RequestInit = {}) => {
        const headers = new Headers(init.headers);
        headers.set('authorization', `Bearer ${server.adminKey}`);
        return fetch(input, { ...init, headers });
      };
      const audits = serverAudits({ url: server.graphqlUrl, fetchFn });
      const failed: string[] = [];
      let musts = 0;
      for (const audit of audits) {
        if (!audit.name.startsWith('MUST')) continue;
        musts += 1;
        const result = await audit.fn();
        if (result.status !== 'ok') failed.push(`${audit.name}: ${JSON.stringify(result)}`);
      }
      assert.ok(musts > 10, `only ${musts} MUST audits ran`);
      assert.deepEqual(failed, []);
    });

    it('answers introspection over HTTP and WebSocket, and serves the playground', async () => {
      const { server } = suite;
      assert.equal(expectData(await introspects(server)).__schema.queryType.name, 'Query');
      const connection = await connectWs(server, server.adminKey);
      const [first] = await wsOperation(connection, 'i', '{ __schema { queryType { name } } }');
      assert.equal(first.type, 'next');
      assert.equal(first.payload.data.__schema.queryType.name, 'Query');
      await connection.close();
      const page = await fetch(server.graphqlUrl, { headers: { accept: 'text/html' } });
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    });

    it('sends no stack trace and no internals with any error', async () => {
      const { server } = suite;
      const instanceId = (await createInstance(server, { name: 'no-stacks', tier: 'FREE' })).id;
      for (const result of [
        await gql(server, `{ viewer { role } }`, {}, null),
        await gql(server, `{ viewer { role `),
        await gql(server, `{ viewer { nope } }`),
        await gql(server, NODES_PAGE, { instanceId, first: 5000 }),
        await gql(server, NODES_PAGE, { instanceId, after: 'garbage' }),
      ]) {
        assert.ok(result.errors?.length, result.text);
        assert.doesNotMatch(result.text, /stacktrace|node_modules|\/dist\/|\.js:\d+/);
      }
    });

    it('answers a malformed JSON body with a JSON BAD_USER_INPUT error and one JSON log line', async () => {
      const { server } = suite;
      const before = server.logs().length;
      const response = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}`, 'x-request-id': 'malformed-body-1' },
        body: '{"query": ',
      });
      assert.equal(response.status, 400);
      assert.match(response.headers.get('content-type') ?? '', /json/);
      const body = (await response.json()) as { errors: { message: string; extensions: { code: string } }[] };
      assert.equal(body.errors[0].extensions.code, 'BAD_USER_INPUT');
      // A request after it, whose own log line marks that everything about the malformed one has been written.
      const after = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}`, 'x-request-id': 'after-malformed-1' },
        body: JSON.stringify({ query: '{ viewer { role } }' }),
      });
      assert.equal(after.status, 200);
      await eventually(() => server.logs().slice(before).includes('after-malformed-1'), { what: 'the next request\'s log line' });
      const written = server.logs().slice(before).split('\n').filter((line) => line.trim() !== '');
      const about = written.filter((line) => line.includes('malformed-body-1'));
      assert.equal(about.length, 1, written.join('\n'));
      const entry = JSON.parse(about[0]) as Record<string, unknown>;
      assert.deepEqual([entry.msg, entry.status, entry.errorCodes], ['graphql request refused', 400, ['BAD_USER_INPUT']]);
      assert.ok(written.every((line) => line.startsWith('{')), `a line that is not JSON:\n${written.join('\n')}`);
    });

    it('reads a JSON body as body-parser does: a BOM, a charset, gzip and a chunked body accepted; JSON that is not an object refused', async () => {
      const { server } = suite;
      const query = JSON.stringify({ query: '{ viewer { role } }' });
      const send = (body: RequestInit['body'], headers: Record<string, string> = {}) =>
        fetch(server.graphqlUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}`, ...headers }, body, duplex: 'half' } as RequestInit);
      const role = async (response: Response) => {
        assert.equal(response.status, 200);
        return ((await response.json()) as { data: { viewer: { role: string } } }).data.viewer.role;
      };
      assert.equal(await role(await send(query)), 'ADMIN');
      assert.equal(await role(await send(`\uFEFF${query}`)), 'ADMIN');
      assert.equal(await role(await send(query, { 'content-type': 'application/json; charset=UTF-8' })), 'ADMIN');
      assert.equal(await role(await send(gzipSync(query), { 'content-encoding': 'gzip' })), 'ADMIN');
      assert.equal(await role(await send(Readable.toWeb(Readable.from([Buffer.from(query)])) as ReadableStream)), 'ADMIN');
      for (const body of ['"a string"', '42', '   ', 'null']) {
        const refused = await send(body);
        assert.equal(refused.status, 400, body);
        const { errors } = (await refused.json()) as { errors: { message: string; extensions: { code: string } }[] };
        assert.deepEqual([errors[0].extensions.code, errors[0].message], ['BAD_USER_INPUT', 'the request body is not valid JSON'], body);
      }
    });

    it('marks every GraphQL answer Cache-Control: no-store, data and errors alike, GET and POST', async () => {
      const { server } = suite;
      const headers = { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}` };
      const answers = [
        await fetch(server.graphqlUrl, { method: 'POST', headers, body: JSON.stringify({ query: '{ viewer { role } instances { id } }' }) }),
        await fetch(server.graphqlUrl, { method: 'POST', headers, body: JSON.stringify({ query: '{ viewer { nope } }' }) }),
        await fetch(server.graphqlUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ viewer { role } }' }) }),
        await fetch(`${server.graphqlUrl}?query=${encodeURIComponent('{ viewer { role } }')}`, { headers: { authorization: headers.authorization, 'apollo-require-preflight': 'true' } }),
      ];
      for (const [i, answer] of answers.entries()) {
        assert.match(answer.headers.get('content-type') ?? '', /json/, `answer ${i}`);
        assert.equal(answer.headers.get('cache-control'), 'no-store', `answer ${i}: ${await answer.text()}`);
      }
      assert.equal(answers[0].status, 200);
      assert.equal(answers[3].status, 200);
    });

    it('sends no CORS header to any origin by default, on /graphql and /uploads alike', async () => {
      const { server } = suite;
      for (const path of ['/graphql', '/uploads']) {
        const preflight = await fetch(`${server.url}${path}`, {
          method: 'OPTIONS',
          headers: { origin: DASHBOARD, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
        });
        assert.equal(preflight.headers.get('access-control-allow-origin'), null, path);
      }
      const upload = await fetch(`${server.url}/uploads`, {
        method: 'POST',
        headers: { origin: DASHBOARD, authorization: `Bearer ${server.adminKey}`, 'tus-resumable': '1.0.0', 'upload-length': '10' },
      });
      assert.equal(upload.headers.get('access-control-allow-origin'), null);
    });
  });
}

describe('SNAPGRAPH_INTROSPECTION=false and SNAPGRAPH_PLAYGROUND=false', () => {
  const suite = serverPerSuite({ env: { SNAPGRAPH_INTROSPECTION: 'false', SNAPGRAPH_PLAYGROUND: 'false' } });

  it('refuses introspection over HTTP and WebSocket alike, with BAD_USER_INPUT', async () => {
    const { server } = suite;
    expectCode(await introspects(server), 'BAD_USER_INPUT');
    const connection = await connectWs(server, server.adminKey);
    const messages = await wsOperation(connection, 'i', '{ __schema { queryType { name } } }');
    assert.deepEqual(
      messages.map((message) => message.type),
      ['error'],
    );
    assert.equal(messages[0].payload[0].extensions.code, 'BAD_USER_INPUT');
    const [other] = await wsOperation(connection, 'v', '{ viewer { role } }');
    assert.equal(other.payload.data.viewer.role, 'ADMIN', 'the socket lives on');
    await connection.close();
    expectData(await gql(server, '{ viewer { role } __typename }'));
  });

  it('serves no playground', async () => {
    const page = await fetch(suite.server.graphqlUrl, { headers: { accept: 'text/html' } });
    assert.doesNotMatch(page.headers.get('content-type') ?? '', /html/);
    const root = await fetch(`${suite.server.url}/`, { headers: { accept: 'text/html' } });
    assert.equal(root.status, 404);
    assert.doesNotMatch(await root.text(), /graphiql/i);
  });
});

describe('SNAPGRAPH_DEBUG_ERRORS=true', () => {
  const suite = serverPerSuite({ env: { SNAPGRAPH_DEBUG_ERRORS: 'true' } });

  it('includes stack traces, with paths relative to the app', async () => {
    const { server } = suite;
    const instanceId = (await createInstance(server, { name: 'debug', tier: 'FREE' })).id;
    await createNodes(server, instanceId, [{ labels: ['A'] }]);
    const result = await gql(server, NODES_PAGE, { instanceId, after: 'garbage' });
    const stack = expectCode(result, 'BAD_USER_INPUT').extensions?.stacktrace as string[];
    assert.ok(Array.isArray(stack) && stack.length > 1, result.text);
    assert.ok(stack.some((line) => /dist\/src\//.test(line)), stack.join('\n'));
    for (const line of stack) assert.doesNotMatch(line, /\(\/|at \/|file:\/\//, `an absolute path in ${line}`);
  });
});

describe('SNAPGRAPH_CORS_ORIGINS and SNAPGRAPH_MAX_BODY_BYTES', () => {
  const suite = serverPerSuite({ env: { SNAPGRAPH_CORS_ORIGINS: `${DASHBOARD}, http://localhost:3000`, SNAPGRAPH_MAX_BODY_BYTES: '20000' } });

  const preflight = (path: string, origin: string, method = 'POST') =>
    fetch(`${suite.server.url}${path}`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization, content-type, tus-resumable' },
    });

  it('answers preflights from an allowed origin on /graphql, /uploads and export links', async () => {
    for (const [path, method] of [
      ['/graphql', 'POST'],
      ['/uploads', 'POST'],
      ['/uploads/some-upload', 'PATCH'],
      ['/exports/some-token', 'GET'],
    ]) {
      const response = await preflight(path, DASHBOARD, method);
      assert.ok(response.status === 204, `${path}: ${response.status}`);
      assert.equal(response.headers.get('access-control-allow-origin'), DASHBOARD, path);
      assert.match(response.headers.get('access-control-allow-methods') ?? '', new RegExp(method));
      assert.match(response.headers.get('access-control-allow-headers') ?? '', /Authorization/i);
    }
  });

  it('gives a foreign origin no CORS header', async () => {
    const response = await preflight('/graphql', 'https://attacker.example');
    assert.equal(response.headers.get('access-control-allow-origin'), null);
    const post = await fetch(suite.server.graphqlUrl, {
      method: 'POST',
      headers: { origin: 'https://attacker.example', 'content-type': 'application/json', authorization: `Bearer ${suite.server.adminKey}` },
      body: JSON.stringify({ query: '{ viewer { role } }' }),
    });
    assert.equal(post.headers.get('access-control-allow-origin'), null);
  });

  it('lets an allowed origin read GraphQL answers and the tus headers', async () => {
    const { server } = suite;
    const post = await fetch(server.graphqlUrl, {
      method: 'POST',
      headers: { origin: DASHBOARD, 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}` },
      body: JSON.stringify({ query: '{ viewer { role } }' }),
    });
    assert.equal(post.headers.get('access-control-allow-origin'), DASHBOARD);
    const instanceId = (await createInstance(server, { name: 'cors-upload', tier: 'FREE' })).id;
    const metadata = [`instanceId ${Buffer.from(instanceId).toString('base64')}`, `confirm ${Buffer.from('RESTORE').toString('base64')}`].join(',');
    const created = await fetch(`${server.url}/uploads`, {
      method: 'POST',
      headers: { origin: DASHBOARD, authorization: `Bearer ${server.adminKey}`, 'tus-resumable': '1.0.0', 'upload-length': '100', 'upload-metadata': metadata },
    });
    assert.equal(created.status, 201, await created.text());
    assert.equal(created.headers.get('access-control-allow-origin'), DASHBOARD);
    const exposed = (created.headers.get('access-control-expose-headers') ?? '').toLowerCase();
    for (const header of ['location', 'upload-offset', 'tus-resumable', 'snapgraph-operation-id']) assert.ok(exposed.includes(header), exposed);
  });

  it('answers a body over the limit with 413 and a JSON error with a code', async () => {
    const { server } = suite;
    const nodes = Array.from({ length: 1000 }, () => ({ labels: ['Big'], properties: { text: 'x'.repeat(50) } }));
    const result = await post(server, JSON.stringify({ query: 'mutation ($n: [NodeInput!]!) { createNodes(instanceId: "x", nodes: $n) { id } }', variables: { n: nodes } }), {
      authorization: `Bearer ${server.adminKey}`,
    });
    assert.equal(result.status, 413, result.text);
    assert.equal(expectCode(result, 'BAD_USER_INPUT').extensions?.limit, 'body');
    expectData(await gql(server, '{ viewer { role } }'));
  });
});
