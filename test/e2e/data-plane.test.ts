import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { PAGE_BYTES, UPDATE_ANSWER_BYTES } from '../../src/graph/sqlite-graph-store';
import {
  allNodes,
  allRelationships,
  type Connection,
  createInstance,
  createNodes,
  createRelationships,
  CREATE_NODES,
  CREATE_RELATIONSHIPS,
  DELETE_NODES,
  expectCode,
  expectData,
  gql,
  NODES_PAGE,
  post,
  type NodeJson,
  RELATIONSHIPS_PAGE,
  type RelationshipJson,
  serverPerSuite,
  statsOf,
} from '../support';

/** Every kind of JSON value a property map can hold. */
const EVERY_JSON_TYPE = {
  zero: 0,
  int: 42,
  negative: -17,
  maxSafeInteger: Number.MAX_SAFE_INTEGER,
  minSafeInteger: Number.MIN_SAFE_INTEGER,
  float: 3.14159,
  tinyFloat: 1.5e-7,
  hugeFloat: 1.7976931348623157e308,
  inexact: 0.1 + 0.2,
  negativeFloat: -0.5,
  yes: true,
  no: false,
  nothing: null,
  empty: '',
  text: 'plain text',
  escapes: 'quote " backslash \\ newline \n tab \t',
  unicode: 'Grüße, 東京, Ελληνικά, עברית',
  emoji: '👩‍💻🚀 graph 🧬',
  astral: '𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  numericString: '007',
  jsonLookingString: '{"not":"an object"}',
  list: [1, 'two', 3.5, false, null],
  emptyList: [],
  nestedLists: [[1, 2], [], [[3]]],
  nested: { level1: { level2: { level3: ['deep', { leaf: true }] } } },
  emptyObject: {},
  listOfObjects: [{ a: 1 }, { b: [2] }],
  'key with spaces': 1,
  'ключ': 'значение',
  '🔑': '🗝️',
};

