// neo4j-admin import CSV bundles: the CSV reader, headers and typed cells as neo4j-admin reads them, the bundle reader
// (tar order, ID spaces, errors naming file and line) and the writer (typed headers, import.sh, determinism, refusals).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { cellValue, parseEntry, parseHeader } from '../../src/graph-files/admin-csv-header';
import { csvRows } from '../../src/graph-files/csv-rows';
import type { ForeignRecord, GraphFileSource } from '../../src/graph-files/graph-file-format';
import { detectGraphFileFormat, GRAPH_FILE_FORMATS } from '../../src/graph-files/graph-file-formats';
import { neo4jAdminCsvFormat } from '../../src/graph-files/neo4j-admin-csv-format';
import type { GraphRecord } from '../../src/graph/records';
import { DOCS_EXAMPLE } from '../support/admin-csv-files';
import { filesOfTar, tarOfFiles } from '../support/graph-files';

async function rowsOf(text: string | Buffer, chunk = 3) {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) pieces.push(bytes.subarray(i, i + chunk));
  const rows = [];
  for await (const batch of csvRows(Readable.from(pieces))) rows.push(...batch);
  return rows;
}

async function recordsOf(tar: Buffer): Promise<ForeignRecord[]> {
  const reader = neo4jAdminCsvFormat.open(Readable.from([tar]));
  const records: ForeignRecord[] = [];
  for await (const batch of reader.records()) records.push(...batch);
  return records;
}

