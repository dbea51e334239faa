// A full disk (issue 10, point 9): STORAGE_FULL for the request or operation that met it, never an exit of the
// server; the instance keeps its data and reads go on; once space returns everything works again without a restart.
// The disk is a real one: a small tmpfs, filled with a filler file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  archiveOf,
  createInstance,
  CREATE_NODES,
  createNodes,
  eventually,
  expectCode,
  expectData,
  EXPORT_SNAPSHOT,
  fillInstance,
  gql,
  graphOf,
  instanceState,
  makeTempDir,
  metricsValue,
  mountSmallVolume,
  operationById,
  type OperationJson,
  OPERATION_FIELDS,
  requestSnapshot,
  restorableThrough,
  restoreAndWait,
  settledOperation,
  settledSnapshot,
  type SmallVolume,
  startServer,
  subscribe,
  takeSnapshot,
  type TestServer,
  uploadFile,
  within,
} from '../support';

const MiB = 1024 * 1024;

/** Nodes whose properties do not compress: their archive is about as large as their text. */
const bulkyNodes = (count: number, bytes = 6_000) =>
  Array.from({ length: count }, () => ({ labels: ['Doc'], properties: { body: randomBytes(bytes).toString('base64') } }));

async function latestOperation(server: TestServer, instanceId: string): Promise<OperationJson> {
  const { operations } = expectData(
    await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 1) { edges { node { ${OPERATION_FIELDS} } } } }`, {
      id: instanceId,
    }),
  );
  return operations.edges[0].node;
}

function assertAlive(server: TestServer): void {
  assert.equal(server.process.exitCode, null, `the server exited:\n${server.logs().slice(-3000)}`);
  assert.equal(server.process.signalCode, null);
  const fatal = server.logLines().filter((line) => line.level === 60);
  assert.deepEqual(fatal, [], 'no fatal log line');
}

/** A STORAGE_FULL message names the volume and what to do, and carries no driver text or path. */
function assertStorageFullMessage(message: string, volume: RegExp): void {
  assert.match(message, volume);
  assert.match(message, /free space/i);
  assert.doesNotMatch(message, /SQLITE|ENOSPC|EDQUOT|no space left|\//);
}

/** The tus creation request of an upload of `length` bytes. */
function tusCreation(server: TestServer, instanceId: string, length: number): Promise<Response> {
  const metadata = { instanceId, confirm: 'RESTORE', filename: 'graph.backup' };
  return fetch(`${server.url}/uploads`, {
    method: 'POST',
    headers: {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${server.adminKey}`,
      'Upload-Length': String(length),
      'Upload-Metadata': Object.entries(metadata)
        .map(([name, value]) => `${name} ${Buffer.from(value).toString('base64')}`)
        .join(','),
    },
  });
}

