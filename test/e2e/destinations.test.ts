// Export destinations (contract block `destinations`) against the local Swift s3api endpoint: a second account with
// its own credentials stands for the tenant's bucket.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, DeleteBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  archiveOf,
  createInstance,
  createKey,
  createNodes,
  createTenant,
  createTestBucket,
  describeS3,
  eventually,
  expectCode,
  expectData,
  exportLink,
  fillInstance,
  gql,
  holdingS3Proxy,
  logSegmentsOf,
  OPERATION_FIELDS,
  operationById,
  type OperationJson,
  restoreAndWait,
  serverPerSuite,
  settledOperation,
  snapshotById,
  startServer,
  takeSnapshot,
  testS3Client,
  type TestServer,
} from '../support';

const DESTINATION_FIELDS = 'id name url endpoint region autoExportInstanceIds createdAt lastExportAt lastError';
const CREATE_DESTINATION = `mutation ($input: ExportDestinationInput!) { createExportDestination(input: $input) { ${DESTINATION_FIELDS} } }`;
const EXPORT_TO = `mutation ($s: ID!, $d: ID!) { exportSnapshotTo(snapshotId: $s, destinationId: $d) { ${OPERATION_FIELDS} } }`;
const DESTINATIONS = `{ exportDestinations { ${DESTINATION_FIELDS} } }`;

interface DestinationJson {
  id: string;
  name: string;
  url: string;
  endpoint: string | null;
  region: string | null;
  autoExportInstanceIds: string[];
  createdAt: string;
  lastExportAt: string | null;
  lastError: string | null;
}

