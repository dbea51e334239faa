import assert from 'node:assert/strict';
import {
  connectWs,
  createInstance,
  createKey,
  createNodes,
  CREATE_NODES,
  CREATE_RELATIONSHIPS,
  DELETE_NODES,
  expectCode,
  expectData,
  gql,
  type NewApiKey,
  post,
  serverPerSuite,
  subscribe,
} from '../support';

const VIEWER_QUERY = `{ viewer { tenantId tenantName role apiKeyName } }`;

describe('auth', () => {
  const suite = serverPerSuite();
  /** Every secret the tests see, to check none reached the logs. */
  const secretsSeen: string[] = [];

  describe('authentication', () => {
    describe('over HTTP', () => {
      it('refuses a request without an API key as UNAUTHENTICATED', async () => {
        expectCode(await gql(suite.server, VIEWER_QUERY, {}, null), 'UNAUTHENTICATED');
      });

      it('refuses an unknown key as UNAUTHENTICATED with HTTP 401', async () => {
        const result = await gql(suite.server, VIEWER_QUERY, {}, 'sg_this-key-was-never-issued-0123456789');
        expectCode(result, 'UNAUTHENTICATED');
        assert.equal(result.status, 401);
        assert.equal(result.data ?? null, null);
      });

      for (const [what, header] of [
        ['another scheme', 'Basic dXNlcjpwYXNz'],
        ['"Bearer" without a key', 'Bearer'],
        ['a key with spaces in it', 'Bearer two words'],
        ['garbage', '%%%'],
      ] as const) {
        it(`refuses a malformed Authorization header (${what}) as UNAUTHENTICATED`, async () => {
          const result = await post(suite.server, { query: VIEWER_QUERY }, { authorization: header });
          expectCode(result, 'UNAUTHENTICATED');
          assert.equal(result.data ?? null, null);
        });
      }

      it('refuses a revoked key, while other keys keep working', async () => {
        const doomed = await createKey(suite.server, suite.server.adminKey, 'MEMBER', 'doomed');
        const kept = await createKey(suite.server, suite.server.adminKey, 'MEMBER', 'kept');
        secretsSeen.push(doomed.secret, kept.secret);
        expectData(await gql(suite.server, VIEWER_QUERY, {}, doomed.secret));

        const revoked = await gql(suite.server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: doomed.id });
        assert.equal(expectData(revoked).revokeApiKey, true);

        expectCode(await gql(suite.server, VIEWER_QUERY, {}, doomed.secret), 'UNAUTHENTICATED');
        expectData(await gql(suite.server, VIEWER_QUERY, {}, kept.secret));
      });

      it('treats revoking an already revoked or unknown key as NOT_FOUND', async () => {
        const key = await createKey(suite.server, suite.server.adminKey, 'VIEWER');
        secretsSeen.push(key.secret);
        const revoke = `mutation ($id: ID!) { revokeApiKey(id: $id) }`;
        expectData(await gql(suite.server, revoke, { id: key.id }));
        expectCode(await gql(suite.server, revoke, { id: key.id }), 'NOT_FOUND');
        expectCode(await gql(suite.server, revoke, { id: '00000000-0000-4000-8000-000000000000' }), 'NOT_FOUND');
      });

      it('describes the caller in `viewer`: tenant, role and key name', async () => {
        const key = await createKey(suite.server, suite.server.adminKey, 'VIEWER', 'dashboard');
        secretsSeen.push(key.secret);
        const { viewer } = expectData(await gql(suite.server, VIEWER_QUERY, {}, key.secret));
        assert.equal(viewer.tenantName, 'default');
        assert.equal(viewer.role, 'VIEWER');
        assert.equal(viewer.apiKeyName, 'dashboard');
      });

      it('shows a new key\'s secret once, and it differs from every other key', async () => {
        const a = await createKey(suite.server, suite.server.adminKey, 'MEMBER');
        const b = await createKey(suite.server, suite.server.adminKey, 'MEMBER');
        secretsSeen.push(a.secret, b.secret);
        assert.notEqual(a.secret, b.secret);
        assert.notEqual(a.id, b.id);
        assert.ok(a.secret.length >= 32, 'a secret should carry at least 32 characters');
      });
    });

    describe('over WebSocket', () => {
      it('closes the connection with 4401 when connection_init carries no key', async () => {
        const connection = await connectWs(suite.server, null);
        assert.equal(connection.acknowledged, false);
        assert.equal(connection.closeCode, 4401);
      });

      it('closes the connection with 4401 for an unknown key', async () => {
        const connection = await connectWs(suite.server, 'sg_unknown-key-0123456789abcdef');
        assert.equal(connection.acknowledged, false);
        assert.equal(connection.closeCode, 4401);
      });

      it('closes the connection with 4401 for a malformed authorization value', async () => {
        const connection = await connectWs(suite.server, null, { connectionParams: { authorization: `Basic ${suite.server.adminKey}` } });
        assert.equal(connection.closeCode, 4401);
      });

      it('acknowledges a valid key and runs operations as that key\'s tenant and role', async () => {
        const connection = await connectWs(suite.server, suite.server.adminKey);
        assert.equal(connection.acknowledged, true);
        await connection.close();

        const key = await createKey(suite.server, suite.server.adminKey, 'VIEWER', 'ws-viewer');
        secretsSeen.push(key.secret);
        const viewer = subscribe(suite.server, key.secret, VIEWER_QUERY);
        const result = await viewer.next();
        assert.equal(result.errors, undefined);
        assert.deepEqual((result.data as any).viewer.role, 'VIEWER');
        await viewer.complete;
      });

      it('reports a graphql-ws client with a bad key as closed with 4401', async () => {
        const refused = subscribe(suite.server, 'sg_unknown-key-0123456789abcdef', VIEWER_QUERY);
        await assert.rejects(refused.complete, (error: Error & { closeCode?: number }) => error.closeCode === 4401);
      });
    });
  });

  describe('roles', () => {
    let keys: Record<'ADMIN' | 'MEMBER' | 'VIEWER', NewApiKey>;
    let instanceId: string;
    let nodeIds: string[];

    before(async () => {
      const server = suite.server;
      keys = {
        ADMIN: await createKey(server, server.adminKey, 'ADMIN'),
        MEMBER: await createKey(server, server.adminKey, 'MEMBER'),
        VIEWER: await createKey(server, server.adminKey, 'VIEWER'),
      };
      secretsSeen.push(...Object.values(keys).map((key) => key.secret));
      instanceId = (await createInstance(server, { name: 'shared', tier: 'PROFESSIONAL' })).id;
      nodeIds = (await createNodes(server, instanceId, [{ labels: ['A'] }, { labels: ['B'] }])).map((node) => node.id);
    });

    const readAll = `query ($id: ID!) {
      viewer { role }
      instances { id }
      instance(id: $id) { id stats { nodeCount } schedule { enabled } }
      nodes(instanceId: $id) { totalCount }
      relationships(instanceId: $id) { totalCount }
    }`;

    describe('VIEWER', () => {
      it('reads everything in the tenant', async () => {
        const data = expectData(await gql(suite.server, readAll, { id: instanceId }, keys.VIEWER.secret));
        assert.equal(data.viewer.role, 'VIEWER');
        assert.equal(data.instance.id, instanceId);
        assert.equal(data.nodes.totalCount, 2);
      });

      it('may not create an instance (FORBIDDEN)', async () => {
        const result = await gql(
          suite.server,
          `mutation { createInstance(input: { name: "nope", tier: FREE }) { id } }`,
          {},
          keys.VIEWER.secret,
        );
        expectCode(result, 'FORBIDDEN');
      });

      it('may not write graph data (FORBIDDEN), and nothing changes', async () => {
        const secret = keys.VIEWER.secret;
        expectCode(await gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['X'] }] }, secret), 'FORBIDDEN');
        expectCode(
          await gql(
            suite.server,
            CREATE_RELATIONSHIPS,
            { instanceId, relationships: [{ type: 'R', startNodeId: nodeIds[0], endNodeId: nodeIds[1] }] },
            secret,
          ),
          'FORBIDDEN',
        );
        expectCode(await gql(suite.server, DELETE_NODES, { instanceId, ids: nodeIds }, secret), 'FORBIDDEN');
        const data = expectData(await gql(suite.server, readAll, { id: instanceId }, secret));
        assert.equal(data.nodes.totalCount, 2);
        assert.equal(data.relationships.totalCount, 0);
      });

      it('may not delete an instance or manage API keys (FORBIDDEN)', async () => {
        const secret = keys.VIEWER.secret;
        expectCode(await gql(suite.server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: instanceId }, secret), 'FORBIDDEN');
        expectCode(await gql(suite.server, `mutation { createApiKey(name: "x", role: VIEWER) { id } }`, {}, secret), 'FORBIDDEN');
        expectCode(await gql(suite.server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: keys.MEMBER.id }, secret), 'FORBIDDEN');
      });
    });

    describe('MEMBER', () => {
      it('creates instances and writes, relates and deletes graph data', async () => {
        const secret = keys.MEMBER.secret;
        const own = await createInstance(suite.server, { name: 'member-made', tier: 'FREE' }, secret);
        const [a, b] = await createNodes(suite.server, own.id, [{ labels: ['A'] }, { labels: ['B'] }], secret);
        expectData(
          await gql(suite.server, CREATE_RELATIONSHIPS, { instanceId: own.id, relationships: [{ type: 'R', startNodeId: a.id, endNodeId: b.id }] }, secret),
        );
        assert.equal(expectData(await gql(suite.server, DELETE_NODES, { instanceId: own.id, ids: [a.id] }, secret)).deleteNodes, 1);
      });

      it('may not delete an instance (FORBIDDEN), and the instance stays', async () => {
        expectCode(
          await gql(suite.server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: instanceId }, keys.MEMBER.secret),
          'FORBIDDEN',
        );
        const { instance } = expectData(await gql(suite.server, `query ($id: ID!) { instance(id: $id) { status } }`, { id: instanceId }));
        assert.equal(instance.status, 'RUNNING');
      });

      it('may not create or revoke API keys (FORBIDDEN)', async () => {
        const secret = keys.MEMBER.secret;
        expectCode(await gql(suite.server, `mutation { createApiKey(name: "x", role: ADMIN) { id } }`, {}, secret), 'FORBIDDEN');
        expectCode(await gql(suite.server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: keys.VIEWER.id }, secret), 'FORBIDDEN');
        expectData(await gql(suite.server, VIEWER_QUERY, {}, keys.VIEWER.secret));
      });
    });

    describe('ADMIN', () => {
      it('creates keys of every role, revokes keys and deletes instances', async () => {
        const secret = keys.ADMIN.secret;
        for (const role of ['ADMIN', 'MEMBER', 'VIEWER'] as const) {
          const key = await createKey(suite.server, secret, role);
          assert.equal(key.role, role);
          const { viewer } = expectData(await gql(suite.server, VIEWER_QUERY, {}, key.secret));
          assert.equal(viewer.role, role);
          expectData(await gql(suite.server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: key.id }, secret));
        }
        const doomed = await createInstance(suite.server, { name: 'doomed', tier: 'FREE' }, secret);
        await createNodes(suite.server, doomed.id, [{ labels: ['Gone'] }], secret);
        assert.equal(expectData(await gql(suite.server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: doomed.id }, secret)).deleteInstance, true);
        const after = expectData(await gql(suite.server, `query ($id: ID!) { instance(id: $id) { id } instances { id } }`, { id: doomed.id }, secret));
        assert.equal(after.instance, null);
        assert.ok(!after.instances.some((listed: { id: string }) => listed.id === doomed.id));
        expectCode(await gql(suite.server, `query ($id: ID!) { nodes(instanceId: $id) { totalCount } }`, { id: doomed.id }, secret), 'NOT_FOUND');
        expectCode(await gql(suite.server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: doomed.id }, secret), 'NOT_FOUND');
      });

      it('rejects an API key with an empty name as BAD_USER_INPUT', async () => {
        expectCode(await gql(suite.server, `mutation { createApiKey(name: "  ", role: VIEWER) { id } }`), 'BAD_USER_INPUT');
      });
    });
  });

  describe('after all of the above', () => {
    it('never wrote a key or the bootstrap token to the logs', () => {
      const logs = suite.server.logs();
      assert.ok(secretsSeen.length > 0);
      for (const secret of [suite.server.adminKey, ...secretsSeen]) {
        assert.ok(!logs.includes(secret), `a secret (${secret.slice(0, 6)}…) appears in the server output`);
      }
    });
  });
});
