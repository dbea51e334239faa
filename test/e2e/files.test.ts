// Export downloads and restore from a local file, over GraphQL and HTTP (issue 5): links, downloads with Range,
// expiry, multipart uploads per the GraphQL multipart request spec, the round trip, and every kind of bad file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { encodeArchive } from '../../src/archive';
import type { GraphRecord } from '../../src/graph/records';
import {
  archiveOf,
  assertProgressSequence,
  createInstance,
  createKey,
  createNodes,
  createRelationships,
  createTenant,
  download,
  expectCode,
  EXPORT_SNAPSHOT,
  expectData,
  exportLink,
  fillInstance,
  gql,
  type Graph,
  graphOf,
  instanceState,
  metricsValue,
  type NewTenant,
  OPERATION_FIELDS,
  type OperationJson,
  operationCount,
  payloads,
  serverPerSuite,
  settledOperation,
  sha256Of,
  snapshotById,
  type SnapshotJson,
  storeGenerations,
  subscribe,
  takeSnapshot,
  type TestServer,
  uploadBlobs,
  uploadFile,
} from '../support';

const RESTORE_PROGRESS = `subscription ($id: ID!) { restoreProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const RESTORE_FILE_QUERY = 'mutation ($id: ID!, $file: Upload!) { restoreFromFile(instanceId: $id, file: $file, confirm: "RESTORE") { id } }';
const ARCHIVE_PREAMBLE = 14; // magic (8), format version (2), header length (4)

/** `<YYYY-MM-DDTHH-MM-SSZ>` of a snapshot's createdAt, as export file names carry it. */
const fileStamp = (createdAt: string) => new Date(createdAt).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-');

/** A tar file holding the given entries, in order. */
async function tarOf(entries: { name: string; content: Buffer }[]): Promise<Buffer> {
  const tar = tarPack();
  for (const entry of entries) tar.entry({ name: entry.name }, entry.content);
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of tar as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * The archive as a newer Snapgraph would write it: the format version field rewritten and the header CRC-32
 * fixed (docs/archive-format.md: the CRC covers bytes [0, 14 + N)), so only the version is wrong.
 */
function withFormatVersion(archive: Buffer, version: number): Buffer {
  const copy = Buffer.from(archive);
  copy.writeUInt16BE(version, 8);
  const headerEnd = ARCHIVE_PREAMBLE + copy.readUInt32BE(10);
  copy.writeUInt32BE(crc32(copy.subarray(0, headerEnd)), headerEnd);
  return copy;
}

function flipped(archive: Buffer, offset: number): Buffer {
  const copy = Buffer.from(archive);
  copy[offset] ^= 0x20;
  return copy;
}

const node = (id: string): GraphRecord => ({ kind: 'node', node: { id, labels: ['Crafted'], properties: {} } });
const relationship = (id: string, startNodeId: string, endNodeId: string): GraphRecord => ({
  kind: 'relationship',
  relationship: { id, type: 'CRAFTED', startNodeId, endNodeId, properties: {} },
});

/** A well-formed archive of exactly these records (its header's stats agree with them). */
async function craftedArchive(records: GraphRecord[]): Promise<Buffer> {
  const nodes = records.filter((record) => record.kind === 'node').length;
  const relationships = records.length - nodes;
  const stats = {
    nodeCount: nodes,
    relationshipCount: relationships,
    labels: [{ name: 'Crafted', count: nodes }],
    relationshipTypes: relationships > 0 ? [{ name: 'CRAFTED', count: relationships }] : [],
    storeSizeBytes: 4096,
  };
  const header = { engineVersion: 'V5' as const, sourceInstanceId: 'crafted', sourceInstanceName: 'crafted', capturedAt: new Date().toISOString(), stats };
  const chunks: Buffer[] = [];
  for await (const chunk of encodeArchive(header, [records])) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Removes the snapshot's export copy from the server's blobs, as a collection does once no link to it is live. */
function removeExportCopy(dataDir: string, snapshotId: string): void {
  const tenants = join(dataDir, 'blobs', 'tenants');
  const copies = readdirSync(tenants)
    .map((tenant) => join(tenants, tenant, 'exports', `${snapshotId}.archive`))
    .filter((path) => existsSync(path));
  assert.equal(copies.length, 1, `export copies of ${snapshotId}: ${copies.join(', ')}`);
  rmSync(copies[0]);
}

/** Flips the last stored byte of the snapshot's export copy (the tag of its last encrypted chunk), as bit rot would. */
function damageExportCopy(dataDir: string, snapshotId: string): void {
  const tenants = join(dataDir, 'blobs', 'tenants');
  for (const tenant of readdirSync(tenants)) {
    const path = join(tenants, tenant, 'exports', `${snapshotId}.archive`);
    if (!existsSync(path)) continue;
    const stored = readFileSync(path);
    stored[stored.length - 1] ^= 0x01;
    writeFileSync(path, stored);
    return;
  }
  assert.fail(`no export copy of ${snapshotId}`);
}

/** A graph with varied properties, labels and relationships. */
async function buildGraph(server: TestServer, instanceId: string, size = 200): Promise<void> {
  const nodes = await createNodes(server, instanceId, [
    { labels: ['Person'], properties: { name: 'Zoë', tags: ['a', 'b'], address: { city: 'Oslo' }, age: 42, ratio: 0.25, ok: true, none: null } },
    { labels: [] },
    ...Array.from({ length: size }, (_, i) => ({ labels: [`Kind${i % 5}`], properties: { i, text: `${i}-${'Ω'.repeat(i % 7)}` } })),
  ]);
  await createRelationships(server, instanceId, [
    { type: 'KNOWS', startNodeId: nodes[0].id, endNodeId: nodes[1].id, properties: { since: 2020 } },
    ...nodes.slice(2).map((node, i) => ({ type: `T${i % 3}`, startNodeId: node.id, endNodeId: nodes[i % 2].id })),
  ]);
}

describe('export and restore from a file', () => {
  const suite = serverPerSuite();
  let source: { id: string; name: string };
  let snapshot: SnapshotJson;
  let archive: Buffer;
  let sourceGraph: Graph;

  before(async () => {
    source = await createInstance(suite.server, { name: 'Prod / Graph ü 日本', tier: 'PROFESSIONAL' });
    await buildGraph(suite.server, source.id);
    snapshot = await takeSnapshot(suite.server, source.id);
    // A restore point has no archive until its first export, which produces it and records its size and sha256.
    assert.equal(snapshot.sizeBytes, null);
    assert.equal(snapshot.sha256, null);
    assert.ok(snapshot.addedBytes! > 0);
    archive = await archiveOf(suite.server, snapshot.id);
    snapshot = (await snapshotById(suite.server, snapshot.id))!;
    assert.equal(snapshot.sizeBytes, archive.length);
    assert.equal(snapshot.sha256, sha256Of(archive));
    sourceGraph = await graphOf(suite.server, source.id);
  });

  describe('exportSnapshot', () => {
    it('gives MEMBER and ADMIN an absolute, expiring link with a safe file name; VIEWER is FORBIDDEN', async () => {
      const server = suite.server;
      const member = await createKey(server, server.adminKey, 'MEMBER');
      const viewer = await createKey(server, server.adminKey, 'VIEWER');
      for (const key of [server.adminKey, member.secret]) {
        const before = Date.now();
        const link = await exportLink(server, snapshot.id, key);
        const after = Date.now();
        assert.ok(link.url.startsWith(`${server.url}/exports/`), link.url);
        assert.equal(new URL(link.url).origin, server.url);
        assert.equal(link.fileName, `Prod-Graph-ü-日本-${fileStamp(snapshot.createdAt)}.backup`);
        assert.ok(Date.parse(link.expiresAt) >= before + 15 * 60_000 - 1_000 && Date.parse(link.expiresAt) <= after + 15 * 60_000 + 1_000);
        assert.equal(link.sizeBytes, snapshot.sizeBytes);
        assert.equal(link.sha256, snapshot.sha256);
      }
      expectCode(await gql(server, EXPORT_SNAPSHOT, { id: snapshot.id }, viewer.secret), 'FORBIDDEN');
    });

    it('makes any instance name safe for file systems, in its own script; Content-Disposition gives it in UTF-8 and in ASCII', async () => {
      for (const [name, stem, asciiStem] of [
        ['../../etc/passwd', 'etc-passwd', 'etc-passwd'],
        ['a "quoted" name; rm -rf *', 'a-quoted-name-rm-rf', 'a-quoted-name-rm-rf'],
        ['日本語', '日本語', ''],
        ['Café / Straße', 'Café-Straße', 'Cafe-Stra-e'],
        ['back\\slash:colon|pipe', 'back-slash-colon-pipe', 'back-slash-colon-pipe'],
      ]) {
        const instance = await createInstance(suite.server, { name, tier: 'PROFESSIONAL', engineVersion: 'V4' });
        const taken = await takeSnapshot(suite.server, instance.id);
        const link = await exportLink(suite.server, taken.id);
        const stamp = `${fileStamp(taken.createdAt)}.dump`;
        assert.equal(link.fileName, `${stem}-${stamp}`, name);
        const { headers, status } = await download(link.url, {}, 'HEAD');
        assert.equal(status, 200);
        const ascii = asciiStem ? `${asciiStem}-${stamp}` : stamp;
        const expected = stem === asciiStem ? `attachment; filename="${ascii}"` : `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(link.fileName)}`;
        assert.equal(headers.get('content-disposition'), expected, name);
      }
    });

    it('gives a fresh link on every call, each of which works', async () => {
      const links = await Promise.all([1, 2, 3].map(() => exportLink(suite.server, snapshot.id)));
      assert.equal(new Set(links.map((link) => link.url)).size, 3);
      for (const link of links) {
        const { status, body } = await download(link.url);
        assert.equal(status, 200);
        assert.equal(sha256Of(body), snapshot.sha256);
      }
    });

    it('produces the archive once when first exports, or downloads after its copy was removed, come together', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'popular' });
      await buildGraph(server, instance.id, 2_000);
      const taken = await takeSnapshot(server, instance.id);
      const archived = () => metricsValue(server, 'snapgraph_archived_bytes_total');
      let before = await archived();
      const links = await Promise.all([1, 2, 3].map(() => exportLink(server, taken.id)));
      assert.equal((await archived()) - before, links[0].sizeBytes, 'three exports produced the archive more than once');
      removeExportCopy(server.dataDir, taken.id);
      before = await archived();
      const downloads = await Promise.all(links.map((link) => download(link.url)));
      for (const { status, body } of downloads) {
        assert.equal(status, 200);
        assert.equal(sha256Of(body), links[0].sha256);
      }
      assert.equal((await archived()) - before, links[0].sizeBytes, 'three downloads produced the archive more than once');
    });

    it('produces a foreign format file once when first exports of it come together', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'popular-json' });
      await buildGraph(server, instance.id, 2_000);
      const taken = await takeSnapshot(server, instance.id);
      const written = () => metricsValue(server, 'snapgraph_graph_file_bytes_total');
      const before = await written();
      const exportAs = `mutation ($id: ID!) { exportSnapshotAs(id: $id, format: APOC_JSON) { url sizeBytes sha256 } }`;
      const links = await Promise.all([1, 2, 3].map(async () => expectData(await gql(server, exportAs, { id: taken.id })).exportSnapshotAs));
      assert.equal((await written()) - before, links[0].sizeBytes, 'three exports produced the file more than once');
      for (const link of links) assert.equal(sha256Of((await download(link.url)).body), links[0].sha256);
    });

    it("is NOT_FOUND for another tenant's snapshot", async () => {
      const other = await createTenant(suite.server, 'export-snoop');
      expectCode(await gql(suite.server, EXPORT_SNAPSHOT, { id: snapshot.id }, other.apiKey), 'NOT_FOUND');
    });
  });

  describe('the download', () => {
    let url: string;
    let fileName: string;
    before(async () => {
      ({ url, fileName } = await exportLink(suite.server, snapshot.id));
    });

    it('streams the archive to anyone holding the link: Content-Disposition, Content-Length, ETag; the bytes hash to sha256', async () => {
      const { status, headers, body } = await download(url);
      assert.equal(status, 200);
      assert.equal(sha256Of(body), snapshot.sha256);
      assert.equal(body.length, snapshot.sizeBytes);
      assert.equal(headers.get('content-length'), String(snapshot.sizeBytes));
      // The name in UTF-8 (filename*), after its ASCII form for clients that know only filename.
      const ascii = fileName.replace(/^Prod-Graph-ü-日本-/, 'Prod-Graph-u-');
      assert.equal(headers.get('content-disposition'), `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(fileName)}`);
      assert.equal(headers.get('etag'), `"${snapshot.sha256}"`);
      assert.equal(headers.get('accept-ranges'), 'bytes');
    });

    it('answers HEAD with the same headers and no body', async () => {
      const { status, headers, body } = await download(url, {}, 'HEAD');
      assert.equal(status, 200);
      assert.equal(headers.get('content-length'), String(snapshot.sizeBytes));
      assert.equal(body.length, 0);
    });

    it('answers Range requests with 206 and Content-Range: a prefix, an open end, a suffix, an end past the file', async () => {
      const size = archive.length;
      const cases: [string, number, number][] = [
        ['bytes=0-99', 0, 99],
        ['bytes=100-', 100, size - 1],
        ['bytes=-50', size - 50, size - 1],
        [`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1],
        ['bytes=0-0', 0, 0],
        [`bytes=-${size + 100}`, 0, size - 1],
      ];
      for (const [range, start, end] of cases) {
        const { status, headers, body } = await download(url, { range });
        assert.equal(status, 206, range);
        assert.equal(headers.get('content-range'), `bytes ${start}-${end}/${size}`, range);
        assert.equal(headers.get('content-length'), String(end - start + 1), range);
        assert.ok(body.equals(archive.subarray(start, end + 1)), `wrong bytes for ${range}`);
      }
    });

    it('resumes an interrupted download: the pieces make the whole file', async () => {
      const size = archive.length;
      const cuts = [0, 1, 70_000, Math.floor(size / 2), size - 1, size].filter((cut, i, all) => cut <= size && all.indexOf(cut) === i);
      const pieces: Buffer[] = [];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const { status, body } = await download(url, { range: `bytes=${cuts[i]}-${cuts[i + 1] - 1}`, 'if-range': `"${snapshot.sha256}"` });
        assert.equal(status, 206);
        pieces.push(body);
      }
      assert.equal(sha256Of(Buffer.concat(pieces)), snapshot.sha256);
      // A resume against other bytes (another ETag) gets the whole file instead.
      const stale = await download(url, { range: 'bytes=100-', 'if-range': '"0000"' });
      assert.equal(stale.status, 200);
      assert.equal(stale.body.length, size);
    });

    it('answers 416 with the size when the range cannot be satisfied', async () => {
      for (const range of [`bytes=${archive.length}-`, `bytes=${archive.length + 5}-${archive.length + 10}`, 'bytes=-0']) {
        const { status, headers } = await download(url, { range });
        assert.equal(status, 416, range);
        assert.equal(headers.get('content-range'), `bytes */${archive.length}`);
      }
    });

    it('answers 404 once the snapshot is deleted', async () => {
      const instance = await createInstance(suite.server, { name: 'short-lived' });
      const taken = await takeSnapshot(suite.server, instance.id);
      const link = await exportLink(suite.server, taken.id);
      assert.equal((await download(link.url, {}, 'HEAD')).status, 200);
      expectData(await gql(suite.server, `mutation ($id: ID!) { deleteSnapshot(id: $id) }`, { id: taken.id }));
      assert.equal((await download(link.url)).status, 404);
    });

    it('keeps no export copy of a snapshot deleted while a download was producing it', async () => {
      const instance = await createInstance(suite.server, { name: 'deleted-mid-download' });
      await fillInstance(suite.server, instance.id, { nodes: 100_000, relationships: 100_000 });
      const taken = await takeSnapshot(suite.server, instance.id);
      const link = await exportLink(suite.server, taken.id);
      removeExportCopy(suite.server.dataDir, taken.id);
      const downloading = download(link.url);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expectData(await gql(suite.server, `mutation ($id: ID!) { deleteSnapshot(id: $id) }`, { id: taken.id }));
      const { status, body } = await downloading;
      // Whole and right when it was produced before the deletion; else refused as for a deleted snapshot.
      if (status === 200) assert.equal(sha256Of(body), link.sha256);
      else assert.equal(status, 404);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.throws(() => removeExportCopy(suite.server.dataDir, taken.id), /export copies of/, 'an export copy of the deleted snapshot was kept');
    });

    it("refuses a range of a snapshot deleted while its copy was produced without the file's headers", async () => {
      const instance = await createInstance(suite.server, { name: 'deleted-mid-range' });
      await fillInstance(suite.server, instance.id, { nodes: 100_000, relationships: 100_000 });
      const taken = await takeSnapshot(suite.server, instance.id);
      const link = await exportLink(suite.server, taken.id);
      removeExportCopy(suite.server.dataDir, taken.id);
      const downloading = download(link.url, { range: 'bytes=100-' });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expectData(await gql(suite.server, `mutation ($id: ID!) { deleteSnapshot(id: $id) }`, { id: taken.id }));
      const { status, headers, body } = await downloading;
      // Sent when it was produced before the deletion; else refused, with nothing that describes the file.
      if (status === 206) return assert.equal(body.length, link.sizeBytes - 100);
      assert.equal(status, 404);
      for (const name of ['content-range', 'etag', 'accept-ranges', 'content-disposition']) assert.equal(headers.get(name), null, name);
      assert.equal(headers.get('content-length'), String(body.length));
    });

    it('produces the archive again when its export copy is found damaged before the first byte is sent', async () => {
      const instance = await createInstance(suite.server, { name: 'bit-rot' });
      await createNodes(suite.server, instance.id, [{ labels: ['Small'], properties: { n: 1 } }]);
      const taken = await takeSnapshot(suite.server, instance.id);
      const link = await exportLink(suite.server, taken.id);
      const intact = await archiveOf(suite.server, taken.id);
      // One encrypted chunk: its damage is found before any byte of the answer, which can then still be the archive.
      for (const [range, status, bytes] of [[undefined, 200, intact], ['bytes=10-', 206, intact.subarray(10)]] as const) {
        damageExportCopy(suite.server.dataDir, taken.id);
        const answer = await download(link.url, range ? { range } : {}).catch((error: Error) => assert.fail(`${range ?? 'GET'}: the download was dropped (${error.message})`));
        assert.equal(answer.status, status, range);
        assert.ok(answer.body.equals(bytes), `${range ?? 'GET'}: wrong bytes`);
      }
    });

    it('answers 404 to a forged or malformed token', async () => {
      const base = url.slice(0, url.lastIndexOf('/') + 1);
      const token = url.slice(url.lastIndexOf('/') + 1);
      const forged = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
      for (const candidate of [forged, randomBytes(32).toString('base64url'), 'short', '..%2F..%2Fetc%2Fpasswd']) {
        const { status, body } = await download(base + candidate);
        assert.equal(status, 404, candidate);
        assert.equal(body.includes(archive.subarray(0, 8)), false);
      }
    });
  });

  describe('restoreFromFile', () => {
    let tenantOther: NewTenant;
    let target: { id: string };
    let targetGraph: Graph;

    before(async () => {
      tenantOther = await createTenant(suite.server, 'upload-snoop');
      target = await createInstance(suite.server, { name: 'target', tier: 'PROFESSIONAL' });
      await createNodes(suite.server, target.id, [{ labels: ['TargetOnly'], properties: { keep: 'me' } }]);
      targetGraph = await graphOf(suite.server, target.id);
    });

    /** The instance has its data, is AVAILABLE, has no new operation, and no upload was left behind. */
    async function assertUnchanged(instanceId: string, graph: Graph, operations: number): Promise<void> {
      assert.deepEqual(await graphOf(suite.server, instanceId), graph);
      assert.deepEqual(await instanceState(suite.server, instanceId), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      assert.equal(await operationCount(suite.server, instanceId), operations);
      assert.deepEqual(uploadBlobs(suite.server.dataDir), [], 'an upload was left behind');
    }

    /** Uploads, follows the operation over restoreProgress to SUCCEEDED, and returns its events. */
    async function restoreFile(instanceId: string, file: Buffer, fileName: string): Promise<OperationJson[]> {
      const result = await uploadFile(suite.server, { instanceId, file, fileName });
      const operation = expectData(result).restoreFromFile;
      assert.equal(operation.kind, 'RESTORE_FROM_FILE');
      assert.equal(operation.instanceId, instanceId);
      assert.equal(operation.snapshotId, null);
      const progress = subscribe(suite.server, suite.server.adminKey, RESTORE_PROGRESS, { id: operation.id });
      await progress.complete;
      const states = payloads<OperationJson>(progress, 'restoreProgress');
      assertProgressSequence(states, 'SUCCEEDED');
      return states;
    }

    it('round trip: an exported archive uploaded into another instance gives an identical graph, ids included', async () => {
      const copy = await createInstance(suite.server, { name: 'copy', tier: 'BUSINESS_CRITICAL' });
      await createNodes(suite.server, copy.id, [{ labels: ['Replaced'] }]);
      const states = await restoreFile(copy.id, archive, 'Prod-Graph.backup');
      assert.equal(states.at(-1)!.bytesTotal, archive.length);
      assert.deepEqual(await graphOf(suite.server, copy.id), sourceGraph);
      assert.deepEqual(uploadBlobs(suite.server.dataDir), [], 'the upload was kept after the restore');
      // The same pipeline as a snapshot restore: a PRE_RESTORE snapshot of what was there.
      const { snapshots } = expectData(
        await gql(suite.server, `query ($id: ID!) { snapshots(instanceId: $id, filter: { profile: PRE_RESTORE }) { edges { node { contents { nodeCount } } } } }`, {
          id: copy.id,
        }),
      );
      assert.deepEqual(snapshots.edges.map((edge: { node: { contents: { nodeCount: number } } }) => edge.node.contents.nodeCount), [1]);
    });

    it('accepts a .tar holding the archive after other entries', async () => {
      const copy = await createInstance(suite.server, { name: 'from-tar' });
      const tar = await tarOf([
        { name: 'README.txt', content: Buffer.from('exported from Snapgraph\n') },
        { name: 'graph/prod.backup', content: archive },
      ]);
      await restoreFile(copy.id, tar, 'prod.tar');
      assert.deepEqual(await graphOf(suite.server, copy.id), sourceGraph);
    });

    it('restores a V4 .dump into a V5 instance', async () => {
      const v4 = await createInstance(suite.server, { name: 'legacy', engineVersion: 'V4' });
      await buildGraph(suite.server, v4.id, 20);
      const dump = await archiveOf(suite.server, (await takeSnapshot(suite.server, v4.id)).id);
      const v5 = await createInstance(suite.server, { name: 'upgraded', engineVersion: 'V5' });
      await restoreFile(v5.id, dump, 'legacy.dump');
      assert.deepEqual(await graphOf(suite.server, v5.id), await graphOf(suite.server, v4.id));
    });

    it('refuses a V5 archive for a V4 instance with INCOMPATIBLE_VERSION and changes nothing', async () => {
      const v4 = await createInstance(suite.server, { name: 'old', engineVersion: 'V4' });
      await createNodes(suite.server, v4.id, [{ labels: ['Old'] }]);
      const graph = await graphOf(suite.server, v4.id);
      const operations = await operationCount(suite.server, v4.id);
      expectCode(await uploadFile(suite.server, { instanceId: v4.id, file: archive }), 'INCOMPATIBLE_VERSION');
      await assertUnchanged(v4.id, graph, operations);
    });

    const headerEnd = () => ARCHIVE_PREAMBLE + archive.readUInt32BE(10) + 4;
    const badFiles: [string, () => Buffer | Promise<Buffer>][] = [
      ['random bytes', () => randomBytes(64 * 1024)],
      ['an empty file', () => Buffer.alloc(0)],
      ['a text file', () => Buffer.from('name,age\nAda,36\nGrace,85\n')],
      ['a gzip file', () => gzipSync(archive)],
      ['an archive cut after its magic', () => archive.subarray(0, 8)],
      ['an archive cut inside its header', () => archive.subarray(0, ARCHIVE_PREAMBLE + 10)],
      ['an archive cut right after its header', () => archive.subarray(0, headerEnd())],
      ['an archive cut in the middle', () => archive.subarray(0, Math.floor(archive.length / 2))],
      ['an archive cut before its digest', () => archive.subarray(0, archive.length - 32)],
      ['an archive missing its last byte', () => archive.subarray(0, archive.length - 1)],
      ['an archive with bytes appended', () => Buffer.concat([archive, Buffer.from('extra')])],
      ['an archive with a flipped byte in its header', () => flipped(archive, ARCHIVE_PREAMBLE + 5)],
      ['an archive with a flipped byte in its body', () => flipped(archive, Math.floor((headerEnd() + archive.length) / 2))],
      ['an archive with a flipped byte in its digest', () => flipped(archive, archive.length - 3)],
      ['an archive of a newer format version', () => withFormatVersion(archive, 2)],
      ['a tar without an archive', () => tarOf([{ name: 'README.txt', content: Buffer.from('nothing here') }, { name: 'data.json', content: Buffer.from('{}') }])],
      ['a tar whose archive is cut off', async () => (await tarOf([{ name: 'prod.backup', content: archive }])).subarray(0, 512 + Math.floor(archive.length / 2))],
    ];
    for (const [what, make] of badFiles) {
      it(`refuses ${what} with INVALID_BACKUP_FILE and changes nothing`, async () => {
        const operations = await operationCount(suite.server, target.id);
        const result = await uploadFile(suite.server, { instanceId: target.id, file: await make() });
        const error = expectCode(result, 'INVALID_BACKUP_FILE');
        assert.match(error.message, /\w{3}/);
        assert.doesNotMatch(error.message, /\bat \S+ \(|node_modules|\/blobs\//, 'internals in the message');
        await assertUnchanged(target.id, targetGraph, operations);
      });
    }

    // Intact archives (every checksum right) whose records cannot make a graph: the restore's verification refuses
    // them, either at once or as a FAILED operation, and the instance keeps its data.
    const unloadable: [string, GraphRecord[]][] = [
      ['a relationship to a node that is not in it', [node('1'), node('2'), relationship('1', '1', '99')]],
      ['the same node id twice', [node('1'), node('1'), relationship('1', '1', '1')]],
    ];
    for (const [what, records] of unloadable) {
      it(`refuses an intact archive holding ${what} with INVALID_BACKUP_FILE, and changes nothing`, async () => {
        const operations = await operationCount(suite.server, target.id);
        const result = await uploadFile(suite.server, { instanceId: target.id, file: await craftedArchive(records) });
        if (result.errors) {
          expectCode(result, 'INVALID_BACKUP_FILE');
          await assertUnchanged(target.id, targetGraph, operations);
        } else {
          const finished = await settledOperation(suite.server, result.data!.restoreFromFile.id);
          assert.equal(finished.status, 'FAILED');
          assert.equal(finished.error?.code, 'INVALID_BACKUP_FILE', finished.error?.message);
          assert.deepEqual(storeGenerations(suite.server.dataDir, target.id).length, 1, 'the shadow store was left');
          await assertUnchanged(target.id, targetGraph, operations + 1);
        }
      });
    }

    it('says what a newer format version is', async () => {
      const error = expectCode(await uploadFile(suite.server, { instanceId: target.id, file: withFormatVersion(archive, 2) }), 'INVALID_BACKUP_FILE');
      assert.match(error.message, /version 2/);
    });

    it('recognises a Neo4j dump and says so, alone or in a tar', async () => {
      const dump = Buffer.concat([Buffer.from('DZV1'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(4096)]);
      const operations = await operationCount(suite.server, target.id);
      for (const file of [dump, await tarOf([{ name: 'neo4j.dump', content: dump }])]) {
        const error = expectCode(await uploadFile(suite.server, { instanceId: target.id, file, fileName: 'neo4j.dump' }), 'INVALID_BACKUP_FILE');
        assert.match(error.message, /Neo4j/);
      }
      await assertUnchanged(target.id, targetGraph, operations);
    });

    it('refuses a multipart request without the preflight header (CSRF) before reading it', async () => {
      const operations = await operationCount(suite.server, target.id);
      const result = await uploadFile(suite.server, { instanceId: target.id, file: archive, preflight: false });
      assert.equal(result.status, 400);
      assert.match(expectCode(result, 'BAD_USER_INPUT').message, /CSRF|Cross-Site Request Forgery/);
      await assertUnchanged(target.id, targetGraph, operations);
    });

    it('answers a request whose file no resolver reads (an invalid operation) once the file is dropped', async () => {
      // Larger than what the server buffers for a reader: the file is read from the request as it is consumed.
      const file = randomBytes(12 * 1024 * 1024);
      const form = new FormData();
      form.append('operations', JSON.stringify({ query: 'mutation ($file: Upload!) { restoreFromFile(file: $file) { id } }', variables: { file: null } }));
      form.append('map', JSON.stringify({ 0: ['variables.file'] }));
      form.append('0', new Blob([file]), 'graph.backup');
      const response = await fetch(suite.server.graphqlUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${suite.server.adminKey}`, 'apollo-require-preflight': 'true' },
        body: form,
      });
      const body = (await response.json()) as { errors?: { extensions?: { code?: string } }[] };
      assert.equal(body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    });

    it('refuses a multipart request whose fields are out of order, and reads the rest of it', async () => {
      const form = new FormData();
      form.append('map', JSON.stringify({ 0: ['variables.file'] }));
      form.append('operations', JSON.stringify({ query: RESTORE_FILE_QUERY, variables: { file: null } }));
      form.append('0', new Blob([randomBytes(6 * 1024 * 1024)]), 'graph.backup');
      const response = await fetch(suite.server.graphqlUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${suite.server.adminKey}`, 'apollo-require-preflight': 'true' },
        body: form,
      });
      assert.equal(response.status, 400);
      const body = (await response.json()) as { errors: { message: string; extensions: { code: string } }[] };
      assert.equal(body.errors[0].extensions.code, 'BAD_USER_INPUT');
      assert.match(body.errors[0].message, /operations/);
    });

    it('refuses a wrong confirm, a MEMBER, no key, and another tenant, and changes nothing', async () => {
      const operations = await operationCount(suite.server, target.id);
      const member = await createKey(suite.server, suite.server.adminKey, 'MEMBER');
      for (const confirm of ['restore', '', 'RESTORE ']) {
        expectCode(await uploadFile(suite.server, { instanceId: target.id, file: archive, confirm }), 'CONFIRMATION_REQUIRED');
      }
      expectCode(await uploadFile(suite.server, { instanceId: target.id, file: archive, key: member.secret }), 'FORBIDDEN');
      expectCode(await uploadFile(suite.server, { instanceId: target.id, file: archive, key: null }), 'UNAUTHENTICATED');
      expectCode(await uploadFile(suite.server, { instanceId: target.id, file: archive, key: tenantOther.apiKey }), 'NOT_FOUND');
      await assertUnchanged(target.id, targetGraph, operations);
    });
  });
});

