// No request can take the server down: documents built to make parsing, validation or execution expensive are
// refused with a code before validation's expensive rules, over HTTP and WebSocket alike, while ordinary requests
// keep being answered; the cost limit counts page sizes given in variables; a refused upload gets its answer; a flood of
// connections past the cap is closed as it comes.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import {
  connectWs,
  craftArchive,
  createInstance,
  eventually,
  createNodes,
  expectCode,
  expectData,
  gql,
  type GqlResult,
  metricsValue,
  serverPerSuite,
  uploadBlobs,
  within,
} from '../support';

const repeated = (times: number) => `{ viewer { ${'role '.repeat(times)}} }`;
const manyVariables = (count: number) => `query (${Array.from({ length: count }, (_, i) => `$v${i}: Int`).join(', ')}) { viewer { role } }`;
/** F30 spreads F29 twice, which spreads F28 twice…: 2^30 fields once expanded, in 2 KB of text. */
const fragmentBomb = (levels: number) =>
  [
    `{ viewer { ...F${levels} } }`,
    `fragment F0 on Viewer { role }`,
    ...Array.from({ length: levels }, (_, i) => `fragment F${i + 1} on Viewer { ...F${i} ...F${i} }`),
  ].join('\n');
const aliasedPages = (count: number) =>
  `query ($id: ID!, $f: Int) { ${Array.from({ length: count }, (_, i) => `p${i}: nodes(instanceId: $id, first: $f) { edges { node { id labels properties } } }`).join(' ')} }`;

const limitOf = (result: GqlResult) => expectCode(result, 'BAD_USER_INPUT').extensions?.limit;

const DELETE_NODES = 'mutation ($id: ID!, $ids: [ID!]!) { deleteNodes(instanceId: $id, ids: $ids) }';
const CREATE_NODE = 'mutation ($id: ID!, $node: NodeInput!) { createNodes(instanceId: $id, nodes: [$node]) { id } }';
const CREATE_NODES = 'mutation ($id: ID!, $nodes: [NodeInput!]!) { createNodes(instanceId: $id, nodes: $nodes) { id } }';

