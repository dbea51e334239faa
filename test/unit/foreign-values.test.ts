// Values of foreign graph files as real Neo4j tools write them, through every reader and writer: what APOC and
// neo4j-admin write must read, and what Snapgraph read must export again.
import { strict as assert } from 'node:assert';
import { Readable } from 'node:stream';
import { assertValidRecord } from '../../src/graph-files/foreign-records';
import type { ForeignRecord, GraphFileKind, GraphFileSource } from '../../src/graph-files/graph-file-format';
import { graphFileFormat } from '../../src/graph-files/graph-file-formats';
import type { GraphRecord } from '../../src/graph/records';
import { tarOfFiles } from '../support/graph-files';

/** The records of a file, each checked as a restore checks it. */
async function recordsOf(kind: GraphFileKind, file: string | Buffer): Promise<ForeignRecord[]> {
  const reader = graphFileFormat(kind)!.open(Readable.from([Buffer.from(file)]));
  const records: ForeignRecord[] = [];
  for await (const batch of reader.records()) {
    for (const record of batch) {
      assertValidRecord(record, reader);
      records.push(record);
    }
  }
  return records;
}

function sourceOf(records: GraphRecord[]): GraphFileSource {
  const labels = new Map(records.flatMap((r) => (r.kind === 'node' ? [[r.node.id, r.node.labels] as const] : [])));
  return {
    stats: { nodeCount: labels.size, relationshipCount: records.length - labels.size, labels: [], relationshipTypes: [], storeSizeBytes: 0 },
    engineVersion: 'V5',
    capturedAt: '2026-01-02T03:04:05.000Z',
    sourceInstanceName: 'test',
    async *batches() {
      yield records;
    },
    nodeLabels: async (ids) => new Map(ids.map((id) => [id, labels.get(id) ?? []])),
  };
}

