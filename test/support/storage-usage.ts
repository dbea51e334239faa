// What Query.usage and Instance.backupStorage add up, on every metadata backend (SQLite in storage.test, PostgreSQL in
// postgres.test): the database sums them, with each dialect's reading of the snapshot's contents.
import assert from 'node:assert/strict';
import { createInstance, createNodes, createTenant, expectData, gql } from './index';
import type { TestServer } from './server';
import { download, exportLink, takeSnapshot } from './snapshots';

const USAGE = `query ($id: ID!) {
  usage { snapshotCount logicalBytes storedBytes }
  instance(id: $id) { backupStorage { snapshotCount logicalBytes storedBytes } }
  snapshots(instanceId: $id, first: 100) { edges { node { sizeBytes contents { storeSizeBytes } } } }
}`;

interface Usage {
  snapshotCount: number;
  logicalBytes: number;
  storedBytes: number;
}

/** Declares a test, on a tenant of its own, of the usage that tenant's one instance adds up to. */
export function itSumsStorageUsage(getServer: () => TestServer): void {
  it("sums the usage: the snapshots' archives, or their stores' size before an archive is produced", async function () {
    this.timeout(60_000);
    const server = getServer();
    const { apiKey } = await createTenant(server, `usage-${Date.now()}`);
    const instance = await createInstance(server, { name: 'usage' }, apiKey);
    const usageOf = async () => {
      type Answer = { usage: Usage; instance: { backupStorage: Usage }; snapshots: { edges: { node: { sizeBytes: number | null; contents: { storeSizeBytes: number } } }[] } };
      const answer = expectData(await gql<Answer>(server, USAGE, { id: instance.id }, apiKey));
      const snapshots = answer.snapshots.edges.map((edge) => edge.node);
      return { ...answer, logicalBytes: snapshots.reduce((sum, snapshot) => sum + (snapshot.sizeBytes ?? snapshot.contents.storeSizeBytes), 0) };
    };
    const nodes = (count: number) => Array.from({ length: count }, (_, i) => ({ labels: ['Item'], properties: { i, text: `item ${i}`.repeat(20) } }));
    await createNodes(server, instance.id, nodes(200), apiKey);
    const first = await takeSnapshot(server, instance.id, { key: apiKey });
    await createNodes(server, instance.id, nodes(300), apiKey);
    await takeSnapshot(server, instance.id, { key: apiKey });

    const before = await usageOf();
    assert.equal(before.usage.snapshotCount, 2);
    assert.ok(before.logicalBytes > 0);
    assert.equal(before.usage.logicalBytes, before.logicalBytes, 'no archive produced: the stores');
    assert.ok(before.usage.storedBytes > 0, JSON.stringify(before.usage));
    assert.deepEqual({ ...before.instance.backupStorage, storedBytes: 0 }, { ...before.usage, storedBytes: 0 }, 'the one instance is the whole tenant');

    const link = await exportLink(server, first.id, apiKey);
    assert.equal((await download(link.url)).status, 200);
    const after = await usageOf();
    assert.notEqual(after.logicalBytes, before.logicalBytes, "the archive's size is not the store's");
    assert.equal(after.usage.logicalBytes, after.logicalBytes, 'one archive produced: its size, and the other store');
    assert.equal(after.instance.backupStorage.logicalBytes, after.logicalBytes);
  });
}
