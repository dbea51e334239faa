import assert from 'node:assert/strict';
import {
  allNodes,
  allRelationships,
  createInstance,
  createNodes,
  createRelationships,
  CREATE_NODES,
  CREATE_RELATIONSHIPS,
  DELETE_NODES,
  expectCode,
  expectData,
  gql,
  restorableThrough,
  serverPerSuite,
  statsOf,
  UPDATE_NODES,
} from '../support';

const MAX_NODES = 50;
const MAX_RELATIONSHIPS = 20;
/** One "GB" of storage is 64 KiB here, so a 1 GB instance (2 GB of storage) holds 128 KiB. */
const BYTES_PER_STORAGE_GB = 65_536;

const labelled = (count: number, label = 'N') => Array.from({ length: count }, (_, i) => ({ labels: [label], properties: { i } }));
/** Nodes carrying `bytes` of text each. */
const bulky = (count: number, bytes: number) =>
  Array.from({ length: count }, (_, i) => ({ labels: ['Bulky'], properties: { i, text: 'x'.repeat(bytes) } }));

describe('limits', () => {
  const suite = serverPerSuite({
    config: {
      tiers: { FREE: { maxNodes: MAX_NODES, maxRelationships: MAX_RELATIONSHIPS } },
      bytesPerStorageGB: BYTES_PER_STORAGE_GB,
    },
  });

  /** What a client can observe of an instance's data: must not move when a write is refused. */
  const contentOf = async (instanceId: string) => ({
    stats: await statsOf(suite.server, instanceId),
    nodes: await allNodes(suite.server, instanceId),
    relationships: await allRelationships(suite.server, instanceId),
  });

  describe("the FREE tier's maxNodes", () => {
    let instanceId: string;
    before(async () => {
      instanceId = (await createInstance(suite.server, { name: 'free-nodes', tier: 'FREE' })).id;
    });

    it('refuses a batch that would go over it with CAPACITY_EXCEEDED, writing nothing', async () => {
      await createNodes(suite.server, instanceId, labelled(10));
      const before = await contentOf(instanceId);
      expectCode(await gql(suite.server, CREATE_NODES, { instanceId, nodes: labelled(MAX_NODES - 10 + 1) }), 'CAPACITY_EXCEEDED');
      assert.deepEqual(await contentOf(instanceId), before);
    });

    it('accepts writes up to the limit exactly, then refuses a single node more', async () => {
      await createNodes(suite.server, instanceId, labelled(MAX_NODES - 10));
      assert.equal((await statsOf(suite.server, instanceId)).nodeCount, MAX_NODES);
      expectCode(await gql(suite.server, CREATE_NODES, { instanceId, nodes: labelled(1) }), 'CAPACITY_EXCEEDED');
      assert.equal((await statsOf(suite.server, instanceId)).nodeCount, MAX_NODES);
    });

    it('makes room again when nodes are deleted', async () => {
      const ids = (await allNodes(suite.server, instanceId)).slice(0, 5).map((node) => node.id);
      expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids }));
      await createNodes(suite.server, instanceId, labelled(5));
      expectCode(await gql(suite.server, CREATE_NODES, { instanceId, nodes: labelled(1) }), 'CAPACITY_EXCEEDED');
    });

    it('counts per instance: another FREE instance starts empty', async () => {
      const other = (await createInstance(suite.server, { name: 'free-other', tier: 'FREE' })).id;
      assert.equal((await createNodes(suite.server, other, labelled(MAX_NODES))).length, MAX_NODES);
    });

    it('does not apply to paid tiers', async () => {
      const paid = (await createInstance(suite.server, { name: 'paid', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      assert.equal((await createNodes(suite.server, paid, labelled(MAX_NODES * 2))).length, MAX_NODES * 2);
    });
  });

  describe("the FREE tier's maxRelationships", () => {
    let instanceId: string;
    let ids: string[];
    before(async () => {
      instanceId = (await createInstance(suite.server, { name: 'free-relationships', tier: 'FREE' })).id;
      ids = (await createNodes(suite.server, instanceId, labelled(2))).map((node) => node.id);
    });
    const links = (count: number) => Array.from({ length: count }, () => ({ type: 'LINK', startNodeId: ids[0], endNodeId: ids[1] }));

    it('refuses a batch that would go over it with CAPACITY_EXCEEDED, writing nothing', async () => {
      await createRelationships(suite.server, instanceId, links(MAX_RELATIONSHIPS - 1));
      const before = await contentOf(instanceId);
      expectCode(await gql(suite.server, CREATE_RELATIONSHIPS, { instanceId, relationships: links(2) }), 'CAPACITY_EXCEEDED');
      assert.deepEqual(await contentOf(instanceId), before);
    });

    it('accepts the last relationship that fits', async () => {
      await createRelationships(suite.server, instanceId, links(1));
      assert.equal((await statsOf(suite.server, instanceId)).relationshipCount, MAX_RELATIONSHIPS);
    });
  });

  describe('storage capacity (storageGB × bytesPerStorageGB)', () => {
    it('refuses node batches that would not fit with CAPACITY_EXCEEDED, writing nothing', async () => {
      const instanceId = (await createInstance(suite.server, { name: 'small-disk', tier: 'PROFESSIONAL', memoryGB: 1 })).id;
      const capacity = 2 * BYTES_PER_STORAGE_GB;
      let refused = false;
      for (let batch = 0; batch < 50 && !refused; batch++) {
        const result = await gql(suite.server, CREATE_NODES, { instanceId, nodes: bulky(4, 2_000) });
        if (result.errors) {
          expectCode(result, 'CAPACITY_EXCEEDED');
          refused = true;
        } else {
          // A write's change log leaves the store once shipped, freeing room: let it settle before the next write.
          await restorableThrough(suite.server, instanceId, Date.now());
        }
      }
      assert.ok(refused, 'the instance accepted far more data than its storage holds');
      const before = await contentOf(instanceId);
      assert.ok(before.stats.storeSizeBytes <= capacity, `the store holds ${before.stats.storeSizeBytes} of ${capacity} bytes`);
      expectCode(await gql(suite.server, CREATE_NODES, { instanceId, nodes: bulky(4, 2_000) }), 'CAPACITY_EXCEEDED');
      assert.deepEqual(await contentOf(instanceId), before);
    });

    it('counts what a batch really takes: multi-byte text cannot take the store past its storage', async () => {
      // 32,000 characters of CJK text are 96,000 bytes of UTF-8 in the store, on top of the empty store's tables: more
      // than the 128 KiB of a 1 GB instance. The batch was measured in UTF-16 units (and its change log not at all),
      // so it was accepted, and the instance then held more than its storage (its snapshots would not restore into it).
      const instanceId = (await createInstance(suite.server, { name: 'wide-text', tier: 'PROFESSIONAL', memoryGB: 1 })).id;
      const capacity = 2 * BYTES_PER_STORAGE_GB;
      const before = await contentOf(instanceId);
      expectCode(
        await gql(suite.server, CREATE_NODES, { instanceId, nodes: [{ labels: ['Wide'], properties: { text: '東'.repeat(32_000) } }] }),
        'CAPACITY_EXCEEDED',
      );
      assert.deepEqual(await contentOf(instanceId), before);
      // What fits is written, and the store stays within its storage.
      await createNodes(suite.server, instanceId, [{ labels: ['Wide'], properties: { text: '東'.repeat(8_000) } }]);
      await restorableThrough(suite.server, instanceId, Date.now());
      const { storeSizeBytes } = await statsOf(suite.server, instanceId);
      assert.ok(storeSizeBytes <= capacity, `the store holds ${storeSizeBytes} of ${capacity} bytes`);
    });

    it('refuses relationship batches that would not fit, writing nothing', async () => {
      const instanceId = (await createInstance(suite.server, { name: 'small-disk-rels', tier: 'PROFESSIONAL', memoryGB: 1 })).id;
      const [a, b] = await createNodes(suite.server, instanceId, labelled(2));
      const heavy = { type: 'HEAVY', startNodeId: a.id, endNodeId: b.id, properties: { text: 'y'.repeat(50_000) } };
      const before = await contentOf(instanceId);
      expectCode(
        await gql(suite.server, CREATE_RELATIONSHIPS, { instanceId, relationships: [heavy, heavy, heavy] }),
        'CAPACITY_EXCEEDED',
      );
      assert.deepEqual(await contentOf(instanceId), before);
    });

    it('grows with memoryGB: a larger instance accepts what a smaller one refuses', async () => {
      const nodes = bulky(6, 10_000);
      const small = (await createInstance(suite.server, { name: 'small', tier: 'PROFESSIONAL', memoryGB: 1 })).id;
      const large = (await createInstance(suite.server, { name: 'large', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
      expectCode(await gql(suite.server, CREATE_NODES, { instanceId: small, nodes }), 'CAPACITY_EXCEEDED');
      assert.equal((await createNodes(suite.server, large, nodes)).length, nodes.length);
    });

    it('makes room again when data is deleted', async () => {
      const instanceId = (await createInstance(suite.server, { name: 'reclaim', tier: 'PROFESSIONAL', memoryGB: 1 })).id;
      const written = [];
      for (let batch = 0; batch < 50; batch++) {
        const result = await gql(suite.server, CREATE_NODES, { instanceId, nodes: bulky(4, 2_000) });
        if (result.errors) break;
        written.push(...result.data.createNodes);
      }
      expectData(await gql(suite.server, DELETE_NODES, { instanceId, ids: written.map((node: { id: string }) => node.id) }));
      assert.equal((await createNodes(suite.server, instanceId, bulky(4, 2_000))).length, 4);
    });
  });
});

describe('storage capacity while the change log waits to be shipped', () => {
  // Shipping stalls (as with the blob store away): every write's change log stays in the store.
  const suite = serverPerSuite({
    config: { bytesPerStorageGB: BYTES_PER_STORAGE_GB },
    env: { SNAPGRAPH_LOG_SHIP_DELAY_MS: '3600000', SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '3600000' },
  });

  it('says that the storage is taken by changes not yet copied to backup storage, not by the data', async () => {
    const instanceId = (await createInstance(suite.server, { name: 'stalled', tier: 'PROFESSIONAL', memoryGB: 1 })).id;
    const [node] = await createNodes(suite.server, instanceId, bulky(1, 2_000));
    let refusal: { message: string } | null = null;
    // One node of about 2 kB, rewritten: the data stays small, each rewrite's log entry stays in the store.
    for (let i = 0; i < 200 && !refusal; i++) {
      const result = await gql(suite.server, UPDATE_NODES, { instanceId, nodes: [{ id: node.id, properties: { i, text: 'x'.repeat(2_000) } }] });
      if (result.errors) refusal = expectCode(result, 'CAPACITY_EXCEEDED');
    }
    assert.ok(refusal, 'the log of 200 rewrites fitted in the instance storage: make the rewrites larger');
    assert.match(refusal.message, /not yet (been )?copied to backup storage/);
    assert.equal((await statsOf(suite.server, instanceId)).nodeCount, 1);
  });
});
