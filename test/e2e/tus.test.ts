// The /uploads endpoint as real tus clients meet it (issue 10): creation-with-upload through tus-js-client, protocol
// versions, method override, one JSON refusal shape, uploads that end badly leaving nothing behind, and two replicas
// that receive PATCHes of one upload at once.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pack as tarPack } from 'tar-stream';
import * as tus from 'tus-js-client';
import {
  archiveOf,
  createInstance,
  createNodes,
  createTenant,
  createTestDatabase,
  createTusUpload,
  describePostgres,
  eventually,
  expectData,
  filesUnder,
  generatedArchive,
  gql,
  graphOf,
  makeTempDir,
  mountSmallVolume,
  patchTusUpload,
  randomToken,
  refusalCode,
  registerCleanup,
  serverPerSuite,
  startServer,
  settledOperation,
  takeSnapshot,
  tempBlobs,
  type SmallVolume,
  type TestServer,
  tusUpload,
  untilCaught,
  within,
} from '../support';

const IDLE_TIMEOUT_MS = 4_000;

/** A tar file holding these entries, in order. */
async function tarOfEntries(entries: [string, Buffer][]): Promise<Buffer> {
  const tar = tarPack();
  for (const [name, content] of entries) tar.entry({ name }, content);
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of tar as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** A tar file holding one entry. */
const tarOf = (name: string, content: Buffer) => tarOfEntries([[name, content]]);

const metadataHeader = (metadata: Record<string, string>) =>
  Object.entries(metadata)
    .map(([name, value]) => `${name} ${Buffer.from(value).toString('base64')}`)
    .join(',');

interface TusAnswer {
  status: number;
  headers: Headers;
  body: string;
}

async function request(url: string, init: RequestInit): Promise<TusAnswer> {
  const response = await fetch(url, init);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/** Asserts the one refusal shape of every endpoint: JSON {"errors":[{"message","extensions":{"code"}}]}. */
function assertRefusal(answer: TusAnswer, status: number, code: string): void {
  assert.equal(answer.status, status, answer.body);
  assert.match(answer.headers.get('content-type') ?? '', /^application\/json/, `content type of: ${answer.body}`);
  const parsed = JSON.parse(answer.body) as { errors: { message: string; extensions: { code: string } }[] };
  assert.equal(parsed.errors.length, 1);
  assert.equal(typeof parsed.errors[0].message, 'string');
  assert.ok(parsed.errors[0].message.length > 0);
  assert.equal(parsed.errors[0].extensions.code, code, answer.body);
}

/** Uploads with tus-js-client; resolves with the final response's operation id header. */
function uploadWithTusJsClient(
  server: TestServer,
  bytes: Buffer,
  metadata: Record<string, string>,
  options: Partial<tus.UploadOptions> = {},
): Promise<{ operationId: string | undefined; status: number }> {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(bytes, {
      endpoint: `${server.url}/uploads`,
      headers: { Authorization: `Bearer ${server.adminKey}` },
      metadata,
      retryDelays: [],
      ...options,
      onSuccess: ({ lastResponse }) =>
        resolve({ operationId: lastResponse.getHeader('Snapgraph-Operation-Id'), status: lastResponse.getStatus() }),
      onError: reject,
    });
    upload.start();
  });
}

async function fileRestoresOf(server: TestServer, instanceId: string): Promise<string[]> {
  const { operations } = expectData(
    await gql(server, `query ($id: ID!) { operations(instanceId: $id) { edges { node { id kind } } } }`, { id: instanceId }),
  );
  return (operations.edges as { node: { id: string; kind: string } }[])
    .filter((edge) => edge.node.kind === 'RESTORE_FROM_FILE')
    .map((edge) => edge.node.id);
}

const openDescriptors = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