/** One PATCH with the whole file to an upload created for it (`created`), as a tus client sends it. */
async function tusPatch(server: TestServer, created: Response, file: Buffer): Promise<{ location: string; patch: Response }> {
  assert.equal(created.status, 201, await created.text());
  const location = new URL(created.headers.get('location')!, `${server.url}/uploads/`).href;
  const patch = await fetch(location, {
    method: 'PATCH',
    headers: {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${server.adminKey}`,
      'Upload-Offset': '0',
      'Content-Type': 'application/offset+octet-stream',
    },
    body: file,
  });
  return { location, patch };
}

/** The tus creation request and one PATCH with the whole file, as a tus client sends them. */
async function tusUpload(server: TestServer, instanceId: string, file: Buffer): Promise<{ location: string; patch: Response }> {
  return tusPatch(server, await tusCreation(server, instanceId, file.length), file);
}

/** A tmpfs of `sizeBytes`, or a skipped test saying why there is none. */
function volumeOrSkip(context: Mocha.Context, sizeBytes: number): SmallVolume {
  const volume = mountSmallVolume(sizeBytes);
  if ('unavailable' in volume) {
    console.log(`      skipped: ${volume.unavailable}`);
    context.skip();
  }
  return volume as SmallVolume;
}

/** A data dir on the usual disk whose blob store is on `volume`. */
function dataDirWithBlobsOn(volume: SmallVolume): string {
  const dataDir = makeTempDir('snapgraph-e2e-data-');
  mkdirSync(join(volume.path, 'blobs'));
  symlinkSync(join(volume.path, 'blobs'), join(dataDir, 'blobs'));
  return dataDir;
}

describe('a full disk', function () {
  this.timeout(180_000);

  it('answers STORAGE_FULL to writes, snapshots and uploads, keeps serving reads, and recovers when space returns', async function () {
    // Room for the store, its WAL and its unshipped change log (a write takes about twice its size until shipped).
    const volume = volumeOrSkip(this, 64 * MiB);
    // The data dir and the partial uploads (a sibling folder) are both on the small volume.
    // The change log ships only when a snapshot asks: what is written while there is room waits in the store.
    const server = await startServer({
      dataDir: join(volume.path, 'data'),
      env: { SNAPGRAPH_LOG_SHIP_DELAY_MS: '3600000', SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '3600000' },
    });
    const instance = await createInstance(server, { name: 'full-disk' });
    await createNodes(server, instance.id, bulkyNodes(200));
    await createNodes(server, instance.id, bulkyNodes(200));
    const good = await takeSnapshot(server, instance.id);
    const archive = await archiveOf(server, good.id);
    assert.ok(archive.length > 2 * MiB, `the archive (${archive.length} bytes) must not fit in the space left`);
    // Restored, the data sits in the store's main file, as in a store that has run for a while (not in its WAL).
    assert.equal((await restoreAndWait(server, good.id)).status, 'SUCCEEDED');
    const before = await graphOf(server, instance.id);
    // Written while there is room; its log (about 2.4 MiB) is what a snapshot must write once the disk is full. (With
    // its log entry the write passes the WAL's checkpoint size, so that it is in the main file before the disk fills.)
    await createNodes(server, instance.id, bulkyNodes(300));
    const current = await graphOf(server, instance.id);

    volume.fill(MiB);

    // A graph write that does not fit: refused whole, nothing written, and the space its attempt took is given back.
    // (About 4.8 MiB, twice that with its change-log entry: more than the WAL the previous write left to reuse.)
    const write = await gql(server, CREATE_NODES, { instanceId: instance.id, nodes: bulkyNodes(600) });
    assertStorageFullMessage(expectCode(write, 'STORAGE_FULL').message, /SNAPGRAPH_DATA_DIR/);

    assert.ok(volume.availableBytes() > MiB / 2, `the failed batch gave its space back (${volume.availableBytes()} bytes free)`);
    // An on-demand snapshot, which must ship that log: its operation FAILED with STORAGE_FULL, the snapshot FAILED, no
    // blob left behind. (The space the refused write gave back is taken again first.)
    volume.fill(MiB);
    const snapshot = await requestSnapshot(server, instance.id);
    assert.equal((await settledSnapshot(server, snapshot.id)).status, 'FAILED');
    const failedSnapshot = await settledOperation(server, (await latestOperation(server, instance.id)).id);
    assert.equal(failedSnapshot.kind, 'SNAPSHOT');
    assert.equal(failedSnapshot.status, 'FAILED');
    assert.equal(failedSnapshot.error?.code, 'STORAGE_FULL', JSON.stringify(failedSnapshot.error));
    assertStorageFullMessage(failedSnapshot.error!.message, /SNAPGRAPH_DATA_DIR/);

    // A restore of a snapshot: FAILED with STORAGE_FULL, the instance back on its old data.
    const failedRestore = await restoreAndWait(server, good.id);
    assert.equal(failedRestore.status, 'FAILED');
    assert.equal(failedRestore.error?.code, 'STORAGE_FULL', JSON.stringify(failedRestore.error));

    // restoreFromFile (GraphQL multipart): refused before any restore starts.
    const upload = await uploadFile(server, { instanceId: instance.id, file: archive });
    assertStorageFullMessage(expectCode(upload, 'STORAGE_FULL').message, /SNAPGRAPH_DATA_DIR/);

    // Reads go on, the instance is AVAILABLE on its old data, export links still download.
    assert.deepEqual(await graphOf(server, instance.id), current);
    const state = await instanceState(server, instance.id);
    assert.equal(state.status, 'RUNNING');
    assert.equal(state.availability, 'AVAILABLE');
    assert.deepEqual(await archiveOf(server, good.id), archive);
    assertAlive(server);

    // tus: an upload the volume has no room for is refused when it is created, storing nothing (507, JSON refusal)...
    const uploads = readdirSync(server.env.SNAPGRAPH_UPLOAD_DIR!);
    const noRoom = await tusCreation(server, instance.id, archive.length);
    assert.equal(noRoom.status, 507);
    const early = (await noRoom.json()) as { errors: { message: string; extensions: { code: string } }[] };
    assert.equal(early.errors[0].extensions.code, 'STORAGE_FULL');
    assertStorageFullMessage(early.errors[0].message, /SNAPGRAPH_UPLOAD_DIR/);
    assert.deepEqual(readdirSync(server.env.SNAPGRAPH_UPLOAD_DIR!), uploads);
    // ...and one created while there was room cannot store what comes once there is none: 507; the client may resume.
    volume.release();
    const createdWithRoom = await tusCreation(server, instance.id, archive.length);
    volume.fill(MiB);
    const tus = await tusPatch(server, createdWithRoom, archive);
    assert.equal(tus.patch.status, 507);
    const refusal = (await tus.patch.json()) as { errors: { message: string; extensions: { code: string } }[] };
    assert.equal(refusal.errors[0].extensions.code, 'STORAGE_FULL');
    assertStorageFullMessage(refusal.errors[0].message, /SNAPGRAPH_UPLOAD_DIR/);
    const terminated = await fetch(tus.location, {
      method: 'DELETE',
      headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${server.adminKey}` },
    });
    assert.equal(terminated.status, 204);
    assertAlive(server);

    // With no byte left, a new instance cannot be created, and leaves no store behind.
    volume.fill();
    const stores = readdirSync(join(server.dataDir, 'instances'));
    const created = await gql(server, `mutation { createInstance(input: { name: "no-room", tier: PROFESSIONAL }) { id } }`);
    assertStorageFullMessage(expectCode(created, 'STORAGE_FULL').message, /SNAPGRAPH_DATA_DIR/);
    assert.deepEqual(readdirSync(join(server.dataDir, 'instances')), stores);
    assert.deepEqual(expectData(await gql(server, `{ instances { id } }`)).instances, [{ id: instance.id }]);
    assertAlive(server);

    // Space returns: writes, snapshots and restores work again, without a restart.
    volume.release();
    const process = server.process;
    const added = expectData(await gql(server, CREATE_NODES, { instanceId: instance.id, nodes: bulkyNodes(300) })).createNodes;
    assert.equal(added.length, 300);
    const after = await takeSnapshot(server, instance.id);
    assert.equal(after.contents?.nodeCount, current.nodes.length + 300);
    const restored = await uploadFile(server, { instanceId: instance.id, file: archive });
    const restore = await settledOperation(server, expectData(restored).restoreFromFile.id);
    assert.equal(restore.status, 'SUCCEEDED', JSON.stringify(restore.error));
    assert.deepEqual(await graphOf(server, instance.id), before);
    assert.equal(server.process, process, 'the same server process');
    assertAlive(server);
  });
});

