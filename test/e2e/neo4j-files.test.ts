// Neo4j files (issue 15): APOC JSON lines and APOC Cypher scripts restored with restoreFromFile (also inside a .tar)
// and written by exportSnapshotAs; round trips compare the whole graph, property types included; bad files are
// INVALID_BACKUP_FILE naming the line, and nothing changes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type BadFileCase,
  createInstance,
  createNodes,
  createRelationships,
  download,
  expectCode,
  expectData,
  fileRestores,
  gql,
  type Graph,
  graphOf,
  itRefusesBadFiles,
  metricsValue,
  serverPerSuite,
  sha256Of,
  takeSnapshot,
  tarOfFiles,
  tarWith,
  uploadFile,
} from '../support';

const FIXTURES = join(__dirname, '../../../test/fixtures');
const EXPORT_AS = `mutation ($id: ID!, $format: ExportFormat!) { exportSnapshotAs(id: $id, format: $format) { url fileName sizeBytes sha256 } }`;

describe('Neo4j files', function () {
  this.timeout(120_000);
  const suite = serverPerSuite();

  const { restored } = fileRestores(suite);

  describe('exportSnapshotAs and back (round trips)', () => {
    let sourceGraph: Graph;
    let snapshotId: string;

    before(async () => {
      const source = await createInstance(suite.server, { name: 'Movies & more' });
      const nodes = await createNodes(suite.server, source.id, [
        { labels: ['Person', 'Actor'], properties: { name: 'Keanu "K" Reeves', born: 1964, height: 1.86, active: true } },
        { labels: ['Movie'], properties: { title: 'line\nbreak\ttab \\ back`tick \u00e9\u{1F600} \u0001', released: '1999-03-31', rating: 8.7 } },
        { labels: [], properties: {} },
        { labels: ['Odd Label', 'with`backtick'], properties: { 'odd key': ['a', 'b'], counts: [1, 2, 3], mixed: [1, 2.5], empty: [] } },
        { labels: ['Place'], properties: { at: { crs: 'wgs-84', longitude: 12.5, latitude: 55.1 }, corner: { crs: 'cartesian-3d', x: 1, y: 2.5, z: -3 } } },
        // whole: a double past 2^53 that JavaScript prints as digits (it switches to an exponent from 1e21 on).
        // Keys that are names of Object.prototype: own properties like any other (a plain assignment of __proto__ sets the prototype).
        { labels: ['Proto'], properties: JSON.parse('{"__proto__":"kept","constructor":"too","toString":1}') as Record<string, unknown> },
        { labels: ['Big'], properties: { large: 9007199254740991, small: -9007199254740991, tiny: 1e-7, huge: 1.5e300, whole: 1e20, wholes: [1e20, 3], negative: -0.5 } },
      ]);
      await createRelationships(suite.server, source.id, [
        { type: 'ACTED_IN', startNodeId: nodes[0].id, endNodeId: nodes[1].id, properties: { roles: ['Neo'], since: '2024-01-01T10:00:00Z' } },
        { type: 'odd type', startNodeId: nodes[2].id, endNodeId: nodes[3].id },
        { type: 'SELF', startNodeId: nodes[4].id, endNodeId: nodes[4].id, properties: { weight: 0.25 } },
      ]);
      sourceGraph = await graphOf(suite.server, source.id);
      snapshotId = (await takeSnapshot(suite.server, source.id)).id;
    });

    for (const [format, extension] of [
      ['APOC_JSON', '.json'],
      ['CYPHER', '.cypher'],
    ] as const) {
      it(`${format}: the export downloads as ${extension} and restores into another instance as the same graph`, async () => {
        const link = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format })).exportSnapshotAs;
        assert.match(link.fileName, new RegExp(`^Movies-more-\\d{4}-\\d\\d-\\d\\dT\\d\\d-\\d\\d-\\d\\dZ\\${extension}$`));
        const { status, body } = await download(link.url);
        assert.equal(status, 200);
        assert.equal(body.length, link.sizeBytes);
        assert.equal(sha256Of(body), link.sha256);
        // Deterministic: asking again gives the same file, the one already stored (not written again).
        const written = await metricsValue(suite.server, 'snapgraph_graph_file_bytes_total');
        assert.ok(written >= link.sizeBytes, `the first export was written (${written} bytes counted)`);
        const again = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format })).exportSnapshotAs;
        assert.equal(again.sha256, link.sha256);
        assert.equal(again.sizeBytes, link.sizeBytes);
        assert.notEqual(again.url, link.url);
        assert.equal(await metricsValue(suite.server, 'snapgraph_graph_file_bytes_total'), written);
        assert.equal(sha256Of((await download(again.url)).body), link.sha256);
        assert.deepEqual(await restored(body, link.fileName), sourceGraph);
      });
    }

    it('ARCHIVE equals exportSnapshot', async () => {
      const link = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format: 'ARCHIVE' })).exportSnapshotAs;
      assert.match(link.fileName, /\.backup$/);
      const plain = expectData(await gql(suite.server, `mutation ($id: ID!) { exportSnapshot(id: $id) { sha256 } }`, { id: snapshotId })).exportSnapshot;
      assert.equal(link.sha256, plain.sha256);
    });

    it('the Cypher script has the shape apoc.export.cypher.all writes', async () => {
      const link = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format: 'CYPHER' })).exportSnapshotAs;
      const text = (await download(link.url)).body.toString('utf8');
      assert.match(text, /^:begin\nCREATE CONSTRAINT UNIQUE_IMPORT_NAME FOR \(node:`UNIQUE IMPORT LABEL`\) REQUIRE \(node.`UNIQUE IMPORT ID`\) IS UNIQUE;\n:commit\nCALL db.awaitIndexes\(300\);\n:begin\nUNWIND \[\{_id:1, properties:\{name:"Keanu \\"K\\" Reeves", born:1964, height:1.86, active:true\}\}\] AS row\nCREATE \(n:`UNIQUE IMPORT LABEL`\{`UNIQUE IMPORT ID`: row._id\}\) SET n \+= row.properties SET n:Person:Actor;\n/);
      assert.match(text, /at:point\(\{x: 12.5, y: 55.1, crs: 'wgs-84'\}\)/);
      assert.match(text, /MATCH \(start:`UNIQUE IMPORT LABEL`\{`UNIQUE IMPORT ID`: row.start._id\}\)\nMATCH \(end:`UNIQUE IMPORT LABEL`\{`UNIQUE IMPORT ID`: row.end._id\}\)\nCREATE \(start\)-\[r:`odd type`\]->\(end\) SET r \+= row.properties;/);
      assert.match(text, /:begin\nMATCH \(n:`UNIQUE IMPORT LABEL`\)  WITH n LIMIT 20000 REMOVE n:`UNIQUE IMPORT LABEL` REMOVE n.`UNIQUE IMPORT ID`;\n:commit\n:begin\nDROP CONSTRAINT UNIQUE_IMPORT_NAME;\n:commit\n$/);
    });

    it('a value Neo4j cannot store refuses the Cypher export, naming it; APOC JSON and GraphML carry it', async () => {
      const other = await createInstance(suite.server, { name: 'maps' });
      const [created] = await createNodes(suite.server, other.id, [{ labels: ['A'], properties: { address: { city: 'Oslo' } } }]);
      const snapshot = await takeSnapshot(suite.server, other.id);
      const refused = expectCode(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'CYPHER' }), 'BAD_USER_INPUT');
      assert.match(refused.message, new RegExp(`node ${created.id}'s property "address" is a map`));
      // APOC JSON carries it (apoc.import.json flattens maps into address.city).
      expectData(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'APOC_JSON' }));
      // GraphML carries it on a key marked snapgraph.type="map" (docs/neo4j-files.md).
      expectData(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'GRAPHML' }));
    });

    it('a label, type or property key with a line break refuses the Cypher export, naming it (it would not read back as written)', async () => {
      const refusal = async (write: (instanceId: string) => Promise<string>) => {
        const instance = await createInstance(suite.server, { name: 'line breaks' });
        const subject = await write(instance.id);
        const snapshot = await takeSnapshot(suite.server, instance.id);
        const refused = expectCode(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'CYPHER' }), 'BAD_USER_INPUT');
        assert.ok(refused.message.includes(`${subject} holds a line break`), refused.message);
        // APOC JSON carries it.
        expectData(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'APOC_JSON' }));
      };
      await refusal(async (id) => {
        const [node] = await createNodes(suite.server, id, [{ labels: ['two\r\nlines'] }]);
        return `node ${node.id}'s label "two\\r\\nlines"`;
      });
      await refusal(async (id) => {
        const [node] = await createNodes(suite.server, id, [{ labels: ['A'], properties: { 'key;\n': 1 } }]);
        return `node ${node.id}'s property "key;\\n"`;
      });
      await refusal(async (id) => {
        const [start, end] = await createNodes(suite.server, id, [{ labels: ['A'] }, { labels: ['B'] }]);
        const [relationship] = await createRelationships(suite.server, id, [{ type: 'LINE\nBREAK', startNodeId: start.id, endNodeId: end.id }]);
        return `relationship ${relationship.id}'s type "LINE\\nBREAK"`;
      });
    });
  });

  describe('files written the way APOC writes them', () => {
    it('reads apoc.export.json.all output (ids as the file names them, types as written)', async () => {
      const graph = await restored(readFileSync(join(FIXTURES, 'apoc-export-all.json')), 'all.json');
      assert.deepEqual(
        graph.nodes.map((n) => [n.id, n.labels, n.properties]),
        [
          ['1', ['User'], { born: '2015-07-04T19:32:24', name: 'Adam', place: { crs: 'wgs-84', latitude: 13.1, longitude: 33.46789, height: null }, age: 42, male: true, kids: ['Sam', 'Anna', 'Grace'] }],
          ['2', ['User'], { name: 'Jim', age: 42 }],
          ['3', ['User'], { age: 12 }],
          ['4', [], {}],
        ],
      );
      assert.deepEqual(
        graph.relationships.map((r) => [r.type, r.startNodeId, r.endNodeId, r.properties]),
        [
          ['KNOWS', '1', '2', { since: 1993, bffSince: 'P5M1DT12H' }],
          ['KNOWS', '2', '4', {}],
        ],
      );
    });

    it('reads apoc.export.cypher.all output: schema, UNWIND batches, constraint-keyed nodes, single statements, clean-up', async () => {
      const graph = await restored(readFileSync(join(FIXTURES, 'apoc-export-all.cypher')), 'all.cypher');
      assert.deepEqual(
        graph.nodes.map((n) => [n.labels, n.properties]),
        [
          [['Bar'], { age: 17 }],
          [['Bar', 'Person'], { age: 12, place: { crs: 'cartesian', x: 2.3, y: 4.5 } }],
          [['Foo'], { born: '2018-10-31', name: 'foo', seen: '2018-10-30T12:50:35.556+01:00' }],
          [['Foo'], { born: '2017-09-29', name: 'foo2\n"quoted"', scores: [1.5, 2] }],
          [['Bar'], { name: 'bar', age: 42 }],
          [['Bar'], { name: 'bar2', age: 44 }],
          [[], { age: 99, home: { crs: 'wgs-84-3d', longitude: 56.7, latitude: 12.78, height: 100 } }],
        ],
      );
      assert.deepEqual(
        graph.relationships.map((r) => [r.type, r.startNodeId, r.endNodeId, r.properties]),
        [
          ['KNOWS', '3', '5', { since: 2016 }],
          ['KNOWS', '4', '6', { since: 2015 }],
          ['LIVES NEAR', '1', '7', { distance: 'P5M1DT12H' }],
        ],
      );
    });

    it('finds an APOC file inside a .tar', async () => {
      const json = readFileSync(join(FIXTURES, 'apoc-export-all.json'));
      const graph = await restored(await tarWith('export/all.json', json), 'export.tar');
      assert.equal(graph.nodes.length, 4);
      assert.equal(graph.relationships.length, 2);
    });
  });

  describe('bad files: INVALID_BACKUP_FILE naming the line, nothing changed', () => {
    const node = (id: string) => `{"type":"node","id":"${id}","labels":["A"],"properties":{}}`;
    const rel = (id: string, start: string, end: string) => `{"type":"relationship","id":"${id}","label":"R","start":{"id":"${start}"},"end":{"id":"${end}"}}`;

    const atUpload: BadFileCase[] = [
      ['broken JSON', 'bad.json', [node('1'), node('2'), '{"type":"node","id":"3",', node('4')].join('\n'), /line 3: it is not valid JSON/],
      ['an unknown record type', 'bad.json', [node('1'), '{"type":"path","id":"3"}'].join('\n'), /line 2: "type" is "path"/],
      ['an integer Snapgraph cannot hold', 'bad.json', [node('1'), '{"type":"node","id":"2","properties":{"n":9223372036854775807}}'].join('\n'), /line 2: property "n" holds the integer 9223372036854775807/],
      ['an empty label', 'bad.json', [node('1'), '{"type":"node","id":"2","labels":[""]}'].join('\n'), /line 2: the node label is empty/],
      ['an unknown Cypher statement', 'bad.cypher', ':begin\nUNWIND [{_id:1, properties:{}}] AS row\nCREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties;\nMATCH (n) DETACH DELETE n;\n:commit\n', /line 4: this is not a statement apoc.export.cypher writes/],
      // A \U escape names a code point; one past U+10FFFF is no character (it failed as an internal error).
      ['a Cypher escape naming no Unicode character', 'bad.cypher', ':begin\nUNWIND [{_id:1, properties:{s:"\\UFFFFFFFF"}}] AS row\nCREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties;\n:commit\n', /line 2: \\UFFFFFFFF names no Unicode character/],
      // Read by recursion: a value nested a hundred thousand levels deep overflowed the stack (an internal error).
      ['a Cypher value nested far deeper than the graph allows', 'bad.cypher', `:begin\nUNWIND [{_id:1, properties:{a:${'['.repeat(100_000)}1${']'.repeat(100_000)}}}] AS row\nCREATE (n:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`: row._id}) SET n += row.properties;\n:commit\n`, /line 2: .*nest deeper than 100 levels/],
      ['a Cypher value Neo4j does not have', 'bad.cypher', ':begin\nUNWIND [{_id:1, properties:{a:1}},\n{_id:2, properties:{a:rand()}}] AS row\nCREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties;\n:commit\n', /line 3: rand\(…\) is not a value Snapgraph can load/],
    ];
    const byTheLoad: BadFileCase[] = [
      ['a relationship to a missing node', 'bad.json', [node('1'), node('2'), rel('1', '1', '2'), rel('2', '2', '9')].join('\n'), /line 4: the relationship's end node "9" is not a node of the file/],
      ['a repeated node id', 'bad.json', [node('1'), node('2'), node('1')].join('\n'), /line 3: node id "1" is already used by the node at line 1/],
      ['a repeated relationship id', 'bad.json', [node('1'), rel('7', '1', '1'), rel('7', '1', '1')].join('\n'), /line 3: relationship id "7" is already used by the relationship at line 2/],
    ];
    itRefusesBadFiles(suite, { atUpload, byTheLoad });

    // apoc.export.cypher.all with separateFiles:true writes <name>.cleanup/.nodes/.relationships/.schema.cypher; a tar
    // of them restored its first entry alone: the clean-up statements, an empty graph in place of the instance's.
    it('a .tar holding more than one graph file (APOC separateFiles export) is refused naming two of them', async () => {
      const instance = await createInstance(suite.server, { name: 'separate files' });
      await createNodes(suite.server, instance.id, [{ labels: ['Kept'] }]);
      const before = await graphOf(suite.server, instance.id);
      const tar = await tarOfFiles({
        'export.cleanup.cypher': ':begin\nMATCH (n:`UNIQUE IMPORT LABEL`)  WITH n LIMIT 20000 REMOVE n:`UNIQUE IMPORT LABEL` REMOVE n.`UNIQUE IMPORT ID`;\n:commit\n',
        'export.nodes.cypher': ':begin\nUNWIND [{_id:0, properties:{}}, {_id:1, properties:{}}] AS row\nCREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties SET n:A;\n:commit\n',
        'export.relationships.cypher':
          ':begin\nUNWIND [{start: {_id:0}, end: {_id:1}, properties:{}}] AS row\nMATCH (start:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row.start._id})\n' +
          'MATCH (end:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row.end._id})\nCREATE (start)-[r:R]->(end) SET r += row.properties;\n:commit\n',
      });
      const refused = expectCode(await uploadFile(suite.server, { instanceId: instance.id, file: tar, fileName: 'export.tar' }), 'INVALID_BACKUP_FILE');
      assert.match(refused.message, /export\.cleanup\.cypher and export\.nodes\.cypher/);
      assert.deepEqual(await graphOf(suite.server, instance.id), before);
    });
  });
});