describe('the /uploads endpoint with real tus clients', () => {
  const suite = serverPerSuite({ env: { SNAPGRAPH_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS) } });
  let archive: Buffer;
  let uploadDir: string;

  before(async () => {
    uploadDir = suite.server.env.SNAPGRAPH_UPLOAD_DIR!;
    const source = await createInstance(suite.server, { name: 'tus source' });
    await createNodes(suite.server, source.id, [{ labels: ['A'], properties: { n: 1 } }, { labels: ['B'] }]);
    archive = await archiveOf(suite.server, (await takeSnapshot(suite.server, source.id)).id);
  });

  const creation = (headers: Record<string, string>, body?: Buffer) =>
    request(`${suite.server.url}/uploads`, { method: 'POST', headers: { Authorization: `Bearer ${suite.server.adminKey}`, ...headers }, body });

  it('answers a creation-with-upload (tus-js-client, the file in one request) with 201 and the operation id; one restore runs', async () => {
    const server = suite.server;
    const target = await createInstance(server, { name: 'one request' });
    const { operationId, status } = await uploadWithTusJsClient(
      server,
      archive,
      { instanceId: target.id, confirm: 'RESTORE', filename: 'one.backup' },
      { uploadDataDuringCreation: true },
    );
    assert.equal(status, 201);
    assert.ok(operationId, 'the creating POST names the restore operation');
    assert.equal((await settledOperation(server, operationId)).status, 'SUCCEEDED');
    assert.deepEqual(await fileRestoresOf(server, target.id), [operationId]);
    assert.deepEqual(readdirSync(uploadDir), []);
  });

  it('answers a creation-with-upload sent by hand with 201, Location and the operation id', async () => {
    const target = await createInstance(suite.server, { name: 'by hand' });
    const answer = await creation(
      {
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(archive.length),
        'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }),
        'Content-Type': 'application/offset+octet-stream',
      },
      archive,
    );
    assert.equal(answer.status, 201, answer.body);
    assert.equal(answer.headers.get('upload-offset'), String(archive.length));
    assert.ok(answer.headers.get('location'));
    const operationId = answer.headers.get('snapgraph-operation-id');
    assert.ok(operationId);
    assert.equal((await settledOperation(suite.server, operationId)).status, 'SUCCEEDED');
  });

  it('answers a creation-with-upload of a damaged file with its refusal (422), not 404', async () => {
    const target = await createInstance(suite.server, { name: 'damaged in one request' });
    const damaged = Buffer.from(archive);
    damaged[damaged.length - 10] ^= 0xff;
    const answer = await creation(
      {
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(damaged.length),
        'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }),
        'Content-Type': 'application/offset+octet-stream',
      },
      damaged,
    );
    assertRefusal(answer, 422, 'INVALID_BACKUP_FILE');
    assert.deepEqual(await fileRestoresOf(suite.server, target.id), []);
    assert.deepEqual(readdirSync(uploadDir), []);
  });

  it('answers an unsupported Tus-Resumable with 412 and Tus-Version, and a missing one likewise', async () => {
    const target = await createInstance(suite.server, { name: 'old client' });
    for (const version of ['0.2.2', null]) {
      const headers: Record<string, string> = {
        'Upload-Length': '10',
        'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }),
      };
      if (version) headers['Tus-Resumable'] = version;
      const answer = await creation(headers);
      assertRefusal(answer, 412, 'BAD_USER_INPUT');
      assert.equal(answer.headers.get('tus-version'), '1.0.0');
    }
    assert.deepEqual(readdirSync(uploadDir), []);
  });

  it('honours X-HTTP-Method-Override (PATCH and DELETE sent as POST)', async () => {
    const target = await createInstance(suite.server, { name: 'override' });
    const options = await request(`${suite.server.url}/uploads`, { method: 'OPTIONS' });
    assert.match(options.headers.get('access-control-allow-headers') ?? '', /X-HTTP-Method-Override/i);

    const create = () =>
      creation({
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(archive.length),
        'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }),
      });
    const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };

    const first = await create();
    assert.equal(first.status, 201, first.body);
    const firstUrl = new URL(first.headers.get('location')!, suite.server.url).toString();
    const half = Math.floor(archive.length / 2);
    const patched = await request(firstUrl, {
      method: 'POST',
      headers: { ...auth, 'X-HTTP-Method-Override': 'PATCH', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: archive.subarray(0, half),
    });
    assert.equal(patched.status, 204, patched.body);
    assert.equal(patched.headers.get('upload-offset'), String(half));
    const rest = await request(firstUrl, {
      method: 'POST',
      headers: { ...auth, 'X-HTTP-Method-Override': 'PATCH', 'Upload-Offset': String(half), 'Content-Type': 'application/offset+octet-stream' },
      body: archive.subarray(half),
    });
    assert.equal(rest.status, 204, rest.body);
    const operationId = rest.headers.get('snapgraph-operation-id');
    assert.ok(operationId);
    assert.equal((await settledOperation(suite.server, operationId)).status, 'SUCCEEDED');

    const second = await create();
    const secondUrl = new URL(second.headers.get('location')!, suite.server.url).toString();
    const deleted = await request(secondUrl, { method: 'POST', headers: { ...auth, 'X-HTTP-Method-Override': 'DELETE' } });
    assert.equal(deleted.status, 204, deleted.body);
    assert.equal((await request(secondUrl, { method: 'HEAD', headers: auth })).status, 404);

    const unknown = await request(secondUrl, { method: 'POST', headers: { ...auth, 'X-HTTP-Method-Override': 'PUT' } });
    assertRefusal(unknown, 400, 'BAD_USER_INPUT');
    assert.deepEqual(readdirSync(uploadDir), []);
  });

  it('queues the restore of a .tar only when its last byte is in, though its archive entry ended long before', async function () {
    this.timeout(60_000);
    const target = await createInstance(suite.server, { name: 'tar target' });
    // The archive first, then an entry larger than what a check holds in flight: nothing reads it.
    const tar = await tarOfEntries([['graph.backup', archive], ['notes.bin', randomBytes(12 * 1024 * 1024)]]);
    const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };
    const created = await creation({
      'Tus-Resumable': '1.0.0',
      'Upload-Length': String(tar.length),
      'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE', filename: 'graph.tar' }),
    });
    assert.equal(created.status, 201, created.body);
    const url = new URL(created.headers.get('location')!, suite.server.url).toString();
    const patch = (offset: number, body: Buffer) =>
      within(
        request(url, { method: 'PATCH', headers: { ...auth, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' }, body }),
        20_000,
        `the PATCH at ${offset}`,
      );
    const half = Math.floor(tar.length / 2);
    assert.equal((await patch(0, tar.subarray(0, half))).status, 204);
    assert.deepEqual(await fileRestoresOf(suite.server, target.id), [], 'no restore before the upload is complete');
    const last = await patch(half, tar.subarray(half));
    assert.equal(last.status, 204, last.body);
    const operationId = last.headers.get('snapgraph-operation-id')!;
    assert.equal((await settledOperation(suite.server, operationId)).status, 'SUCCEEDED');
    assert.deepEqual(await fileRestoresOf(suite.server, target.id), [operationId]);
    const received = suite.server.logLines().find((line) => line.msg === 'restore upload received' && line.operationId === operationId);
    assert.equal(received?.checked, 'as received');
  });

  it('refuses an upload whose instance was deleted while its bytes arrived, and keeps nothing of it', async () => {
    const target = await createInstance(suite.server, { name: 'deleted meanwhile' });
    const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };
    const created = await creation({
      'Tus-Resumable': '1.0.0',
      'Upload-Length': String(archive.length),
      'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }),
    });
    assert.equal(created.status, 201, created.body);
    const url = new URL(created.headers.get('location')!, suite.server.url).toString();
    const half = Math.floor(archive.length / 2);
    const patch = (offset: number, body: Buffer) =>
      request(url, { method: 'PATCH', headers: { ...auth, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' }, body });
    assert.equal((await patch(0, archive.subarray(0, half))).status, 204);
    expectData(await gql(suite.server, `mutation ($id: ID!) { deleteInstance(id: $id) }`, { id: target.id }));

    // The instance is looked at again once the file is in, not only when its first bytes came.
    assertRefusal(await patch(half, archive.subarray(half)), 404, 'NOT_FOUND');
    assert.deepEqual(await fileRestoresOf(suite.server, target.id).catch(() => []), []);
    await eventually(() => readdirSync(uploadDir).length === 0, { what: 'the upload dir is empty' });
    const storedUploads = () => filesUnder(join(suite.server.dataDir, 'blobs')).filter((path) => path.includes('/uploads/'));
    await eventually(() => storedUploads().length === 0 && tempBlobs(suite.server.dataDir).length === 0, { what: 'no stored upload' });
  });

  it('refuses at creation an upload its volume has no room for (507), stores nothing of it, and takes a large one that fits', async () => {
    const target = await createInstance(suite.server, { name: 'no room' });
    const create = (headers: Record<string, string>) =>
      creation({ 'Tus-Resumable': '1.0.0', 'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }), ...headers });
    const before = readdirSync(uploadDir).length;
    const tenTiB = 10 * 1024 ** 4;
    const refused = await create({ 'Upload-Length': String(tenTiB) });
    assertRefusal(refused, 507, 'STORAGE_FULL');
    assert.match(refused.body, /SNAPGRAPH_UPLOAD_DIR/);
    // A length to declare later would let a client send bytes without end: not offered.
    assertRefusal(await create({ 'Upload-Defer-Length': '1' }), 400, 'BAD_USER_INPUT');
    assert.equal(readdirSync(uploadDir).length, before, 'nothing stored');
    // No limit of its own: a file beyond the GraphQL upload limit (4 GiB) is taken where it fits.
    const { bavail, bsize } = statfsSync(uploadDir);
    const large = 5 * 1024 ** 3;
    if (bavail * bsize > 2 * large) {
      const created = await create({ 'Upload-Length': String(large) });
      assert.equal(created.status, 201, created.body);
      const url = new URL(created.headers.get('location')!, suite.server.url).toString();
      const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };
      assert.equal((await request(url, { method: 'DELETE', headers: auth })).status, 204);
    }
  });

  it('counts what the unfinished uploads still need: two that each fit, but not together, are not both taken', async () => {
    const target = await createInstance(suite.server, { name: 'room for one' });
    const create = (length: number) =>
      creation({ 'Tus-Resumable': '1.0.0', 'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }), 'Upload-Length': String(length) });
    const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };
    const { bavail, bsize } = statfsSync(uploadDir);
    const sixTenths = Math.floor(0.6 * bavail * bsize);
    const first = await create(sixTenths);
    assert.equal(first.status, 201, first.body);
    const refused = await create(sixTenths);
    assertRefusal(refused, 507, 'STORAGE_FULL');
    assert.match(refused.body, /besides the \d+ bytes the unfinished uploads still need/);
    // One that receives no byte for ten minutes reserves nothing more (its client went away, or never meant to send).
    const firstId = new URL(first.headers.get('location')!, suite.server.url).pathname.split('/').at(-1)!;
    const recordPath = join(uploadDir, `${firstId}.json`);
    const record = JSON.parse(readFileSync(recordPath, 'utf8')) as { creation_date: string };
    const elevenMinutesAgo = new Date(Date.now() - 11 * 60_000);
    writeFileSync(recordPath, JSON.stringify({ ...record, creation_date: elevenMinutesAgo.toISOString() }));
    utimesSync(join(uploadDir, firstId), elevenMinutesAgo, elevenMinutesAgo);
    const afterIdle = await create(sixTenths);
    assert.equal(afterIdle.status, 201, afterIdle.body);
    assert.equal((await request(new URL(afterIdle.headers.get('location')!, suite.server.url).toString(), { method: 'DELETE', headers: auth })).status, 204);
    writeFileSync(recordPath, JSON.stringify(record));
    utimesSync(join(uploadDir, firstId), new Date(), new Date());
    assertRefusal(await create(sixTenths), 507, 'STORAGE_FULL');
    // Once the first is gone, its room is free again.
    assert.equal((await request(new URL(first.headers.get('location')!, suite.server.url).toString(), { method: 'DELETE', headers: auth })).status, 204);
    const second = await create(sixTenths);
    assert.equal(second.status, 201, second.body);
    assert.equal((await request(new URL(second.headers.get('location')!, suite.server.url).toString(), { method: 'DELETE', headers: auth })).status, 204);
  });

  it('counts the uploads being created at the same moment: of three that fit two by two, takes two', async () => {
    const target = await createInstance(suite.server, { name: 'room for one, asked twice' });
    const create = (length: number) =>
      creation({ 'Tus-Resumable': '1.0.0', 'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }), 'Upload-Length': String(length) });
    const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };
    const { bavail, bsize } = statfsSync(uploadDir);
    const answers = await Promise.all([0, 1, 2].map(() => create(Math.floor(0.4 * bavail * bsize))));
    const taken = answers.filter((answer) => answer.status === 201);
    assert.equal(taken.length, 2, answers.map((answer) => `${answer.status} ${answer.body}`).join('\n'));
    for (const refused of answers.filter((answer) => answer.status !== 201)) assertRefusal(refused, 507, 'STORAGE_FULL');
    for (const created of taken) {
      assert.equal((await request(new URL(created.headers.get('location')!, suite.server.url).toString(), { method: 'DELETE', headers: auth })).status, 204);
    }
  });

  it("never completes one upload's bytes as another's: a partial file copied over another tenant's does not open there", async function () {
    this.timeout(60_000);
    const other = await createTenant(suite.server, `tus-other-${randomBytes(4).toString('hex')}`);
    const asOther = { ...suite.server, adminKey: other.apiKey };
    const ownTarget = await createInstance(suite.server, { name: 'tus own target' });
    const otherTarget = await createInstance(asOther, { name: 'tus other target' });
    const own = await createTusUpload(suite.server, { instanceId: ownTarget.id, length: archive.length });
    const theirs = await createTusUpload(asOther, { instanceId: otherTarget.id, length: archive.length });
    assert.equal(own.status, 201, own.body);
    assert.equal(theirs.status, 201, theirs.body);
    const part = archive.length - 1;
    assert.equal((await patchTusUpload(own.location!, own.auth, 0, archive.subarray(0, part))).status, 204);
    // Someone with access to the upload dir (not to the master key) puts the first tenant's bytes in the other's file.
    const ownId = new URL(own.location!).pathname.split('/').at(-1)!;
    const theirId = new URL(theirs.location!).pathname.split('/').at(-1)!;
    for (const suffix of ['', '.tail']) copyFileSync(join(uploadDir, `${ownId}${suffix}`), join(uploadDir, `${theirId}${suffix}`));

    const stolen = await patchTusUpload(theirs.location!, theirs.auth, part, archive.subarray(part));
    assert.equal(stolen.operationId, null, `the other tenant's upload completed with the first one's bytes (${stolen.status})`);
    assert.notEqual(stolen.status, 204, stolen.body);
    assert.deepEqual((await graphOf(asOther, otherTarget.id)).nodes, []);
    // The first tenant's own upload is untouched, and completes.
    const finished = await patchTusUpload(own.location!, own.auth, part, archive.subarray(part));
    assert.equal(finished.status, 204, finished.body);
    assert.equal((await settledOperation(suite.server, finished.operationId!)).status, 'SUCCEEDED');
    assert.equal((await graphOf(suite.server, ownTarget.id)).nodes.length, 2);
  });

  it('answers every refusal with the JSON error shape: protocol errors, unknown uploads, bad offsets, no key', async () => {
    const target = await createInstance(suite.server, { name: 'refusals' });
    const auth = { Authorization: `Bearer ${suite.server.adminKey}`, 'Tus-Resumable': '1.0.0' };
    assertRefusal(await request(`${suite.server.url}/uploads`, { method: 'POST', headers: { 'Tus-Resumable': '1.0.0' } }), 401, 'UNAUTHENTICATED');
    assertRefusal(await creation({ 'Tus-Resumable': '1.0.0', 'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }) }), 400, 'BAD_USER_INPUT');
    const patchHeaders = { ...auth, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' };
    assertRefusal(await request(`${suite.server.url}/uploads/no-such-upload`, { method: 'PATCH', headers: patchHeaders, body: 'x' }), 404, 'NOT_FOUND');
    assertRefusal(await request(`${suite.server.url}/uploads/a/b`, { method: 'PATCH', headers: patchHeaders, body: 'x' }), 404, 'NOT_FOUND');
    const head = await request(`${suite.server.url}/uploads/no-such-upload`, { method: 'HEAD', headers: auth });
    assert.equal(head.status, 404);
    assert.match(head.headers.get('content-type') ?? '', /^application\/json/);

    const created = await creation({
      'Tus-Resumable': '1.0.0',
      'Upload-Length': String(archive.length),
      'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE' }),
    });
    const url = new URL(created.headers.get('location')!, suite.server.url).toString();
    const wrongOffset = await request(url, {
      method: 'PATCH',
      headers: { ...auth, 'Upload-Offset': '7', 'Content-Type': 'application/offset+octet-stream' },
      body: Buffer.alloc(3),
    });
    assertRefusal(wrongOffset, 409, 'CONFLICT');
    const wrongType = await request(url, { method: 'PATCH', headers: { ...auth, 'Upload-Offset': '0', 'Content-Type': 'text/plain' }, body: 'x' });
    assertRefusal(wrongType, 415, 'BAD_USER_INPUT');
    assert.equal((await request(url, { method: 'DELETE', headers: auth })).status, 204);
  });

  it('after a PATCH refused for running past the upload\'s length (413), resumes from the offset a HEAD gives and restores', async function () {
    // @tus/server answers the 413 as soon as it sees the excess, and let go of the upload's lock while the write went
    // on appending what came before it: the HEAD could answer an offset still moving, and the PATCH from there raced
    // the write (409, or an upload lost). Several uploads, as that write is not always still going.
    this.timeout(120_000);
    const server = suite.server;
    // Large enough to arrive in many chunks, so that the excess is seen while earlier ones are still being written.
    const file = await generatedArchive({ nodes: 60_000, relationships: 0 });
    const overLong = Buffer.concat([file, randomBytes(256 * 1024)]);
    const restores: string[] = [];
    for (let upload = 0; upload < 6; upload++) {
      const target = await createInstance(server, { name: `over-long ${upload}` });
      const created = await createTusUpload(server, { instanceId: target.id, length: file.length });
      assert.ok(created.location, created.body);
      // Chunked (no Content-Length): the excess is found only as it comes.
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let at = 0; at < overLong.length; at += 64 * 1024) controller.enqueue(overLong.subarray(at, at + 64 * 1024));
          controller.close();
        },
      });
      const refused = await request(created.location, {
        method: 'PATCH',
        headers: { ...created.auth, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
        body,
        duplex: 'half',
      } as RequestInit);
      assertRefusal(refused, 413, 'FILE_TOO_LARGE');

      const head = await request(created.location, { method: 'HEAD', headers: created.auth });
      assert.equal(head.status, 200, head.body);
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset < file.length, `${offset} of ${file.length} bytes kept`);
      const resumed = await patchTusUpload(created.location, created.auth, offset, file.subarray(offset));
      assert.equal(resumed.status, 204, `upload ${upload}, resumed at ${offset}: ${resumed.body}`);
      restores.push(resumed.operationId!);
    }
    for (const operationId of restores) assert.equal((await settledOperation(server, operationId)).status, 'SUCCEEDED');
  });

  it('answers files with trailing junk within the timeout, keeping no descriptor or temp file', async function () {
    this.timeout(120_000);
    const server = suite.server;
    const target = await createInstance(server, { name: 'junk' });
    // Big enough to arrive and be read in many chunks (random text does not compress away).
    const big = await createInstance(server, { name: 'junk source' });
    await createNodes(server, big.id, Array.from({ length: 1500 }, (_, i) => ({ labels: ['Big'], properties: { i, blob: randomBytes(512).toString('hex') } })));
    const bigArchive = await archiveOf(server, (await takeSnapshot(server, big.id)).id);
    const junk = Buffer.from([1, 2, 3, 4]);
    // What follows a tar's archive entry is never read (docs/api.md), so junk after the tar's end is no defect of
    // the archive; junk inside the archive's own bytes is.
    const files: [string, Buffer, 'accepted' | 'refused'][] = [
      ['a .tar with junk after its end', Buffer.concat([await tarOf('graph.backup', bigArchive), junk]), 'accepted'],
      ['a .tar whose archive entry ends in junk', await tarOf('graph.backup', Buffer.concat([bigArchive, junk])), 'refused'],
      ['an archive followed by junk', Buffer.concat([bigArchive, junk]), 'refused'],
      ['a small archive followed by junk', Buffer.concat([archive, junk]), 'refused'],
    ];
    const pid = server.process.pid!;
    // One warm-up request, so that descriptors opened once (lazily loaded modules) are not counted.
    await request(`${server.url}/uploads/warm-up`, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    const before = openDescriptors(pid);

    for (const [what, file, outcome] of files) {
      const created = await creation({
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(file.length),
        'Upload-Metadata': metadataHeader({ instanceId: target.id, confirm: 'RESTORE', filename: 'junk.tar' }),
      });
      assert.equal(created.status, 201, created.body);
      const url = new URL(created.headers.get('location')!, server.url).toString();
      const finished = await within(
        request(url, {
          method: 'PATCH',
          headers: { Authorization: `Bearer ${server.adminKey}`, 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
          body: file,
        }),
        IDLE_TIMEOUT_MS * 3,
        `the final PATCH of ${what}`,
      );
      if (outcome === 'refused') {
        assertRefusal(finished, 422, 'INVALID_BACKUP_FILE');
        continue;
      }
      assert.equal(finished.status, 204, finished.body);
      assert.equal((await settledOperation(server, finished.headers.get('snapgraph-operation-id')!)).status, 'SUCCEEDED');
    }

    await eventually(() => readdirSync(uploadDir).length === 0, { what: 'the upload dir is empty' });
    assert.deepEqual(tempBlobs(server.dataDir), []);
    await eventually(() => openDescriptors(pid) <= before, { timeoutMs: 5_000, what: `descriptors back to ${before} (now ${openDescriptors(pid)})` });
  });
});

describe('a completion marker left without its content', () => {
  const suite = serverPerSuite({});
  let archive: Buffer;

  before(async () => {
    const source = await createInstance(suite.server, { name: 'marker source' });
    await createNodes(suite.server, source.id, [{ labels: ['A'], properties: { n: 1 } }]);
    archive = await archiveOf(suite.server, (await takeSnapshot(suite.server, source.id)).id);
  });

  it('is taken over once it is stale: a server that stopped between creating it and writing it does not hold the upload for good', async function () {
    this.timeout(60_000);
    const target = await createInstance(suite.server, { name: 'empty marker' });
    const created = await createTusUpload(suite.server, { instanceId: target.id, length: archive.length });
    assert.equal(created.status, 201, created.body);
    assert.equal((await patchTusUpload(created.location!, created.auth, 0, archive.subarray(0, archive.length - 1))).status, 204);
    // What a replica that stopped (or met a full disk) just after creating the upload's completion marker left.
    const id = new URL(created.location!).pathname.split('/').at(-1)!;
    const marker = join(suite.server.dataDir, 'upload-completions', `${id}.json`);
    writeFileSync(marker, '');
    const minuteAgo = (Date.now() - 60_000) / 1000;
    utimesSync(marker, minuteAgo, minuteAgo);

    const last = await within(
      patchTusUpload(created.location!, created.auth, archive.length - 1, archive.subarray(archive.length - 1)),
      20_000,
      'the final PATCH',
    );
    assert.equal(last.status, 204, last.body);
    assert.ok(last.operationId, 'the final PATCH names the restore');
    assert.equal((await settledOperation(suite.server, last.operationId)).status, 'SUCCEEDED');
  });
});

describe('a completion whose marker meets a full disk', function () {
  this.timeout(120_000);

  it('is kept and finished by a later HEAD once space returns, without its empty marker holding it for good', async function () {
    const volume = mountSmallVolume(4 * 1024 * 1024);
    if ('unavailable' in volume) return this.skip();
    const small = volume as SmallVolume;
    // The markers of completions (upload-completions) on the small volume.
    const dataDir = makeTempDir('snapgraph-e2e-data-');
    mkdirSync(join(small.path, 'upload-completions'));
    symlinkSync(join(small.path, 'upload-completions'), join(dataDir, 'upload-completions'));
    const server = await startServer({ dataDir });
    try {
      const source = await createInstance(server, { name: 'src' });
      await createNodes(server, source.id, [{ labels: ['A'], properties: { n: 1 } }]);
      const file = await archiveOf(server, (await takeSnapshot(server, source.id)).id);
      const target = await createInstance(server, { name: 'dst' });
      const created = await createTusUpload(server, { instanceId: target.id, length: file.length });
      assert.equal((await patchTusUpload(created.location!, created.auth, 0, file.subarray(0, file.length - 1))).status, 204);
      small.fill();
      const last = await within(patchTusUpload(created.location!, created.auth, file.length - 1, file.subarray(file.length - 1)), 20_000, 'the final PATCH');
      assertRefusal({ ...last, headers: new Headers({ 'content-type': 'application/json' }) }, 507, 'STORAGE_FULL');
      small.release();
      const head = await within(request(created.location!, { method: 'HEAD', headers: created.auth }), 10_000, 'the HEAD once space returned');
      assert.equal(head.status, 200, head.body);
      const operationId = head.headers.get('snapgraph-operation-id');
      assert.ok(operationId, 'the HEAD names the restore it queued');
      assert.equal((await settledOperation(server, operationId)).status, 'SUCCEEDED');
    } finally {
      small.release();
      await server.stop();
    }
  });
});

describe('a complete upload whose restore cannot be queued at once', () => {
  const suite = serverPerSuite({});
  let archive: Buffer;
  let bigArchive: Buffer;

  before(async function () {
    this.timeout(120_000);
    const source = await createInstance(suite.server, { name: 'busy source' });
    await createNodes(suite.server, source.id, [{ labels: ['A'], properties: { n: 1 } }, { labels: ['B'] }]);
    archive = await archiveOf(suite.server, (await takeSnapshot(suite.server, source.id)).id);
    // Long enough to restore that another upload's last byte comes while it runs.
    const big = await createInstance(suite.server, { name: 'busy big source' });
    for (let i = 0; i < 4; i++) {
      await createNodes(suite.server, big.id, Array.from({ length: 1000 }, (_, j) => ({ labels: ['Big'], properties: { j, blob: randomBytes(512).toString('hex') } })));
    }
    bigArchive = await archiveOf(suite.server, (await takeSnapshot(suite.server, big.id)).id);
  });

  const statusOf = async (id: string) =>
    (expectData(await gql(suite.server, `query ($id: ID!) { operation(id: $id) { status } }`, { id })) as { operation: { status: string } }).operation.status;

  it('keeps it when another operation runs on the instance (423 CONFLICT), and a HEAD once that one ended queues its restore', async function () {
    this.timeout(180_000);
    const server = suite.server;
    const run = await untilCaught(
      async (round) => {
        const target = await createInstance(server, { name: `busy target ${round}` });
        const created = await createTusUpload(server, { instanceId: target.id, length: archive.length });
        assert.equal(created.status, 201, created.body);
        assert.equal((await patchTusUpload(created.location!, created.auth, 0, archive.subarray(0, archive.length - 1))).status, 204);
        // Meanwhile another operation runs on the instance (here another restore; a scheduled snapshot does the same).
        const blocker = await tusUpload(server, { instanceId: target.id, file: bigArchive });
        assert.equal(blocker.status, 204, blocker.body);
        const last = await patchTusUpload(created.location!, created.auth, archive.length - 1, archive.subarray(archive.length - 1));
        const blockerRunning = !['SUCCEEDED', 'FAILED'].includes(await statusOf(blocker.operationId!));
        return { target, created, blocker, last, blockerRunning };
      },
      (run) => run.last.status !== 204 || run.blockerRunning,
    );
    const { target, created, blocker, last } = run;
    assertRefusal({ ...last, headers: new Headers({ 'content-type': 'application/json' }) }, 423, 'CONFLICT');
    // Kept, complete: while the other operation runs, a HEAD says so again (423, which tus clients retry).
    const whileBusy = await request(created.location!, { method: 'HEAD', headers: created.auth });
    if ((await statusOf(blocker.operationId!)) === 'RUNNING') {
      assert.equal(whileBusy.status, 423);
      // Without reading the file back: a client waiting for the instance asks every few seconds.
      const uploadId = new URL(created.location!).pathname.split('/').at(-1);
      const kept = server.logLines().filter((line) => line.uploadId === uploadId && String(line.msg).startsWith('restore upload kept'));
      assert.ok(kept.length >= 2, `expected the final PATCH's and the HEAD's answers in the log: ${JSON.stringify(kept)}`);
      assert.equal(kept.at(-1)!.checked, 'not read back (the instance is busy)');
    }
    assert.equal((await settledOperation(server, blocker.operationId!)).status, 'SUCCEEDED');
    const head = await request(created.location!, { method: 'HEAD', headers: created.auth });
    assert.equal(head.status, 200, 'the complete upload is gone: the client must send the whole file again');
    assert.equal(head.headers.get('upload-offset'), String(archive.length));
    const operationId = head.headers.get('snapgraph-operation-id');
    assert.ok(operationId, 'the HEAD names the restore it queued');
    assert.equal((await settledOperation(server, operationId)).status, 'SUCCEEDED');
    assert.deepEqual((await fileRestoresOf(server, target.id)).sort(), [operationId, blocker.operationId!].sort());
    await eventually(() => readdirSync(server.env.SNAPGRAPH_UPLOAD_DIR!).length === 0, { what: 'the upload dir is empty' });
  });
});

describe('a HEAD that meets a failing completion of the same upload', function () {
  this.timeout(180_000);

  it('hears why (507), never 404 nor every byte in without an operation, while the complete upload is kept for a later HEAD', async function () {
    const volume = mountSmallVolume(32 * 1024 * 1024);
    if ('unavailable' in volume) return this.skip();
    const small = volume as SmallVolume;
    // The blob store on the small volume: the completion fails to keep the file there, after its check.
    const dataDir = makeTempDir('snapgraph-e2e-data-');
    mkdirSync(join(small.path, 'blobs'));
    symlinkSync(join(small.path, 'blobs'), join(dataDir, 'blobs'));
    const server = await startServer({ dataDir });
    try {
      const source = await createInstance(server, { name: 'src' });
      for (let b = 0; b < 2; b++) {
        await createNodes(server, source.id, Array.from({ length: 200 }, () => ({ labels: ['Doc'], properties: { body: randomBytes(6000).toString('base64') } })));
      }
      const file = await archiveOf(server, (await takeSnapshot(server, source.id)).id);
      const target = await createInstance(server, { name: 'dst' });
      const created = await createTusUpload(server, { instanceId: target.id, length: file.length });
      const path = new URL(created.location!).pathname;
      assert.equal((await patchTusUpload(`${server.url}${path}`, created.auth, 0, file.subarray(0, file.length - 1))).status, 204);
      // A restart: the last byte's completion reads the file back (seconds for a large file) before it stores it.
      await server.restart();
      small.fill();
      const finalPatch = patchTusUpload(`${server.url}${path}`, created.auth, file.length - 1, file.subarray(file.length - 1));
      let done = false;
      void finalPatch.then(() => (done = true));
      // The client's connection to the final PATCH broke (a proxy timeout): tus clients retry with a HEAD.
      const seen: string[] = [];
      while (!done) {
        const head = await fetch(`${server.url}${path}`, { method: 'HEAD', headers: created.auth });
        seen.push(`${head.status}:${head.headers.get('upload-offset')}:${head.headers.get('snapgraph-operation-id') ?? '-'}`);
        await sleep(5);
      }
      const patched = await finalPatch;
      assertRefusal({ ...patched, headers: new Headers({ 'content-type': 'application/json' }) }, 507, 'STORAGE_FULL');
      assert.ok(!seen.some((answer) => answer.startsWith('404')), `a HEAD was told the upload is gone: ${seen.join(' ')}`);
      assert.ok(!seen.includes(`200:${file.length}:-`), `a HEAD was told every byte is in, naming no operation: ${seen.join(' ')}`);
      const later = await fetch(`${server.url}${path}`, { method: 'HEAD', headers: created.auth });
      assert.equal(later.status, 507, 'the upload is kept, complete');
      small.release();
      const finished = await fetch(`${server.url}${path}`, { method: 'HEAD', headers: created.auth });
      assert.equal(finished.status, 200);
      assert.equal((await settledOperation(server, finished.headers.get('snapgraph-operation-id')!)).status, 'SUCCEEDED');
    } finally {
      small.release();
      await server.stop();
    }
  });
});

describe('partial uploads on disk (the default <data dir>/uploads, and an upgrade)', () => {
  it('expires an unfinished upload a day after its last byte, not after its creation: one still receiving bytes stays', async function () {
    this.timeout(60_000);
    const dataDir = makeTempDir('snapgraph-e2e-expiry-');
    const server = await startServer({ dataDir, env: { SNAPGRAPH_UPLOAD_DIR: undefined } });
    try {
      const uploads = join(dataDir, 'uploads');
      const dayAndHourAgo = Date.now() - 25 * 3600_000;
      /** An upload created a day and an hour ago (its record says so), with 40,000 of its bytes in. */
      const createdYesterday = async (name: string) => {
        const target = await createInstance(server, { name });
        const created = await createTusUpload(server, { instanceId: target.id, length: 100_000 });
        assert.equal(created.status, 201, created.body);
        assert.equal((await patchTusUpload(created.location!, created.auth, 0, randomBytes(40_000))).status, 204);
        const id = new URL(created.location!).pathname.split('/').at(-1)!;
        const record = JSON.parse(readFileSync(join(uploads, `${id}.json`), 'utf8')) as { creation_date: string };
        writeFileSync(join(uploads, `${id}.json`), JSON.stringify({ ...record, creation_date: new Date(dayAndHourAgo).toISOString() }));
        return { ...created, id };
      };
      // A slow multi-GiB upload over a poor link: its bytes still come, a day after it began.
      const flowing = await createdYesterday('still flowing');
      const patched = await request(flowing.location!, {
        method: 'PATCH',
        headers: { ...flowing.auth, 'Upload-Offset': '40000', 'Content-Type': 'application/offset+octet-stream' },
        body: randomBytes(10_000),
      });
      assert.equal(patched.status, 204, patched.body);
      const expires = Date.parse(patched.headers.get('upload-expires') ?? '');
      assert.ok(Math.abs(expires - (Date.now() + 24 * 3600_000)) < 60_000, `Upload-Expires ${patched.headers.get('upload-expires')}: a day from now`);
      // One whose last byte came a day and an hour ago is gone.
      const idle = await createdYesterday('idle for a day');
      for (const name of [idle.id, `${idle.id}.tail`]) utimesSync(join(uploads, name), dayAndHourAgo / 1000, dayAndHourAgo / 1000);
      assert.equal((await request(idle.location!, { method: 'HEAD', headers: idle.auth })).status, 410);

      // The sweep (at boot, then hourly) agrees.
      await server.restart();
      assert.equal(existsSync(join(uploads, idle.id)), false, 'the idle upload is removed');
      const head = await request(`${server.url}${new URL(flowing.location!).pathname}`, { method: 'HEAD', headers: flowing.auth });
      assert.equal(head.status, 200, head.body);
      assert.equal(head.headers.get('upload-offset'), '50000');
    } finally {
      await server.stop();
    }
  });

  it('removes the plaintext partial uploads an earlier version kept, and keeps new ones encrypted until they are restored', async function () {
    this.timeout(60_000);
    const dataDir = makeTempDir('snapgraph-e2e-upgrade-');
    // Where earlier versions kept partial uploads, in plaintext, by default.
    const legacy = join(tmpdir(), `snapgraph-uploads-${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`);
    mkdirSync(legacy, { mode: 0o700 });
    const plaintext = Buffer.from('an old partial upload, kept unencrypted '.repeat(100));
    writeFileSync(join(legacy, 'c0ffee'), plaintext);
    writeFileSync(join(legacy, 'c0ffee.json'), JSON.stringify({ id: 'c0ffee', size: 10_000, offset: 0, metadata: {} }));
    registerCleanup(async () => rmSync(legacy, { recursive: true, force: true }));

    const server = await startServer({ dataDir, env: { SNAPGRAPH_UPLOAD_DIR: undefined } });
    try {
      assert.equal(existsSync(legacy), false, 'the plaintext partial uploads are gone');
      assert.ok(server.logLines().some((line) => line.msg === 'removed partial uploads an earlier version kept unencrypted; their clients start them again'));

      const source = await createInstance(server, { name: 'upgrade source' });
      await createNodes(server, source.id, Array.from({ length: 1000 }, () => ({ labels: ['Doc'], properties: { text: randomBytes(300).toString('base64') } })));
      const archive = await archiveOf(server, (await takeSnapshot(server, source.id)).id);
      assert.ok(archive.length > 3 * 64 * 1024, `the archive spans several chunks (${archive.length} bytes)`);
      const target = await createInstance(server, { name: 'upgrade target' });
      const { status, body, location, auth } = await createTusUpload(server, { instanceId: target.id, length: archive.length });
      assert.equal(status, 201, body);
      const url = location!;
      const part = archive.length - 1000;
      assert.equal((await patchTusUpload(url, auth, 0, archive.subarray(0, part))).status, 204);

      // Whole chunks and the tail are on disk, in <data dir>/uploads, and no window of the file is readable there.
      const uploads = join(dataDir, 'uploads');
      const names = readdirSync(uploads);
      assert.equal(names.length, 3, names.join(', '));
      const head = await request(url, { method: 'HEAD', headers: auth });
      assert.equal(head.headers.get('upload-offset'), String(part));
      for (const name of names) {
        const stored = readFileSync(join(uploads, name));
        for (let at = 0; at + 48 <= part; at += 4096) {
          assert.equal(stored.includes(archive.subarray(at, at + 48)), false, `${name} holds the upload's bytes ${at}..${at + 48} in plaintext`);
        }
      }

      const finished = await patchTusUpload(url, auth, part, archive.subarray(part));
      assert.equal(finished.status, 204, finished.body);
      assert.equal((await settledOperation(server, finished.operationId!)).status, 'SUCCEEDED');
      await eventually(() => readdirSync(uploads).length === 0, { what: 'the upload dir is empty' });
      const storedUploads = () => filesUnder(join(dataDir, 'blobs')).filter((path) => path.includes('/uploads/'));
      await eventually(() => storedUploads().length === 0, { what: 'the restored upload is removed' });
    } finally {
      await server.stop();
    }
  });

  it('keeps a partial upload across a restart, and removes at boot a record whose file is gone', async function () {
    this.timeout(60_000);
    const dataDir = makeTempDir('snapgraph-e2e-boot-sweep-');
    const server = await startServer({ dataDir, env: { SNAPGRAPH_UPLOAD_DIR: undefined } });
    try {
      const target = await createInstance(server, { name: 'boot sweep target' });
      const { status, body, location, auth } = await createTusUpload(server, { instanceId: target.id, length: 100_000 });
      assert.equal(status, 201, body);
      assert.equal((await patchTusUpload(location!, auth, 0, randomBytes(40_000))).status, 204);
      const uploads = join(dataDir, 'uploads');
      // The record of an upload whose file went into the blob store as the server stopped.
      writeFileSync(join(uploads, 'c0ffee.json'), JSON.stringify({ id: 'c0ffee', size: 10_000, offset: 0, metadata: {} }));

      await server.restart();
      assert.equal(existsSync(join(uploads, 'c0ffee.json')), false, 'the record without its file is gone');
      const url = `${server.url}${new URL(location!).pathname}`;
      const head = await request(url, { method: 'HEAD', headers: auth });
      assert.equal(head.status, 200, head.body);
      assert.equal(head.headers.get('upload-offset'), '40000', 'the partial upload is kept, with every byte it had');
    } finally {
      await server.stop();
    }
  });
});

/**
 * A PATCH whose body is sent piece by piece: a client connection that stalls (one a load balancer gave up on while the
 * replica behind it still reads it). `answer` settles with the server's answer, or null when the connection broke.
 */
function stallingPatch(url: string, auth: Record<string, string>, offset: number) {
  const req = httpRequest(url, {
    method: 'PATCH',
    headers: { ...auth, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
  });
  const answer = new Promise<{ status: number; offset: string | null } | null>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode!, offset: (res.headers['upload-offset'] as string | undefined) ?? null });
    });
    req.on('error', () => resolve(null));
  });
  req.flushHeaders();
  // A write to a connection the server closed meanwhile never calls back: its close ends the wait.
  const closed = new Promise<void>((resolve) => req.once('close', resolve));
  return {
    answer,
    send: (bytes: Buffer) => Promise.race([new Promise<void>((resolve) => req.write(bytes, () => resolve())), closed]),
    end: () => Promise.race([new Promise<void>((resolve) => req.end(() => resolve())), closed]),
  };
}