async function written(kind: GraphFileKind, records: GraphRecord[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of graphFileFormat(kind)!.write!(sourceOf(records))) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const node = (id: string, labels: string[], properties: Record<string, unknown>): GraphRecord => ({ kind: 'node', node: { id, labels, properties } });

describe('foreign graph file values', () => {
  describe("APOC JSON's points", () => {
    // apoc.export.json.all (PointSerializer) writes a 2D point with its third coordinate null.
    const apoc =
      '{"type":"node","id":"0","labels":["Place"],"properties":{"at":{"crs":"wgs-84","latitude":55.1,"longitude":12.5,"height":null},' +
      '"corner":{"crs":"cartesian","x":1.0,"y":2.5,"z":null}}}\n';

    for (const kind of ['CYPHER', 'NEO4J_ADMIN_CSV'] as const) {
      it(`a 2D point read from APOC JSON exports as a point to ${kind}, and reads back as that point`, async () => {
        const [read] = await recordsOf('APOC_JSON', apoc);
        assert.equal(read.kind, 'node');
        const file = await written(kind, [node('1', read.labels, read.properties)]);
        const [back] = await recordsOf(kind, file);
        assert.deepEqual(back.properties, { at: { crs: 'wgs-84', longitude: 12.5, latitude: 55.1 }, corner: { crs: 'cartesian', x: 1, y: 2.5 } });
      });
    }
  });

  describe('point arrays (Neo4j stores them; APOC writes [point({…}), …])', () => {
    const script =
      ':begin\nUNWIND [{_id:0, properties:{stops:[point({x: 2.3, y: 4.5, crs: \'cartesian\'}), point({x: 1.0, y: 2.0, crs: \'cartesian\'})]}}] AS row\n' +
      'CREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties SET n:Route;\n:commit\n';

    it('CYPHER: a point array read from an APOC script exports again and reads back as it was', async () => {
      const [read] = await recordsOf('CYPHER', script);
      assert.equal(read.kind, 'node');
      const file = await written('CYPHER', [node('1', read.labels, read.properties)]);
      assert.match(file.toString(), /stops:\[point\(\{x: 2\.3, y: 4\.5, crs: 'cartesian'\}\), point\(\{x: 1\.0, y: 2\.0, crs: 'cartesian'\}\)\]/);
      const [back] = await recordsOf('CYPHER', file);
      assert.deepEqual(back.properties, { stops: [{ crs: 'cartesian', x: 2.3, y: 4.5 }, { crs: 'cartesian', x: 1, y: 2 }] });
    });

    it('CYPHER: points of different CRSs in one list refuse the export, naming the property (Neo4j refuses to store them)', async () => {
      const mixed = [{ crs: 'cartesian', x: 1, y: 2 }, { crs: 'wgs-84', longitude: 1, latitude: 2 }];
      await assert.rejects(written('CYPHER', [node('7', ['A'], { mixed })]), /node 7's property "mixed" is a list of points of different coordinate reference systems/);
    });
  });

  describe("names Neo4j refuses as tokens (empty, or holding U+0000: \"Token names cannot be empty or contain any null-bytes\")", () => {
    const cases: Array<[string, GraphRecord[], RegExp]> = [
      ['an empty property key', [node('3', ['A'], { '': 1 })], /node 3's property "" is empty/],
      ['a property key holding U+0000', [node('3', ['A'], { 'a\u0000b': 1 })], /node 3's property "a\\u0000b" holds U\+0000/],
      ['a label holding U+0000', [node('3', ['A\u0000'], {})], /node 3's label "A\\u0000" holds U\+0000/],
    ];
    for (const [what, records, message] of cases) {
      it(`CYPHER: ${what} refuses the export, naming it (cypher-shell could not load the script)`, async () => {
        await assert.rejects(written('CYPHER', records), message);
      });
    }

    it('GRAPHML: an empty property key refuses the export, naming it (apoc.import.graphml could not set it)', async () => {
      await assert.rejects(written('GRAPHML', [node('3', ['A'], { '': 1 })]), /node 3's property "" has an empty name, which Neo4j refuses as a property key/);
    });
  });

  describe('-0.0, as Java writes a negative zero double', () => {
    const zeros = { d: 0, list: [0, 1.5] };
    const files: Array<[GraphFileKind, () => Promise<string | Buffer>]> = [
      ['APOC_JSON', async () => '{"type":"node","id":"0","labels":["A"],"properties":{"d":-0.0,"list":[-0.0,1.5]}}\n'],
      [
        'GRAPHML',
        async () =>
          '<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n' +
          '<key id="d" for="node" attr.name="d" attr.type="double"/>\n<key id="list" for="node" attr.name="list" attr.type="string" attr.list="double"/>\n' +
          '<graph id="G" edgedefault="directed">\n<node id="n0" labels=":A"><data key="labels">:A</data><data key="d">-0.0</data><data key="list">[-0.0,1.5]</data></node>\n</graph>\n</graphml>\n',
      ],
      ['NEO4J_ADMIN_CSV', () => tarOfFiles({ 'a.csv': ':ID,:LABEL,d:double,list:double[]\n0,A,-0.0,-0.0;1.5\n' })],
      ['CYPHER', async () => ':begin\nUNWIND [{_id:0, properties:{d:-0.0, list:[-0.0, 1.5]}}] AS row\nCREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties SET n:A;\n:commit\n'],
    ];
    for (const [kind, file] of files) {
      it(`${kind}: reads as 0`, async () => {
        const [read] = await recordsOf(kind, await file());
        assert.deepEqual(read.properties, zeros);
        assert.ok(!Object.is(read.properties.d, -0));
      });
    }

    it('a record nesting deeper than the graph allows is still refused for that, -0.0 or not', async () => {
      const deep = `${'['.repeat(150)}-0.0${']'.repeat(150)}`;
      await assert.rejects(recordsOf('APOC_JSON', `{"type":"node","id":"0","properties":{"d":-0.0,"deep":${deep}}}\n`), /line 1: the node properties nest deeper than 100 levels/);
    });
  });

  describe('strings holding a lone UTF-16 surrogate (the API and the archive hold them)', () => {
    const lone = { s: '\ud800', t: 'x\udc00y', list: ['\udbff', 'ok'], pair: '\u{1F600}' };

    it('CYPHER: escaped (\\uD800), they read back as written; UTF-8 had made each one U+FFFD', async () => {
      const file = await written('CYPHER', [node('1', ['A'], lone)]);
      assert.match(file.toString('utf8'), /s:"\\ud800", t:"x\\udc00y"/);
      const [back] = await recordsOf('CYPHER', file);
      assert.deepEqual(back.properties, lone);
    });

    it('CYPHER: a property name holding one refuses the export, naming it (a `name` has no escapes)', async () => {
      await assert.rejects(written('CYPHER', [node('1', ['A'], { 'k\ud800': 1 })]), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'BAD_USER_INPUT');
        assert.match(error.message, /node 1's property "k\\ud800" holds a lone UTF-16 surrogate/);
        return true;
      });
    });

    for (const [what, properties, subject] of [
      ['a string', { s: '\ud800' }, 'property "s"'],
      ['a string in a list', { list: ['ok', 'x\udc00'] }, 'property "list"'],
      ['a property name', { 'k\ud800': 1 }, 'property "k\\ud800"'],
    ] as const) {
      it(`NEO4J_ADMIN_CSV: ${what} holding one refuses the export, naming it (a CSV cell has no escapes)`, async () => {
        await assert.rejects(written('NEO4J_ADMIN_CSV', [node('1', ['A'], properties)]), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'BAD_USER_INPUT');
          assert.ok(error.message.includes(`node 1's ${subject}`) && /lone UTF-16 surrogate/.test(error.message), error.message);
          return true;
        });
      });
    }
  });

  describe('integers beyond ±2^53 in APOC JSON', () => {
    const line = (properties: string) => `{"type":"node","id":"0","labels":["A"],"properties":${properties}}\n`;

    it('a long run of digits inside a string is text, also beside a large whole double', async () => {
      const [read] = await recordsOf('APOC_JSON', line('{"big":1.0E20,"isbn":"97801234567890123456"}'));
      assert.deepEqual(read.properties, { big: 1e20, isbn: '97801234567890123456' });
      // A long string full of escapes and digits is skipped as one string.
      const long = '\\"12345678901234567'.repeat(500_000);
      const [escaped] = await recordsOf('APOC_JSON', line(`{"big":1.0E20,"s":"${long}"}`));
      assert.equal(escaped.properties.s, '"12345678901234567'.repeat(500_000));
    });

    it('an integer beyond ±2^53 inside a map is refused as anywhere else, not rounded', async () => {
      await assert.rejects(recordsOf('APOC_JSON', line('{"m":{"n":12345678901234567891}}')), /line 1: property "m" holds the integer 12345678901234567891/);
    });

    it('a value nesting far deeper than the graph allows is refused for that, not a stack overflow', async () => {
      const deep = `${'['.repeat(200_000)}1${']'.repeat(200_000)}`;
      await assert.rejects(recordsOf('APOC_JSON', line(`{"deep":${deep}}`)), /line 1: the node properties nest deeper than 100 levels/);
    });
  });

  describe('whole doubles beyond ±2^53 in a map, exported as GraphML', () => {
    it('read back as the map (JSON.stringify wrote 1e20 as digits, which the reader refuses as an integer)', async () => {
      const properties = { m: { a: 1e20, b: [-1e20, 1], c: 'x', d: { e: 9007199254740992 } } };
      const [back] = await recordsOf('GRAPHML', await written('GRAPHML', [node('1', ['A'], properties)]));
      assert.deepEqual(back.properties, properties);
    });
  });

  describe('a record larger than an archive record may be (64 MiB encoded)', () => {
    const line = (text: string) => `{"type":"node","id":"0","labels":["A"],"properties":{"s":"${text}"}}\n`;

    it('is refused naming it: 34 Mi characters of é fit a line (64 Mi characters) but take 68 MiB of UTF-8, and the instance could never be exported', async () => {
      await assert.rejects(recordsOf('APOC_JSON', line('\u00e9'.repeat(34 * 1024 * 1024))), /line 1: the node takes \d+ bytes once encoded, more than the 67108864 a record of a Snapgraph archive may take/);
    });

    it('one that fits is read', async () => {
      const [read] = await recordsOf('APOC_JSON', line('a'.repeat(60 * 1024 * 1024)));
      assert.equal((read.properties.s as string).length, 60 * 1024 * 1024);
    });
  });

  describe("APOC Cypher scripts of optimizations NONE with MERGE (cypherFormat updateAll, addStructure)", () => {
    // As ExportCypherTestUtils (neo4j/apoc) has them: NODES_MULTI_RELS, NODES_MULTI_RELS_ADD_STRUCTURE, RELS_MULTI_RELS, RELSUPDATE_STRUCTURE_2.
    const schema =
      ':begin\nCREATE CONSTRAINT UNIQUE_IMPORT_NAME FOR (node:`UNIQUE IMPORT LABEL`) REQUIRE (node.`UNIQUE IMPORT ID`) IS UNIQUE;\n:commit\nCALL db.awaitIndexes(300);\n';
    const nodes = (onCreate: string) =>
      ':begin\n' +
      `MERGE (n:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:0}) ${onCreate}SET n.name="MyName", n:Person;\n` +
      `MERGE (n:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:1}) ${onCreate}SET n.a=1, n:Project;\n` +
      `MERGE (n:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:2}) ${onCreate}SET n.name="one", n:Team;\n` +
      ':commit\n';
    const relationships = (onCreate: string) =>
      ':begin\n' +
      `MATCH (n1:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:0}), (n2:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:1}) MERGE (n1)-[r:WORKS_FOR{\`UNIQUE IMPORT ID REL\`:0}]->(n2) ${onCreate}SET r.id=1;\n` +
      '\n' +
      `MATCH (n1:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:0}), (n2:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:1}) MERGE (n1)-[r:WORKS_FOR{\`UNIQUE IMPORT ID REL\`:1}]->(n2) ${onCreate}SET r.id=2;\n` +
      `MATCH (n1:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:0}), (n2:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:2}) MERGE (n1)-[r:IS_TEAM_MEMBER_OF]->(n2) ${onCreate}SET r.name="aaa";\n` +
      ':commit\n';
    const cleanUp =
      ':begin\nMATCH (n:`UNIQUE IMPORT LABEL`) WITH n LIMIT 5 REMOVE n:`UNIQUE IMPORT LABEL` REMOVE n.`UNIQUE IMPORT ID`;\n:commit\n' +
      ':begin\nDROP CONSTRAINT UNIQUE_IMPORT_NAME;\n:commit\n' +
      ':begin\nMATCH ()-[r]->() WHERE r.`UNIQUE IMPORT ID REL` IS NOT NULL WITH r LIMIT 5 REMOVE r.`UNIQUE IMPORT ID REL`;\n:commit\n';

    for (const [format, onCreate] of [['updateAll', ''], ['addStructure', 'ON CREATE ']] as const) {
      it(`reads a ${format} script`, async () => {
        const records = await recordsOf('CYPHER', schema + nodes(onCreate) + relationships(onCreate) + cleanUp);
        assert.deepEqual(
          records.map((r) => (r.kind === 'node' ? [r.key, r.labels, r.properties] : [r.key, r.type, r.startKey, r.endKey, r.properties])),
          [
            ['0', ['Person'], { name: 'MyName' }],
            ['1', ['Project'], { a: 1 }],
            ['2', ['Team'], { name: 'one' }],
            ['0', 'WORKS_FOR', '0', '1', { id: 1 }],
            ['1', 'WORKS_FOR', '0', '1', { id: 2 }],
            [null, 'IS_TEAM_MEMBER_OF', '0', '2', { name: 'aaa' }],
          ],
        );
      });
    }
  });

  describe('APOC Cypher scripts with nodes of several uniqueness-constrained labels', () => {
    // What apoc.export.cypher.all writes for such a node (neo4j/apoc common/.../AbstractCypherFormatter.java,
    // CypherFormatterUtils.java; ExportCypherTest shouldHandleTwoLabelsWithOneUniqueConstraintEach): the UNWIND batches key
    // it by one of its constrained labels and the key properties of all of them (getNodeIdProperties), but a
    // relationship MATCHes it by that label and that label's key properties alone (getUniqueConstrainedProperties);
    // the single statements of optimizations NONE name all its constrained labels (getNodeIdLabels, sorted, yet the
    // index names first, and relationships pass the indexed properties there) with the key properties of all of them.
    const schema =
      ':begin\n' +
      'CREATE CONSTRAINT uniqueBar FOR (node:Bar) REQUIRE (node.name) IS UNIQUE;\n' +
      'CREATE CONSTRAINT uniqueBase FOR (node:Base) REQUIRE (node.id) IS UNIQUE;\n' +
      'CREATE CONSTRAINT uniqueBaseCode FOR (node:Base) REQUIRE (node.code, node.oid) IS UNIQUE;\n' +
      'CREATE CONSTRAINT `unique key` IF NOT EXISTS FOR (node:`Key Label`) REQUIRE (node.`k 1`, node.k2) IS NODE KEY;\n' +
      'CREATE CONSTRAINT UNIQUE_IMPORT_NAME FOR (node:`UNIQUE IMPORT LABEL`) REQUIRE (node.`UNIQUE IMPORT ID`) IS UNIQUE;\n' +
      ':commit\nCALL db.awaitIndexes(300);\n';
    const cleanUp =
      ':begin\nMATCH (n:`UNIQUE IMPORT LABEL`)  WITH n LIMIT 20000 REMOVE n:`UNIQUE IMPORT LABEL` REMOVE n.`UNIQUE IMPORT ID`;\n:commit\n' +
      ':begin\nDROP CONSTRAINT UNIQUE_IMPORT_NAME;\n:commit\n';
    const expectedNodes = [
      [['Bar', 'Base'], { name: 'barista', id: 'b1', age: 42 }],
      [['Base', 'Bar'], { name: 'barman', id: 'b2' }],
      [['Base'], { id: 'b3', code: 'x', oid: 7 }],
      [['Key Label', 'Bar'], { name: 'keyed', 'k 1': 1, k2: 'two' }],
      [['Foo'], { name: 'foosha' }],
    ];
    const expectedRelationships = [
      ['KNOWS', 0, 4, {}],
      ['KNOWS', 2, 0, { since: 2020 }],
      ['KNOWS', 1, 3, {}],
      ['KNOWS', 3, 1, { w: 1 }],
    ];

    /** The graph the records make, with the relationships' ends resolved through the node keys as a load resolves them. */
    function graphOf(records: ForeignRecord[]) {
      const nodes = records.filter((r) => r.kind === 'node');
      const index = new Map(nodes.map((n, i) => [n.key, i]));
      assert.equal(index.size, nodes.length, 'node keys are unique');
      const resolve = (key: string) => {
        const at = index.get(key);
        assert.notEqual(at, undefined, `the relationship end ${JSON.stringify(key)} is a node of the file`);
        return at;
      };
      return {
        nodes: nodes.map((n) => [n.labels, n.properties]),
        relationships: records.flatMap((r) => (r.kind === 'relationship' ? [[r.type, resolve(r.startKey), resolve(r.endKey), r.properties]] : [])),
      };
    }

    for (const params of [false, true]) {
      const rows = (list: string) => (params ? `:param rows => [${list}]\nUNWIND $rows AS row\n` : `UNWIND [${list}] AS row\n`);
      it(`reads the UNWIND batches (${params ? 'UNWIND_BATCH_PARAMS' : 'UNWIND_BATCH'}): relationships find the nodes by one constrained label`, async () => {
        const script =
          schema +
          ':begin\n' +
          rows('{name:"barista", id:"b1", properties:{age:42}}') +
          'CREATE (n:Bar{name: row.name, id: row.id}) SET n += row.properties SET n:Base;\n' +
          rows('{name:"barman", id:"b2", properties:{}}') +
          'CREATE (n:Base{name: row.name, id: row.id}) SET n += row.properties SET n:Bar;\n' +
          rows('{id:"b3", properties:{code:"x", oid:7}}') +
          'CREATE (n:Base{id: row.id}) SET n += row.properties;\n' +
          rows('{name:"keyed", `k 1`:1, k2:"two", properties:{}}') +
          'CREATE (n:`Key Label`{name: row.name, `k 1`: row.`k 1`, k2: row.k2}) SET n += row.properties SET n:Bar;\n' +
          rows('{_id:4, properties:{name:"foosha"}}') +
          'CREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties SET n:Foo;\n' +
          ':commit\n:begin\n' +
          rows('{start: {name:"barista"}, end: {_id:4}, properties:{}}') +
          'MATCH (start:Bar{name: row.start.name})\nMATCH (end:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row.end._id})\n' +
          'CREATE (start)-[r:KNOWS]->(end) SET r += row.properties;\n' +
          rows('{start: {id:"b3"}, end: {name:"barista"}, properties:{since:2020}}') +
          'MATCH (start:Base{id: row.start.id})\nMATCH (end:Bar{name: row.end.name})\nCREATE (start)-[r:KNOWS]->(end) SET r += row.properties;\n' +
          rows('{start: {id:"b2"}, end: {`k 1`:1, k2:"two"}, properties:{}}') +
          'MATCH (start:Base{id: row.start.id})\nMATCH (end:`Key Label`{`k 1`: row.end.`k 1`, k2: row.end.k2})\n' +
          'CREATE (start)-[r:KNOWS]->(end) SET r += row.properties;\n' +
          rows('{start: {k2:"two", `k 1`:1}, end: {id:"b2"}, properties:{w:1}}') +
          'MATCH (start:`Key Label`{k2: row.start.k2, `k 1`: row.start.`k 1`})\nMATCH (end:Base{id: row.end.id})\n' +
          'CREATE (start)-[r:KNOWS]->(end) SET r += row.properties;\n' +
          ':commit\n' +
          cleanUp;
        assert.deepEqual(graphOf(await recordsOf('CYPHER', script)), { nodes: expectedNodes, relationships: expectedRelationships });
      });
    }

    for (const [format, onCreate] of [['updateAll', ''], ['addStructure', 'ON CREATE ']] as const) {
      it(`reads the single statements of optimizations NONE (${format}): all constrained labels, in either order`, async () => {
        const script =
          schema +
          ':begin\n' +
          `MERGE (n:Bar:Base{name:"barista", id:"b1"}) ${onCreate}SET n.age=42;\n` +
          'MERGE (n:Base:Bar{name:"barman", id:"b2"});\n' +
          `MERGE (n:Base{id:"b3"}) ${onCreate}SET n.code="x", n.oid=7;\n` +
          'MERGE (n:Bar:`Key Label`{name:"keyed", `k 1`:1, k2:"two"});\n' +
          `MERGE (n:\`UNIQUE IMPORT LABEL\`{\`UNIQUE IMPORT ID\`:4}) ${onCreate}SET n.name="foosha", n:Foo;\n` +
          ':commit\n:begin\n' +
          'MATCH (n1:Base:Bar{name:"barista", id:"b1"}), (n2:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`:4}) MERGE (n1)-[r:KNOWS]->(n2);\n' +
          `MATCH (n1:Base{id:"b3"}), (n2:Bar:Base{id:"b1", name:"barista"}) MERGE (n1)-[r:KNOWS]->(n2) ${onCreate}SET r.since=2020;\n` +
          'MATCH (n1:Bar:Base{name:"barman", id:"b2"}), (n2:Bar:`Key Label`{name:"keyed", k2:"two", `k 1`:1}) CREATE (n1)-[r:KNOWS]->(n2);\n' +
          'MATCH (n1:`Key Label`:Bar{name:"keyed", `k 1`:1, k2:"two"}), (n2:Base:Bar{name:"barman", id:"b2"}) CREATE (n1)-[r:KNOWS {w:1}]->(n2);\n' +
          ':commit\n' +
          cleanUp;
        const nodes = [...expectedNodes];
        nodes[3] = [['Bar', 'Key Label'], { name: 'keyed', 'k 1': 1, k2: 'two' }];
        assert.deepEqual(graphOf(await recordsOf('CYPHER', script)), { nodes, relationships: expectedRelationships });
      });
    }

    it('holds at most 16 Mi characters of the constraints it reads the schema for, then refuses the file naming the line', async () => {
      const constraint = (i: number) => `CREATE CONSTRAINT c${i} FOR (node:L${'x'.repeat(6 * 1024 * 1024)}) REQUIRE (node.p${i}) IS UNIQUE;\n`;
      await assert.rejects(recordsOf('CYPHER', `:begin\n${constraint(1)}${constraint(2)}${constraint(3)}:commit\n`), /line 4: the schema's constraints name more than/);
    });

    it('holds at most 1000 constraints of the fewest properties of one label, then refuses the file naming the line', async () => {
      const constraints = (n: number) => Array.from({ length: n }, (_, i) => `CREATE CONSTRAINT c${i} FOR (node:L) REQUIRE (node.p${i}) IS UNIQUE;\n`).join('');
      assert.deepEqual(await recordsOf('CYPHER', `:begin\n${constraints(1000)}CREATE CONSTRAINT big FOR (node:L) REQUIRE (node.a, node.b) IS UNIQUE;\n:commit\n`), []);
      await assert.rejects(recordsOf('CYPHER', `:begin\n${constraints(1001)}:commit\n`), /line 1002: the schema declares more than 1000 constraints of 1 properties on one label/);
    });
  });

  // APOC leaves a Java identifier without $ unquoted (Util.quote), as Cypher reads it: marks, currency signs, connectors.
  describe('APOC Cypher scripts with bare names beyond letters and digits', () => {
    it('reads a Hindi label and key (vowel signs are combining marks), a Thai one and a key such as price€', async () => {
      const script = [
        ':begin',
        'UNWIND [{_id:0, properties:{नाम:"x", price€:1, ชื่อ:"ก"}}] AS row',
        'CREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties SET n:व्यक्ति;',
        ':commit',
        '',
      ].join('\n');
      const [read] = await recordsOf('CYPHER', script);
      assert.equal(read.kind, 'node');
      assert.deepEqual(read.labels, ['व्यक्ति']);
      assert.deepEqual(read.properties, { 'नाम': 'x', 'price€': 1, 'ชื่อ': 'ก' });
    });

    it('still ends a keyword where a name character follows it: CREATEé is no CREATE', async () => {
      await assert.rejects(recordsOf('CYPHER', 'CREATEé (:A:`UNIQUE IMPORT LABEL` {`UNIQUE IMPORT ID`:0});\n'), /invalid/i);
    });
  });

  // Read leniently, a 2D crs with three coordinates became a map Neo4j cannot store (refused only at export), and a
  // point with both kinds of coordinates lost one of them without a word.
  describe("CYPHER: point() literals Neo4j's point() refuses", () => {
    const script = (point: string) => `CREATE (:A:\`UNIQUE IMPORT LABEL\` {p:${point}, \`UNIQUE IMPORT ID\`:0});\n`;
    for (const [point, problem] of [
      ["point({x: 1.0, y: 2.0, z: 3.0, crs: 'cartesian'})", /crs cartesian takes 2 coordinates, and it has 3/],
      ['point({x: 1.0, y: 2.0, longitude: 5.0, latitude: 6.0, srid: 4326})', /not both/],
      ['point({x: 1.0, y: 2.0, srid: 9157})', /crs cartesian-3d takes 3 coordinates, and it has 2/],
      ["point({x: 1.0, y: 2.0, crs: 'wgs-84', srid: 7203})", /name different systems/],
      ['point({x: 1.0, y: 2.0, w: 3.0})', /the key "w"/],
    ] as const) {
      it(`refuses ${point}, saying why`, async () => {
        await assert.rejects(recordsOf('CYPHER', script(point)), problem);
      });
    }

    it('reads point({x, y, z, srid: 9157}) and the WGS-84 points APOC writes with x and y', async () => {
      const [read] = await recordsOf('CYPHER', script("[point({x: 1.0, y: 2.0, z: 3.0, srid: 9157}), point({x: 12.5, y: 55.1, crs: 'wgs-84'})]"));
      assert.deepEqual(read.properties.p, [{ crs: 'cartesian-3d', x: 1, y: 2, z: 3 }, { crs: 'wgs-84', longitude: 12.5, latitude: 55.1 }]);
    });
  });

  describe('CYPHER: statements of many strings', () => {
    // Each string looked for its closing quote and for a backslash from where it starts to wherever they were, as far as
    // the end of the statement: a statement of n strings took time in n², and parsing runs on the event loop (a restore,
    // the census of an upload, inspectFile). A 4 MiB list of 400,000 strings took 10 s; the ones here, minutes.
    const script = (value: string) =>
      ':begin\nCREATE (:`UNIQUE IMPORT LABEL`:A {`UNIQUE IMPORT ID`:0, s:' + value + '});\n:commit\n';

    it('reads a list of a million strings (a node property Neo4j stores as a string array)', async () => {
      const strings = Array.from({ length: 1_000_000 }, (_, i) => `s${i}`);
      const [read] = await recordsOf('CYPHER', script(`[${strings.map((s) => `"${s}"`).join(', ')}]`));
      assert.deepEqual(read.properties.s, strings);
    });

    it('reads a string of four million escapes', async () => {
      const [read] = await recordsOf('CYPHER', script(`"${'\\n'.repeat(4_000_000)}"`));
      assert.equal(read.properties.s, '\n'.repeat(4_000_000));
    });
  });
});