async function failureOf(tar: Buffer): Promise<string> {
  try {
    await recordsOf(tar);
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('the bundle was read');
}

function sourceOf(records: GraphRecord[]): GraphFileSource {
  return {
    stats: { nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0 },
    engineVersion: 'V5',
    capturedAt: '2026-01-02T03:04:05.000Z',
    sourceInstanceName: 'test',
    async *batches() {
      yield records;
    },
    nodeLabels: async () => new Map(),
  };
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const node = (id: string, labels: string[], properties: Record<string, unknown> = {}): GraphRecord => ({ kind: 'node', node: { id, labels, properties } });
const rel = (id: string, type: string, startNodeId: string, endNodeId: string, properties: Record<string, unknown> = {}): GraphRecord => ({
  kind: 'relationship',
  relationship: { id, type, startNodeId, endNodeId, properties },
});

describe('neo4j-admin CSV', () => {
  describe('csvRows', () => {
    it('reads quotes, doubled quotes, line breaks in quotes, CRLF, a BOM and skips empty lines, across any chunking', async () => {
      const text = '\uFEFFa,"b,c","say ""hi""",\r\n\r\n"multi\nline",,""\nlast,row';
      for (const chunk of [1, 2, 5, 1000]) {
        const rows = await rowsOf(text, chunk);
        assert.deepEqual(
          rows.map((row) => [row.line, row.fields, row.quoted]),
          [
            [1, ['a', 'b,c', 'say "hi"', ''], [false, true, true, false]],
            [3, ['multi\nline', '', ''], [true, false, true]],
            [5, ['last', 'row'], [false, false]],
          ],
        );
      }
    });

    it('refuses text after a closing quote and a quote never closed, naming the line', async () => {
      await assert.rejects(rowsOf('a,b\n"x"y,z\n'), (error: { line: number; message: string }) => error.line === 2 && /after the closing quote/.test(error.message));
      await assert.rejects(rowsOf('a\n\n"open\nstill'), (error: { line: number; message: string }) => error.line === 3 && /never closed/.test(error.message));
    });

    it('reads a multi-byte character split between chunks', async () => {
      const rows = await rowsOf('"é😀",x\n', 1);
      assert.deepEqual(rows[0].fields, ['é😀', 'x']);
    });
  });

  describe('headers', () => {
    it('splits entries as DataFactories does: name, type, ID space, options', () => {
      assert.deepEqual(
        [parseEntry('personId:ID(Person)'), parseEntry(':START_ID(Person)'), parseEntry('name'), parseEntry('born:Int'), parseEntry('tags:string[]'), parseEntry(':IGNORE'), parseEntry('where:point{crs:WGS-84}')].map(
          ({ role, name, space, type, array, options }) => ({ role, name, space, type, array, options }),
        ),
        [
          { role: 'ID', name: 'personId', space: 'Person', type: 'string', array: false, options: {} },
          { role: 'START_ID', name: null, space: 'Person', type: 'string', array: false, options: {} },
          { role: 'PROPERTY', name: 'name', space: null, type: 'string', array: false, options: {} },
          { role: 'PROPERTY', name: 'born', space: null, type: 'int', array: false, options: {} },
          { role: 'PROPERTY', name: 'tags', space: null, type: 'string', array: true, options: {} },
          { role: 'IGNORE', name: null, space: null, type: 'string', array: false, options: {} },
          { role: 'PROPERTY', name: 'where', space: null, type: 'point', array: false, options: { crs: 'WGS-84' } },
        ],
      );
      assert.equal(parseEntry('a:b:long').name, 'a:b');
      assert.equal(parseEntry('id:ID{id-type:long}').type, 'long');
    });

    it('tells node files from relationship files and refuses what Snapgraph does not read', () => {
      assert.equal(parseHeader([':ID', 'name', ':LABEL']).kind, 'nodes');
      assert.equal(parseHeader([':START_ID', ':END_ID', ':TYPE', 'since:int']).kind, 'relationships');
      const refusals: Array<[string[], RegExp]> = [
        [['name', 'born'], /separate files/],
        [['id:ID', 'name'], /labels given only on the command line/],
        [[':START_ID', ':END_ID'], /types given only on the command line/],
        [['id:ID\tname\t:LABEL'], /delimiter/],
        [[':ID', 'x:int', 'x:long', ':LABEL'], /"x" has two columns/],
        [[':ID', 'x:money', ':LABEL'], /unknown type "money"/],
        [[':ID', ':ID', ':LABEL'], /more than one :ID/],
        [[':START_ID', ':TYPE'], /needs a :START_ID and an :END_ID/],
        [[':ID', ':LABEL', ':TYPE'], /relationships|relationship file cannot have/],
      ];
      for (const [fields, expected] of refusals) assert.throws(() => parseHeader(fields), expected, fields.join(','));
    });
  });

  describe('typed cells', () => {
    const value = (entry: string, text: string, quoted = false) => cellValue(parseEntry(entry), text, quoted);

    it('maps every type to the documented value', () => {
      assert.equal(value('s', 'text'), 'text');
      assert.equal(value('s', '', true), '');
      assert.equal(value('s', ''), undefined);
      assert.equal(value('n:int', ' 42 '), 42);
      assert.equal(value('n:long', '-9007199254740991'), -9007199254740991);
      assert.equal(value('n:short', '-32768'), -32768);
      assert.equal(value('n:byte', '127'), 127);
      assert.equal(value('n:double', '1.5E300'), 1.5e300);
      assert.equal(value('n:float', '2.5f'), 2.5);
      assert.equal(value('n:double', '-.5'), -0.5);
      assert.equal(value('n:boolean', 'true'), true);
      assert.equal(value('n:boolean', 'false'), false);
      assert.equal(value('n:char', 'é'), 'é');
      assert.equal(value('n:long', ''), undefined);
      assert.deepEqual(value('p:point', '{x:1, y:2.5, crs:cartesian}'), { crs: 'cartesian', x: 1, y: 2.5 });
      assert.deepEqual(value('p:point', "{latitude:37.55, longitude:-122.31, height: 100, crs:'WGS-84-3D'}"), { crs: 'wgs-84-3d', longitude: -122.31, latitude: 37.55, height: 100 });
      assert.deepEqual(value('p:point{crs:WGS-84}', '{latitude:1, longitude:2}'), { crs: 'wgs-84', longitude: 2, latitude: 1 });
      assert.deepEqual(value('p:point', '{x:1,y:2,z:3,srid:9157}'), { crs: 'cartesian-3d', x: 1, y: 2, z: 3 });
      assert.equal(value('d:date', '2018-10-31'), '2018-10-31');
      assert.equal(value('d:localtime', '12:50:35.556'), '12:50:35.556');
      assert.equal(value('d:time', '12:50:35+01:00'), '12:50:35+01:00');
      assert.equal(value('d:localdatetime', '2015-07-04T19:32:24'), '2015-07-04T19:32:24');
      assert.equal(value('d:datetime', '2018-10-30T12:50:35.556+01:00[Europe/Stockholm]'), '2018-10-30T12:50:35.556+01:00[Europe/Stockholm]');
      assert.equal(value('d:duration', 'P5M1DT12H'), 'P5M1DT12H');
      assert.deepEqual(value('a:string[]', 'a;b; c'), ['a', 'b', ' c']);
      assert.deepEqual(value('a:long[]', '1;2;3'), [1, 2, 3]);
      assert.deepEqual(value('a:double[]', '1;2.5'), [1, 2.5]);
      assert.deepEqual(value('a:boolean[]', 'true;false'), [true, false]);
      assert.deepEqual(value('a:date[]', '2020-01-01;2021-02-03'), ['2020-01-01', '2021-02-03']);
      assert.deepEqual(value('a:point[]', '{x:1,y:2};{x:3,y:4}'), [{ crs: 'cartesian', x: 1, y: 2 }, { crs: 'cartesian', x: 3, y: 4 }]);
      assert.equal(value('a:long[]', ''), undefined);
    });

    it('refuses cells the type cannot read', () => {
      const bad: Array<[string, string, RegExp]> = [
        ['n:int', '1.5', /not an integer/],
        ['n:int', '2147483648', /does not fit type int/],
        ['n:byte', '128', /does not fit type byte/],
        ['n:long', '9007199254740993', /beyond/],
        ['n:double', 'NaN', /not a number/],
        ['n:double', '1e400', /beyond/],
        ['n:boolean', 'yes', /not true or false/],
        ['n:char', 'ab', /not one character/],
        ['p:point', '(1,2)', /not a point/],
        ['p:point', '{x:1}', /needs x and y/],
        ['p:point', '{x:1,y:2,crs:mars}', /crs/],
        ['p:point', '{x:1,y:2,z:3,crs:cartesian}', /crs cartesian takes 2 coordinates, and it has 3/],
        ['p:point', '{x:1,y:2,crs:wgs-84-3d}', /crs wgs-84-3d takes 3 coordinates, and it has 2/],
        ['p:point', '{x:1,y:2,longitude:5,latitude:6}', /not both/],
        ['d:date', '31/10/2018', /not a date/],
        ['d:duration', '5 days', /not a duration/],
        ['a:long[]', '1;x', /not an integer/],
      ];
      for (const [entry, text, expected] of bad) assert.throws(() => value(entry, text), expected, `${entry} ${text}`);
    });
  });

  describe('reading a bundle', () => {
    it('reads the documentation example with ID spaces, typed arrays and label lists, relationships listed first', async () => {
      const tar = await tarOfFiles({ 'import/roles.csv': DOCS_EXAMPLE['roles.csv'], 'README.txt': 'hi', 'import/movies.csv': DOCS_EXAMPLE['movies.csv'], 'import/actors.csv': DOCS_EXAMPLE['actors.csv'] });
      const records = await recordsOf(tar);
      const nodes = records.filter((record) => record.kind === 'node');
      const relationships = records.filter((record) => record.kind === 'relationship');
      assert.equal(records.indexOf(relationships[0]), nodes.length, 'nodes come first');
      assert.deepEqual(nodes[0], {
        kind: 'node',
        at: nodes[0].at,
        key: 'tt0133093 in ID space Movie',
        labels: ['Movie'],
        properties: { movieId: 'tt0133093', title: 'The Matrix', year: 1999, genres: ['Action', 'Sci-Fi'] },
      });
      assert.deepEqual(nodes[2].properties, { movieId: 'tt0242653', title: 'The Matrix Revolutions', year: 2003 });
      assert.deepEqual(nodes[2].labels, ['Movie', 'Sequel']);
      assert.deepEqual(nodes[3].properties, { personId: 'keanu', name: 'Keanu Reeves', born: '1964-09-02', ratings: [9.5, 8] });
      assert.deepEqual(nodes[4].properties, { personId: 'laurence', name: 'Laurence Fishburne' });
      assert.deepEqual(
        relationships.map((r) => r.kind === 'relationship' && [r.type, r.startKey, r.endKey, r.properties]),
        [
          ['ACTED_IN', 'keanu in ID space Actor', 'tt0133093 in ID space Movie', { role: 'Neo' }],
          ['ACTED_IN', 'keanu in ID space Actor', 'tt0234215 in ID space Movie', { role: 'Neo' }],
          ['ACTED_IN', 'laurence in ID space Actor', 'tt0133093 in ID space Movie', { role: 'Morpheus' }],
          ['ACTED_IN', 'carrieanne in ID space Actor', 'tt0242653 in ID space Movie', { role: 'Trinity' }],
        ],
      );
      const reader = neo4jAdminCsvFormat.open(Readable.from([tar]));
      for await (const batch of reader.records()) void batch;
      assert.equal(reader.describe(relationships[3].at), 'import/roles.csv line 5');
      assert.equal(reader.describe(nodes[4].at), 'import/actors.csv line 3');
    });

    it(':IGNORE columns and unnamed ids are not properties; :ID{id-type:long} stores a number', async () => {
      const records = await recordsOf(await tarOfFiles({ 'n.csv': ':ID{id-type:long},secret:IGNORE,name,:LABEL\n7,x,Ann,A\n,y,Nobody,\n', 'id.csv': 'num:ID(N){id-type:long},:LABEL\n07,B\n' }));
      assert.deepEqual(
        records.map((r) => r.kind === 'node' && [r.key, r.labels, r.properties]),
        [
          ['7', ['A'], { name: 'Ann' }],
          [records[1].kind === 'node' ? records[1].key : '', [], { name: 'Nobody' }],
          ['7 in ID space N', ['B'], { num: 7 }],
        ],
      );
      const typed = await recordsOf(await tarOfFiles({ 'r.csv': ':START_ID(N),:END_ID(N),:TYPE\n007,7,SELF\n', 'n.csv': ':ID(N){id-type:long},:LABEL\n7,N\n' }));
      assert.deepEqual(typed[1].kind === 'relationship' && [typed[1].startKey, typed[1].endKey], ['7 in ID space N', '7 in ID space N']);
    });

    it('names the file and line of a bad cell, a bad header and CSV errors', async () => {
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,age:int,:LABEL\n1,40,P\n2,forty,P\n' })), /at p\.csv line 3: age:int: "forty" is not an integer/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,:LABEL\n1,P\n', 'r.csv': ':START_ID,:END_ID,:TYPE,w:double\n1,1,R,0.5\n1,1,R,heavy\n' })), /at r\.csv line 3: w:double/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,name,:LABEL\n1,"x\n"y,P\n' })), /at p\.csv line 3: there is text after the closing quote/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,:LABEL\n1,P,extra\n' })), /at p\.csv line 2: the line has 3 fields; the header has 2 columns/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,:LABEL\n1,P\n', 'r.csv': ':START_ID(X),:END_ID,:TYPE\n1,1,R\n' })), /at r\.csv line 1: :START_ID\(X\) names the ID space "X", which no node file/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,:LABEL\n1,P\n', 'r.csv': ':START_ID,:END_ID,:TYPE\n1,1,\n' })), /at r\.csv line 2: the relationship has no type/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,:LABEL\n1,P\n', 'more.csv.gz': 'x' })), /more\.csv\.gz: compressed CSV files are not supported/);
      assert.match(await failureOf(await tarOfFiles({ 'p.csv': ':ID,:LABEL\n1,P\n', 'h.csv': 'name,born\n' })), /at h\.csv line 1: .*separate files/);
      const whole = await tarOfFiles(DOCS_EXAMPLE);
      for (const cut of [700, 1600, whole.length - 1100]) assert.match(await failureOf(whole.subarray(0, cut)), /The \.tar file is incomplete/);
    });

    it('is detected from the first .csv file in the tar, and tried before the single-file formats', async () => {
      assert.equal(GRAPH_FILE_FORMATS[0], neo4jAdminCsvFormat);
      assert.equal(detectGraphFileFormat(await tarOfFiles({ 'README.md': '# hi', 'a.csv': 'personId:ID(Person),name,:LABEL\n' })), neo4jAdminCsvFormat);
      assert.equal(detectGraphFileFormat(await tarOfFiles({ 'r.csv': '":START_ID",":END_ID",":TYPE"\n' })), neo4jAdminCsvFormat);
      assert.equal(neo4jAdminCsvFormat.detect(await tarOfFiles({ 'a.csv': 'name,born\nAnn,1990\n' })), false);
      assert.equal(neo4jAdminCsvFormat.detect(await tarOfFiles({ 'export.json': '{"type":"node","id":"1"}\n' })), false);
      assert.equal(neo4jAdminCsvFormat.detect(Buffer.from(':ID,:LABEL\n1,A\n')), false);
    });
  });

  describe('writing a bundle', () => {
    const graph: GraphRecord[] = [
      node('1', ['Person', 'Actor'], { name: 'Keanu "K", Reeves', born: 1964, height: 1.86, tags: ['a', 'b'], where: { crs: 'wgs-84', longitude: 12.5, latitude: 55.1 } }),
      node('2', ['Person', 'Actor'], { name: '', born: 1.5, scores: [1, 2.5] }),
      node('3', [], {}),
      node('4', ['Person', 'Actor'], { born: 'unknown' }),
      rel('1', 'KNOWS', '1', '2', { since: 2001 }),
      rel('2', 'odd type', '3', '3'),
    ];

    it('holds a bounded amount of rows whatever the number of files: 500 label sets export in a 64 MiB heap', async function () {
      this.timeout(30_000);
      // 130k nodes of 1 KiB spread over 500 files, in a child process whose heap cannot hold 256 KiB for each file.
      const child = `
        const { neo4jAdminCsvFormat } = require(${JSON.stringify(require.resolve('../../src/graph-files/neo4j-admin-csv-format'))});
        const text = 'x'.repeat(1000);
        const source = {
          stats: { nodeCount: 130000, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0 },
          engineVersion: 'V5', capturedAt: '2026-01-02T03:04:05.000Z', sourceInstanceName: 'many-files',
          async *batches() {
            for (let start = 1; start <= 130000; start += 1000) {
              const batch = [];
              for (let id = start; id < start + 1000; id++) batch.push({ kind: 'node', node: { id: String(id), labels: ['L' + (id % 500)], properties: { text } } });
              yield batch;
            }
          },
          nodeLabels: async () => new Map(),
        };
        (async () => {
          let bytes = 0;
          for await (const chunk of neo4jAdminCsvFormat.write(source)) bytes += chunk.length;
          process.stdout.write(String(bytes));
        })();`;
      const result = await promisify(execFile)(process.execPath, ['--max-old-space-size=64', '-e', child]).catch((error) => error);
      assert.ok(Number(result.stdout) > 130_000 * 1000, `the export failed: ${result.stdout}${String(result.stderr).slice(0, 500)}`);
    });

    // A file open for each label set (a descriptor and buffers each) made 10,000 of them for a graph of 10,000 label
    // sets, past the process's open-file limit.
    it('writes a graph of many label sets with at most 64 files open at once, every row in its file', async () => {
      const openFiles = () => readdirSync('/proc/self/fd').length;
      const before = openFiles();
      let most = before;
      const sets = 300;
      const source: GraphFileSource = {
        ...sourceOf([]),
        async *batches() {
          for (let round = 0; round < 3; round++) {
            // The files' opens (in the thread pool) are done by then.
            await new Promise((resolve) => setTimeout(resolve, 20));
            most = Math.max(most, openFiles());
            yield Array.from({ length: sets }, (_, i): GraphRecord => node(String(round * sets + i + 1), [`L${i}`], { round }));
          }
          most = Math.max(most, openFiles());
        },
      };
      const tar = await bytesOf(neo4jAdminCsvFormat.write!(source));
      assert.ok(most - before < 100, `${most - before} files were open at once`);
      const files = await filesOfTar(tar);
      assert.equal(files.length, sets + 1);
      assert.equal(files[0].name, 'nodes-001-L0.csv');
      assert.equal(files[0].text, ':ID,:LABEL,round:long\n1,L0,0\n301,L0,1\n601,L0,2\n');
      assert.equal(files[sets - 1].text, ':ID,:LABEL,round:long\n300,L299,0\n600,L299,1\n900,L299,2\n');
      assert.equal((await recordsOf(tar)).length, 3 * sets);
    });

    it('writes one file per label set and type with typed headers, import.sh last, deterministically', async () => {
      const tar = await bytesOf(neo4jAdminCsvFormat.write!(sourceOf(graph)));
      assert.deepEqual(tar, await bytesOf(neo4jAdminCsvFormat.write!(sourceOf(graph))));
      const files = await filesOfTar(tar);
      assert.deepEqual(
        files.map((file) => file.name),
        ['nodes-001-Person-Actor.csv', 'nodes-002.csv', 'nodes-003-Person-Actor.csv', 'relationships-001-KNOWS.csv', 'relationships-002-odd_type.csv', 'import.sh'],
      );
      assert.ok(files.every((file) => file.mtime === Date.parse('2026-01-02T03:04:05.000Z')));
      assert.equal(
        files[0].text,
        ':ID,:LABEL,name:string,born:double,height:double,tags:string[],where:point,scores:double[]\n' +
          '1,Person;Actor,"Keanu ""K"", Reeves",1964,1.86,a;b,"{x: 12.5, y: 55.1, crs: \'wgs-84\'}",\n' +
          '2,Person;Actor,"",1.5,,,,1;2.5\n',
      );
      assert.equal(files[1].text, ':ID,:LABEL\n3,\n');
      assert.equal(files[2].text, ':ID,:LABEL,born:string\n4,Person;Actor,"unknown"\n');
      assert.equal(files[3].text, ':START_ID,:END_ID,:TYPE,since:long\n1,2,KNOWS,2001\n');
      assert.equal(files[4].text, ':START_ID,:END_ID,:TYPE\n3,3,odd type\n');
      assert.match(files[5].text, /neo4j-admin database import full "\$\{1:-neo4j\}" \\\n {2}--delimiter=, --array-delimiter=";" --quote='"' --multiline-fields=true \\\n {2}--nodes=nodes-001-Person-Actor.csv \\\n {2}--nodes=nodes-002.csv \\\n {2}--nodes=nodes-003-Person-Actor.csv \\\n {2}--relationships=relationships-001-KNOWS.csv \\\n {2}--relationships=relationships-002-odd_type.csv\n$/);
      assert.equal(files[5].mode, 0o755);
      // Read back: the same records, ids as keys.
      const records = await recordsOf(tar);
      assert.deepEqual(
        records.map((r) => (r.kind === 'node' ? [r.key, r.labels, r.properties] : [r.type, r.startKey, r.endKey, r.properties])),
        [
          ['1', ['Person', 'Actor'], graph[0].kind === 'node' && graph[0].node.properties],
          ['2', ['Person', 'Actor'], { name: '', born: 1.5, scores: [1, 2.5] }],
          ['3', [], {}],
          ['4', ['Person', 'Actor'], { born: 'unknown' }],
          ['KNOWS', '1', '2', { since: 2001 }],
          ['odd type', '3', '3', {}],
        ],
      );
    });

    it('writes a valid bundle for an empty graph', async () => {
      const tar = await bytesOf(neo4jAdminCsvFormat.write!(sourceOf([])));
      const files = await filesOfTar(tar);
      assert.deepEqual(files.map((file) => [file.name, file.name === 'import.sh' ? '' : file.text]), [['nodes.csv', ':ID,:LABEL\n'], ['import.sh', '']]);
      assert.ok(neo4jAdminCsvFormat.detect(tar));
      assert.deepEqual(await recordsOf(tar), []);
    });

    it('refuses values a CSV cell cannot carry, naming the record and property', async () => {
      const refused: Array<[Record<string, unknown>, RegExp]> = [
        [{ address: { city: 'Oslo' } }, /node 1's property "address" is a map/],
        [{ nested: [[1]] }, /"nested" is a list of lists/],
        [{ mixed: [1, 'a'] }, /"mixed" is a list of mixed types/],
        [{ empty: [] }, /"empty" is an empty list/],
        [{ semi: ['a;b'] }, /"semi" is a list holding a string with ';'/],
        [{ nothing: null }, /"nothing" is null/],
        [{ 'a(b)': 1 }, /"a\(b\)" has a name a neo4j-admin header cannot carry/],
      ];
      for (const [properties, expected] of refused) {
        await assert.rejects(bytesOf(neo4jAdminCsvFormat.write!(sourceOf([node('1', ['A'], properties)]))), (error: Error) => {
          assert.match(error.message, /cannot be exported as NEO4J_ADMIN_CSV/);
          assert.match(error.message, expected);
          return true;
        });
      }
      await assert.rejects(bytesOf(neo4jAdminCsvFormat.write!(sourceOf([node('1', ['A;B'])]))), /label "A;B" holds ';'/);
    });

    it('keeps a reader\'s failure to the bundle, whichever entry is under way then', async () => {
      // The reader reads nothing (an S3 part that will fail, a client gone) and then fails. Whether import.sh is the
      // entry under way then, held back by the full buffers, depends on how many bytes came before it: with these rows,
      // 140 to 145 nodes put it there on Node 20. Its entry had no 'error' listener, so the failure, passed on to it,
      // was thrown out of the process (mocha fails the test on it). The bundles are written side by side, so each
      // writer has long enough to run up to what the buffers hold, on a loaded machine too.
      const bundles = [];
      for (let count = 130; count <= 155; count++) {
        const nodes = Array.from({ length: count }, (_, i) => node(String(i + 1), ['A'], { p: 'x'.repeat(100) }));
        const bundle = neo4jAdminCsvFormat.write!(sourceOf(nodes));
        bundles.push({ bundle, failed: once(bundle, 'error') });
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const { bundle } of bundles) bundle.destroy(new Error('the reader failed'));
      for (const { failed } of bundles) assert.equal(((await failed)[0] as Error).message, 'the reader failed');
      await new Promise((resolve) => setTimeout(resolve, 50));
    });
  });
});