describeS3('export destinations', ({ s3 }) => {
  let server: TestServer;
  before(async function () {
    this.timeout(60_000);
    // The tenant's bucket is the local Swift's, on loopback.
    server = await startServer({ env: { SNAPGRAPH_EXPORT_RETRY_MS: '500', SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS: 'true' } });
  });
  after(async () => {
    await server?.stop();
  });

  const input = (bucket: string, extra: Record<string, unknown> = {}) => ({
    name: 'my bucket',
    url: `s3://${bucket}/backups/snapgraph`,
    endpoint: s3().endpoint,
    region: 'us-east-1',
    accessKeyId: s3().second.accessKeyId,
    secretAccessKey: s3().second.secretAccessKey,
    ...extra,
  });
  const createDestination = async (bucket: string, extra: Record<string, unknown> = {}, key = server.adminKey) =>
    expectData(await gql<{ createExportDestination: DestinationJson }>(server, CREATE_DESTINATION, { input: input(bucket, extra) }, key))
      .createExportDestination;
  const destinations = async (key = server.adminKey): Promise<DestinationJson[]> =>
    expectData(await gql<{ exportDestinations: DestinationJson[] }>(server, DESTINATIONS, {}, key)).exportDestinations;
  const exportsOf = async (instanceId: string): Promise<OperationJson[]> => {
    const { operations } = expectData(
      await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 100) { edges { node { ${OPERATION_FIELDS} } } } }`, { id: instanceId }),
    );
    return operations.edges.map((edge: { node: OperationJson }) => edge.node).filter((op: OperationJson) => op.kind === 'EXPORT');
  };
  const secondAccount = () => testS3Client(s3(), s3().second);
  const objectOf = async (bucket: string, key: string) => {
    const client = secondAccount();
    try {
      const { Body, Metadata } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return { bytes: Buffer.from(await Body!.transformToByteArray()), metadata: Metadata ?? {} };
    } finally {
      client.destroy();
    }
  };
  const keysIn = async (bucket: string) => {
    const client = secondAccount();
    try {
      return ((await client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).map((object) => object.Key!);
    } finally {
      client.destroy();
    }
  };

  it('registers a bucket after a probe, and never shows its keys', async function () {
    this.timeout(30_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const destination = await createDestination(bucket);
    assert.equal(destination.url, `s3://${bucket}/backups/snapgraph`);
    assert.equal(destination.endpoint, s3().endpoint);
    assert.deepEqual(destination.autoExportInstanceIds, []);
    assert.equal(destination.lastExportAt, null);
    assert.deepEqual(await keysIn(bucket), [], 'the probe object is deleted');
    assert.ok((await destinations()).some((found) => found.id === destination.id));
    const listed = JSON.stringify(await destinations());
    assert.ok(!listed.includes(s3().second.secretAccessKey) && !listed.includes(s3().second.accessKeyId));
  });

  it('refuses wrong credentials without repeating them, in the answer or the log', async function () {
    this.timeout(30_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const wrongSecret = `wrong-${s3().second.secretAccessKey}-secret`;
    const result = await gql(server, CREATE_DESTINATION, { input: input(bucket, { secretAccessKey: wrongSecret }) });
    const error = expectCode(result, 'BAD_USER_INPUT');
    assert.match(error.message, /did not accept a probe object/);
    assert.ok(!JSON.stringify(result).includes(wrongSecret), 'the answer holds the secret');
    expectCode(await gql(server, CREATE_DESTINATION, { input: input('snapgraph-no-such-bucket-here') }), 'BAD_USER_INPUT');
    // An input that does not fit its type: graphql-js would print the whole value in its message.
    const misfit = await gql(server, CREATE_DESTINATION, { input: { ...input(bucket, { secretAccessKey: wrongSecret }), extra: true } });
    expectCode(misfit, 'BAD_USER_INPUT');
    assert.ok(!JSON.stringify(misfit).includes(wrongSecret), `the refusal repeats the secret: ${JSON.stringify(misfit.errors)}`);
    assert.ok(!JSON.stringify(misfit).includes(s3().second.accessKeyId), 'the refusal repeats the access key id');
    expectCode(await gql(server, CREATE_DESTINATION, { input: input(bucket, { url: 'https://not-s3/x' }) }), 'BAD_USER_INPUT');
    assert.ok(!(await destinations()).some((found) => found.url.startsWith(`s3://${bucket}`)));
    const logs = server.logs();
    assert.ok(!logs.includes(wrongSecret), 'the log holds the wrong secret');
    assert.ok(!logs.includes(s3().second.secretAccessKey), 'the log holds the secret');
  });

  it('copies a snapshot as <prefix>/<fileName>: the download bytes, with their sha256 in the metadata', async function () {
    this.timeout(60_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const destination = await createDestination(bucket);
    // Named with letters outside ASCII: the object's key has them stripped of their accents (keys are ASCII).
    const instance = await createInstance(server, { name: 'exported Café 日本', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, Array.from({ length: 30 }, (_, i) => ({ labels: ['Row'], properties: { i } })));
    const snapshot = await takeSnapshot(server, instance.id);
    const { exportSnapshotTo: queued } = expectData(await gql<{ exportSnapshotTo: OperationJson }>(server, EXPORT_TO, { s: snapshot.id, d: destination.id }));
    assert.equal(queued.kind, 'EXPORT');
    assert.equal(queued.snapshotId, snapshot.id);
    const finished = await settledOperation(server, queued.id);
    assert.equal(finished.status, 'SUCCEEDED', JSON.stringify(finished.error));
    assert.equal(finished.progress, 1);
    const link = await exportLink(server, snapshot.id);
    assert.match(link.fileName, /^exported-Café-日本-/);
    const key = `backups/snapgraph/${link.fileName.replace('exported-Café-日本-', 'exported-Cafe-')}`;
    assert.deepEqual(await keysIn(bucket), [key]);
    const copy = await objectOf(bucket, key);
    assert.deepEqual(copy.bytes, await archiveOf(server, snapshot.id));
    assert.equal(copy.metadata.sha256, link.sha256);
    const [after] = (await destinations()).filter((found) => found.id === destination.id);
    assert.ok(after.lastExportAt !== null);
    assert.equal(after.lastError, null);
  });

  const exportTo = async (snapshotId: string, destinationId: string) => {
    const { exportSnapshotTo: queued } = expectData(await gql<{ exportSnapshotTo: OperationJson }>(server, EXPORT_TO, { s: snapshotId, d: destinationId }));
    const finished = await settledOperation(server, queued.id);
    assert.equal(finished.status, 'SUCCEEDED', JSON.stringify(finished.error));
  };

  it("gives two snapshots whose fileName is one (names alike once made safe, taken in one second) each its own object", async function () {
    this.timeout(90_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const destination = await createDestination(bucket);
    // Both names become "prod-db" in a file name; scheduled snapshots of several instances begin in one second.
    const instances = [await createInstance(server, { name: 'prod db', tier: 'PROFESSIONAL' }), await createInstance(server, { name: 'prod/db', tier: 'PROFESSIONAL' })];
    for (const [i, instance] of instances.entries()) await createNodes(server, instance.id, [{ labels: ['Only'], properties: { i } }]);
    let pair = await Promise.all(instances.map((instance) => takeSnapshot(server, instance.id)));
    for (let tries = 1; Math.floor(Date.parse(pair[0].createdAt) / 1000) !== Math.floor(Date.parse(pair[1].createdAt) / 1000); tries++) {
      assert.ok(tries < 5, 'the two snapshots never began in one second');
      pair = await Promise.all(instances.map((instance) => takeSnapshot(server, instance.id)));
    }
    const links = await Promise.all(pair.map((snapshot) => exportLink(server, snapshot.id)));
    assert.equal(links[0].fileName, links[1].fileName);
    for (const snapshot of pair) await exportTo(snapshot.id, destination.id);

    const keys = await keysIn(bucket);
    assert.equal(keys.length, 2, `one copy overwrote the other: ${keys.join(', ')}`);
    for (const snapshot of pair) {
      const key = keys.find((found) => found.includes(snapshot.id));
      assert.ok(key, `no object names snapshot ${snapshot.id}: ${keys.join(', ')}`);
      const copy = await objectOf(bucket, key);
      assert.deepEqual(copy.bytes, await archiveOf(server, snapshot.id));
      assert.equal(copy.metadata['snapshot-id'], snapshot.id);
    }
  });

  it('leaves an object already at <prefix>/<fileName> that holds other bytes as it was, and copies beside it', async function () {
    this.timeout(60_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const destination = await createDestination(bucket);
    const instance = await createInstance(server, { name: 'kept', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, [{ labels: ['Only'], properties: {} }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const { fileName } = await exportLink(server, snapshot.id);
    // A deleted snapshot's copy, or the tenant's own file.
    const client = secondAccount();
    try {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `backups/snapgraph/${fileName}`, Body: 'theirs', Metadata: { sha256: 'f'.repeat(64) } }));
    } finally {
      client.destroy();
    }
    await exportTo(snapshot.id, destination.id);
    assert.equal((await objectOf(bucket, `backups/snapgraph/${fileName}`)).bytes.toString(), 'theirs');
    const copy = await objectOf(bucket, `backups/snapgraph/${fileName.replace(/\.backup$/, '')}-${snapshot.id}.backup`);
    assert.deepEqual(copy.bytes, await archiveOf(server, snapshot.id));

    // The same snapshot again: its own copy is where it was, not a third object.
    await exportTo(snapshot.id, destination.id);
    assert.equal((await keysIn(bucket)).length, 2);
  });

  it('stops at once when cancelled while the archive is being built: CANCELLED, nothing copied, no export copy kept', async function () {
    this.timeout(180_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const destination = await createDestination(bucket);
    const instance = await createInstance(server, { name: 'cancelled-export', tier: 'PROFESSIONAL', memoryGB: 4 });
    await fillInstance(server, instance.id, { nodes: 60_000, relationships: 60_000 });
    const snapshot = await takeSnapshot(server, instance.id);
    assert.equal(snapshot.sizeBytes, null, 'never exported yet');
    const { exportSnapshotTo: queued } = expectData(await gql<{ exportSnapshotTo: OperationJson }>(server, EXPORT_TO, { s: snapshot.id, d: destination.id }));
    await eventually(async () => (await operationById(server, queued.id))?.status === 'RUNNING', { intervalMs: 10, what: 'the export to start' });
    const cancelled = expectData(
      await gql(server, `mutation ($id: ID!) { cancelOperation(id: $id) { ${OPERATION_FIELDS} } }`, { id: queued.id }),
      'the export may have finished before the cancel: give the instance more data',
    ).cancelOperation;
    assert.equal(cancelled.status, 'CANCELLED', JSON.stringify(cancelled));
    // The archive was not finished: the snapshot's size and sha256 are still unknown, and the bucket is empty.
    assert.equal((await snapshotById(server, snapshot.id))?.sizeBytes, null, 'the export copy was built all the same');
    assert.deepEqual(await keysIn(bucket), []);
  });

  it('refuses a cancel once the copy is being made visible: CONFLICT, then SUCCEEDED with the object in the bucket', async function () {
    this.timeout(60_000);
    const bucket = await createTestBucket(s3(), s3().second);
    // The request that makes an object visible: its PUT, or for a larger one CompleteMultipartUpload (a POST).
    const makesVisible = (request: IncomingMessage) => {
      const query = new URL(request.url ?? '/', 'http://s3').searchParams;
      return (request.method === 'PUT' && !query.has('partNumber')) || (request.method === 'POST' && query.has('uploadId'));
    };
    let holding = false;
    const proxy = await holdingS3Proxy(s3(), (request) => holding && makesVisible(request));
    const destination = await createDestination(bucket, { endpoint: proxy.endpoint });
    const instance = await createInstance(server, { name: 'made-visible', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, [{ labels: ['Row'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    holding = true;
    const { exportSnapshotTo: queued } = expectData(await gql<{ exportSnapshotTo: OperationJson }>(server, EXPORT_TO, { s: snapshot.id, d: destination.id }));
    await eventually(() => proxy.held() === 1, { what: 'the object to be on its way to visible' });
    assert.equal((await operationById(server, queued.id))?.phase, 'swapping');
    const cancelling = gql(server, `mutation ($id: ID!) { cancelOperation(id: $id) { ${OPERATION_FIELDS} } }`, { id: queued.id });
    // A cancel that was accepted waits for the export to stop, which needs the held request answered.
    await Promise.race([cancelling, sleep(1_000)]);
    proxy.release();
    expectCode(await cancelling, 'CONFLICT');
    const finished = await settledOperation(server, queued.id);
    assert.equal(finished.status, 'SUCCEEDED', JSON.stringify(finished.error));
    const link = await exportLink(server, snapshot.id);
    assert.deepEqual(await keysIn(bucket), [`backups/snapgraph/${link.fileName}`]);
    const [after] = (await destinations()).filter((found) => found.id === destination.id);
    assert.ok(after.lastExportAt !== null);
  });

  it('copies the snapshots of auto-export instances as soon as they complete', async function () {
    this.timeout(60_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const instance = await createInstance(server, { name: 'auto-exported', tier: 'PROFESSIONAL' });
    await createDestination(bucket, { autoExportInstanceIds: [instance.id] });
    await createNodes(server, instance.id, [{ labels: ['A'], properties: {} }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const exported = await eventually(async () => (await exportsOf(instance.id)).find((op) => op.snapshotId === snapshot.id && op.status === 'SUCCEEDED'), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'the automatic export to succeed',
    });
    assert.equal(exported.kind, 'EXPORT');
    const { fileName } = await exportLink(server, snapshot.id);
    assert.deepEqual(await keysIn(bucket), [`backups/snapgraph/${fileName}`]);
  });

  it("exports a restore's safety snapshot once the restore happened, and never one whose restore did not", async function () {
    this.timeout(90_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const instance = await createInstance(server, { name: 'restored and exported', tier: 'PROFESSIONAL' });
    const destination = await createDestination(bucket, { autoExportInstanceIds: [instance.id] });
    await createNodes(server, instance.id, Array.from({ length: 500 }, (_, i) => ({ labels: ['Old'], properties: { i, text: `${i}`.repeat(50) } })));
    const snapshot = await takeSnapshot(server, instance.id);
    await createNodes(server, instance.id, [{ labels: ['Newer'] }]);
    const exportedOf = (snapshotId: string) =>
      eventually(async () => (await exportsOf(instance.id)).find((op) => op.snapshotId === snapshotId && op.status === 'SUCCEEDED'), {
        timeoutMs: 30_000,
        intervalMs: 100,
        what: `the automatic export of ${snapshotId} to succeed`,
      });
    await exportedOf(snapshot.id);
    const safetySnapshotIds = async () => {
      const { snapshots } = expectData(
        await gql(server, `query ($id: ID!) { snapshots(instanceId: $id, first: 100) { edges { node { id profile } } } }`, { id: instance.id }),
      );
      return snapshots.edges.map((edge: { node: { id: string; profile: string } }) => edge.node).filter((node: { profile: string }) => node.profile === 'PRE_RESTORE');
    };

    // A restore that does not happen: its snapshot's log is gone. Its safety snapshot completes, then goes.
    const { tenantId } = expectData(await gql(server, `{ viewer { tenantId } }`)).viewer;
    const [segment, ...rest] = logSegmentsOf(server.dataDir, tenantId, instance.id);
    assert.ok(segment, 'the instance has a log segment');
    const kept = readFileSync(segment);
    rmSync(segment);
    const failed = await restoreAndWait(server, snapshot.id);
    assert.equal(failed.status, 'FAILED', JSON.stringify(failed));
    writeFileSync(segment, kept);
    assert.deepEqual(await safetySnapshotIds(), [], 'the safety snapshot of a restore that did not happen is removed');
    const exports = await exportsOf(instance.id);
    assert.deepEqual(exports.map((op) => op.snapshotId), [snapshot.id], `exports: ${JSON.stringify(exports)} (other segments: ${rest.length})`);
    const [shown] = (await destinations()).filter((found) => found.id === destination.id);
    assert.equal(shown.lastError, null);

    // A restore that happens keeps its safety snapshot, and exports it.
    const second = await takeSnapshot(server, instance.id);
    await exportedOf(second.id);
    assert.equal((await restoreAndWait(server, second.id)).status, 'SUCCEEDED');
    const [safety] = await safetySnapshotIds();
    assert.ok(safety, 'the safety snapshot of a restore that happened stays');
    await exportedOf(safety.id);
  });

  it('records a failed automatic export in lastError and retries it with backoff', async function () {
    this.timeout(90_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const instance = await createInstance(server, { name: 'retried', tier: 'PROFESSIONAL' });
    const destination = await createDestination(bucket, { autoExportInstanceIds: [instance.id] });
    const client = secondAccount();
    try {
      // The bucket goes away after it was registered (it is empty: the probe object was deleted).
      await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      const snapshot = await takeSnapshot(server, instance.id);
      const failed = await eventually(async () => (await exportsOf(instance.id)).find((op) => op.snapshotId === snapshot.id && op.status === 'FAILED'), {
        timeoutMs: 30_000,
        intervalMs: 100,
        what: 'the automatic export to fail',
      });
      assert.equal(failed.error?.code, 'DESTINATION_UNAVAILABLE');
      assert.match(failed.error!.message, /NoSuchBucket/);
      const [shown] = (await destinations()).filter((found) => found.id === destination.id);
      assert.match(shown.lastError ?? '', /DESTINATION_UNAVAILABLE/);
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      await eventually(async () => (await exportsOf(instance.id)).find((op) => op.snapshotId === snapshot.id && op.status === 'SUCCEEDED'), {
        timeoutMs: 60_000,
        intervalMs: 200,
        what: 'a retry of the export to succeed',
      });
      const { fileName } = await exportLink(server, snapshot.id);
      await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `backups/snapgraph/${fileName}` }));
      const [recovered] = (await destinations()).filter((found) => found.id === destination.id);
      assert.equal(recovered.lastError, null);
      assert.ok(recovered.lastExportAt !== null);
    } finally {
      client.destroy();
    }
  });

  it("keeps one tenant's destinations out of another's sight and reach, and needs ADMIN", async function () {
    this.timeout(30_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const destination = await createDestination(bucket);
    const other = await createTenant(server, 'other-tenant');
    assert.deepEqual(await destinations(other.apiKey), []);
    expectCode(await gql(server, `mutation ($id: ID!) { deleteExportDestination(id: $id) }`, { id: destination.id }, other.apiKey), 'NOT_FOUND');
    const theirs = await createInstance(server, { name: 'theirs', tier: 'PROFESSIONAL' }, other.apiKey);
    await createNodes(server, theirs.id, [{ labels: ['T'], properties: {} }], other.apiKey);
    const snapshot = await takeSnapshot(server, theirs.id, { key: other.apiKey });
    expectCode(await gql(server, EXPORT_TO, { s: snapshot.id, d: destination.id }, other.apiKey), 'NOT_FOUND');
    // Nor may an auto-export name another tenant's instance.
    expectCode(await gql(server, CREATE_DESTINATION, { input: input(bucket, { autoExportInstanceIds: [theirs.id] }) }), 'NOT_FOUND');
    const member = await createKey(server, server.adminKey, 'MEMBER');
    expectCode(await gql(server, DESTINATIONS, {}, member.secret), 'FORBIDDEN');
    expectCode(await gql(server, CREATE_DESTINATION, { input: input(bucket) }, member.secret), 'FORBIDDEN');
    expectData(await gql(server, `mutation ($id: ID!) { deleteExportDestination(id: $id) }`, { id: destination.id }));
    assert.ok(!(await destinations()).some((found) => found.id === destination.id));
  });

  it('never logs the credentials it was given', () => {
    const logs = server.logs();
    assert.ok(!logs.includes(s3().second.secretAccessKey), 'the log holds the secret');
    assert.ok(!logs.includes(s3().second.accessKeyId), 'the log holds the access key id');
  });
});

describe('export destinations at addresses that are not public', () => {
  // No S3 needed: nothing may be sent to these addresses at all. A server listening on loopback counts what reaches it.
  const suite = serverPerSuite();
  let listener: Server;
  let requests = 0;
  let port = 0;
  before(async () => {
    listener = createServer((_request, response) => {
      requests += 1;
      response.writeHead(200).end('an internal service answering');
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    port = (listener.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => listener.close(() => resolve())));

  const create = (endpoint: string) =>
    gql(suite.server, CREATE_DESTINATION, {
      input: { name: 'inside', url: 's3://bucket/prefix', endpoint, region: 'us-east-1', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret' },
    });

  it('refuses a loopback, private or link-local endpoint (an IP, or a name resolving to one) and sends it nothing', async () => {
    for (const endpoint of [`http://127.0.0.1:${port}`, `http://[::ffff:127.0.0.1]:${port}`, 'http://169.254.169.254', 'http://10.1.2.3:9000', 'http://[fd00::1]']) {
      const answer = await create(endpoint);
      expectCode(answer, 'BAD_USER_INPUT');
      assert.match(answer.errors![0].message, /is not a public address.*SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS/, endpoint);
    }
    // A host name is looked up when connecting (its DNS may change after it was registered).
    const named = await create(`http://localhost:${port}`);
    expectCode(named, 'BAD_USER_INPUT');
    assert.match(named.errors![0].message, /localhost resolves to an address that is not public/);
    assert.doesNotMatch(named.errors![0].message, /127\.0\.0\.1|::1/, 'the answer told the tenant where the name points');
    assert.equal(requests, 0, 'a request reached the internal service');
    assert.deepEqual(expectData(await gql(suite.server, DESTINATIONS)).exportDestinations, []);
  });
});