describe('export links and uploads with small limits', () => {
  const suite = serverPerSuite({
    config: { exportUrlTtl: 'PT2S', maxUploadBytes: 16 * 1024 },
    env: { SNAPGRAPH_PUBLIC_URL: 'https://graphs.example.com/snapgraph/' },
  });
  let snapshot: SnapshotJson;
  let instanceId: string;

  before(async () => {
    instanceId = (await createInstance(suite.server, { name: 'limits' })).id;
    await createNodes(suite.server, instanceId, Array.from({ length: 200 }, (_, i) => ({ labels: ['Noise'], properties: { i, noise: randomBytes(96).toString('base64') } })));
    snapshot = await takeSnapshot(suite.server, instanceId);
    // The first export produces the archive and records its size and sha256 on the snapshot.
    await exportLink(suite.server, snapshot.id);
    snapshot = (await snapshotById(suite.server, snapshot.id))!;
    assert.ok(snapshot.sizeBytes! > 16 * 1024, `the archive is only ${snapshot.sizeBytes} bytes`);
  });

  /** The link's path on this server (links name SNAPGRAPH_PUBLIC_URL, the proxy in front of it). */
  const local = (url: string) => url.replace('https://graphs.example.com/snapgraph', suite.server.url);

  it('builds links on SNAPGRAPH_PUBLIC_URL', async () => {
    const link = await exportLink(suite.server, snapshot.id);
    assert.match(link.url, /^https:\/\/graphs\.example\.com\/snapgraph\/exports\/[A-Za-z0-9_-]{20,}$/);
    assert.equal(sha256Of((await download(local(link.url))).body), snapshot.sha256);
  });

  it('expires a link after exportUrlTtl: 410 Gone, while a fresh link works', async () => {
    const before = Date.now();
    const link = await exportLink(suite.server, snapshot.id);
    link.url = local(link.url);
    assert.ok(Math.abs(Date.parse(link.expiresAt) - (before + 2_000)) < 1_500, `expiresAt ${link.expiresAt}`);
    assert.equal((await download(link.url)).status, 200);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(link.expiresAt) - Date.now()) + 100));
    const expired = await download(link.url);
    assert.equal(expired.status, 410);
    assert.equal((await download(link.url, { range: 'bytes=0-10' })).status, 410);
    const fresh = await exportLink(suite.server, snapshot.id);
    assert.equal(sha256Of((await download(local(fresh.url))).body), snapshot.sha256);
  });

  it('refuses an upload over maxUploadBytes with FILE_TOO_LARGE, and keeps nothing of it', async () => {
    const archive = (await download(local((await exportLink(suite.server, snapshot.id)).url))).body;
    assert.equal(sha256Of(archive), snapshot.sha256);
    const target = await createInstance(suite.server, { name: 'small-target' });
    await createNodes(suite.server, target.id, [{ labels: ['Kept'] }]);
    const graph = await graphOf(suite.server, target.id);
    const result = await uploadFile(suite.server, { instanceId: target.id, file: archive });
    expectCode(result, 'FILE_TOO_LARGE');
    assert.deepEqual(await graphOf(suite.server, target.id), graph);
    assert.deepEqual(await instanceState(suite.server, target.id), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
    assert.equal(await operationCount(suite.server, target.id), 0);
    assert.deepEqual(uploadBlobs(suite.server.dataDir), []);
  });
});