describe('the graph data plane', () => {
  const suite = serverPerSuite();

  describe('properties', () => {
    let instanceId: string;
    before(async () => {
      instanceId = (await createInstance(suite.server, { name: 'types', tier: 'PROFESSIONAL' })).id;
    });

    it('keep every JSON type on nodes, as returned by the write and by a later read', async () => {
      const [written] = await createNodes(suite.server, instanceId, [{ labels: ['Typed'], properties: EVERY_JSON_TYPE }]);
      assert.deepEqual(written.properties, EVERY_JSON_TYPE);
      const [read] = await allNodes(suite.server, instanceId, { label: 'Typed' });
      assert.deepEqual(read.properties, EVERY_JSON_TYPE);
      assert.equal(Object.is(read.properties.zero, 0), true);
    });

    it('keep every JSON type on relationships', async () => {
      const [a, b] = await createNodes(suite.server, instanceId, [{ labels: ['End'] }, { labels: ['End'] }]);
      const [written] = await createRelationships(suite.server, instanceId, [
        { type: 'TYPED', startNodeId: a.id, endNodeId: b.id, properties: EVERY_JSON_TYPE },
      ]);
      assert.deepEqual(written.properties, EVERY_JSON_TYPE);
      const [read] = await allRelationships(suite.server, instanceId, { type: 'TYPED' });
      assert.deepEqual(read, written);
    });

    it('default to an empty object when omitted or null', async () => {
      const nodes = await createNodes(suite.server, instanceId, [{ labels: ['Bare'] }, { labels: ['Bare'], properties: null as never }]);
      assert.deepEqual(nodes.map((node) => node.properties), [{}, {}]);
      assert.deepEqual((await allNodes(suite.server, instanceId, { label: 'Bare' })).map((node) => node.properties), [{}, {}]);
    });

    it('keep labels with unicode, and a node may have no label or several', async () => {
      const nodes = await createNodes(suite.server, instanceId, [
        { labels: [] },
        { labels: ['Ünïcödé', '🏷️', 'Second'] },
      ]);
      assert.deepEqual(nodes[0].labels, []);
      assert.deepEqual(nodes[1].labels, ['Ünïcödé', '🏷️', 'Second']);
      assert.deepEqual((await allNodes(suite.server, instanceId, { label: '🏷️' })).map((node) => node.id), [nodes[1].id]);
    });

    it('refuse a number no double can hold (1e400) rather than store null in its place', async () => {
      // JSON can write 1e400 but parses it as Infinity, which JSON.stringify writes as null: the node was created with
      // null where the client sent a number. Literal and variable alike, on every write that takes properties.
      const [node] = await createNodes(suite.server, instanceId, [{ labels: ['Huge'] }, { labels: ['Huge'] }]);
      const variables = (value: string) => `{"instanceId": ${JSON.stringify(instanceId)}, "value": ${value}, "a": "${node.id}"}`;
      const writes = [
        `mutation ($instanceId: ID!, $value: JSONObject) { createNodes(instanceId: $instanceId, nodes: [{ labels: ["Huge"], properties: $value }]) { id } }`,
        `mutation ($instanceId: ID!, $value: JSONObject, $a: ID!) { createRelationships(instanceId: $instanceId, relationships: [{ type: "HUGE", startNodeId: $a, endNodeId: $a, properties: $value }]) { id } }`,
        `mutation ($instanceId: ID!, $value: JSONObject, $a: ID!) { updateNodes(instanceId: $instanceId, nodes: [{ id: $a, properties: $value }]) { id } }`,
      ];
      for (const query of writes) {
        for (const value of ['{"big": 1e400}', '{"nested": {"list": [1, -1e999]}}']) {
          const body = `{"query": ${JSON.stringify(query)}, "variables": ${variables(value)}}`;
          const refused = expectCode(await post(suite.server, body, { authorization: `Bearer ${suite.server.adminKey}` }), 'BAD_USER_INPUT');
          assert.match(refused.message, /too large for a double/);
        }
      }
      expectCode(
        await gql(suite.server, `mutation ($i: ID!) { createNodes(instanceId: $i, nodes: [{ labels: ["Huge"], properties: { big: 1e400 } }]) { id } }`, { i: instanceId }),
        'BAD_USER_INPUT',
      );
      assert.deepEqual((await allNodes(suite.server, instanceId, { label: 'Huge' })).map((n) => n.properties), [{}, {}]);
      assert.deepEqual(await allRelationships(suite.server, instanceId, { type: 'HUGE' }), []);
    });

    it('keep numbers as the doubles JSON reads, as docs/api.md says: an integer past 2^53 − 1 as the nearest one', async () => {
      const query = `mutation ($i: ID!) { createNodes(instanceId: $i, nodes: [{ labels: ["Doubles"], properties: { big: 9007199254740993, negativeZero: -0.0 } }]) { properties } }`;
      const body = `{"query": ${JSON.stringify(query)}, "variables": {"i": ${JSON.stringify(instanceId)}}}`;
      const literal = expectData(await post(suite.server, body, { authorization: `Bearer ${suite.server.adminKey}` })) as { createNodes: NodeJson[] };
      const variable = await createNodes(suite.server, instanceId, [{ labels: ['Doubles'], properties: JSON.parse('{"big": 9007199254740993, "negativeZero": -0}') }]);
      const expected = { big: 9007199254740992, negativeZero: 0 };
      assert.deepEqual([literal.createNodes[0].properties, variable[0].properties], [expected, expected]);
      assert.deepEqual((await allNodes(suite.server, instanceId, { label: 'Doubles' })).map((node) => node.properties), [expected, expected]);
    });

    it('stores a label given twice on one node once', async () => {
      const [node] = await createNodes(suite.server, instanceId, [{ labels: ['Twice', 'Twice'] }]);
      assert.deepEqual(node.labels, ['Twice']);
      const stats = await statsOf(suite.server, instanceId);
      assert.deepEqual(stats.labels.find((label) => label.name === 'Twice'), { name: 'Twice', count: 1 });
    });
  });

  describe('filters', () => {
    let instanceId: string;
    let people: NodeJson[];
    let cities: NodeJson[];
    let knows: RelationshipJson[];
    let livesIn: RelationshipJson[];

    before(async () => {
      const server = suite.server;
      instanceId = (await createInstance(server, { name: 'filters', tier: 'PROFESSIONAL' })).id;
      const nodes = await createNodes(server, instanceId, [
        { labels: ['Person'], properties: { name: 'Ann' } },
        { labels: ['City'], properties: { name: 'Oslo' } },
        { labels: ['Person', 'Admin'], properties: { name: 'Bo' } },
        { labels: ['City'], properties: { name: 'Lima' } },
        { labels: ['Person'], properties: { name: 'Cy' } },
      ]);
      people = [nodes[0], nodes[2], nodes[4]];
      cities = [nodes[1], nodes[3]];
      const relationships = await createRelationships(server, instanceId, [
        { type: 'KNOWS', startNodeId: people[0].id, endNodeId: people[1].id },
        { type: 'LIVES_IN', startNodeId: people[0].id, endNodeId: cities[0].id },
        { type: 'KNOWS', startNodeId: people[1].id, endNodeId: people[2].id },
        { type: 'LIVES_IN', startNodeId: people[2].id, endNodeId: cities[1].id },
        { type: 'KNOWS', startNodeId: people[2].id, endNodeId: people[0].id },
      ]);
      knows = relationships.filter((r) => r.type === 'KNOWS');
      livesIn = relationships.filter((r) => r.type === 'LIVES_IN');
    });

    it('`nodes(label:)` returns only nodes with that label, with its own totalCount', async () => {
      const page = expectData(await gql(suite.server, NODES_PAGE, { instanceId, label: 'Person' })).nodes as Connection<NodeJson>;
      assert.deepEqual(page.edges.map((edge) => edge.node), people);
      assert.equal(page.totalCount, 3);
      const admins = expectData(await gql(suite.server, NODES_PAGE, { instanceId, label: 'Admin' })).nodes as Connection<NodeJson>;
      assert.deepEqual(admins.edges.map((edge) => edge.node.properties.name), ['Bo']);
      assert.equal(admins.totalCount, 1);
    });

    it('`nodes` without a label returns every node, in creation order', async () => {
      const page = expectData(await gql(suite.server, NODES_PAGE, { instanceId })).nodes as Connection<NodeJson>;
      assert.deepEqual(page.edges.map((edge) => edge.node.properties.name), ['Ann', 'Oslo', 'Bo', 'Lima', 'Cy']);
      assert.equal(page.totalCount, 5);
    });

    it('an unknown label or type gives an empty page with totalCount 0', async () => {
      const nodes = expectData(await gql(suite.server, NODES_PAGE, { instanceId, label: 'Nobody' })).nodes;
      assert.deepEqual(nodes.edges, []);
      assert.equal(nodes.totalCount, 0);
      assert.deepEqual(nodes.pageInfo, { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null });
      const relationships = expectData(await gql(suite.server, RELATIONSHIPS_PAGE, { instanceId, type: 'HATES' })).relationships;
      assert.deepEqual(relationships.edges, []);
      assert.equal(relationships.totalCount, 0);
    });

    it('a label or type no name can be (a lone surrogate) matches nothing, not the names with U+FFFD in its place', async () => {
      // SQLite's text holds UTF-8: a lone surrogate bound as a parameter arrives as U+FFFD, and the filter matched
      // the graph's "\ufffd" names.
      const [node] = await createNodes(suite.server, instanceId, [{ labels: ['\ufffd'] }]);
      const [relationship] = await createRelationships(suite.server, instanceId, [{ type: '\ufffd', startNodeId: node.id, endNodeId: node.id }]);
      try {
        for (const label of ['\ud800', '\udfff']) {
          const nodes = expectData(await gql(suite.server, NODES_PAGE, { instanceId, label })).nodes as Connection<NodeJson>;
          assert.deepEqual([nodes.edges, nodes.totalCount, nodes.pageInfo.hasNextPage], [[], 0, false]);
          const relationships = expectData(await gql(suite.server, RELATIONSHIPS_PAGE, { instanceId, type: label }))
            .relationships as Connection<RelationshipJson>;
          assert.deepEqual([relationships.edges, relationships.totalCount, relationships.pageInfo.hasNextPage], [[], 0, false]);
        }
        assert.deepEqual(await allNodes(suite.server, instanceId, { label: '\ufffd' }), [node]);
        assert.deepEqual(await allRelationships(suite.server, instanceId, { type: '\ufffd' }), [relationship]);
      } finally {
        expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids: [node.id] }));
      }
    });

    it('`relationships(type:)` returns only that type, with its own totalCount', async () => {
      const page = expectData(await gql(suite.server, RELATIONSHIPS_PAGE, { instanceId, type: 'KNOWS' }))
        .relationships as Connection<RelationshipJson>;
      assert.deepEqual(page.edges.map((edge) => edge.node), knows);
      assert.equal(page.totalCount, 3);
      assert.deepEqual(await allRelationships(suite.server, instanceId, { type: 'LIVES_IN', pageSize: 1 }), livesIn);
    });

    it('Instance.stats counts nodes, relationships, labels and types, sorted by name', async () => {
      const stats = await statsOf(suite.server, instanceId);
      assert.equal(stats.nodeCount, 5);
      assert.equal(stats.relationshipCount, 5);
      assert.deepEqual(stats.labels, [
        { name: 'Admin', count: 1 },
        { name: 'City', count: 2 },
        { name: 'Person', count: 3 },
      ]);
      assert.deepEqual(stats.relationshipTypes, [
        { name: 'KNOWS', count: 3 },
        { name: 'LIVES_IN', count: 2 },
      ]);
      assert.ok(stats.storeSizeBytes > 0);
    });
  });

  describe('paging a 2,000-node graph', () => {
    const NODE_COUNT = 2_000;
    let instanceId: string;
    let written: NodeJson[];
    let relationships: RelationshipJson[];

    before(async function () {
      this.timeout(30_000);
      const server = suite.server;
      instanceId = (await createInstance(server, { name: 'paging', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      written = [];
      for (let start = 0; start < NODE_COUNT; start += 1_000) {
        const batch = Array.from({ length: 1_000 }, (_, i) => ({
          labels: ['Item', (start + i) % 2 === 0 ? 'Even' : 'Odd'],
          properties: { n: start + i },
        }));
        written.push(...(await createNodes(server, instanceId, batch)));
      }
      relationships = await createRelationships(
        server,
        instanceId,
        written.slice(1).map((node, i) => ({ type: i % 3 === 0 ? 'NEXT' : 'STEP', startNodeId: written[i].id, endNodeId: node.id, properties: { i } })),
      );
    });

    it('the writes returned distinct, increasing ids', () => {
      assert.equal(written.length, NODE_COUNT);
      const ids = written.map((node) => Number(node.id));
      assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'ids are not increasing');
      assert.equal(new Set(ids).size, NODE_COUNT);
    });

    it('`first`/`after` visit every node exactly once, in order, with consistent page info', async () => {
      const seen: NodeJson[] = [];
      let after: string | null = null;
      let pages = 0;
      for (;;) {
        const page: Connection<NodeJson> = expectData(await gql(suite.server, NODES_PAGE, { instanceId, first: 150, after })).nodes;
        pages += 1;
        assert.equal(page.totalCount, NODE_COUNT, 'totalCount is the whole graph on every page');
        assert.equal(page.pageInfo.hasPreviousPage, after !== null);
        if (page.edges.length > 0) {
          assert.equal(page.pageInfo.startCursor, page.edges[0].cursor);
          assert.equal(page.pageInfo.endCursor, page.edges[page.edges.length - 1].cursor);
        }
        seen.push(...page.edges.map((edge) => edge.node));
        if (!page.pageInfo.hasNextPage) break;
        assert.equal(page.edges.length, 150, 'a page before the last one is full');
        after = page.pageInfo.endCursor;
      }
      assert.equal(pages, Math.ceil(NODE_COUNT / 150));
      assert.deepEqual(seen, written);
    });

    it('any edge cursor resumes right after that edge', async () => {
      const first: Connection<NodeJson> = expectData(await gql(suite.server, NODES_PAGE, { instanceId, first: 10 })).nodes;
      const resumed: Connection<NodeJson> = expectData(
        await gql(suite.server, NODES_PAGE, { instanceId, first: 5, after: first.edges[3].cursor }),
      ).nodes;
      assert.deepEqual(resumed.edges.map((edge) => edge.node.id), written.slice(4, 9).map((node) => node.id));
    });

    it('a label filter pages through its own nodes only', async () => {
      const even = await allNodes(suite.server, instanceId, { label: 'Even', pageSize: 77 });
      assert.deepEqual(even, written.filter((_, i) => i % 2 === 0));
      const page = expectData(await gql(suite.server, NODES_PAGE, { instanceId, label: 'Odd', first: 1 })).nodes;
      assert.equal(page.totalCount, NODE_COUNT / 2);
    });

    it('`first: 1000` returns a whole page of 1,000 and `first: 0` an empty one', async () => {
      const full: Connection<NodeJson> = expectData(await gql(suite.server, NODES_PAGE, { instanceId, first: 1000 })).nodes;
      assert.equal(full.edges.length, 1000);
      assert.equal(full.pageInfo.hasNextPage, true);
      const none: Connection<NodeJson> = expectData(await gql(suite.server, NODES_PAGE, { instanceId, first: 0 })).nodes;
      assert.deepEqual(none.edges, []);
      assert.equal(none.totalCount, NODE_COUNT);
    });

    it('the default page holds 100 nodes, also when `first` is null', async () => {
      const page: Connection<NodeJson> = expectData(await gql(suite.server, NODES_PAGE, { instanceId })).nodes;
      assert.equal(page.edges.length, 100);
      const nullFirst: Connection<NodeJson> = expectData(await gql(suite.server, NODES_PAGE, { instanceId, first: null })).nodes;
      assert.equal(nullFirst.edges.length, 100);
      const relationships = expectData(await gql(suite.server, RELATIONSHIPS_PAGE, { instanceId, first: null })).relationships;
      assert.equal(relationships.edges.length, 100);
    });

    it('relationships page the same way, with and without a type filter', async () => {
      assert.deepEqual(await allRelationships(suite.server, instanceId, { pageSize: 333 }), relationships);
      const next = await allRelationships(suite.server, instanceId, { type: 'NEXT', pageSize: 100 });
      assert.deepEqual(next, relationships.filter((r) => r.type === 'NEXT'));
    });

    it('Instance.stats counts the whole graph', async () => {
      const stats = await statsOf(suite.server, instanceId);
      assert.equal(stats.nodeCount, NODE_COUNT);
      assert.equal(stats.relationshipCount, NODE_COUNT - 1);
      assert.deepEqual(stats.labels, [
        { name: 'Even', count: 1000 },
        { name: 'Item', count: 2000 },
        { name: 'Odd', count: 1000 },
      ]);
      assert.deepEqual(stats.relationshipTypes, [
        { name: 'NEXT', count: 667 },
        { name: 'STEP', count: 1332 },
      ]);
    });
  });

  describe('deleteNodes', () => {
    let instanceId: string;
    let hub: NodeJson;
    let spokes: NodeJson[];
    let loner: NodeJson;

    beforeEach(async () => {
      const server = suite.server;
      instanceId = (await createInstance(server, { name: 'deletes', tier: 'PROFESSIONAL' })).id;
      [hub, loner, ...spokes] = await createNodes(server, instanceId, [
        { labels: ['Hub'] },
        { labels: ['Loner'] },
        { labels: ['Spoke'] },
        { labels: ['Spoke'] },
        { labels: ['Spoke', 'Last'] },
      ]);
      await createRelationships(server, instanceId, [
        { type: 'OUT', startNodeId: hub.id, endNodeId: spokes[0].id },
        { type: 'OUT', startNodeId: hub.id, endNodeId: spokes[1].id },
        { type: 'IN', startNodeId: spokes[2].id, endNodeId: hub.id },
        { type: 'SELF', startNodeId: hub.id, endNodeId: hub.id },
        { type: 'CHAIN', startNodeId: spokes[0].id, endNodeId: spokes[1].id },
      ]);
    });

    it('removes the nodes and every relationship attached to them, and updates stats', async () => {
      const { deleteNodes } = expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids: [hub.id] }));
      assert.equal(deleteNodes, 1);
      const relationships = await allRelationships(suite.server, instanceId);
      assert.deepEqual(relationships.map((r) => r.type), ['CHAIN']);
      assert.deepEqual((await allNodes(suite.server, instanceId)).map((node) => node.id), [loner.id, ...spokes.map((s) => s.id)]);
      const stats = await statsOf(suite.server, instanceId);
      assert.equal(stats.nodeCount, 4);
      assert.equal(stats.relationshipCount, 1);
      assert.deepEqual(stats.labels, [
        { name: 'Last', count: 1 },
        { name: 'Loner', count: 1 },
        { name: 'Spoke', count: 3 },
      ]);
      assert.deepEqual(stats.relationshipTypes, [{ name: 'CHAIN', count: 1 }]);
      const hubs = expectData(await gql(suite.server, NODES_PAGE, { instanceId, label: 'Hub' })).nodes;
      assert.equal(hubs.totalCount, 0);
      assert.deepEqual(hubs.edges, []);
    });

    it('counts only nodes that existed, once each', async () => {
      const ids = [spokes[2].id, spokes[2].id, '999999', loner.id];
      assert.equal(expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids })).deleteNodes, 2);
      assert.equal(expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids: ['999999'] })).deleteNodes, 0);
      const stats = await statsOf(suite.server, instanceId);
      assert.equal(stats.nodeCount, 3);
      assert.equal(stats.relationshipCount, 4);
      assert.deepEqual(stats.labels.map((label) => label.name), ['Hub', 'Spoke']);
    });

    it('leaves an empty graph when every node goes', async () => {
      const ids = [hub.id, loner.id, ...spokes.map((s) => s.id)];
      assert.equal(expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids })).deleteNodes, 5);
      const stats = await statsOf(suite.server, instanceId);
      assert.deepEqual(
        [stats.nodeCount, stats.relationshipCount, stats.labels, stats.relationshipTypes],
        [0, 0, [], []],
      );
    });

    it('never reuses the id of a deleted node', async () => {
      await gql(suite.server, DELETE_NODES, { instanceId, ids: [spokes[2].id] });
      const [fresh] = await createNodes(suite.server, instanceId, [{ labels: ['Fresh'] }]);
      assert.ok(Number(fresh.id) > Number(spokes[2].id), `id ${fresh.id} reused or went backwards`);
    });
  });

  describe('all-or-nothing batches', () => {
    let instanceId: string;
    let nodes: NodeJson[];

    before(async () => {
      instanceId = (await createInstance(suite.server, { name: 'atomic', tier: 'PROFESSIONAL' })).id;
      nodes = await createNodes(suite.server, instanceId, [{ labels: ['A'] }, { labels: ['B'] }]);
    });

    const snapshotOf = async () => ({
      stats: await statsOf(suite.server, instanceId),
      nodes: await allNodes(suite.server, instanceId),
      relationships: await allRelationships(suite.server, instanceId),
    });

    it('refuses a relationship batch with one missing node, writing none of it', async () => {
      const before = await snapshotOf();
      const result = await gql(suite.server, CREATE_RELATIONSHIPS, {
        instanceId,
        relationships: [
          { type: 'OK', startNodeId: nodes[0].id, endNodeId: nodes[1].id },
          { type: 'OK', startNodeId: nodes[1].id, endNodeId: nodes[0].id },
          { type: 'BROKEN', startNodeId: nodes[0].id, endNodeId: '424242' },
        ],
      });
      const error = expectCode(result, 'BAD_USER_INPUT');
      assert.match(error.message, /424242/);
      assert.deepEqual(await snapshotOf(), before);
    });

    it('refuses a relationship to a deleted node', async () => {
      const [gone] = await createNodes(suite.server, instanceId, [{ labels: ['Gone'] }]);
      expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids: [gone.id] }));
      const before = await snapshotOf();
      const result = await gql(suite.server, CREATE_RELATIONSHIPS, {
        instanceId,
        relationships: [{ type: 'TO_GHOST', startNodeId: nodes[0].id, endNodeId: gone.id }],
      });
      expectCode(result, 'BAD_USER_INPUT');
      assert.deepEqual(await snapshotOf(), before);
    });

    it('refuses a node batch with one bad label, writing none of it', async () => {
      const before = await snapshotOf();
      const result = await gql(suite.server, CREATE_NODES, {
        instanceId,
        nodes: [{ labels: ['Fine'] }, { labels: ['Fine'], properties: { n: 1 } }, { labels: [''] }],
      });
      expectCode(result, 'BAD_USER_INPUT');
      assert.deepEqual(await snapshotOf(), before);
    });

    it('writes a later valid batch normally', async () => {
      const [rel] = await createRelationships(suite.server, instanceId, [{ type: 'OK', startNodeId: nodes[0].id, endNodeId: nodes[1].id }]);
      assert.equal(rel.type, 'OK');
      assert.equal((await statsOf(suite.server, instanceId)).relationshipCount, 1);
    });
  });

  describe('concurrent writers', () => {
    it('lose no write when many batches hit one instance at once', async () => {
      const instanceId = (await createInstance(suite.server, { name: 'concurrent', tier: 'PROFESSIONAL' })).id;
      const batches = await Promise.all(
        Array.from({ length: 20 }, (_, b) =>
          createNodes(suite.server, instanceId, Array.from({ length: 50 }, (_, i) => ({ labels: ['C'], properties: { b, i } }))),
        ),
      );
      const ids = batches.flat().map((node) => node.id);
      assert.equal(new Set(ids).size, 1000);
      assert.equal((await statsOf(suite.server, instanceId)).nodeCount, 1000);
      assert.equal((await allNodes(suite.server, instanceId)).length, 1000);
    });

    it('another process holding the store past the busy timeout (a replica writing a large batch): CONFLICT, nothing written, not an internal error', async function () {
      this.timeout(60_000);
      const instanceId = (await createInstance(suite.server, { name: 'busy', tier: 'PROFESSIONAL' })).id;
      await createNodes(suite.server, instanceId, [{ labels: ['Before'] }]);
      // The store's write lock, taken as another replica's write transaction takes it, and held until the write answers.
      const dir = join(suite.server.dataDir, 'instances', instanceId);
      const other = new sqlite3.Database(join(dir, readdirSync(dir).find((file) => file.endsWith('.sqlite'))!));
      const exec = (sql: string) => new Promise<void>((resolve, reject) => other.exec(sql, (error) => (error ? reject(error) : resolve())));
      try {
        await exec('BEGIN IMMEDIATE');
        const refused = expectCode(await gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['While'] }] }), 'CONFLICT');
        assert.match(refused.message, /another write held the instance's store.*nothing was written; try again/);
        await exec('COMMIT');
      } finally {
        await new Promise((resolve) => other.close(resolve));
      }
      await createNodes(suite.server, instanceId, [{ labels: ['After'] }]);
      assert.deepEqual((await allNodes(suite.server, instanceId)).map((node) => node.labels), [['Before'], ['After']]);
      assert.equal((await statsOf(suite.server, instanceId)).nodeCount, 2);
    });

    it('leave every page with the totalCount of its own moment: a whole graph in one page is as many as its total', async function () {
      this.timeout(60_000);
      const instanceId = (await createInstance(suite.server, { name: 'counted while written', tier: 'PROFESSIONAL' })).id;
      await createNodes(suite.server, instanceId, [{ labels: ['Kept'] }]);
      // A writer adds two nodes and a relationship between them, then deletes them, over and over: the graph has 1 or 3
      // nodes (1 or 3 labelled Kept) and 0 or 1 relationships, always in one page.
      let writing = true;
      const writer = (async () => {
        while (writing) {
          const [a, b] = await createNodes(suite.server, instanceId, [{ labels: ['Kept'] }, { labels: ['Kept'] }]);
          await createRelationships(suite.server, instanceId, [{ type: 'LINK', startNodeId: a.id, endNodeId: b.id }]);
          expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids: [a.id, b.id] }));
        }
      })();
      const PAGES = `query ($id: ID!) {
        all: nodes(instanceId: $id, first: 1000) { totalCount edges { cursor } pageInfo { hasNextPage } }
        labelled: nodes(instanceId: $id, label: "Kept", first: 1000) { totalCount edges { cursor } pageInfo { hasNextPage } }
        relationships: relationships(instanceId: $id, first: 1000) { totalCount edges { cursor } pageInfo { hasNextPage } }
        typed: relationships(instanceId: $id, type: "LINK", first: 1000) { totalCount edges { cursor } pageInfo { hasNextPage } }
      }`;
      const mismatches: string[] = [];
      try {
        for (let read = 0; read < 300; read++) {
          const pages = expectData(await gql(suite.server, PAGES, { id: instanceId })) as Record<string, { totalCount: number; edges: unknown[]; pageInfo: { hasNextPage: boolean } }>;
          for (const [name, page] of Object.entries(pages)) {
            assert.equal(page.pageInfo.hasNextPage, false);
            if (page.edges.length !== page.totalCount) mismatches.push(`${name}: ${page.edges.length} edge(s), totalCount ${page.totalCount}`);
          }
        }
      } finally {
        writing = false;
        await writer;
      }
      assert.deepEqual(mismatches, []);
    });
  });
});

