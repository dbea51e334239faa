import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack as createTarPack } from 'tar-stream';
import { encodeArchive } from '../../src/archive';
import { describeNeo4jFile } from '../../src/archive/neo4j-file-header';
import { GRAPH_FILE_FORMATS } from '../../src/graph-files/graph-file-formats';
import { FileInspectionService } from '../../src/services/file-inspection.service';
import { craftArchive } from '../support';

// Header bytes built field by field as neo4j-admin writes them (BackupMetadataV1/V2, StoreIdSerialization):
// Java DataOutput, big-endian.
const u8 = (n: number) => Buffer.from([n]);
const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const i64 = (n: bigint | number) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
};
const shortString = (s: string) => Buffer.concat([u8(Buffer.byteLength(s)), Buffer.from(s)]);
const intString = (s: string) => Buffer.concat([i32(Buffer.byteLength(s)), Buffer.from(s)]);

function storeId(): Buffer {
  return Buffer.concat([u8(1), i64(1700000000123n), i64(-42n), shortString('record'), shortString('aligned'), u8(1), u8(2)]);
}

function metadataV1(options: { full: boolean; name?: string; lowest?: bigint; highest?: bigint }): Buffer {
  const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
  const flags = (options.full ? 4 : 0) | 2; // compressed
  return Buffer.concat([
    storeId(),
    u8(16),
    uuid,
    shortString(options.name ?? 'movies'),
    i64(1735689600), // 2025-01-01T00:00:00Z, epoch seconds
    i64(options.lowest ?? 1n),
    i64(options.highest ?? 4711n),
    u8(1),
    u8(flags),
  ]);
}

function metadataV2(options: { full: boolean }): Buffer {
  return Buffer.concat([u8(2), metadataV1(options), i32(1), intString('metadataScript'), intString('CREATE USER x;')]);
}

describe('describeNeo4jFile', () => {
  it('reads a BTV1 backup header: database, transaction range, full, backup time, store id', () => {
    const head = Buffer.concat([Buffer.from('BTV1'), metadataV1({ full: true }), randomBytes(64)]);
    const description = describeNeo4jFile(head);
    assert.equal(description?.kind, 'NEO4J_BACKUP');
    assert.equal(description?.engineVersion, 'V5');
    assert.equal(description?.capturedAt, '2025-01-01T00:00:00.000Z');
    assert.deepEqual(
      { ...description?.details },
      {
        format: 'neo4j-admin database backup (uncompressed, format 1)',
        magic: 'BTV1',
        compression: 'none',
        databaseName: 'movies',
        databaseId: '01234567-89ab-cdef-0123-456789abcdef',
        backupTime: '2025-01-01T00:00:00.000Z',
        backupType: 'full',
        transactionRange: { from: '1', to: '4711' },
        recovered: false,
        compressed: true,
        storeId: {
          creationTime: new Date(1700000000123).toISOString(),
          random: '-42',
          storageEngine: 'record',
          format: 'aligned',
          formatVersion: '1.2',
        },
      },
    );
  });

  it('reads BTV2 and BZV3 headers (metadata version 2, with its extra fields) and tells a differential backup', () => {
    for (const magic of ['BTV2', 'BZV3']) {
      const head = Buffer.concat([Buffer.from(magic), metadataV2({ full: false }), Buffer.from([0x28, 0xb5, 0x2f, 0xfd])]);
      const details = describeNeo4jFile(head)?.details;
      assert.equal(details?.backupType, 'differential', magic);
      assert.equal(details?.databaseName, 'movies');
      assert.deepEqual(details?.transactionRange, { from: '1', to: '4711' });
      assert.deepEqual(details?.metadataFields, ['metadataScript']);
      assert.equal(details?.compression, magic === 'BZV3' ? 'zstd' : 'none');
    }
  });

  it('names the field where a backup header is cut short, and still recognises the backup', () => {
    const whole = Buffer.concat([Buffer.from('BTV1'), metadataV1({ full: true })]);
    const description = describeNeo4jFile(whole.subarray(0, 58));
    assert.equal(description?.kind, 'NEO4J_BACKUP');
    assert.match(String(description?.details.headerProblem), /the header ends inside the database name/);
  });

  it('recognises BZV1 and BZV2 backups, whose metadata is compressed', () => {
    for (const magic of ['BZV1', 'BZV2']) {
      const description = describeNeo4jFile(Buffer.concat([Buffer.from(magic), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(32)]));
      assert.equal(description?.kind, 'NEO4J_BACKUP');
      assert.match(String(description?.details.headerProblem), /zstd-compressed/);
    }
  });

  it('recognises Neo4j 5 dumps: DZV1 (zstd) and DGV1 (gzip, listing the store files inside)', async () => {
    const dzv1 = describeNeo4jFile(Buffer.concat([Buffer.from('DZV1'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(32)]));
    assert.equal(dzv1?.kind, 'NEO4J_DUMP');
    assert.equal(dzv1?.details.compression, 'zstd');
    const store = await tarOf({ './neostore': randomBytes(100), './neostore.nodestore.db': randomBytes(100) });
    const dgv1 = describeNeo4jFile(Buffer.concat([Buffer.from('DGV1'), gzipSync(store)]));
    assert.equal(dgv1?.kind, 'NEO4J_DUMP');
    assert.deepEqual(dgv1?.details.storeFiles, ['./neostore', './neostore.nodestore.db']);
  });

  it('recognises older dumps: a bare zstd stream (4.x), a gzip\'d tar of store files (3.x), a tar of a store', async () => {
    assert.equal(describeNeo4jFile(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(64)]))?.engineVersion, 'V4');
    const store = await tarOf({ 'graph.db/neostore': randomBytes(10) });
    assert.equal(describeNeo4jFile(gzipSync(store))?.kind, 'NEO4J_DUMP');
    assert.equal(describeNeo4jFile(store)?.kind, 'NEO4J_DUMP');
  });

  it('recognises nothing in other files', async () => {
    assert.equal(describeNeo4jFile(Buffer.from('{"type":"node","id":"1"}\n')), undefined);
    assert.equal(describeNeo4jFile(gzipSync(Buffer.from('hello'))), undefined);
    assert.equal(describeNeo4jFile(await tarOf({ 'README.md': Buffer.from('hi') })), undefined);
  });
});

