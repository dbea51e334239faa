import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  archiveOf,
  createInstance,
  createNodes,
  expectCode,
  graphOf,
  makeTempDir,
  operationCount,
  runCli,
  serverEnv,
  serverPerSuite,
  settledOperation,
  STATS_FIELDS,
  takeSnapshot,
  tarOfFiles,
  type TestServer,
  uploadFile,
} from '../support';

const INSPECT_FILE = `mutation ($file: Upload!) {
  inspectFile(file: $file) { kind restorable contents { ${STATS_FIELDS} } engineVersion capturedAt details problem }
}`;

interface InspectionJson {
  kind: string;
  restorable: boolean;
  contents: { nodeCount: number; relationshipCount: number; labels: Array<{ name: string; count: number }> } | null;
  engineVersion: string | null;
  capturedAt: string | null;
  details: Record<string, unknown> | null;
  problem: string | null;
}

/** inspectFile as a real multipart request, with Apollo-Require-Preflight unless told otherwise. */
async function inspectUpload(server: TestServer, file: Buffer, { key = server.adminKey as string | null, preflight = true } = {}) {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: INSPECT_FILE, variables: { file: null } }));
  form.append('map', JSON.stringify({ 0: ['variables.file'] }));
  form.append('0', new Blob([file], { type: 'application/octet-stream' }), 'upload.bin');
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (preflight) headers['apollo-require-preflight'] = 'true';
  const response = await fetch(server.graphqlUrl, { method: 'POST', headers, body: form });
  const json = (await response.json().catch(() => ({}))) as { data?: { inspectFile: InspectionJson }; errors?: Array<{ extensions?: { code?: string } }> };
  return { status: response.status, inspection: json.data?.inspectFile, errors: json.errors };
}

/** A Neo4j 5 uncompressed backup header (BTV2, metadata version 2), as neo4j-admin writes it. */
function neo4jBackupHeader(): Buffer {
  const i64 = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    return b;
  };
  const short = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
  const storeId = Buffer.concat([Buffer.from([1]), i64(1700000000000n), i64(7n), short('record'), short('block'), Buffer.from([1, 0])]);
  const metadata = Buffer.concat([
    storeId,
    Buffer.from([16]),
    Buffer.alloc(16, 0xab),
    short('neo4j'),
    i64(1767225600n), // 2026-01-01T00:00:00Z
    i64(12n),
    i64(345n),
    Buffer.from([1, 4]), // full
    Buffer.from([0, 0, 0, 0]), // no extra fields
  ]);
  return Buffer.concat([Buffer.from('BTV2'), Buffer.from([2]), metadata]);
}