describe('pages of large nodes and relationships', () => {
  // A page was read whole, whatever its nodes held: `first` bounds the items, not the bytes. A tenant could store
  // nodes of tens of MiB each (a FREE instance holds 2 GiB) and one `nodes` query then held them all in the server's
  // heap, several times over (rows, parsed maps, the response): the process died of it, for every tenant. The heap is
  // kept small here so that 80 MiB of nodes show it: five times a page's bytes (PAGE_BYTES), more than an updateNodes
  // answer carries (UPDATE_ANSWER_BYTES).
  const suite = serverPerSuite({ nodeArgs: ['--max-old-space-size=256'] });
  const BLOB = 'x'.repeat(8 * 1024 * 1024);
  const COUNT = 10;
  // What the tests below rest on: the nodes fill several pages, and more than an answer carries.
  assert.ok(COUNT * BLOB.length >= 4 * PAGE_BYTES && COUNT * BLOB.length > UPDATE_ANSWER_BYTES);

  let instanceId: string;
  const ids: string[] = [];

  before(async function () {
    this.timeout(300_000);
    instanceId = (await createInstance(suite.server, { name: 'large', tier: 'PROFESSIONAL' })).id;
    for (let i = 0; i < COUNT; i++) {
      const written = expectData(
        await gql(suite.server, `mutation ($instanceId: ID!, $nodes: [NodeInput!]!) { createNodes(instanceId: $instanceId, nodes: $nodes) { id } }`, {
          instanceId,
          nodes: [{ labels: ['Large'], properties: { i, blob: BLOB } }],
        }),
      );
      ids.push(written.createNodes[0].id);
    }
    for (let i = 0; i < COUNT; i++) {
      expectData(
        await gql(suite.server, `mutation ($instanceId: ID!, $relationships: [RelationshipInput!]!) { createRelationships(instanceId: $instanceId, relationships: $relationships) { id } }`, {
          instanceId,
          relationships: [{ type: 'LARGE', startNodeId: ids[i], endNodeId: ids[(i + 1) % COUNT], properties: { i, blob: BLOB } }],
        }),
      );
    }
  });

  it('are cut short by their size, so that a page never holds them all, and paging still visits each once', async function () {
    this.timeout(120_000);
    const pages = [
      ['nodes', `query ($id: ID!, $label: String, $after: String) { page: nodes(instanceId: $id, label: $label, first: ${COUNT}, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id properties } } } }`, undefined],
      ['nodes by label', `query ($id: ID!, $label: String, $after: String) { page: nodes(instanceId: $id, label: $label, first: ${COUNT}, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id properties } } } }`, 'Large'],
      ['relationships', `query ($id: ID!, $label: String, $after: String) { page: relationships(instanceId: $id, type: $label, first: ${COUNT}, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id properties } } } }`, undefined],
      ['relationships by type', `query ($id: ID!, $label: String, $after: String) { page: relationships(instanceId: $id, type: $label, first: ${COUNT}, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id properties } } } }`, 'LARGE'],
    ] as const;
    for (const [what, query, label] of pages) {
      const seen: number[] = [];
      let pageCount = 0;
      for (let after: string | null = null; ; pageCount++) {
        const { page }: { page: Connection<{ id: string; properties: { i: number; blob: string } }> } = expectData(
          await gql(suite.server, query, { id: instanceId, label, after }),
          what,
        );
        assert.equal(page.totalCount, COUNT, what);
        assert.ok(page.edges.length >= 1, `${what}: a page holds at least one item`);
        for (const edge of page.edges) {
          assert.equal(edge.node.properties.blob.length, BLOB.length, what);
          seen.push(edge.node.properties.i);
        }
        if (!page.pageInfo.hasNextPage) break;
        after = page.pageInfo.endCursor;
      }
      assert.deepEqual(seen, Array.from({ length: COUNT }, (_, i) => i), `${what}: every item once, in order`);
      assert.ok(pageCount > 1, `${what}: 80 MiB did not come in one page`);
    }
    assert.equal(suite.server.process.exitCode, null, 'the server is still running');
  });

  // The cost limit counts items, not their size, and each alias had its own page bound: 50 aliases of nodes(first: 1)
  // over a large node answered 50 of it (over 11 MiB ones, the server held 1.8 GB, then failed the request).
  it('bounds the stored data of one answer across its aliases: the field past it is refused, with the answer', async function () {
    this.timeout(120_000);
    const budget = 64 * 1024 * 1024;
    const within = Math.ceil(budget / BLOB.length); // the pages read before the bound is passed, the last one past it
    const aliases = Array.from({ length: 50 }, (_, i) => `a${i}: nodes(instanceId: $id, first: 1) { edges { node { id properties } } }`);
    const answer = await gql(suite.server, `query ($id: ID!) { ${aliases.join(' ')} }`, { id: instanceId });
    // nodes is non-null: its refusal refuses the whole answer, which then holds none of the 50 copies.
    assert.equal(answer.data, null);
    assert.deepEqual(answer.errors?.map((error) => [error.extensions?.code, error.path]), [['BAD_USER_INPUT', [`a${within}`]]]);
    assert.match(answer.errors![0].message, /this operation's answer already holds \d+ bytes of stored data, past this server's 67108864 for one answer: ask for the rest in another request/);
    // updateNodes answers count too: one that does not fit in what is left is refused and writes nothing (an update's
    // answer must fit, where a page's one item comes alone), nor do those after it.
    const fitting = Math.floor(budget / (BLOB.length + 100));
    const updates = ids.map((id, i) => `u${i}: updateNodes(instanceId: $id, nodes: [{ id: "${id}", labels: ["Counted"] }]) { id properties }`);
    const updated = await gql(suite.server, `mutation ($id: ID!) { ${updates.join(' ')} }`, { id: instanceId });
    assert.deepEqual(updated.errors?.map((error) => [error.extensions?.code, error.path]), [['BAD_USER_INPUT', [`u${fitting}`]]]);
    assert.match(updated.errors![0].message, /more than this operation's answer carries .*nothing was updated/);
    assert.equal((await statsOf(suite.server, instanceId)).labels.find((label) => label.name === 'Counted')?.count, fitting);
    expectData(
      await gql(suite.server, `mutation ($id: ID!, $nodes: [NodeUpdateInput!]!) { updateNodes(instanceId: $id, nodes: $nodes) { id } }`, {
        id: instanceId,
        nodes: ids.map((id) => ({ id, labels: ['Large'] })),
      }),
    );
    assert.equal(suite.server.process.exitCode, null, 'the server is still running');
  });

  it('updateNodes of large nodes reads their properties only when the answer asks for them, and refuses more than an answer carries', async function () {
    // updateNodes answered every node it updated whole: relabelling large nodes read all their properties into the
    // heap, whether the client asked for them or not, and the server died of it.
    this.timeout(120_000);
    const relabel = (fields: string, label: string) =>
      gql(suite.server, `mutation ($instanceId: ID!, $nodes: [NodeUpdateInput!]!) { updateNodes(instanceId: $instanceId, nodes: $nodes) { ${fields} } }`, {
        instanceId,
        nodes: ids.map((id) => ({ id, labels: [label] })),
      });
    const relabelled = expectData(await relabel('id labels', 'Relabelled')).updateNodes;
    assert.deepEqual(relabelled, ids.map((id) => ({ id, labels: ['Relabelled'] })));
    const refused = expectCode(await relabel('id ...on Node { properties }', 'Refused'), 'BAD_USER_INPUT');
    assert.match(refused.message, /nothing was updated/);
    assert.deepEqual((await statsOf(suite.server, instanceId)).labels, [{ name: 'Relabelled', count: COUNT }]);
    const [one] = expectData(
      await gql(suite.server, `mutation ($instanceId: ID!, $nodes: [NodeUpdateInput!]!) { updateNodes(instanceId: $instanceId, nodes: $nodes) { id properties } }`, {
        instanceId,
        nodes: [{ id: ids[3], labels: ['Large'] }],
      }),
    ).updateNodes;
    assert.deepEqual(one, { id: ids[3], properties: { i: 3, blob: BLOB } });
    assert.equal(suite.server.process.exitCode, null, 'the server is still running');
  });
});