describe('abusive requests', () => {
  const suite = serverPerSuite({ config: { maxUploadBytes: 100_000 } });
  let instanceId: string;

  before(async () => {
    instanceId = (await createInstance(suite.server, { name: 'abuse', tier: 'PROFESSIONAL' })).id;
    await createNodes(suite.server, instanceId, Array.from({ length: 50 }, (_, i) => ({ labels: ['N'], properties: { i } })));
  });

  it('refuses each with BAD_USER_INPUT and the limit it broke, while a concurrent trivial query answers', async function () {
    this.timeout(60_000);
    const { server } = suite;
    const abusive: [string, Promise<GqlResult>, string][] = [
      ['a field repeated 6,000 times', gql(server, repeated(6_000)), 'fields'],
      ['a field repeated 12,000 times', gql(server, repeated(12_000)), 'tokens'],
      ['a field repeated 100,000 times (500 KB)', gql(server, repeated(100_000)), 'bytes'],
      ['20,000 tokens of variable definitions', gql(server, manyVariables(2_500)), 'tokens'],
      ['a fragment bomb', gql(server, fragmentBomb(30)), 'fields'],
      ['100 aliases of nodes(first: $f)', gql(server, aliasedPages(100), { id: instanceId, f: 1000 }), 'aliases'],
      // Converted whole before the batch's own check: 4.5 million of them held the event loop for 10 s.
      ['a write batch of 200,000 ids', gql(server, DELETE_NODES, { id: instanceId, ids: Array.from({ length: 200_000 }, (_, i) => String(i + 1)) }), 'items'],
      ['a node of 200,000 labels', gql(server, CREATE_NODE, { id: instanceId, node: { labels: Array.from({ length: 200_000 }, () => 'L') } }), 'items'],
      ['101 nodes of 9,999 labels each', gql(server, CREATE_NODES, { id: instanceId, nodes: Array.from({ length: 101 }, () => ({ labels: Array.from({ length: 9_999 }, () => 'L') })) }), 'items'],
    ];
    const trivial = gql(server, '{ viewer { role } }');
    assert.equal(expectData(await trivial).viewer.role, 'ADMIN');
    for (const [what, result, limit] of abusive) {
      const refused = await result;
      assert.equal(refused.status, 400, `${what}: HTTP ${refused.status}`);
      assert.equal(limitOf(refused), limit, `${what}: ${refused.text.slice(0, 300)}`);
    }
    expectData(await gql(server, '{ viewer { role } }'));
  });

  it('takes a full write batch of nodes with several labels each past the list bound', async () => {
    const nodes = Array.from({ length: 10_000 }, (_, i) => ({ id: String(1_000_000 + i), labels: Array.from({ length: 10 }, (_, j) => `L${j}`) }));
    const answer = await gql(suite.server, 'mutation ($id: ID!, $nodes: [NodeUpdateInput!]!) { updateNodes(instanceId: $id, nodes: $nodes) { id } }', { id: instanceId, nodes });
    // Refused for naming no node of the instance, after the batch was read: not by the list bound.
    assert.equal(answer.errors?.[0].extensions?.code, 'NOT_FOUND', answer.text.slice(0, 300));
  });

  it('counts page sizes given as variables (and defaults) in the cost', async () => {
    const { server } = suite;
    // 10 pages of 1,000 nodes with three fields each: about 196,000, over the limit of 100,000.
    const refused = expectCode(await gql(server, aliasedPages(10), { id: instanceId, f: 1000 }), 'BAD_USER_INPUT');
    assert.equal(refused.extensions?.limit, 'cost');
    assert.match(refused.message, /cost is \d+, over this server's limit of 100000/);
    // The same document with small pages is fine: the variable's value is what counts.
    const answered = expectData(await gql(server, aliasedPages(10), { id: instanceId, f: 10 }));
    assert.equal(answered.p9.edges.length, 10);
    // A variable's default counts too.
    const defaulted = aliasedPages(10).replace('$f: Int', '$f: Int = 1000');
    assert.equal(limitOf(await gql(server, defaulted, { id: instanceId })), 'cost');
  });

  it('counts a page size given as null, or as a variable left out, as the default page it is served', async () => {
    const { server } = suite;
    // 50 pages of nodes whose `first` the resolver serves as its default, 100: a cost of about 154,000. Counted as pages
    // of 1 they were answered (5,000 nodes) where `first: 100` is refused.
    const pages = (first: string, variables = '$id: ID!, $f: Int') =>
      `query (${variables}) { ${Array.from({ length: 50 }, (_, i) => `p${i}: nodes(instanceId: $id, first: ${first}) { totalCount edges { cursor node { id labels properties } } }`).join(' ')} }`;
    assert.equal(limitOf(await gql(server, pages('$f'), { id: instanceId, f: 100 })), 'cost');
    assert.equal(limitOf(await gql(server, pages('$f'), { id: instanceId, f: null })), 'cost');
    assert.equal(limitOf(await gql(server, pages('$f'), { id: instanceId })), 'cost');
    assert.equal(limitOf(await gql(server, pages('$f', '$id: ID!, $f: Int = null'), { id: instanceId })), 'cost');
    assert.equal(limitOf(await gql(server, pages('null', '$id: ID!'), { id: instanceId })), 'cost');
    // Small pages given as numbers are what they say.
    assert.equal(expectData(await gql(server, pages('$f'), { id: instanceId, f: 5 })).p49.edges.length, 5);
  });

  it('counts each instance of the unpaged instances list in the cost, once the list has been read', async function () {
    this.timeout(30_000);
    const { server } = suite;
    // 500 snapshots of one field per instance: a cost of about 9,660 each, under the limit of 100,000 for one instance,
    // which is all a list without first/last can be counted as before it is read.
    const snapshotsOfEach = (first: number) => `{ instances { id snapshots(first: ${first}) { edges { node { id } } } } }`;
    let count = expectData(await gql(server, '{ instances { id } }')).instances.length as number;
    for (; count < 11; count++) await createInstance(server, { name: `listed-${count}`, tier: 'FREE' });
    const answer = await gql(server, snapshotsOfEach(500));
    const refused = expectCode(answer, 'BAD_USER_INPUT');
    assert.equal(answer.status, 400);
    assert.equal(refused.extensions?.limit, 'cost');
    const found = refused.extensions?.found as number;
    assert.ok(found > 100_000 && found >= count * 9_000, `counted ${found} for ${count} instances`);
    assert.match(refused.message, /cost is \d+, over this server's limit of 100000/);
    assert.equal(expectData(await gql(server, snapshotsOfEach(5))).instances.length, count, 'small pages are answered');

    // Under two aliases, each resolved on its own: pages sized so that one list alone costs about 70,000, both 140,000.
    const first = Math.floor((70_000 / count - 3.5) / 19.3125);
    const list = (alias: string) => `${alias}: instances { id snapshots(first: ${first}) { edges { node { id } } } }`;
    assert.equal(expectData(await gql(server, `{ ${list('a')} }`)).a.length, count);
    const twice = expectCode(await gql(server, `{ ${list('a')} ${list('b')} }`), 'BAD_USER_INPUT');
    assert.equal(twice.extensions?.limit, 'cost');
    assert.ok((twice.extensions?.found as number) > 130_000, `counted ${twice.extensions?.found} for both lists`);
  });

  it('applies the same limits to a query sent with GET, however many other parameters the URL has', async function () {
    this.timeout(30_000);
    const { server } = suite;
    // 2,000 repeated fields (about a second of validation, where 1,000 are allowed) fit in the 16 KB a URL may have.
    const get = async (params: URLSearchParams) => {
      const response = await fetch(`${server.graphqlUrl}?${params}`, {
        headers: { authorization: `Bearer ${server.adminKey}`, 'apollo-require-preflight': 'true', accept: 'application/json' },
      });
      const text = await response.text();
      return { status: response.status, text, ...(JSON.parse(text) as Pick<GqlResult, 'data' | 'errors'>) };
    };
    const alone = new URLSearchParams({ query: repeated(2_000) });
    assert.equal(limitOf(await get(alone)), 'fields');
    // Express reads only the first 1,000 parameters of a URL; Apollo reads them all.
    const behindOthers = new URLSearchParams([...Array.from({ length: 1_000 }, () => ['p', ''] as [string, string]), ['query', repeated(2_000)]]);
    const refused = await get(behindOthers);
    assert.equal(refused.status, 400, refused.text.slice(0, 300));
    assert.equal(limitOf(refused), 'fields');
    assert.equal(expectData(await get(new URLSearchParams([['p', ''], ['query', '{ viewer { role } }']]))).viewer.role, 'ADMIN');
  });

  it('applies the same limits over WebSocket, as an error message that leaves the socket open', async () => {
    const { server } = suite;
    const connection = await connectWs(server, server.adminKey);
    const run = (id: string, query: string, variables?: Record<string, unknown>) =>
      new Promise<{ type: string; payload: any }>((resolve) => {
        const onMessage = (data: Buffer) => {
          const message = JSON.parse(data.toString()) as { id?: string; type: string; payload: any };
          if (message.id !== id) return;
          connection.socket.off('message', onMessage);
          resolve(message);
        };
        connection.socket.on('message', onMessage);
        connection.socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
      });
    for (const [id, query, variables, limit] of [
      ['repeated', repeated(6_000), undefined, 'fields'],
      ['bomb', fragmentBomb(30), undefined, 'fields'],
      ['large', repeated(100_000), undefined, 'bytes'],
      ['cost', aliasedPages(10), { id: instanceId, f: 1000 }, 'cost'],
      ['items', DELETE_NODES, { id: instanceId, ids: Array.from({ length: 10_001 }, (_, i) => String(i + 1)) }, 'items'],
    ] as const) {
      const message = await run(id, query, variables);
      assert.equal(message.type, 'error', `${id}: ${JSON.stringify(message).slice(0, 300)}`);
      assert.deepEqual([message.payload[0].extensions.code, message.payload[0].extensions.limit], ['BAD_USER_INPUT', limit], id);
    }
    const answer = await run('ok', '{ viewer { role } }');
    assert.equal(answer.payload.data.viewer.role, 'ADMIN');
    await connection.close();
  });

  describe('a refused multipart upload', () => {
    /** A multipart POST of a body of `length` bytes, as a client sends it (its key, the CSRF header), not yet sent. */
    const multipartPost = (length: number, contentType: string, extraHeaders: Record<string, string> = {}) =>
      httpRequest(suite.server.graphqlUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${suite.server.adminKey}`,
          'apollo-require-preflight': 'true',
          'content-type': contentType,
          'content-length': String(length),
          ...extraHeaders,
        },
      });

    /** Sends the whole body at once and reports the answer, or the network error a client would see. */
    const send = (body: Buffer, contentType: string, extraHeaders: Record<string, string> = {}) =>
      new Promise<{ status?: number; requestId?: string | string[]; text?: string; error?: string }>((resolve) => {
        const req = multipartPost(body.length, contentType, extraHeaders);
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode, requestId: res.headers['x-request-id'], text }));
          res.on('error', (error) => resolve({ error: `${(error as NodeJS.ErrnoException).code ?? error.message}` }));
        });
        req.on('error', (error) => resolve({ error: `${(error as NodeJS.ErrnoException).code ?? error.message}` }));
        req.end(body);
      });

    /** `fileDisposition`: what follows the file part's name in its Content-Disposition (a filename makes it a file). */
    const multipart = (operations: string, file: Buffer, map = '{"0":["variables.file"]}', fileDisposition = '; filename="big.backup"') => {
      const boundary = 'snapgraph-abuse-boundary';
      const head = (name: string, extra = '') => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n`;
      const body = Buffer.concat([
        Buffer.from(`${head('operations')}${operations}\r\n${head('map')}${map}\r\n`),
        Buffer.from(`${head('0', fileDisposition)}`),
        file,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      return { body, contentType: `multipart/form-data; boundary=${boundary}` };
    };
    const operations = (id: string) =>
      JSON.stringify({
        query: 'mutation ($instanceId: ID!, $file: Upload!, $confirm: String!) { restoreFromFile(instanceId: $instanceId, file: $file, confirm: $confirm) { id } }',
        variables: { instanceId: id, file: null, confirm: 'RESTORE' },
      });
    const bigFile = Buffer.alloc(8 * 1024 * 1024, 7);
    const operationCount = async () =>
      expectData(await gql(suite.server, 'query ($id: ID!) { operations(instanceId: $id) { totalCount } }', { id: instanceId })).operations.totalCount;

    it('over maxUploadBytes: answered 413 FILE_TOO_LARGE, not reset', async function () {
      this.timeout(30_000);
      const { body, contentType } = multipart(operations(instanceId), bigFile);
      for (let attempt = 0; attempt < 3; attempt++) {
        const answer = await send(body, contentType);
        assert.equal(answer.error, undefined, `attempt ${attempt}: ${answer.error}`);
        assert.equal(answer.status, 413, answer.text);
        assert.equal(JSON.parse(answer.text!).errors[0].extensions.code, 'FILE_TOO_LARGE');
      }
      expectData(await gql(suite.server, '{ viewer { role } }'));
    });

    it('with malformed operations: answered 400 BAD_USER_INPUT, not reset', async function () {
      this.timeout(30_000);
      const { body, contentType } = multipart('{"query": ', bigFile);
      for (let attempt = 0; attempt < 3; attempt++) {
        const answer = await send(body, contentType);
        assert.equal(answer.error, undefined, `attempt ${attempt}: ${answer.error}`);
        assert.equal(answer.status, 400, answer.text);
        assert.equal(JSON.parse(answer.text!).errors[0].extensions.code, 'BAD_USER_INPUT');
      }
    });

    it('whose map points outside the operations (__proto__): answered 400, and the server is unharmed', async function () {
      this.timeout(30_000);
      // A path through __proto__ or constructor reaches Object.prototype, which every object of the process shares.
      for (const path of ['__proto__.toString', 'variables.__proto__.hasOwnProperty', 'constructor.prototype.valueOf']) {
        const { body, contentType } = multipart(operations(instanceId), Buffer.from('not an archive'), JSON.stringify({ 0: [path] }));
        const answer = await send(body, contentType);
        assert.equal(answer.status, 400, answer.text);
        assert.match(JSON.parse(answer.text!).errors[0].message, /Invalid object path/, path);
      }
      expectData(await gql(suite.server, '{ viewer { role } }'));
      const { body, contentType } = multipart(operations(instanceId), Buffer.from('not an archive'));
      const refused = JSON.parse((await send(body, contentType)).text!);
      assert.equal(refused.errors[0].extensions.code, 'INVALID_BACKUP_FILE', JSON.stringify(refused));
    });

    it('whose body ends inside the file: BAD_USER_INPUT saying so, for restoreFromFile and inspectFile; inspectFile over maxUploadBytes: FILE_TOO_LARGE', async function () {
      this.timeout(30_000);
      // A sound archive: the cut body is all that is wrong with the request.
      const archive = craftArchive([JSON.stringify(['N', '1', [], {}])]);
      const inspect = JSON.stringify({ query: 'mutation ($file: Upload!) { inspectFile(file: $file) { kind } }', variables: { file: null } });
      for (const request of [operations(instanceId), inspect]) {
        const { body, contentType } = multipart(request, archive);
        const cut = body.subarray(0, body.length - '\r\n--snapgraph-abuse-boundary--\r\n'.length);
        const answer = await send(cut, contentType);
        assert.equal(answer.error, undefined, answer.error);
        const error = JSON.parse(answer.text!).errors[0];
        assert.equal(error.extensions.code, 'BAD_USER_INPUT', answer.text);
        assert.match(error.message, /ended in the middle of a part/);
      }
      const tooLarge = multipart(inspect, bigFile);
      const answer = await send(tooLarge.body, tooLarge.contentType);
      assert.equal(JSON.parse(answer.text!).errors[0].extensions.code, 'FILE_TOO_LARGE', answer.text);
    });

    it('whose file is sent as a plain field (no filename, as `curl -F 0=<file` does): BAD_USER_INPUT saying so, for restoreFromFile and inspectFile', async function () {
      // The map names the part, but a part without a filename is no file: the answer says so rather than never coming.
      this.timeout(30_000);
      const archive = craftArchive([JSON.stringify(['N', '1', [], {}])]);
      const inspect = JSON.stringify({ query: 'mutation ($file: Upload!) { inspectFile(file: $file) { kind } }', variables: { file: null } });
      const before = await operationCount();
      for (const request of [operations(instanceId), inspect]) {
        const { body, contentType } = multipart(request, archive, undefined, '');
        const answer = await send(body, contentType);
        assert.equal(answer.error, undefined, answer.error);
        const error = JSON.parse(answer.text!).errors[0];
        assert.equal(error.extensions.code, 'BAD_USER_INPUT', answer.text);
        assert.match(error.message, /‘0’ is not a file/);
      }
      assert.equal(await operationCount(), before);
    });

    it('with two files, or an operations field over its 10 MiB: BAD_USER_INPUT, not FILE_TOO_LARGE (whose advice is restore-file)', async function () {
      this.timeout(30_000);
      const archive = craftArchive([JSON.stringify(['N', '1', [], {}])]);
      const twoFiles = multipart(operations(instanceId), archive, '{"0":["variables.file"],"1":["variables.other"]}');
      const hugeOperations = multipart(JSON.stringify({ query: JSON.parse(operations(instanceId)).query, variables: { padding: 'x'.repeat(10 * 1024 * 1024) } }), archive);
      for (const [what, { body, contentType }, message] of [
        ['two files', twoFiles, /one file/],
        ['operations over 10 MiB', hugeOperations, /‘operations’ multipart field value exceeds the 10485760 byte size limit/],
      ] as const) {
        const answer = await send(body, contentType);
        assert.equal(answer.error, undefined, `${what}: ${answer.error}`);
        const error = JSON.parse(answer.text!).errors[0];
        assert.equal(error.extensions.code, 'BAD_USER_INPUT', `${what}: ${answer.text}`);
        assert.match(error.message, message, what);
      }
    });

    it('with two files for one variable (two parts of its name): BAD_USER_INPUT, nothing restored and nothing kept', async function () {
      this.timeout(30_000);
      const archive = craftArchive([JSON.stringify(['N', '1', [], {}])]);
      const { body, contentType } = multipart(operations(instanceId), archive);
      const closing = '\r\n--snapgraph-abuse-boundary--\r\n';
      const second = '\r\n--snapgraph-abuse-boundary\r\nContent-Disposition: form-data; name="0"; filename="other.backup"\r\n\r\n';
      const twoFiles = Buffer.concat([body.subarray(0, body.length - closing.length), Buffer.from(second), archive, Buffer.from(closing)]);
      const before = await operationCount();
      const answer = await send(twoFiles, contentType);
      assert.equal(answer.error, undefined, answer.error);
      const error = JSON.parse(answer.text!).errors[0];
      assert.equal(error.extensions.code, 'BAD_USER_INPUT', answer.text);
      assert.match(error.message, /two parts named ‘0’/);
      assert.equal(await operationCount(), before, 'a restore was queued');
      assert.deepEqual(uploadBlobs(suite.server.dataDir), []);
    });

    /** Sends `sent` of a multipart request announced as `length` bytes, then goes away; the request's log line. */
    async function breakOff(sent: Buffer, length: number, contentType: string, requestId: string): Promise<string> {
      const req = multipartPost(length, contentType, { 'x-request-id': requestId });
      req.on('error', () => undefined);
      await new Promise<void>((resolve) => req.write(sent, () => resolve()));
      req.destroy();
      return eventually(
        () =>
          suite.server
            .logs()
            .split('\n')
            .find((written) => written.includes(`"requestId":"${requestId}"`) && written.includes('"msg":"graphql request"')),
        { what: 'the log line of the broken-off upload' },
      );
    }

    it('whose client goes away after the file, before the request ends: nothing restored and nothing kept', async function () {
      this.timeout(30_000);
      const requestId = 'upload-broken-off-after-the-file';
      const archive = craftArchive([JSON.stringify(['N', '1', [], {}])]);
      const { body, contentType } = multipart(operations(instanceId), archive);
      // The file part and the delimiter after it, without the `--` that closes the request.
      const sent = body.subarray(0, body.length - '--\r\n'.length);
      const before = await operationCount();
      const line = await breakOff(sent, body.length, contentType, requestId);
      assert.match(line, /"errorCodes":\["BAD_USER_INPUT"\]/);
      assert.equal(await operationCount(), before, 'a restore was queued');
      assert.deepEqual(uploadBlobs(suite.server.dataDir), []);
    });

    it('whose client goes away inside the file: logged as BAD_USER_INPUT, not as a failure of the server', async function () {
      // A client that breaks off an upload (Ctrl-C, a dropped link) is no INTERNAL_SERVER_ERROR in the log and metrics.
      this.timeout(30_000);
      const requestId = 'upload-broken-off';
      const { body, contentType } = multipart(operations(instanceId), bigFile);
      const sent = body.subarray(0, body.length - bigFile.length + 64 * 1024);
      const line = await breakOff(sent, body.length, contentType, requestId);
      assert.match(line, /"errorCodes":\["BAD_USER_INPUT"\]/);
      assert.ok(!suite.server.logs().includes('"msg":"graphql request failed"'), 'a broken-off upload was logged as a failure of the server');
    });

    it('without the CSRF header: answered 400, not reset', async function () {
      this.timeout(30_000);
      const { body, contentType } = multipart(operations(instanceId), bigFile);
      const answer = await send(body, contentType, { 'apollo-require-preflight': '' });
      assert.equal(answer.error, undefined, answer.error);
      assert.equal(answer.status, 400, answer.text);
    });

    it('echoes the X-Request-Id and writes the refusal to the log under it, as every other refused request', async function () {
      // docs/api.md: the response echoes the id, which finds the request in the log. A multipart request refused before
      // Apollo saw it (no CSRF header, a refused key, a file over the limit) had neither.
      this.timeout(30_000);
      const { body, contentType } = multipart(operations(instanceId), Buffer.alloc(1024, 7));
      const cases = [
        ['upload-refused-csrf', { 'apollo-require-preflight': '' }, 400, 'BAD_USER_INPUT'],
        ['upload-refused-key', { authorization: 'Bearer sg_never_issued_upload_key' }, 401, 'UNAUTHENTICATED'],
      ] as const;
      for (const [requestId, headers, status, code] of cases) {
        const answer = await send(body, contentType, { 'x-request-id': requestId, ...headers });
        assert.equal(answer.error, undefined, answer.error);
        assert.equal(answer.status, status, answer.text);
        assert.equal(JSON.parse(answer.text!).errors[0].extensions.code, code);
        assert.equal(answer.requestId, requestId, `${requestId}: no X-Request-Id echoed`);
        // The server's output reaches the test a moment after the answer.
        const line = await eventually(
          () =>
            suite.server
              .logs()
              .split('\n')
              .find((written) => written.includes(`"requestId":"${requestId}"`)),
          { what: `${requestId}: a log line` },
        );
        assert.match(line, new RegExp(`"errorCodes":\\["${code}"\\]`));
      }
    });
  });
});

describe('a flood of connections', () => {
  const MAX_CONNECTIONS = 6;
  const suite = serverPerSuite({ env: { SNAPGRAPH_MAX_CONNECTIONS: String(MAX_CONNECTIONS) } });

  const opened: Socket[] = [];
  afterEach(() => {
    for (const socket of opened.splice(0)) socket.destroy();
  });
  /** A connection that has begun a request to /healthz and holds it open (its headers not ended). */
  const heldRequest = async (url: URL): Promise<Socket> => {
    const socket = connect(Number(url.port), url.hostname);
    opened.push(socket);
    socket.on('error', () => undefined); // reset or not, it is destroyed after the test
    await once(socket, 'connect');
    socket.write(`GET /healthz HTTP/1.1\r\nHost: ${url.host}\r\n`);
    return socket;
  };
  /** A request on a connection of its own: its status, or the error that ended it. */
  const freshRequest = (url: URL) =>
    new Promise<number | string>((resolve) => {
      const req = httpRequest(`${url.origin}/healthz`, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      req.end();
    });

  it('closes the connections past SNAPGRAPH_MAX_CONNECTIONS as they come, while those it holds are answered', async function () {
    this.timeout(60_000);
    const server = suite.server;
    const url = new URL(server.url);
    const serving = server.logLines().find((line) => line.msg === 'snapgraph is serving');
    assert.equal(serving?.maxConnections, MAX_CONNECTIONS);
    const held = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, () => heldRequest(url)));
    try {
      // Every one of them accepted: the next is closed as it is, and again.
      const refused = await eventually(async () => {
        const outcome = await freshRequest(url);
        return typeof outcome === 'string' ? outcome : undefined;
      });
      assert.match(refused, /ECONNRESET|socket hang up|EPIPE/);
      assert.equal(typeof (await freshRequest(url)), 'string');
      // A held connection is served: its request ends, and it is answered.
      const answer = new Promise<string>((resolve) => {
        let text = '';
        held[0].setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
          if (text.includes('\r\n\r\n')) resolve(text);
        });
      });
      held[0].write('Connection: close\r\n\r\n');
      assert.match(await within(answer, 10_000, "the held connection's answer"), /^HTTP\/1\.1 200/);
    } finally {
      for (const socket of held) socket.destroy();
    }
    // Room again once they are gone.
    assert.equal(await eventually(async () => ((await freshRequest(url)) === 200 ? 200 : undefined)), 200);
    assert.ok((await metricsValue(server, 'snapgraph_connections_dropped_total')) >= 2);
    const logged = await eventually(() => server.logLines().find((line) => /^dropped new connections/.test(String(line.msg))));
    assert.equal(logged.maxConnections, MAX_CONNECTIONS);
    assert.ok(Number(logged.dropped) >= 1);
  });
});