describe('inspectFile and snapgraph inspect', () => {
  const suite = serverPerSuite();
  let archive: Buffer;
  let instanceId: string;

  before(async () => {
    const instance = await createInstance(suite.server, { name: 'inspected' });
    instanceId = instance.id;
    await createNodes(suite.server, instance.id, [{ labels: ['Person'], properties: { name: 'Ann' } }, { labels: ['Person', 'Admin'] }]);
    const snapshot = await takeSnapshot(suite.server, instance.id);
    archive = await archiveOf(suite.server, snapshot.id);
  });

  it('says what a Snapgraph archive holds, over HTTP multipart, and changes nothing', async () => {
    const before = await operationCount(suite.server, instanceId);
    const { inspection } = await inspectUpload(suite.server, archive);
    assert.equal(inspection?.kind, 'SNAPGRAPH_ARCHIVE');
    assert.equal(inspection?.restorable, true);
    assert.equal(inspection?.engineVersion, 'V5');
    assert.ok(inspection?.capturedAt);
    assert.equal(inspection?.contents?.nodeCount, 2);
    assert.deepEqual(inspection?.contents?.labels, [
      { name: 'Admin', count: 1 },
      { name: 'Person', count: 2 },
    ]);
    assert.equal(inspection?.details?.sourceInstanceName, 'inspected');
    assert.equal(inspection?.problem, null);
    assert.equal(await operationCount(suite.server, instanceId), before);
  });

  it('shows a Neo4j backup header and says to export with APOC instead', async () => {
    const { inspection } = await inspectUpload(suite.server, neo4jBackupHeader());
    assert.equal(inspection?.kind, 'NEO4J_BACKUP');
    assert.equal(inspection?.restorable, false);
    assert.equal(inspection?.contents, null);
    assert.equal(inspection?.capturedAt, '2026-01-01T00:00:00.000Z');
    assert.equal(inspection?.details?.databaseName, 'neo4j');
    assert.equal(inspection?.details?.backupType, 'full');
    assert.deepEqual(inspection?.details?.transactionRange, { from: '12', to: '345' });
    assert.match(inspection?.problem ?? '', /APOC.*apoc\.export\.json\.all/s);
  });

  it('says a tar cut off is not readable, wherever it breaks off, and the server lives on', async function () {
    this.timeout(60_000);
    // Entries longer than what is peeked at (64 KiB): a README nothing recognises, and an archive of random text.
    const large = await createInstance(suite.server, { name: 'large-inspected' });
    await createNodes(suite.server, large.id, Array.from({ length: 2_000 }, () => ({ labels: ['Noise'], properties: { text: randomBytes(48).toString('hex') } })));
    const largeArchive = await archiveOf(suite.server, (await takeSnapshot(suite.server, large.id)).id);
    const readme = Buffer.from(randomBytes(150_000).toString('base64'));
    for (const [what, tar, cut] of [
      ['inside the README', await tarOfFiles({ 'README.txt': readme, 'prod.backup': largeArchive }), 512 + 100_000],
      ['inside the archive', await tarOfFiles({ 'prod.backup': largeArchive }), 512 + Math.floor(largeArchive.length / 2)],
    ] as const) {
      const { inspection } = await inspectUpload(suite.server, tar.subarray(0, cut));
      assert.equal(inspection?.kind, 'UNKNOWN', what);
      assert.equal(inspection?.restorable, false);
      assert.match(inspection?.problem ?? '', /Unexpected end of data|cut off|truncated|ends/i, `${what}: ${inspection?.problem}`);
      // Whatever was still reading the cut-off entry has failed by now, too.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(suite.server.process.exitCode, null, `the server is still running after the tar cut off ${what}`);
    }
    const { inspection } = await inspectUpload(suite.server, archive);
    assert.equal(inspection?.kind, 'SNAPGRAPH_ARCHIVE');
  });

  it('reports a tar cut off after its archive as that archive, restorable, as restoreFromFile restores it', async function () {
    this.timeout(60_000);
    // The archive entry is whole; the tar breaks off in the entry after it, which a restore does not read.
    const tar = await tarOfFiles({ 'prod.backup': archive, 'NOTES.txt': Buffer.from(randomBytes(8_000).toString('base64')) });
    const cut = tar.subarray(0, 512 + Math.ceil(archive.length / 512) * 512 + 512 + 4_000);
    const { inspection } = await inspectUpload(suite.server, cut);
    assert.equal(inspection?.kind, 'SNAPGRAPH_ARCHIVE', inspection?.problem ?? undefined);
    assert.equal(inspection?.restorable, true);
    assert.equal(inspection?.contents?.nodeCount, 2);
    assert.equal(inspection?.details?.tarEntry, 'prod.backup');
    const target = await createInstance(suite.server, { name: 'cut-tar-target' });
    const restored = await uploadFile(suite.server, { instanceId: target.id, file: cut, fileName: 'prod.tar' });
    assert.equal((await settledOperation(suite.server, restored.data!.restoreFromFile.id)).status, 'SUCCEEDED');
  });

  it('reports a tar holding Neo4j store files after its archive as a Neo4j store, refused, as restoreFromFile refuses it', async () => {
    // The store files come after the first 4 KiB (where the whole file's start is looked at), as in a real store directory.
    const tar = await tarOfFiles({
      'prod.backup': archive,
      'NOTES.txt': Buffer.from(randomBytes(6_000).toString('base64')),
      'graph.db/neostore.nodestore.db': Buffer.alloc(64),
    });
    const { inspection } = await inspectUpload(suite.server, tar);
    assert.equal(inspection?.kind, 'NEO4J_DUMP');
    assert.equal(inspection?.restorable, false);
    const target = await createInstance(suite.server, { name: 'store-tar-target' });
    await createNodes(suite.server, target.id, [{ labels: ['Kept'] }]);
    const error = expectCode(await uploadFile(suite.server, { instanceId: target.id, file: tar, fileName: 'prod.tar' }), 'INVALID_BACKUP_FILE');
    assert.match(error.message, /Neo4j store files \(graph\.db\/neostore\.nodestore\.db\)/);
    assert.equal(await operationCount(suite.server, target.id), 0);
    assert.deepEqual((await graphOf(suite.server, target.id)).nodes.map((node) => node.labels), [['Kept']]);
  });

  it('needs an API key and the CSRF preflight header', async () => {
    const anonymous = await inspectUpload(suite.server, archive, { key: null });
    assert.equal(anonymous.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED');
    const noPreflight = await inspectUpload(suite.server, archive, { preflight: false });
    assert.equal(noPreflight.status, 400);
    assert.equal(noPreflight.inspection, undefined);
  });

  it('snapgraph inspect reads a local file without a server, as text or --json', async () => {
    const dir = makeTempDir();
    const archivePath = join(dir, 'graph.backup');
    const backupPath = join(dir, 'prod.backup');
    writeFileSync(archivePath, archive);
    writeFileSync(backupPath, neo4jBackupHeader());
    const env = serverEnv({});
    const json = await runCli(['inspect', archivePath, '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as InspectionJson;
    assert.equal(parsed.kind, 'SNAPGRAPH_ARCHIVE');
    assert.equal(parsed.contents?.nodeCount, 2);
    const text = await runCli(['inspect', backupPath], env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /NEO4J_BACKUP/);
    assert.match(text.stdout, /restorable: no/);
    assert.match(text.stdout, /databaseName: neo4j/);
    const missing = await runCli(['inspect', join(dir, 'nope')], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such file/);
  });
});
