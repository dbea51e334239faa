import assert from 'node:assert/strict';
import {
  allNodes,
  createInstance,
  createKey,
  createNodes,
  createTenant,
  CREATE_NODES,
  CREATE_RELATIONSHIPS,
  DELETE_NODES,
  expectCode,
  expectData,
  gql,
  type GqlResult,
  type NewTenant,
  type NodeJson,
  runCli,
  serverPerSuite,
  statsOf,
  takeSnapshot,
} from '../support';

const MISSING_INSTANCE = '00000000-0000-4000-8000-000000000000';

describe('two tenants', () => {
  const suite = serverPerSuite();
  let acme: NewTenant;
  let ownInstanceId: string;
  let ownNodes: NodeJson[];
  let acmeInstanceId: string;

  before(async () => {
    const server = suite.server;
    acme = await createTenant(server, 'acme');
    ownInstanceId = (await createInstance(server, { name: 'default-graph', tier: 'PROFESSIONAL' })).id;
    ownNodes = await createNodes(server, ownInstanceId, [{ labels: ['Secret'], properties: { owner: 'default' } }, { labels: ['Secret'] }]);
    acmeInstanceId = (await createInstance(server, { name: 'acme-graph', tier: 'FREE' }, acme.apiKey)).id;
  });

  /** A foreign object's error must read exactly like a missing object's, apart from the id. */
  const assertLooksMissing = (foreign: GqlResult, missing: GqlResult, foreignId: string) => {
    const foreignError = expectCode(foreign, 'NOT_FOUND');
    const missingError = expectCode(missing, 'NOT_FOUND');
    assert.equal(foreignError.message.replace(foreignId, '<id>'), missingError.message.replace(MISSING_INSTANCE, '<id>'));
  };

  it('the CLI prints a new tenant\'s id and first ADMIN key as JSON, while the server runs', async () => {
    assert.match(acme.tenantId, /\S/);
    const { viewer } = expectData(await gql(suite.server, `{ viewer { tenantId tenantName role } }`, {}, acme.apiKey));
    assert.deepEqual(viewer, { tenantId: acme.tenantId, tenantName: 'acme', role: 'ADMIN' });
  });

  it('the CLI refuses a tenant name that is taken', async () => {
    const result = await runCli(['tenant', 'create', 'acme', '--json'], suite.server.env);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /acme/);
  });

  it('`instances` lists only the caller\'s own instances', async () => {
    const own = expectData(await gql(suite.server, `{ instances { id } }`)).instances.map((i: { id: string }) => i.id);
    const theirs = expectData(await gql(suite.server, `{ instances { id } }`, {}, acme.apiKey)).instances.map((i: { id: string }) => i.id);
    assert.deepEqual(own, [ownInstanceId]);
    assert.deepEqual(theirs, [acmeInstanceId]);
  });

  it('`instance(id)` of another tenant is null', async () => {
    const query = `query ($id: ID!) { instance(id: $id) { id name } }`;
    assert.equal(expectData(await gql(suite.server, query, { id: ownInstanceId }, acme.apiKey)).instance, null);
    assert.equal(expectData(await gql(suite.server, query, { id: acmeInstanceId })).instance, null);
  });

  it('reading another tenant\'s nodes or relationships is NOT_FOUND, like a missing instance', async () => {
    for (const field of ['nodes', 'relationships']) {
      const query = `query ($id: ID!) { ${field}(instanceId: $id) { totalCount } }`;
      assertLooksMissing(
        await gql(suite.server, query, { id: ownInstanceId }, acme.apiKey),
        await gql(suite.server, query, { id: MISSING_INSTANCE }, acme.apiKey),
        ownInstanceId,
      );
    }
  });

  it('writing into another tenant\'s instance is NOT_FOUND and writes nothing', async () => {
    const as = acme.apiKey;
    const nodes = { nodes: [{ labels: ['Intruder'] }] };
    assertLooksMissing(
      await gql(suite.server, CREATE_NODES, { instanceId: ownInstanceId, ...nodes }, as),
      await gql(suite.server, CREATE_NODES, { instanceId: MISSING_INSTANCE, ...nodes }, as),
      ownInstanceId,
    );
    const relationships = { relationships: [{ type: 'R', startNodeId: ownNodes[0].id, endNodeId: ownNodes[1].id }] };
    assertLooksMissing(
      await gql(suite.server, CREATE_RELATIONSHIPS, { instanceId: ownInstanceId, ...relationships }, as),
      await gql(suite.server, CREATE_RELATIONSHIPS, { instanceId: MISSING_INSTANCE, ...relationships }, as),
      ownInstanceId,
    );
    const ids = { ids: ownNodes.map((node) => node.id) };
    assertLooksMissing(
      await gql(suite.server, DELETE_NODES, { instanceId: ownInstanceId, ...ids }, as),
      await gql(suite.server, DELETE_NODES, { instanceId: MISSING_INSTANCE, ...ids }, as),
      ownInstanceId,
    );

    assert.deepEqual(await allNodes(suite.server, ownInstanceId), ownNodes);
    const stats = await statsOf(suite.server, ownInstanceId);
    assert.equal(stats.relationshipCount, 0);
  });

  it('deleting another tenant\'s instance is NOT_FOUND and the instance stays', async () => {
    const mutation = `mutation ($id: ID!) { deleteInstance(id: $id) }`;
    assertLooksMissing(
      await gql(suite.server, mutation, { id: ownInstanceId }, acme.apiKey),
      await gql(suite.server, mutation, { id: MISSING_INSTANCE }, acme.apiKey),
      ownInstanceId,
    );
    const { instance } = expectData(await gql(suite.server, `query ($id: ID!) { instance(id: $id) { status availability } }`, { id: ownInstanceId }));
    assert.deepEqual(instance, { status: 'RUNNING', availability: 'AVAILABLE' });
  });

  it("verifying, cancelling, exporting to a bucket or restoring to a point in time with another tenant's ids is NOT_FOUND, like missing ones", async () => {
    const server = suite.server;
    const as = acme.apiKey;
    const snapshotId = (await takeSnapshot(server, ownInstanceId)).id;
    const operationId = expectData(await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 1) { edges { node { id } } } }`, { id: ownInstanceId })).operations
      .edges[0].node.id;
    const operations = async () => expectData(await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 0) { totalCount } }`, { id: ownInstanceId })).operations.totalCount;
    const before = { operations: await operations(), acmeInstances: expectData(await gql(server, `{ instances { id } }`, {}, as)).instances };
    const at = new Date().toISOString();
    for (const [query, foreignId, variables] of [
      [`mutation ($id: ID!) { verifySnapshot(id: $id) { id } }`, snapshotId, {}],
      [`mutation ($id: ID!) { cancelOperation(id: $id) { id } }`, operationId, {}],
      [`mutation ($id: ID!) { exportSnapshotAs(id: $id, format: CYPHER) { url } }`, snapshotId, {}],
      [`mutation ($id: ID!, $d: ID!) { exportSnapshotTo(snapshotId: $id, destinationId: $d) { id } }`, snapshotId, { d: MISSING_INSTANCE }],
      [`mutation ($id: ID!, $at: DateTime!) { restoreToPointInTime(instanceId: $id, at: $at, confirm: "RESTORE") { id } }`, ownInstanceId, { at }],
      [
        `mutation ($id: ID!, $t: ID!, $at: DateTime!) { restoreToPointInTime(instanceId: $t, at: $at, confirm: "RESTORE", targetInstanceId: $id) { id } }`,
        ownInstanceId,
        { t: acmeInstanceId, at },
      ],
      [`mutation ($id: ID!, $at: DateTime!) { createInstanceFromPointInTime(instanceId: $id, at: $at, input: { name: "taken", tier: FREE }) { id } }`, ownInstanceId, { at }],
    ] as const) {
      assertLooksMissing(
        await gql(server, query, { id: foreignId, ...variables }, as),
        await gql(server, query, { id: MISSING_INSTANCE, ...variables }, as),
        foreignId,
      );
    }
    const { operation } = expectData(await gql(server, `query ($id: ID!) { operation(id: $id) { id } }`, { id: operationId }, as));
    assert.equal(operation, null);
    assert.deepEqual({ operations: await operations(), acmeInstances: expectData(await gql(server, `{ instances { id } }`, {}, as)).instances }, before);
  });

  it('revoking another tenant\'s API key is NOT_FOUND and the key keeps working', async () => {
    const member = await createKey(suite.server, suite.server.adminKey, 'MEMBER');
    expectCode(await gql(suite.server, `mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: member.id }, acme.apiKey), 'NOT_FOUND');
    expectData(await gql(suite.server, `{ viewer { role } }`, {}, member.secret));
  });

  it('keys created by one tenant\'s ADMIN belong to that tenant only', async () => {
    const acmeViewer = await createKey(suite.server, acme.apiKey, 'VIEWER');
    const { viewer, instances } = expectData(await gql(suite.server, `{ viewer { tenantId } instances { id } }`, {}, acmeViewer.secret));
    assert.equal(viewer.tenantId, acme.tenantId);
    assert.deepEqual(instances, [{ id: acmeInstanceId }]);
  });
});