describe('FileInspectionService', () => {
  const service = new FileInspectionService(GRAPH_FILE_FORMATS);

  it('reports a Neo4j backup with its header facts, not restorable, saying what to upload instead', async () => {
    const inspection = await service.inspect(Readable.from([Buffer.concat([Buffer.from('BTV1'), metadataV1({ full: true })])]));
    assert.equal(inspection.kind, 'NEO4J_BACKUP');
    assert.equal(inspection.restorable, false);
    assert.equal(inspection.contents, null);
    assert.equal(inspection.capturedAt, '2025-01-01T00:00:00.000Z');
    assert.equal(inspection.details?.databaseName, 'movies');
    assert.match(String(inspection.problem), /APOC/);
    assert.match(String(inspection.problem), /apoc\.export\.json\.all/);
  });

  it('reports a tar holding a Neo4j dump as the dump, naming the entry', async () => {
    const tar = await tarOf({ 'README.txt': Buffer.from('see the dump'), 'neo4j.dump': Buffer.concat([Buffer.from('DZV1'), randomBytes(40)]) });
    const inspection = await service.inspect(Readable.from([tar]));
    assert.equal(inspection.kind, 'NEO4J_DUMP');
    assert.equal(inspection.details?.tarEntry, 'neo4j.dump');
  });

  it('reports a Snapgraph archive with its verified contents, engine version and capture time', async () => {
    const archive = await bytesOf(encodeArchive(
      {
        engineVersion: 'V4',
        sourceInstanceId: 'i-1',
        sourceInstanceName: 'prod',
        capturedAt: '2026-01-02T03:04:05.000Z',
        stats: { nodeCount: 1, relationshipCount: 0, labels: [{ name: 'A', count: 1 }], relationshipTypes: [], storeSizeBytes: 10 },
      },
      [{ kind: 'node', node: { id: '1', labels: ['A'], properties: {} } }],
    ));
    const inspection = await service.inspect(Readable.from([archive]));
    assert.equal(inspection.kind, 'SNAPGRAPH_ARCHIVE');
    assert.equal(inspection.restorable, true);
    assert.equal(inspection.engineVersion, 'V4');
    assert.equal(inspection.capturedAt, '2026-01-02T03:04:05.000Z');
    assert.equal(inspection.contents?.nodeCount, 1);
    const damaged = Buffer.from(archive);
    damaged[damaged.length - 40] ^= 0xff;
    const bad = await service.inspect(Readable.from([damaged]));
    assert.equal(bad.kind, 'SNAPGRAPH_ARCHIVE');
    assert.equal(bad.restorable, false);
    assert.equal(bad.contents, null);
    assert.match(String(bad.problem), /damaged|checksum/);
  });

  it('lets the event loop turn while it checks a frame of many records (it runs in the server, for any key)', async function () {
    this.timeout(60_000);
    // 8 MiB of records stored in a few KiB (a frame may hold 64 MiB): the check of its one frame took seconds, and the
    // server answered nothing meanwhile.
    const lines = Array.from({ length: 500_000 }, (_, i) => JSON.stringify(['N', String(i + 1), [], {}]));
    assert.ok(lines.join('\n').length > 8 * 1024 * 1024);
    const archive = craftArchive(lines, { linesPerFrame: lines.length });
    let turns = 0;
    let inspecting = true;
    const turn = () => {
      turns += 1;
      if (inspecting) setImmediate(turn);
    };
    setImmediate(turn);
    const inspection = await service.inspect(Readable.from([archive]));
    inspecting = false;
    assert.equal(inspection.restorable, true, String(inspection.problem));
    assert.equal(inspection.contents?.nodeCount, 500_000);
    // Every MiB of records or so (verify's takeTurns), as on the verifier threads; not once before.
    assert.ok(turns >= 8, `the event loop turned ${turns} times`);
  });

  it('reports an APOC JSON export with counts by label and type', async () => {
    const lines = [
      '{"type":"node","id":"0","labels":["Person"],"properties":{"name":"Ann"}}',
      '{"type":"node","id":"1","labels":["Person","Admin"],"properties":{"name":"Bob"}}',
      '{"id":"0","type":"relationship","label":"KNOWS","properties":{},"start":{"id":"0","labels":["Person"]},"end":{"id":"1","labels":["Person","Admin"]}}',
    ];
    const inspection = await service.inspect(Readable.from([Buffer.from(lines.join('\n') + '\n')]));
    assert.equal(inspection.kind, 'APOC_JSON');
    assert.equal(inspection.restorable, true);
    assert.deepEqual(inspection.contents, {
      nodeCount: 2,
      relationshipCount: 1,
      labels: [
        { name: 'Admin', count: 1 },
        { name: 'Person', count: 2 },
      ],
      relationshipTypes: [{ name: 'KNOWS', count: 1 }],
      storeSizeBytes: 0,
    });
  });

  it('reports a tar holding two graph files (APOC separateFiles export) as not restorable, naming them, as the restore refuses it', async () => {
    const node = (id: number) => `{"type":"node","id":"${id}","labels":["A"]}\n`;
    const tar = await tarOf({ 'export.nodes.json': Buffer.from(node(0)), 'README.txt': Buffer.from('hi'), 'more.json': Buffer.from(node(1)) });
    const inspection = await service.inspect(Readable.from([tar]));
    assert.equal(inspection.kind, 'APOC_JSON');
    assert.equal(inspection.restorable, false);
    assert.match(String(inspection.problem), /more than one file to restore \(export\.nodes\.json and more\.json\)/);
  });

  it('says UNKNOWN, with what it accepts, for anything else', async () => {
    const inspection = await service.inspect(Readable.from([randomBytes(1000)]));
    assert.equal(inspection.kind, 'UNKNOWN');
    assert.equal(inspection.restorable, false);
    assert.match(String(inspection.problem), /APOC export/);
    assert.equal((await service.inspect(Readable.from([]))).problem, 'The file is empty.');
  });
});

async function tarOf(files: Record<string, Buffer>): Promise<Buffer> {
  const pack = createTarPack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
