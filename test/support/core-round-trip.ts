// The core round trip every metadata backend must pass (SQLite in newcomer.test, PostgreSQL in postgres.test):
// boot, bootstrap key, an instance, a graph written and read back, a second tenant kept out, a restart.
import assert from 'node:assert/strict';
import {
  allNodes,
  allRelationships,
  createInstance,
  createNodes,
  createRelationships,
  createTenant,
  expectCode,
  expectData,
  gql,
  type InstanceSummary,
  type NodeJson,
  statsOf,
} from './index';
import type { TestServer } from './server';

/** Declares the round trip's tests in the current describe block; they run in order on one server. */
export function itRunsTheCoreRoundTrip(getServer: () => TestServer): void {
  let instance: InstanceSummary;
  let people: NodeJson[];
  let company: NodeJson;

  it('answers GET /healthz with 200 once it serves', async () => {
    const response = await fetch(`${getServer().url}/healthz`);
    assert.equal(response.status, 200);
  });

  it('accepts the bootstrap key as the ADMIN of tenant "default"', async () => {
    const { viewer } = expectData(await gql(getServer(), `{ viewer { tenantId tenantName role apiKeyName } }`));
    assert.equal(viewer.tenantName, 'default');
    assert.equal(viewer.role, 'ADMIN');
    assert.match(viewer.tenantId, /\S/);
  });

  it('creates an instance that is RUNNING, AVAILABLE and empty', async () => {
    instance = await createInstance(getServer(), { name: 'first-graph', tier: 'FREE' });
    assert.equal(instance.status, 'RUNNING');
    assert.equal(instance.availability, 'AVAILABLE');
    const stats = await statsOf(getServer(), instance.id);
    assert.deepEqual(
      { nodes: stats.nodeCount, relationships: stats.relationshipCount, labels: stats.labels, types: stats.relationshipTypes },
      { nodes: 0, relationships: 0, labels: [], types: [] },
    );
    assert.ok(stats.storeSizeBytes >= 0);
  });

  it('writes a small graph and reads it back as written', async () => {
    const server = getServer();
    people = await createNodes(server, instance.id, [
      { labels: ['Person'], properties: { name: 'Ada', born: 1815 } },
      { labels: ['Person', 'Engineer'], properties: { name: 'Grace', born: 1906, languages: ['COBOL'] } },
    ]);
    [company] = await createNodes(server, instance.id, [{ labels: ['Company'], properties: { name: 'Analytical Engines' } }]);
    const [worksAt] = await createRelationships(server, instance.id, [
      { type: 'WORKS_AT', startNodeId: people[0].id, endNodeId: company.id, properties: { since: 1842 } },
      { type: 'KNOWS', startNodeId: people[0].id, endNodeId: people[1].id },
    ]);

    assert.deepEqual(await allNodes(server, instance.id), [...people, company]);
    const relationships = await allRelationships(server, instance.id);
    assert.equal(relationships.length, 2);
    assert.deepEqual(relationships[0], worksAt);
    assert.deepEqual(relationships[1].properties, {});

    const stats = await statsOf(server, instance.id);
    assert.equal(stats.nodeCount, 3);
    assert.equal(stats.relationshipCount, 2);
    assert.deepEqual(stats.labels, [
      { name: 'Company', count: 1 },
      { name: 'Engineer', count: 1 },
      { name: 'Person', count: 2 },
    ]);
    assert.deepEqual(stats.relationshipTypes, [
      { name: 'KNOWS', count: 1 },
      { name: 'WORKS_AT', count: 1 },
    ]);
  });

  it('keeps a tenant created with the CLI out of the first tenant\'s instance', async () => {
    const server = getServer();
    const other = await createTenant(server, `other-${Date.now()}`);
    const { instance: seen } = expectData(await gql(server, `query ($id: ID!) { instance(id: $id) { id } }`, { id: instance.id }, other.apiKey));
    assert.equal(seen, null);
    expectCode(await gql(server, `query ($id: ID!) { nodes(instanceId: $id) { totalCount } }`, { id: instance.id }, other.apiKey), 'NOT_FOUND');
    const { instances } = expectData(await gql(server, `{ instances { id } }`, {}, other.apiKey));
    assert.deepEqual(instances, []);
  });

  it('still holds the instance, the graph and the keys after a restart', async () => {
    const server = getServer();
    await server.restart();
    const { instances } = expectData(await gql(server, `{ instances { id name status availability } }`));
    assert.deepEqual(instances, [{ id: instance.id, name: 'first-graph', status: 'RUNNING', availability: 'AVAILABLE' }]);
    assert.deepEqual(await allNodes(server, instance.id), [...people, company]);
    assert.equal((await statsOf(server, instance.id)).relationshipCount, 2);
  });
}
