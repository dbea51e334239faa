import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { itRunsTheCoreRoundTrip } from '../support/core-round-trip';
import { itSumsStorageUsage } from '../support/storage-usage';
import {
  connectWs,
  createInstance,
  createNodes,
  createTestBucket,
  createTestDatabase,
  describePostgres,
  describeS3,
  eventually,
  EXPORT_SNAPSHOT,
  expectCode,
  exportLink,
  expectData,
  gql,
  type GraphQLErrorJson,
  postgresServerPerSuite,
  startServer,
  takeSnapshot,
  type TestDatabase,
  uploadFile,
  type TestServer,
  withClient,
} from '../support';

describePostgres('PostgreSQL metadata (DATABASE_URL)', (postgres) => {
  const suite = postgresServerPerSuite(postgres);

  it('keeps metadata in PostgreSQL, not in the data dir', async () => {
    assert.ok(!existsSync(join(suite.server.dataDir, 'metadata.sqlite')), 'metadata.sqlite was created despite DATABASE_URL');
    const tenants = await withClient(suite.database.url, (client) => client.query<{ name: string }>('SELECT name FROM tenants'));
    assert.deepEqual(tenants.rows.map((row) => row.name), ['default']);
    const migrations = await withClient(suite.database.url, (client) => client.query('SELECT name FROM migrations'));
    assert.ok(migrations.rowCount && migrations.rowCount > 0, 'no migrations recorded');
  });

  it('never logs the connection string', () => {
    assert.ok(!suite.server.logs().includes(suite.database.url));
  });

  itRunsTheCoreRoundTrip(() => suite.server);

  it('lives through the database dropping its connections, and serves again after', async function () {
    this.timeout(60_000);
    const { server } = suite;
    const name = new URL(suite.database.url).pathname.slice(1);
    // For a few seconds (the change-log ticker looks every second), every connection the server holds is cut, over
    // and over, while requests come in.
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      await withClient(suite.database.url, (client) =>
        client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]),
      );
      await gql(server, '{ instances { id } }').catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Its last log lines say why, when it did not.
    assert.equal(server.process.exitCode, null, `the server exited while its connections were cut:\n${server.logs().slice(-4000)}`);
    await eventually(async () => (await gql(server, '{ instances { id } }')).data?.instances !== undefined, { what: 'requests to be answered again' });
    const instance = await createInstance(server, { name: 'after-the-cut' });
    assert.equal((await takeSnapshot(server, instance.id)).status, 'COMPLETED');
  });

  it('answers an instance id holding NUL as a missing instance, and refuses such a name', async () => {
    // PostgreSQL's text cannot hold NUL: the lookup failed as INTERNAL_SERVER_ERROR, on every API that names an instance.
    const id = 'a\u0000b';
    const { server } = suite;
    assert.equal(expectData(await gql(server, 'query ($id: ID!) { instance(id: $id) { id } }', { id })).instance, null);
    expectCode(await gql(server, 'query ($id: ID!) { nodes(instanceId: $id) { totalCount } }', { id }), 'NOT_FOUND');
    expectCode(await gql(server, 'mutation ($id: ID!) { createNodes(instanceId: $id, nodes: [{ labels: ["A"] }]) { id } }', { id }), 'NOT_FOUND');
    expectCode(await gql(server, 'mutation ($id: ID!) { deleteInstance(id: $id) }', { id }), 'NOT_FOUND');
    expectCode(
      await gql(server, 'mutation ($input: CreateInstanceInput!) { createInstance(input: $input) { id } }', { input: { name: 'nul\u0000name', tier: 'FREE' } }),
      'BAD_USER_INPUT',
    );
  });

  it('refuses other text holding NUL as the client\'s input (BAD_USER_INPUT), never as an internal error', async () => {
    const { server } = suite;
    const instance = await createInstance(server, { name: 'nul lookups' });
    for (const [query, variables] of [
      ['query ($id: ID!) { snapshot(id: $id) { id } }', { id: 'a\u0000b' }],
      ['query ($id: ID!) { operation(id: $id) { id } }', { id: 'a\u0000b' }],
      ['mutation ($id: ID!, $d: String) { createSnapshot(instanceId: $id, description: $d) { id } }', { id: instance.id, d: 'a\u0000b' }],
      ['mutation ($n: String!) { createApiKey(name: $n, role: VIEWER) { id } }', { n: 'a\u0000b' }],
    ] as const) {
      const refused = expectCode(await gql(server, query, variables), 'BAD_USER_INPUT');
      assert.match(refused.message, /NUL character/, query);
    }
  });

  it('refuses a page cursor holding a time that is not a whole number of milliseconds as BAD_USER_INPUT, never as an internal error', async () => {
    // The column is a bigint: PostgreSQL refused such a time in the lookup (SQLite compared it), an INTERNAL_SERVER_ERROR.
    const { server } = suite;
    const instance = await createInstance(server, { name: 'forged cursors' });
    const cursor = (parts: unknown[]) => Buffer.from(JSON.stringify(parts)).toString('base64url');
    for (const createdAt of [1.5, 1e300, 2 ** 63]) {
      for (const [list, query] of [
        ['snapshots', 'query ($id: ID!, $after: String) { snapshots(instanceId: $id, after: $after) { totalCount } }'],
        ['operations', 'query ($id: ID!, $after: String) { operations(instanceId: $id, after: $after) { totalCount } }'],
        ['snapshots', 'query ($id: ID!, $after: String) { instance(id: $id) { snapshots(after: $after) { totalCount } } }'],
      ]) {
        const refused = expectCode(await gql(server, query, { id: instance.id, after: cursor([list, instance.id, createdAt, 'x']) }), 'BAD_USER_INPUT');
        assert.match(refused.message, /is not a valid cursor/, `${createdAt}: ${query}`);
      }
    }
    // What the server issues still works.
    expectData(await gql(server, 'query ($id: ID!, $after: String) { snapshots(instanceId: $id, after: $after) { totalCount } }', { id: instance.id, after: cursor(['snapshots', instance.id, Date.now(), 'x']) }));
  });

  it('logs why a key could not be checked, under the request id the INTERNAL_SERVER_ERROR answer carries', async () => {
    const { server } = suite;
    const requestId = `keys-unreadable-${Date.now()}`;
    // A key the server has never seen is looked up in the database, which cannot answer: its table is gone.
    await withClient(suite.database.url, (client) => client.query('ALTER TABLE api_keys RENAME TO api_keys_away'));
    let response: Response;
    try {
      response = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sg_never_seen_before_0123456789', 'x-request-id': requestId },
        body: JSON.stringify({ query: '{ viewer { role } }' }),
      });
    } finally {
      await withClient(suite.database.url, (client) => client.query('ALTER TABLE api_keys_away RENAME TO api_keys'));
    }
    assert.equal(response.status, 500);
    const { errors } = (await response.json()) as { errors: { message: string; extensions: { code: string } }[] };
    assert.deepEqual([errors[0].extensions.code, errors[0].message], ['INTERNAL_SERVER_ERROR', 'Internal server error']);
    assert.equal(response.headers.get('x-request-id'), requestId);
    const cause = await eventually(() => server.logLines().find((line) => line.requestId === requestId && line.level === 50));
    assert.match(JSON.stringify(cause.err), /api_keys/);
    expectData(await gql(server, '{ viewer { role } }'));
  });

  it('closes a WebSocket whose key could not be checked with 1013 (try again later), not 4401, and logs why', async () => {
    const { server } = suite;
    // A key the server has never seen is looked up in the database, which cannot answer: its table is gone.
    await withClient(suite.database.url, (client) => client.query('ALTER TABLE api_keys RENAME TO api_keys_away'));
    let refused: Awaited<ReturnType<typeof connectWs>>;
    try {
      refused = await connectWs(server, 'sg_never_seen_over_websocket_0123456789');
    } finally {
      await withClient(suite.database.url, (client) => client.query('ALTER TABLE api_keys_away RENAME TO api_keys'));
    }
    // 4401 told the client its key is wrong, and graphql-ws clients never connect again after it.
    assert.equal(refused.acknowledged, false);
    assert.equal(refused.closeCode, 1013);
    const cause = await eventually(() => server.logLines().find((line) => line.msg === 'could not check the API key of a WebSocket'));
    assert.equal(cause.level, 50);
    assert.match(JSON.stringify(cause.err), /api_keys/);
    assert.ok((await connectWs(server, server.adminKey)).acknowledged);
  });

  it('answers a multipart upload whose key could not be checked with INTERNAL_SERVER_ERROR, not 401, and logs why', async () => {
    const { server } = suite;
    const instance = await createInstance(server, { name: 'upload while keys are unreadable' });
    await withClient(suite.database.url, (client) => client.query('ALTER TABLE api_keys RENAME TO api_keys_away'));
    let result: Awaited<ReturnType<typeof uploadFile>>;
    try {
      result = await uploadFile(server, { instanceId: instance.id, file: Buffer.from('not checked'), key: 'sg_never_seen_with_an_upload_0123456789' });
    } finally {
      await withClient(suite.database.url, (client) => client.query('ALTER TABLE api_keys_away RENAME TO api_keys'));
    }
    // UNAUTHENTICATED told the client its key is wrong.
    assert.equal(result.status, 500, result.text);
    assert.deepEqual([result.errors?.[0].extensions?.code, result.errors?.[0].message], ['INTERNAL_SERVER_ERROR', 'Internal server error']);
    const cause = await eventually(() => server.logLines().find((line) => line.level === 50 && JSON.stringify(line.err ?? '').includes('api_keys')));
    assert.ok(typeof cause.requestId === 'string');
  });

  it('logs, as JSON under its request id, a failure of the request pipeline itself (the response cache)', async () => {
    const { server } = suite;
    await createInstance(server, { name: 'pipeline failure' });
    const requestId = `pipeline-failure-${Date.now()}`;
    // The instance list is answered through the response cache, which first reads the tenant's data version.
    await withClient(suite.database.url, (client) => client.query('ALTER TABLE tenant_data_versions RENAME TO tenant_data_versions_away'));
    let response: Response;
    try {
      response = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}`, 'x-request-id': requestId },
        body: JSON.stringify({ query: '{ instances { id } }' }),
      });
    } finally {
      await withClient(suite.database.url, (client) => client.query('ALTER TABLE tenant_data_versions_away RENAME TO tenant_data_versions'));
    }
    assert.equal(response.status, 500);
    assert.equal(response.headers.get('x-request-id'), requestId);
    const cause = await eventually(() => server.logLines().find((line) => line.requestId === requestId && line.level === 50));
    assert.equal(cause.msg, 'graphql request failed');
    assert.match(JSON.stringify(cause.err), /tenant_data_versions/);
    const line = await eventually(() => server.logLines().find((candidate) => candidate.requestId === requestId && candidate.msg === 'graphql request'));
    assert.deepEqual([line.status, line.errorCodes], [500, ['INTERNAL_SERVER_ERROR']]);
    // Apollo's own line of it is JSON too (it was plain text on stderr).
    for (const text of server.logs().split('\n').filter((candidate) => candidate.includes('Unexpected error processing request'))) {
      assert.doesNotThrow(() => JSON.parse(text), text);
    }
  });

  it('answers GET /metrics while the instance count cannot be read, or waits on a lock, with every other metric', async function () {
    this.timeout(30_000);
    const { server } = suite;
    const scrape = async () => {
      const response = await fetch(`${server.url}/metrics`);
      return { status: response.status, text: await response.text() };
    };
    assert.match((await scrape()).text, /^snapgraph_instances\{availability="AVAILABLE"\} \d+$/m);
    await withClient(suite.database.url, (client) => client.query('ALTER TABLE instances RENAME TO instances_away'));
    let failing: { status: number; text: string };
    try {
      failing = await scrape();
    } finally {
      await withClient(suite.database.url, (client) => client.query('ALTER TABLE instances_away RENAME TO instances'));
    }
    assert.equal(failing.status, 200, failing.text.slice(0, 300));
    assert.match(failing.text, /^process_cpu_seconds_total \d/m);
    assert.match(failing.text, /^snapgraph_operations_total\{kind="SNAPSHOT",outcome="succeeded"\} \d/m);
    assert.doesNotMatch(failing.text, /^snapgraph_instances\{/m, 'no count it could not read');
    assert.ok(server.logLines().some((line) => line.msg === 'could not count the instances for /metrics' && JSON.stringify(line.err).includes('instances')));
    // A count that waits (the table locked by a migration or an operator) does not hold the scrape for as long.
    await withClient(suite.database.url, async (client) => {
      await client.query('BEGIN');
      await client.query('LOCK TABLE instances IN ACCESS EXCLUSIVE MODE');
      try {
        const waiting = await scrape();
        assert.equal(waiting.status, 200);
        assert.match(waiting.text, /^process_cpu_seconds_total \d/m);
      } finally {
        await client.query('ROLLBACK');
      }
    });
    assert.match((await scrape()).text, /^snapgraph_instances\{availability="AVAILABLE"\} \d+$/m);
  });

  it('logs the cause of an INTERNAL_SERVER_ERROR over WebSocket, of a query and of a subscription', async function () {
    this.timeout(30_000);
    const { server } = suite;
    const instance = await createInstance(server, { name: 'ws failures' });
    /** Runs `query` over WebSocket while `table` is renamed away (the key is checked before it goes), and returns the errors sent. */
    const whileTableIsAway = async (table: string, query: string, variables?: Record<string, unknown>) => {
      const connection = await connectWs(server, server.adminKey);
      await withClient(suite.database.url, (client) => client.query(`ALTER TABLE ${table} RENAME TO ${table}_away`));
      try {
        return await new Promise<GraphQLErrorJson[]>((resolve) => {
          const errors: GraphQLErrorJson[] = [];
          connection.socket.on('message', (data: Buffer) => {
            const message = JSON.parse(data.toString()) as { type: string; payload?: { errors?: GraphQLErrorJson[] } | GraphQLErrorJson[] };
            if (message.type === 'next') errors.push(...((message.payload as { errors?: GraphQLErrorJson[] }).errors ?? []));
            if (message.type === 'error') errors.push(...(message.payload as GraphQLErrorJson[]));
            if (message.type === 'complete' || message.type === 'error') resolve(errors);
          });
          connection.socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
        });
      } finally {
        await withClient(suite.database.url, (client) => client.query(`ALTER TABLE ${table}_away RENAME TO ${table}`));
        await connection.close();
      }
    };
    for (const [table, query, variables] of [
      ['api_keys', 'query KeysWhileAway { apiKeys { id } }', undefined],
      ['instances', 'subscription AvailabilityWhileAway($id: ID) { instanceAvailabilityChanged(instanceId: $id) { availability } }', { id: instance.id }],
    ] as const) {
      const errors = await whileTableIsAway(table, query, variables);
      assert.deepEqual(
        errors.map((error) => [error.extensions?.code, error.message]),
        [['INTERNAL_SERVER_ERROR', 'Internal server error']],
        query,
      );
      const failed = await eventually(() =>
        server.logLines().find((line) => line.msg === 'graphql request failed' && line.transport === 'websocket' && JSON.stringify(line.err).includes(table)),
      );
      assert.equal(typeof failed.requestId, 'string', query);
      assert.ok(
        server.logLines().some((line) => line.msg === 'graphql request' && line.requestId === failed.requestId),
        `${query}: the request's own line has the same request id`,
      );
    }
  });

  // Retention's removal deletes the row, then looks for valid links in the same transaction: a link inserted while that
  // was not yet committed found the row (its removal not visible yet), and was handed out for a snapshot gone a moment later.
  it('never hands out an export link for a snapshot whose removal is under way: it waits for it, and says NOT_FOUND', async () => {
    const { server } = suite;
    const instance = await createInstance(server, { name: 'link against removal' });
    await createNodes(server, instance.id, [{ labels: ['A'], properties: { n: 1 } }]);
    const snapshot = await takeSnapshot(server, instance.id);
    await exportLink(server, snapshot.id); // its archive is produced: the next link only records itself
    await withClient(suite.database.url, async (client) => {
      await client.query('BEGIN');
      await client.query('DELETE FROM snapshots WHERE id = $1', [snapshot.id]);
      const asked = gql(server, EXPORT_SNAPSHOT, { id: snapshot.id });
      await new Promise((resolve) => setTimeout(resolve, 500));
      await client.query('COMMIT');
      expectCode(await asked, 'NOT_FOUND');
    });
    const links = await withClient(suite.database.url, (client) => client.query('SELECT id FROM export_tokens WHERE "snapshotId" = $1 AND "expiresAt" > $2', [snapshot.id, Date.now()]));
    assert.equal(links.rowCount, 1, 'only the link made before the removal');
  });

  it('stores API keys hashed', async () => {
    const keys = await withClient(suite.database.url, (client) => client.query<{ secretHash: string }>('SELECT "secretHash" FROM api_keys'));
    assert.ok(keys.rows.length > 0);
    for (const row of keys.rows) assert.notEqual(row.secretHash, suite.server.adminKey);
    assert.ok(!keys.rows.some((row) => row.secretHash.includes(suite.server.adminKey)));
  });

  it('removes the plaintext scratch copies a crash left once nobody has touched them for a day, beside other replicas too', async () => {
    const { server } = suite;
    const instance = await createInstance(server, { name: 'scratched' });
    await createNodes(server, instance.id, [{ labels: ['Secret'], properties: { card: '4111 1111 1111 1111' } }]);
    await server.kill();
    // What an export or a verification killed mid-way leaves: a snapshot materialised as a store under an id no instance
    // has, and a copy a base was being cut from; both the graph in plaintext. With other replicas on the data dir, a
    // recent one may be theirs, under way; one untouched for a day is a crash's, and stays forever unless removed.
    const dayAndMore = (Date.now() - 25 * 3_600_000) / 1000;
    const scratchOf = (id: string, age?: number) => {
      const dir = join(server.dataDir, 'instances', id);
      mkdirSync(dir);
      copyFileSync(join(server.dataDir, 'instances', instance.id, 'graph-1.sqlite'), join(dir, 'graph-1.sqlite'));
      if (age !== undefined) utimesSync(join(dir, 'graph-1.sqlite'), age, age);
      return dir;
    };
    const stale = scratchOf(randomUUID(), dayAndMore);
    const recent = scratchOf(randomUUID());
    mkdirSync(join(server.dataDir, 'scratch'), { recursive: true });
    const staleBase = join(server.dataDir, 'scratch', `base-${randomUUID()}.sqlite`);
    writeFileSync(staleBase, 'a copy cut short');
    utimesSync(staleBase, dayAndMore, dayAndMore);
    const recentBase = join(server.dataDir, 'scratch', `base-${randomUUID()}.sqlite`);
    writeFileSync(recentBase, 'a copy being cut');
    await server.restart();
    assert.ok(!existsSync(stale), 'the day-old scratch store is still there');
    assert.ok(!existsSync(staleBase), 'the day-old base copy is still there');
    assert.ok(existsSync(recent), "a recent scratch store (another replica's, perhaps) went");
    assert.deepEqual(readdirSync(join(server.dataDir, 'scratch')), [recentBase.split('/').pop()]);
    assert.ok(existsSync(join(server.dataDir, 'instances', instance.id, 'graph-1.sqlite')), "the instance's own store went");
  });
});