describe('a full backup storage when a snapshot is exported', function () {
  this.timeout(180_000);

  it('answers STORAGE_FULL at once, leaves no copy behind, and exports once space returns', async function () {
    const volume = volumeOrSkip(this, 64 * MiB);
    // Only the blobs are on the small volume: the export's scratch copy of the graph has room, its archive does not.
    const dataDir = dataDirWithBlobsOn(volume);
    const server = await startServer({ dataDir });
    const instance = await createInstance(server, { name: 'export-full' });
    for (let batch = 0; batch < 8; batch++) await createNodes(server, instance.id, bulkyNodes(300));
    const snapshot = await takeSnapshot(server, instance.id);
    const stores = readdirSync(join(dataDir, 'instances'));

    // Room for a small part of the archive (about 15 MiB): the rest is more than the buffers on its way hold, and the
    // archive writer was left waiting for a reader the failed write had gone, so the request was never answered.
    volume.fill(2 * MiB);
    const refused = await within(gql(server, EXPORT_SNAPSHOT, { id: snapshot.id }), 60_000, 'the answer to exportSnapshot');
    assertStorageFullMessage(expectCode(refused, 'STORAGE_FULL').message, /SNAPGRAPH_DATA_DIR/);
    await eventually(() => JSON.stringify(readdirSync(join(dataDir, 'instances'))) === JSON.stringify(stores), {
      what: 'the scratch copy of the graph to be removed',
    });
    assertAlive(server);

    volume.release();
    const archive = await archiveOf(server, snapshot.id);
    assert.ok(archive.length > 12 * MiB, `the archive (${archive.length} bytes) is far larger than the room left`);
    assertAlive(server);
  });
});

