import assert from 'node:assert/strict';
import {
  createInstance,
  createNodes,
  CREATE_NODES,
  CREATE_RELATIONSHIPS,
  DELETE_NODES,
  expectCode,
  expectData,
  gql,
  type GqlResult,
  type GraphQLErrorJson,
  NODES_PAGE,
  post,
  RELATIONSHIPS_PAGE,
  serverPerSuite,
  statsOf,
  subscribe,
} from '../support';

const CONTRACT_CODES = new Set([
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'BAD_USER_INPUT',
  'CONFIRMATION_REQUIRED',
  'CONFLICT',
  'INSTANCE_UNAVAILABLE',
  'SNAPSHOT_NOT_READY',
  'CAPACITY_EXCEEDED',
  'INVALID_BACKUP_FILE',
  'FILE_TOO_LARGE',
  'INCOMPATIBLE_VERSION',
  'INTERNAL_SERVER_ERROR',
]);

const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');

/** Nests an object `depth` levels deep. */
const nested = (depth: number) => {
  const root: Record<string, unknown> = {};
  let current = root;
  for (let i = 0; i < depth; i++) current = (current.child = {}) as Record<string, unknown>;
  return root;
};

describe('malformed input', () => {
  const suite = serverPerSuite();
  let instanceId: string;
  let nodeIds: string[];

  before(async () => {
    instanceId = (await createInstance(suite.server, { name: 'target', tier: 'PROFESSIONAL' })).id;
    nodeIds = (await createNodes(suite.server, instanceId, [{ labels: ['A'] }, { labels: ['B'] }])).map((node) => node.id);
  });

  /** Every malformed request is BAD_USER_INPUT, carries only contract codes, and changes nothing. */
  const expectRefused = async (result: Promise<GqlResult>) => {
    const before = await statsOf(suite.server, instanceId);
    const refused = await result;
    expectCode(refused, 'BAD_USER_INPUT');
    for (const error of refused.errors ?? []) assert.ok(CONTRACT_CODES.has(error.extensions?.code ?? ''), `code ${error.extensions?.code}`);
    assert.deepEqual(await statsOf(suite.server, instanceId), before);
  };

  describe('paging arguments', () => {
    // A cursor of `list` of this instance holding `position`.
    for (const [what, afterIn] of [
      ['not base64 JSON', () => 'not-a-cursor!!'],
      ['JSON of the wrong shape', () => cursorOf({ id: 1 })],
      ['a cursor holding a non-id', (list: string) => cursorOf([list, instanceId, 'abc'])],
      ['a cursor holding a number instead of a string', (list: string) => cursorOf([list, instanceId, 5])],
      ['an empty string', () => ''],
    ] as const) {
      it(`refuses an \`after\` cursor that is ${what}`, async () => {
        await expectRefused(gql(suite.server, NODES_PAGE, { instanceId, after: afterIn('nodes') }));
        await expectRefused(gql(suite.server, RELATIONSHIPS_PAGE, { instanceId, after: afterIn('relationships') }));
      });
    }

    it('refuses `first` over 1000 or below 0', async () => {
      for (const first of [1001, 100_000, -1]) {
        await expectRefused(gql(suite.server, NODES_PAGE, { instanceId, first }));
        await expectRefused(gql(suite.server, RELATIONSHIPS_PAGE, { instanceId, first }));
      }
    });

    it('refuses a `first` that is not an integer', async () => {
      await expectRefused(gql(suite.server, NODES_PAGE, { instanceId, first: 2.5 }));
      await expectRefused(gql(suite.server, NODES_PAGE, { instanceId, first: 'ten' }));
    });
  });

  describe('date-times', () => {
    // Date.parse moves a day past the month's end into the next month (Feb 30 → Mar 2) and 24:00 into the next day: a
    // restore to "2026-02-30T10:00:00Z" went to March 2.
    for (const at of ['2026-02-30T10:00:00Z', '2026-04-31T10:00:00Z', '2025-02-29T10:00:00Z', '2026-01-01T24:00:00Z']) {
      it(`refuses ${at}, not in the calendar, rather than take it for another moment`, async () => {
        const history = `query ($id: ID!, $from: DateTime) { snapshots(instanceId: $id, filter: { from: $from }) { totalCount } }`;
        await expectRefused(gql(suite.server, history, { id: instanceId, from: at }));
        await expectRefused(gql(suite.server, `query ($id: ID!) { snapshots(instanceId: $id, filter: { to: "${at}" }) { totalCount } }`, { id: instanceId }));
        const restore = `mutation ($id: ID!, $at: DateTime!) { restoreToPointInTime(instanceId: $id, at: $at, confirm: "RESTORE") { id } }`;
        await expectRefused(gql(suite.server, restore, { id: instanceId, at }));
      });
    }

    it('accepts the last day of each month, and a leap day of a leap year', async () => {
      const history = `query ($id: ID!, $from: DateTime) { snapshots(instanceId: $id, filter: { from: $from }) { totalCount } }`;
      for (const from of ['2024-02-29T00:00:00Z', '2026-04-30T23:59:59.999Z', '2026-12-31T00:00:00+01:00']) {
        expectData(await gql(suite.server, history, { id: instanceId, from }));
      }
    });
  });

  describe('batches', () => {
    it('refuses an empty batch', async () => {
      await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes: [] }));
      await expectRefused(gql(suite.server, CREATE_RELATIONSHIPS, { instanceId, relationships: [] }));
      await expectRefused(gql(suite.server, DELETE_NODES, { instanceId, ids: [] }));
    });

    it('refuses a batch over 10,000 items', async () => {
      const nodes = Array.from({ length: 10_001 }, () => ({ labels: ['Many'] }));
      await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes }));
    });

    it('refuses node ids that are not ids', async () => {
      for (const id of ['abc', '0', '-1', '1.5', '', ' 1', '99999999999999999999', '9007199254740993']) {
        await expectRefused(gql(suite.server, DELETE_NODES, { instanceId, ids: [nodeIds[0], id] }));
        await expectRefused(
          gql(suite.server, CREATE_RELATIONSHIPS, {
            instanceId,
            relationships: [{ type: 'R', startNodeId: nodeIds[0], endNodeId: id }],
          }),
        );
      }
    });

    it('refuses properties that are not a JSON object', async () => {
      for (const properties of [[1, 2], 'text', 42, true]) {
        await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['P'], properties }] }));
      }
    });

    it('refuses properties nested deeper than a store can hold', async () => {
      await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['P'], properties: nested(1_100) }] }));
      await expectRefused(
        gql(suite.server, CREATE_RELATIONSHIPS, {
          instanceId,
          relationships: [{ type: 'R', startNodeId: nodeIds[0], endNodeId: nodeIds[1], properties: nested(1_100) }],
        }),
      );
    });

    it('accepts properties nested a reasonable depth', async () => {
      const [node] = expectData(await gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['Deep'], properties: nested(50) }] })).createNodes;
      assert.deepEqual(node.properties, nested(50));
      await gql(suite.server, DELETE_NODES, { instanceId, ids: [node.id] });
    });

    it('refuses an empty or over-long label or relationship type', async () => {
      await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: [''] }] }));
      await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['L'.repeat(201)] }] }));
      for (const type of ['', 'T'.repeat(201)]) {
        await expectRefused(
          gql(suite.server, CREATE_RELATIONSHIPS, { instanceId, relationships: [{ type, startNodeId: nodeIds[0], endNodeId: nodeIds[1] }] }),
        );
      }
    });

    it('refuses a node without labels (null) or a relationship without a type', async () => {
      await expectRefused(gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: null }] }));
      await expectRefused(gql(suite.server, CREATE_RELATIONSHIPS, { instanceId, relationships: [{ startNodeId: nodeIds[0], endNodeId: nodeIds[1] }] }));
    });
  });

  describe('the GraphQL document', () => {
    it('refuses an invalid enum value, as a variable or inline', async () => {
      await expectRefused(gql(suite.server, `mutation ($role: Role!) { createApiKey(name: "x", role: $role) { id } }`, { role: 'ROOT' }));
      await expectRefused(gql(suite.server, `mutation { createApiKey(name: "x", role: ROOT) { id } }`));
      await expectRefused(gql(suite.server, `mutation { createInstance(input: { name: "x", tier: "FREE" }) { id } }`));
    });

    it('refuses a syntax error, an unknown field and a missing argument', async () => {
      await expectRefused(gql(suite.server, `{ viewer { role `));
      await expectRefused(gql(suite.server, `{ viewer { role password } }`));
      await expectRefused(gql(suite.server, `{ nodes { totalCount } }`));
    });

    it('refuses a request body that is not a GraphQL request', async () => {
      const auth = { authorization: `Bearer ${suite.server.adminKey}` };
      for (const body of ['{"query": 42}', '{}', '[]', '{"query": "{ viewer { role } }", "variables": "nope"}']) {
        const result = await post(suite.server, body, auth);
        assert.ok(result.status >= 400 && result.status < 500, `HTTP ${result.status} for ${body}`);
      }
      const broken = await post(suite.server, '{"query": ', auth);
      assert.ok(broken.status >= 400 && broken.status < 500, `HTTP ${broken.status} for broken JSON`);
      expectData(await gql(suite.server, `{ viewer { role } }`));
    });

    it('refuses a mutation sent with GET (CSRF protection)', async () => {
      const url = new URL(suite.server.graphqlUrl);
      url.searchParams.set('query', `mutation { createInstance(input: { name: "csrf", tier: FREE }) { id } }`);
      const response = await fetch(url, { headers: { authorization: `Bearer ${suite.server.adminKey}` } });
      assert.ok(response.status >= 400, `HTTP ${response.status}`);
      const { instances } = expectData(await gql(suite.server, `{ instances { name } }`));
      assert.ok(!instances.some((instance: { name: string }) => instance.name === 'csrf'));
    });
  });

  describe('the server as `npm start` runs it (no NODE_ENV)', () => {
    // Stack traces are a developer's switch (SNAPGRAPH_DEBUG_ERRORS; its test is the control), never a default.
    it('includes no stack trace in errors', async () => {
      const result = await gql(suite.server, NODES_PAGE, { instanceId, first: 5000 });
      expectCode(result, 'BAD_USER_INPUT');
      assert.equal(result.errors?.[0].extensions?.stacktrace, undefined, result.text);
    });
  });
});