describePostgres('PostgreSQL metadata: export destinations', (postgres) => {
  describeS3('against the local S3 endpoint', ({ s3 }) => {
    let database: TestDatabase | undefined;
    let server: TestServer | undefined;
    before(async function () {
      this.timeout(60_000);
      database = await createTestDatabase(postgres.adminUrl());
      server = await startServer({ env: { DATABASE_URL: database.url, SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS: 'true' } });
    });
    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    it('refuses a url or an endpoint longer than it can store as BAD_USER_INPUT, never as an internal error', async function () {
      this.timeout(30_000);
      // The prefix was checked name by name, not in length: the probe object went in and out of the bucket, then
      // PostgreSQL refused the row (url is a varchar(600), endpoint a varchar(500)) and the client got
      // INTERNAL_SERVER_ERROR. SQLite kept what it was given.
      const bucket = await createTestBucket(s3(), s3().second);
      const create = (input: Record<string, unknown>) =>
        gql(server!, `mutation ($input: ExportDestinationInput!) { createExportDestination(input: $input) { id url } }`, {
          input: { name: 'long', url: `s3://${bucket}/x`, endpoint: s3().endpoint, region: 'us-east-1', ...s3().second, ...input },
        });
      const longPrefix = `${'abcdefghi/'.repeat(60)}x`;
      const refused = expectCode(await create({ url: `s3://${bucket}/${longPrefix}` }), 'BAD_USER_INPUT');
      assert.match(refused.message, /url must be at most 600 characters/);
      const endpoint = expectCode(await create({ endpoint: `${s3().endpoint}/${'p'.repeat(500)}` }), 'BAD_USER_INPUT');
      assert.match(endpoint.message, /endpoint must be at most 500 characters/);
      // The longest url that fits is stored as given.
      const fits = `s3://${bucket}/${longPrefix}`.slice(0, 600).replace(/\/$/, 'y');
      assert.equal(expectData(await create({ url: fits })).createExportDestination.url, fits);
    });
  });
});

describePostgres('PostgreSQL metadata: storage usage', (postgres) => {
  const suite = postgresServerPerSuite(postgres);
  itSumsStorageUsage(() => suite.server);
});