describe('a full backup storage when the change log calls for a base', function () {
  this.timeout(120_000);

  it('takes the base once space returns, with no write after the one that called for it', async function () {
    const volume = volumeOrSkip(this, 32 * MiB);
    const dataDir = dataDirWithBlobsOn(volume);
    const server = await startServer({ dataDir });
    const instance = await createInstance(server, { name: 'base-full' });
    const bases = () => metricsValue(server, 'snapgraph_store_bases_total');
    const basesBefore = await bases();
    const failedBase = () => server.logLines().filter((line) => line.msg === 'taking a base of the store failed; it is tried again');
    // About 0.8 MB of log: under a quarter of the 4 MiB a small store counts as (BASE_POLICY), so no base yet.
    await createNodes(server, instance.id, bulkyNodes(100));
    await restorableThrough(server, instance.id, Date.now());
    // Room for the next write's segment (about 0.4 MB stored), not for a base of the whole store (about 1 MB).
    volume.fill(640 * 1024);
    await createNodes(server, instance.id, bulkyNodes(60));
    await eventually(() => failedBase().length > 0, { timeoutMs: 20_000, what: 'the base to meet the full volume' });
    assert.equal(await bases(), basesBefore);

    volume.release();
    await eventually(async () => (await bases()) > basesBefore, { timeoutMs: 20_000, what: 'the base once space returned' });
    assertAlive(server);
  });
});