describePostgres('two replicas sharing the upload directory', (postgres) => {
  let a: TestServer;
  let b: TestServer;
  let archive: Buffer;

  before(async function () {
    this.timeout(120_000);
    const database = await createTestDatabase(postgres.adminUrl());
    const dataDir = makeTempDir('snapgraph-e2e-two-replicas-');
    registerCleanup(async () => rmSync(`${dataDir}-uploads`, { recursive: true, force: true }));
    const adminKey = randomToken();
    const boot = () => startServer({ dataDir, bootstrapToken: adminKey, env: { DATABASE_URL: database.url } });
    a = await boot();
    b = await boot();
    const source = await createInstance(a, { name: 'two replicas source' });
    await createNodes(a, source.id, [{ labels: ['A'], properties: { n: 1 } }, { labels: ['B'] }]);
    archive = await archiveOf(a, (await takeSnapshot(a, source.id)).id);
  });

  after(async () => {
    await Promise.all([b?.stop(), a?.stop()]);
  });

  it('never lets two PATCHes of one upload write at once: a retry on another replica waits for the first, and hears where it ended (409)', async function () {
    this.timeout(60_000);
    const target = await createInstance(a, { name: 'two replicas target' });
    // Several 64 KiB chunks of the encrypted file: the archive, then an entry nothing reads.
    const file = await tarOfEntries([['graph.backup', archive], ['notes.bin', randomBytes(300 * 1024)]]);
    const created = await createTusUpload(a, { instanceId: target.id, length: file.length });
    assert.equal(created.status, 201, created.body);
    const path = new URL(created.location!).pathname;
    // The first PATCH reaches A and stalls there after 10 KiB.
    const stalled = stallingPatch(`${a.url}${path}`, created.auth, 0);
    await stalled.send(file.subarray(0, 10 * 1024));
    // A holds the upload's lock (a file beside it, which a HEAD would ask A to let go of).
    await eventually(() => existsSync(join(a.env.SNAPGRAPH_UPLOAD_DIR!, `${path.split('/').pop()}.lock`)) || undefined, { what: "A's lock on the upload" });
    // The client gave up on it, and sends it again through the load balancer, which picks B.
    const retry = await within(
      request(`${b.url}${path}`, {
        method: 'PATCH',
        headers: { ...created.auth, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
        body: file.subarray(0, 100 * 1024),
      }),
      30_000,
      'the retried PATCH',
    );
    // Then the bytes of the first come in late (a proxy's buffer), and it ends.
    await stalled.send(file.subarray(10 * 1024, 20 * 1024));
    await stalled.end();
    const first = await within(stalled.answer, 30_000, "the first PATCH's answer");

    const head = await request(`${b.url}${path}`, { method: 'HEAD', headers: created.auth });
    assert.equal(head.status, 200, head.body);
    const offset = Number(head.headers.get('upload-offset'));
    // Whatever either PATCH was told is there: no byte the server acknowledged was lost to the other's write.
    for (const [name, answer] of [['first', first], ['retried', { status: retry.status, offset: retry.headers.get('upload-offset') }]] as const) {
      if (answer?.status === 204 && answer.offset !== null) assert.ok(Number(answer.offset) <= offset, `the ${name} PATCH was told ${answer.offset}, the upload holds ${offset}`);
    }
    assert.equal(retry.status, 409, `the retried PATCH, while the first wrote: ${retry.status} ${retry.body}`);
    assert.equal(refusalCode(retry.body), 'CONFLICT');
    assert.equal(first?.status, 204, 'the first PATCH ended, keeping what it had written');
    assert.equal(String(offset), first?.offset);

    // The client resumes from there, and the file restores: nothing in it is torn.
    const rest = await patchTusUpload(`${b.url}${path}`, created.auth, offset, file.subarray(offset));
    assert.equal(rest.status, 204, rest.body);
    assert.equal((await settledOperation(b, rest.operationId!)).status, 'SUCCEEDED');
    await eventually(() => readdirSync(`${a.dataDir}-uploads`).length === 0, { what: 'the upload dir is empty' });
  });
});