describe('NODE_ENV=production', () => {
  const suite = serverPerSuite({ env: { NODE_ENV: 'production' } });
  let instanceId: string;

  before(async () => {
    instanceId = (await createInstance(suite.server, { name: 'prod', tier: 'FREE' })).id;
  });

  const assertNoInternals = (result: GqlResult) => {
    assert.ok(result.errors && result.errors.length > 0, 'expected an error');
    for (const error of result.errors) {
      assert.equal(error.extensions?.stacktrace, undefined, `stacktrace in ${JSON.stringify(error)}`);
      assert.ok(!/node_modules|\/dist\/|\.js:\d+|SQLITE|QueryFailedError|at \w+ \(/.test(JSON.stringify(error)), `internals in ${JSON.stringify(error)}`);
      assert.ok(CONTRACT_CODES.has(error.extensions?.code ?? ''), `code ${error.extensions?.code}`);
    }
  };

  it('sends no stack trace with any kind of error', async () => {
    const results = [
      await gql(suite.server, `{ viewer { role } }`, {}, null),
      await gql(suite.server, `{ viewer { role } }`, {}, 'sg_wrong-key-0123456789abcdef'),
      await gql(suite.server, NODES_PAGE, { instanceId, first: 5000 }),
      await gql(suite.server, NODES_PAGE, { instanceId, after: 'garbage' }),
      await gql(suite.server, NODES_PAGE, { instanceId: '00000000-0000-4000-8000-000000000000' }),
      await gql(suite.server, `{ viewer { role `),
      await gql(suite.server, `{ viewer { nope } }`),
      await gql(suite.server, CREATE_NODES, { instanceId, nodes: [] }),
      await gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['P'], properties: nested(1_100) }] }),
      await gql(suite.server, CREATE_RELATIONSHIPS, { instanceId, relationships: [{ type: 'R', startNodeId: '1', endNodeId: '2' }] }),
    ];
    results.forEach(assertNoInternals);
  });

  it('sends no stack trace over WebSocket either', async () => {
    const invalid = subscribe(suite.server, suite.server.adminKey, `{ viewer { nope } }`);
    const rejection = await invalid.complete.then(
      () => assert.fail('an invalid document completed'),
      (error: Error & { graphQLErrors?: GraphQLErrorJson[] }) => error,
    );
    assert.ok(rejection.graphQLErrors && rejection.graphQLErrors.length > 0, String(rejection));
    assertNoInternals({ status: 0, data: null, errors: rejection.graphQLErrors, text: '' });

    // An error while the query runs (first: 5000 is now refused earlier, by the cost limit, as an `error` message).
    const failing = subscribe(suite.server, suite.server.adminKey, NODES_PAGE, { instanceId, first: -1 });
    const result = await failing.next();
    assertNoInternals({ status: 0, data: null, errors: result.errors as GraphQLErrorJson[], text: '' });
  });

  it('still names the problem in BAD_USER_INPUT messages', async () => {
    const result = await gql(suite.server, NODES_PAGE, { instanceId, first: 5000 });
    assert.match(expectCode(result, 'BAD_USER_INPUT').message, /first/);
  });
});