describe('a full backup storage when a resumable upload completes', function () {
  this.timeout(180_000);

  it('keeps the complete upload, across a restart, and a HEAD once space returns finishes it without sending the file again', async function () {
    const volume = volumeOrSkip(this, 32 * MiB);
    // The blobs are on the small volume, the partial uploads are not: the checked file is copied into the blob store
    // (another file system), and that copy meets the full disk.
    const dataDir = dataDirWithBlobsOn(volume);
    let server = await startServer({ dataDir });
    const source = await createInstance(server, { name: 'upload-source' });
    for (let batch = 0; batch < 2; batch++) await createNodes(server, source.id, bulkyNodes(200));
    const archive = await archiveOf(server, (await takeSnapshot(server, source.id)).id);
    const graph = await graphOf(server, source.id);
    const target = await createInstance(server, { name: 'upload-target' });

    volume.fill();
    const tus = await tusUpload(server, target.id, archive);
    assert.equal(tus.patch.status, 507, await tus.patch.clone().text());
    assertStorageFullMessage(((await tus.patch.json()) as { errors: { message: string }[] }).errors[0].message, /SNAPGRAPH_DATA_DIR/);
    assertAlive(server);
    const path = new URL(tus.location).pathname;
    const head = () => fetch(`${server.url}${path}`, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${server.adminKey}` } });
    // Still full: the HEAD tries again, and is refused the same way; the upload stays, across a restart too.
    assert.equal((await head()).status, 507);
    await server.stop();
    server = await startServer({ dataDir, bootstrapToken: server.adminKey });

    volume.release();
    const finished = await head();
    assert.equal(finished.status, 200);
    assert.equal(finished.headers.get('upload-offset'), String(archive.length));
    const operationId = finished.headers.get('snapgraph-operation-id');
    assert.ok(operationId, 'the HEAD names the restore it queued');
    assert.equal((await settledOperation(server, operationId)).status, 'SUCCEEDED');
    assert.deepEqual(await graphOf(server, target.id), graph);
    // Asked again, the same operation: no second restore.
    assert.equal((await head()).headers.get('snapgraph-operation-id'), operationId);
    assertAlive(server);
  });
});

describe('a full metadata volume when an operation finishes', function () {
  this.timeout(180_000);

  it('keeps the outcome, serves on, and records it once space returns', async function () {
    const volume = volumeOrSkip(this, 8 * MiB);
    // Only the metadata database is on the small volume. A verification writes nothing there until its outcome (the
    // snapshot's verifiedAt, sha256 and size): its work succeeds, its recording cannot. (A snapshot no longer fits
    // this: its capture writes its chunk index into the metadata database, so a full volume fails the capture itself.)
    const dataDir = join(volume.path, 'data');
    const elsewhere = makeTempDir('snapgraph-e2e-stores-');
    mkdirSync(dataDir);
    // (The scratch directory holds the copy of a store a base is cut from.)
    for (const name of ['instances', 'blobs', 'scratch']) {
      mkdirSync(join(elsewhere, name));
      symlinkSync(join(elsewhere, name), join(dataDir, name));
    }
    const server = await startServer({ dataDir });
    const instance = await createInstance(server, { name: 'metadata-full' });
    // Its verification runs for about a second after its first progress with bytes (1.6-2.6 s at the 100,000 nodes
    // this had, for twice the CPU to write them), and the server is paused at that progress event.
    await fillInstance(server, instance.id, { nodes: 40_000, relationships: 40_000 });
    const snapshot = await takeSnapshot(server, instance.id);
    assert.equal(snapshot.sha256, null, 'a new snapshot has no recorded archive yet');

    // Pause the server while it verifies the snapshot, and fill the metadata volume meanwhile.
    const operation = expectData(await gql(server, `mutation ($id: ID!) { verifySnapshot(id: $id) { id } }`, { id: snapshot.id })).verifySnapshot as {
      id: string;
    };
    const progress = subscribe(server, server.adminKey, `subscription ($id: ID!) { operationProgress(operationId: $id) { status phase bytesDone } }`, {
      id: operation.id,
    });
    await progress.waitFor(({ data }) => data?.operationProgress.status === 'RUNNING' && data.operationProgress.bytesDone > 0);
    server.process.kill('SIGSTOP');
    try {
      const metadata = new Database(join(dataDir, 'metadata.sqlite'), { readonly: true, fileMustExist: true });
      try {
        const state = metadata
          .prepare('SELECT o.status AS operation, s.verifiedAt AS verifiedAt FROM operations o JOIN snapshots s ON s.id = o.snapshotId WHERE o.id = ?')
          .get(operation.id);
        assert.deepEqual(state, { operation: 'RUNNING', verifiedAt: null }, 'the verification ended before the server was paused: give the instance more data');
      } finally {
        metadata.close();
      }
      volume.fill();
    } finally {
      server.process.kill('SIGCONT');
    }

    const retrying = (line: Record<string, unknown>) =>
      line.operationId === operation.id && line.msg === 'the disk is full: the outcome of the operation will be recorded when space returns';
    await eventually(async () => server.process.exitCode !== null || server.logLines().some(retrying), {
      timeoutMs: 60_000,
      intervalMs: 100,
      what: 'the runner to meet the full metadata volume',
    });
    assertAlive(server);
    // Reads go on; the operation is not lost (still RUNNING), and a metadata write is STORAGE_FULL.
    assert.equal((await operationById(server, operation.id))?.status, 'RUNNING');
    assert.equal((await instanceState(server, instance.id)).availability, 'AVAILABLE');
    const key = await gql(server, `mutation { createApiKey(name: "while-full", role: VIEWER) { id secret } }`);
    assertStorageFullMessage(expectCode(key, 'STORAGE_FULL').message, /SNAPGRAPH_DATA_DIR/);
    assertAlive(server);

    // Space returns: the outcome is recorded (what the verification measured included), and metadata writes work again.
    volume.release();
    const finished = await settledOperation(server, operation.id);
    assert.equal(finished.status, 'SUCCEEDED', JSON.stringify(finished.error));
    const verified = await settledSnapshot(server, snapshot.id);
    assert.equal(verified.status, 'COMPLETED');
    assert.equal(verified.contents?.nodeCount, 40_000);
    assert.ok(verified.verifiedAt !== null && verified.sha256 !== null, JSON.stringify(verified));
    assert.equal((await archiveOf(server, snapshot.id)).length, verified.sizeBytes);
    expectData(await gql(server, `mutation { createApiKey(name: "after", role: VIEWER) { id secret } }`));
    assertAlive(server);
  });
});

describe('a full volume of the instance stores', function () {
  this.timeout(120_000);

  it('keeps shipping the change log: the restore window reaches moments after the volume filled', async function () {
    const volume = volumeOrSkip(this, 32 * MiB);
    // Only the stores are on the small volume: the metadata, the blobs and the scratch copies have room.
    const dataDir = makeTempDir('snapgraph-e2e-data-');
    mkdirSync(join(volume.path, 'instances'));
    symlinkSync(join(volume.path, 'instances'), join(dataDir, 'instances'));
    const server = await startServer({ dataDir });
    const instance = await createInstance(server, { name: 'stores-full' });
    await createNodes(server, instance.id, bulkyNodes(20));
    await restorableThrough(server, instance.id, Date.now());

    volume.fill();
    // A write that does not fit is refused, and gives the store's WAL back to the volume: nothing is left to write in.
    expectCode(await gql(server, CREATE_NODES, { instanceId: instance.id, nodes: bulkyNodes(600) }), 'STORAGE_FULL');
    // Nothing can be written, so the store's history goes on unchanged: a moment after the volume filled is as
    // restorable as one before (the log shipping that says so writes nothing to the full volume).
    const filled = Date.now();
    await restorableThrough(server, instance.id, filled);
    assert.deepEqual(
      server.logLines().filter((line) => line.msg === 'shipping the change log failed; it is retried'),
      [],
      'no failed shipping',
    );
    assertAlive(server);
  });
});

describe('a full scratch volume when backup storage is collected', function () {
  this.timeout(120_000);

  it('still collects: the chunks of a deleted instance are removed', async function () {
    const volume = volumeOrSkip(this, 8 * MiB);
    // Only the scratch dir (where a collection marks the live chunks) is on the small volume: with S3, or blobs on
    // another disk, a full local volume must not stop the backup storage from being reclaimed.
    const dataDir = makeTempDir('snapgraph-e2e-data-');
    mkdirSync(join(volume.path, 'scratch'));
    symlinkSync(join(volume.path, 'scratch'), join(dataDir, 'scratch'));
    // A grace period a snapshot's writer on a loaded machine is well within between two of its heartbeats.
    const server = await startServer({ dataDir, env: { SNAPGRAPH_COLLECT_GRACE_MS: '2000', SNAPGRAPH_COLLECT_INTERVAL_MS: '300' } });
    const tenantId = expectData(await gql(server, `{ viewer { tenantId } }`)).viewer.tenantId as string;
    const kept = await createInstance(server, { name: 'kept' });
    await createNodes(server, kept.id, bulkyNodes(300));
    const keptSnapshot = await takeSnapshot(server, kept.id);
    const doomed = await createInstance(server, { name: 'doomed' });
    await createNodes(server, doomed.id, bulkyNodes(300));
    await takeSnapshot(server, doomed.id);
    const packsDir = join(dataDir, 'blobs', 'tenants', tenantId, 'chunks', 'packs');
    const packs = () => readdirSync(packsDir).length;
    const before = packs();
    assert.ok(before >= 2, `the snapshots wrote packs (${before})`);

    volume.fill();
    assert.equal(expectData(await gql(server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: doomed.id })).deleteInstance, true);
    await eventually(() => packs() < before, { timeoutMs: 40_000, what: 'the packs of the deleted instance to be collected' }).catch((error) => {
      const failures = server.logLines().filter((line) => line.msg === 'backup storage collection failed; the next one retries');
      throw new Error(`${(error as Error).message}; ${failures.length} failed collections, the last: ${JSON.stringify((failures.at(-1)?.err as { message?: string } | undefined)?.message)}`);
    });
    // What the kept instance's snapshot needs is still there.
    const verification = expectData(await gql(server, `mutation ($id: ID!) { verifySnapshot(id: $id) { id } }`, { id: keptSnapshot.id })).verifySnapshot as {
      id: string;
    };
    assert.equal((await settledOperation(server, verification.id)).status, 'SUCCEEDED');
    assertAlive(server);
  });
});
