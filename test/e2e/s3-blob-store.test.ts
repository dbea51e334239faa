// A server whose snapshot data lives in S3 (SNAPGRAPH_BLOB_URL) on the local Swift s3api endpoint: snapshot, export,
// restore, point-in-time restore and restore from an uploaded file, with nothing of it in the data dir.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  archiveOf,
  createInstance,
  createNodes,
  createTestBucket,
  describeS3,
  eventually,
  expectData,
  filesUnder,
  gql,
  graphOf,
  idle,
  restoreAndWait,
  settledOperation,
  startServer,
  takeSnapshot,
  testS3Client,
  type TestServer,
  uploadFile,
} from '../support';

describeS3('a server keeping its blobs in S3', ({ s3 }) => {
  let server: TestServer;
  let bucket: string;
  before(async function () {
    this.timeout(60_000);
    bucket = await createTestBucket(s3(), s3().blobs);
    server = await startServer({
      env: {
        SNAPGRAPH_BLOB_URL: `s3://${bucket}/snapgraph`,
        SNAPGRAPH_S3_ENDPOINT: s3().endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: s3().blobs.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3().blobs.secretAccessKey,
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  const objectKeys = async () => {
    const client = testS3Client(s3(), s3().blobs);
    try {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
        keys.push(...(page.Contents ?? []).map((object) => object.Key!));
        token = page.NextContinuationToken;
      } while (token);
      return keys;
    } finally {
      client.destroy();
    }
  };

  it('reports the bucket as ready', async () => {
    const response = await fetch(`${server.url}/readyz`);
    assert.equal(response.status, 200);
  });

  it('snapshots, exports and restores with the data in the bucket and none in the data dir', async function () {
    this.timeout(60_000);
    const instance = await createInstance(server, { name: 'on-s3', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, Array.from({ length: 50 }, (_, i) => ({ labels: ['Item'], properties: { i, name: `item-${i}` } })));
    const before = await graphOf(server, instance.id);
    const snapshot = await takeSnapshot(server, instance.id);
    const archive = await archiveOf(server, snapshot.id);
    assert.ok(archive.length > 0);
    await createNodes(server, instance.id, [{ labels: ['Later'], properties: {} }]);
    const restored = await restoreAndWait(server, snapshot.id);
    assert.equal(restored.status, 'SUCCEEDED', JSON.stringify(restored.error));
    assert.deepEqual(await graphOf(server, instance.id), before);

    const keys = await objectKeys();
    assert.ok(keys.some((key) => /^snapgraph\/tenants\/[^/]+\/log\/.+\.seg$/.test(key)), `no change-log segments in the bucket: ${keys.slice(0, 10)}`);
    assert.ok(keys.some((key) => /^snapgraph\/tenants\/[^/]+\/exports\//.test(key)), `no export archive in the bucket: ${keys.slice(0, 10)}`);
    assert.ok(keys.every((key) => key.startsWith('snapgraph/')), 'every object is under the configured prefix');
    const blobDir = join(server.dataDir, 'blobs');
    assert.deepEqual(existsSync(blobDir) ? filesUnder(blobDir) : [], [], 'nothing is kept in the data dir');
  });

  it('restores to a point in time from the change log kept in the bucket', async function () {
    this.timeout(60_000);
    const instance = await createInstance(server, { name: 'pit-on-s3', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, [{ labels: ['First'], properties: { n: 1 } }]);
    const expected = await graphOf(server, instance.id);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const at = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await createNodes(server, instance.id, [{ labels: ['Second'], properties: { n: 2 } }]);
    await eventually(
      async () => {
        const { instance: found } = expectData(await gql(server, `query ($id: ID!) { instance(id: $id) { restoreWindow { latest } } }`, { id: instance.id }));
        return found.restoreWindow && Date.parse(found.restoreWindow.latest) > at + 100 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'the change log to be shipped past the point' },
    );
    const { restoreToPointInTime } = expectData(
      await gql(server, `mutation ($id: ID!, $at: DateTime!) { restoreToPointInTime(instanceId: $id, at: $at, confirm: "RESTORE") { id } }`, {
        id: instance.id,
        at: new Date(at).toISOString(),
      }),
    );
    const finished = await settledOperation(server, restoreToPointInTime.id);
    assert.equal(finished.status, 'SUCCEEDED', JSON.stringify(finished.error));
    assert.deepEqual(await graphOf(server, instance.id), expected);
  });

  it('restores from an uploaded archive held in the bucket until it is restored', async function () {
    this.timeout(60_000);
    const source = await createInstance(server, { name: 'upload-source', tier: 'PROFESSIONAL' });
    await createNodes(server, source.id, Array.from({ length: 20 }, (_, i) => ({ labels: ['Uploaded'], properties: { i } })));
    const archive = await archiveOf(server, (await takeSnapshot(server, source.id)).id);
    const target = await createInstance(server, { name: 'upload-target', tier: 'PROFESSIONAL' });
    const result = await uploadFile(server, { instanceId: target.id, file: archive, fileName: 'upload-source.backup' });
    const operation = await settledOperation(server, expectData(result).restoreFromFile.id);
    assert.equal(operation.status, 'SUCCEEDED', JSON.stringify(operation.error));
    await idle(server, target.id);
    assert.deepEqual((await graphOf(server, target.id)).nodes.map((node) => node.properties), (await graphOf(server, source.id)).nodes.map((node) => node.properties));
    // Removed right after the swap's commit, which clients already see as SUCCEEDED.
    await eventually(async () => !(await objectKeys()).some((key) => /\/uploads\//.test(key)), { what: 'the uploaded archive to be removed once restored' });
  });
});
