// GraphML (issue 15): exportSnapshotAs(id, GRAPHML) writes what apoc.export.graphml.all writes with useTypes:true, and
// restoreFromFile, the tus upload (snapgraph restore-file), inspectFile and snapgraph inspect read it, also inside a
// .tar. Round trips compare the whole graph, every property type included; bad files are INVALID_BACKUP_FILE naming
// the element and its line, and nothing changes; values GraphML cannot carry refuse the export, naming them.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
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
  graphmlDocument,
  graphmlEdge,
  graphmlKey,
  graphmlNode,
  graphOf,
  itRefusesBadFiles,
  makeTempDir,
  runCli,
  serverEnv,
  serverPerSuite,
  sha256Of,
  STATS_FIELDS,
  takeSnapshot,
  tarWith,
} from '../support';

const FIXTURE = join(__dirname, '../../../test/fixtures/apoc-export-all.graphml');
const EXPORT_AS = `mutation ($id: ID!, $format: ExportFormat!) { exportSnapshotAs(id: $id, format: $format) { url fileName sizeBytes sha256 } }`;
const INSPECT_FILE = `mutation ($file: Upload!) { inspectFile(file: $file) { kind restorable contents { ${STATS_FIELDS} } problem } }`;

describe('GraphML files', function () {
  this.timeout(120_000);
  const suite = serverPerSuite();

  const { restored } = fileRestores(suite);

  async function inspect(file: Buffer) {
    const form = new FormData();
    form.append('operations', JSON.stringify({ query: INSPECT_FILE, variables: { file: null } }));
    form.append('map', JSON.stringify({ 0: ['variables.file'] }));
    form.append('0', new Blob([file]), 'file.graphml');
    const response = await fetch(suite.server.graphqlUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${suite.server.adminKey}`, 'apollo-require-preflight': 'true' },
      body: form,
    });
    const json = (await response.json()) as { data: { inspectFile: { kind: string; restorable: boolean; contents: any; problem: string | null } } };
    return json.data.inspectFile;
  }

  describe('exportSnapshotAs(GRAPHML) and back', () => {
    let sourceGraph: Graph;
    let snapshotId: string;
    let file: Buffer;
    let fileName: string;

    before(async () => {
      const source = await createInstance(suite.server, { name: 'Graph & ML' });
      const nodes = await createNodes(suite.server, source.id, [
        {
          labels: ['Person', 'Actor'],
          properties: { name: 'Keanu "K" <Reeves> & co', born: 1964, height: 1.86, active: true, nickname: '' },
        },
        {
          labels: ['Movie'],
          properties: { title: '  line\nbreak\ttab\r\ncr \\ back`tick \u00e9\u{1F600} ]]> ', released: '1999-03-31', rating: 8.7 },
        },
        { labels: [], properties: {} },
        {
          labels: ['Odd Label', 'with`backtick', 'and&amp'],
          properties: { 'odd key': ['a', 'b', 'c\u0001"'], counts: [1, 2, 3], ratios: [1, 2.5], flags: [true, false], empty: [] },
        },
        {
          labels: ['Place'],
          properties: { at: { crs: 'wgs-84', longitude: 12.5, latitude: 55.1 }, nested: { a: { b: [1, null, 'x'] }, n: null }, born: 1970 },
        },
        { labels: ['Big'], properties: { large: 9007199254740991, small: -9007199254740991, tiny: 1e-7, huge: 1.5e300, negative: -0.5, height: 2 } },
      ]);
      await createRelationships(suite.server, source.id, [
        { type: 'ACTED_IN', startNodeId: nodes[0].id, endNodeId: nodes[1].id, properties: { roles: ['Neo'], since: '2024-01-01T10:00:00Z', weight: 1 } },
        { type: 'odd type & <more>', startNodeId: nodes[2].id, endNodeId: nodes[3].id },
        { type: 'SELF', startNodeId: nodes[4].id, endNodeId: nodes[4].id, properties: { weight: 0.25, empty: [], labels: 'an edge may have it' } },
        // Keys that name Object.prototype's own: properties like any other.
        { type: 'PROTO', startNodeId: nodes[0].id, endNodeId: nodes[5].id, properties: JSON.parse('{"__proto__":"kept","constructor":"too"}') as Record<string, unknown> },
      ]);
      sourceGraph = await graphOf(suite.server, source.id);
      snapshotId = (await takeSnapshot(suite.server, source.id)).id;
      const link = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format: 'GRAPHML' })).exportSnapshotAs;
      const fetched = await download(link.url);
      assert.equal(fetched.status, 200);
      file = fetched.body;
      fileName = link.fileName;
      assert.equal(file.length, link.sizeBytes);
      assert.equal(sha256Of(file), link.sha256);
      // Deterministic: asking again gives the same file.
      const again = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format: 'GRAPHML' })).exportSnapshotAs;
      assert.equal(again.sha256, link.sha256);
    });

    it('downloads as .graphml and restores into another instance as the same graph, every property type included', async () => {
      assert.match(fileName, /^Graph-ML-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.graphml$/);
      assert.deepEqual(await restored(file, fileName), sourceGraph);
    });

    it('has the shape apoc.export.graphml.all writes with useTypes:true', () => {
      const text = file.toString('utf8');
      assert.ok(
        text.startsWith(
          '<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
            'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n' +
            '<key id="labels" for="node" attr.name="labels" attr.type="string"/>\n' +
            '<key id="name" for="node" attr.name="name" attr.type="string"/>\n' +
            '<key id="born" for="node" attr.name="born" attr.type="long"/>\n' +
            '<key id="height" for="node" attr.name="height" attr.type="double"/>\n' +
            '<key id="active" for="node" attr.name="active" attr.type="boolean"/>\n',
        ),
        text.slice(0, 800),
      );
      for (const key of [
        '<key id="counts" for="node" attr.name="counts" attr.type="string" attr.list="long"/>',
        '<key id="ratios" for="node" attr.name="ratios" attr.type="string" attr.list="double"/>',
        '<key id="flags" for="node" attr.name="flags" attr.type="string" attr.list="boolean"/>',
        '<key id="odd key" for="node" attr.name="odd key" attr.type="string" attr.list="string"/>',
        '<key id="empty" for="node" attr.name="empty" attr.type="string" attr.list="string"/>',
        '<key id="at" for="node" attr.name="at" attr.type="string" snapgraph.type="map"/>',
        '<key id="label" for="edge" attr.name="label" attr.type="string"/>\n<key id="roles" for="edge"',
        '<key id="weight" for="edge" attr.name="weight" attr.type="double"/>',
        '<graph id="G" edgedefault="directed">\n<node id="n1" labels=":Person:Actor"><data key="labels">:Person:Actor</data>' +
          '<data key="name">Keanu "K" &lt;Reeves&gt; &amp; co</data><data key="born">1964</data><data key="height">1.86</data>' +
          '<data key="active">true</data><data key="nickname"></data></node>\n',
        '<node id="n3"></node>\n',
        '<data key="ratios">[1.0,2.5]</data>',
        '<data key="height">2.0</data>',
        '<data key="tiny">1.0E-7</data><data key="huge">1.5E300</data>',
        '<edge id="e1" source="n1" target="n2" label="ACTED_IN"><data key="label">ACTED_IN</data><data key="roles">["Neo"]</data>',
        'label="odd type &amp; &lt;more&gt;"><data key="label">odd type &amp; &lt;more&gt;</data></edge>\n',
        '</graph>\n</graphml>\n',
      ]) {
        assert.ok(text.includes(key), `missing ${key}`);
      }
    });

    it('snapgraph restore-file uploads it (tus) and restores the same graph', async () => {
      const dir = makeTempDir();
      const path = join(dir, fileName);
      writeFileSync(path, file);
      const target = await createInstance(suite.server, { name: 'via tus' });
      const env = serverEnv({ SNAPGRAPH_URL: suite.server.url, SNAPGRAPH_API_KEY: suite.server.adminKey, XDG_STATE_HOME: dir });
      const run = await runCli(['restore-file', target.id, path, '--confirm', 'RESTORE'], env, 60_000);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /restore SUCCEEDED/);
      assert.deepEqual(await graphOf(suite.server, target.id), sourceGraph);
    });

    it('inspectFile and snapgraph inspect count it by label and type', async () => {
      const inspection = await inspect(file);
      assert.equal(inspection.kind, 'GRAPHML');
      assert.equal(inspection.restorable, true, inspection.problem ?? '');
      assert.equal(inspection.contents.nodeCount, 6);
      assert.equal(inspection.contents.relationshipCount, 4);
      assert.deepEqual(
        inspection.contents.labels.map((l: { name: string; count: number }) => [l.name, l.count]),
        [['Actor', 1], ['Big', 1], ['Movie', 1], ['Odd Label', 1], ['Person', 1], ['Place', 1], ['and&amp', 1], ['with`backtick', 1]],
      );
      const dir = makeTempDir();
      const path = join(dir, 'export.tar');
      writeFileSync(path, await tarWith('neo4j/export.graphml', file));
      const cli = await runCli(['inspect', path, '--json'], serverEnv({}));
      assert.equal(cli.code, 0, cli.stderr);
      const parsed = JSON.parse(cli.stdout);
      assert.equal(parsed.kind, 'GRAPHML');
      assert.equal(parsed.details.tarEntry, 'neo4j/export.graphml');
      assert.deepEqual(parsed.contents.relationshipTypes, [
        { name: 'ACTED_IN', count: 1 },
        { name: 'PROTO', count: 1 },
        { name: 'SELF', count: 1 },
        { name: 'odd type & <more>', count: 1 },
      ]);
    });
  });

  describe('files written the way APOC writes them', () => {
    it('reads apoc.export.graphml.all output: typed keys, labels, lists, temporal and point values as strings', async () => {
      const graph = await restored(readFileSync(FIXTURE), 'all.graphml');
      assert.deepEqual(
        graph.nodes.map((n) => [n.id, n.labels, n.properties]),
        [
          ['1', ['Foo', 'Foo0', 'Foo2'], { place: '{"crs":"wgs-84-3d","latitude":12.78,"longitude":56.7,"height":100.0}', name: 'foo', born: '2018-10-10' }],
          ['2', ['Bar'], { age: 42, name: 'bar', place: '{"crs":"wgs-84","latitude":12.78,"longitude":56.7,"height":null}' }],
          ['3', ['Bar'], { age: 12, values: [1, 2, 3] }],
          [
            '4',
            ['Person', 'User'],
            { name: 'Tom & "Jerry" <3', seen: '2018-10-30T12:50:35.556+01:00', score: 1e-7, active: true, tags: ['a', 'b c'], weights: [1.5, 2] },
          ],
          ['5', [], {}],
        ],
      );
      assert.deepEqual(
        graph.relationships.map((r) => [r.type, r.startNodeId, r.endNodeId, r.properties]),
        [
          ['KNOWS', '1', '2', { since: 1993, weight: 0.5, bffSince: 'P5M1DT12H' }],
          ['LIKES', '4', '4', {}],
          ['KNOWS', '3', '5', {}],
        ],
      );
    });

    it('finds it inside a .tar, and inspectFile counts it', async () => {
      const tar = await tarWith('export/all.graphml', readFileSync(FIXTURE));
      const graph = await restored(tar, 'export.tar');
      assert.equal(graph.nodes.length, 5);
      assert.equal(graph.relationships.length, 3);
      const inspection = await inspect(readFileSync(FIXTURE));
      assert.equal(inspection.kind, 'GRAPHML');
      assert.deepEqual(inspection.contents.labels, [
        { name: 'Bar', count: 2 },
        { name: 'Foo', count: 1 },
        { name: 'Foo0', count: 1 },
        { name: 'Foo2', count: 1 },
        { name: 'Person', count: 1 },
        { name: 'User', count: 1 },
      ]);
      assert.deepEqual(inspection.contents.relationshipTypes, [
        { name: 'KNOWS', count: 2 },
        { name: 'LIKES', count: 1 },
      ]);
    });

    it('reads GraphML from other tools: undeclared keys as strings, defaults, for="all", edges without a label, comments, CDATA, yEd graphics', async () => {
      const text = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!-- Created by igraph -->',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
        '  <key id="d0" for="node" attr.name="username" attr.type="string"/>',
        '  <key id="d1" for="edge" attr.name="weight" attr.type="double"><default>1.5</default></key>',
        '  <key id="d2" attr.name="rank" attr.type="int"/>',
        '  <key id="d3" for="node" yfiles.type="nodegraphics"/>',
        '  <graph id="G" edgedefault="undirected">',
        '    <desc>a <b>described</b> graph</desc>',
        '    <node id="a"><data key="d0"><![CDATA[Dodo <von> den Bergen]]></data><data key="d2">7</data><data key="kids">[a,b,c]</data>' +
          '<data key="d3"><y:ShapeNode xmlns:y="http://www.yworks.com/xml/graphml"><y:Fill color="#FFCC00"/></y:ShapeNode></data></node>',
        '    <node id="b"/>',
        '    <edge source="a" target="b"><data key="d2">1</data></edge>',
        '    <edge source="b" target="a"><data key="d1">2</data></edge>',
        '  </graph>',
        '</graphml>',
      ].join('\r\n');
      const graph = await restored(Buffer.from(text), 'igraph.graphml');
      assert.deepEqual(
        graph.nodes.map((n) => [n.labels, n.properties]),
        [
          [[], { username: 'Dodo <von> den Bergen', rank: 7, kids: '[a,b,c]' }],
          [[], {}],
        ],
      );
      assert.deepEqual(
        graph.relationships.map((r) => [r.type, r.startNodeId, r.endNodeId, r.properties]),
        [
          ['RELATED', '1', '2', { weight: 1.5, rank: 1 }],
          ['RELATED', '2', '1', { weight: 2 }],
        ],
      );
    });
  });

  describe('bad files: INVALID_BACKUP_FILE naming the element and line, nothing changed', () => {
    const keys = [graphmlKey('labels', 'node', 'string'), graphmlKey('age', 'node', 'long'), graphmlKey('tags', 'node', 'string', 'string'), graphmlKey('label', 'edge', 'string')];
    const doc = (...body: string[]) => graphmlDocument(keys, body);
    const named = ([what, text, message]: [string, string, RegExp]): BadFileCase => [what, 'bad.graphml', text, message];
    // Line 1 is the XML declaration, 2 <graphml>, 3–6 the keys, 7 <graph>: the body starts on line 8.
    const atUpload: Array<[string, string, RegExp]> = [
      ['malformed XML', doc(graphmlNode('n0', ['A']), '<node id="n1"><data key="age">1</node>'), /line 9: <\/node> where <\/data> was expected \(the file is not well-formed XML\)/],
      ['a file cut short', doc(graphmlNode('n0', ['A'])).slice(0, -20), /the file ends inside <graph>/],
      ['an unknown entity', doc(graphmlNode('n0', ['A'], { tags: '&nbsp;' })), /line 8: unknown entity &nbsp;/],
      ['an unknown attr.type', graphmlDocument([graphmlKey('born', 'node', 'date')], [graphmlNode('n0', ['A'])]), /the <key> element on line 3: attr.type="date" is not a GraphML type \(boolean, int, long, float, double, string\)/],
      ['a long that is not a number', doc(graphmlNode('n0', ['A']), graphmlNode('n1', ['A'], { age: 'old' })), /the <data> element on line 9: "old" is not an integer \(the key has attr.type="long"\)/],
      ['an integer Snapgraph cannot hold', doc(graphmlNode('n0', ['A'], { age: '9223372036854775807' })), /the <data> element on line 8: "9223372036854775807" is beyond ±9007199254740991/],
      ['a list that is not JSON', doc(graphmlNode('n0', ['A'], { tags: '[a,b]' })), /the <data> element on line 8: "\[a,b\]" is not a JSON list \(the key has attr.list="string"\)/],
      ['a nested graph', doc('<node id="n0"><graph id="inner"></graph></node>'), /the <graph> element on line 8: a graph inside a node or edge/],
      ['a hyperedge', doc(graphmlNode('n0', ['A']), '<hyperedge><endpoint node="n0"/></hyperedge>'), /the <hyperedge> element on line 9: hyperedges/],
      ['a node without an id', doc('<node labels=":A"></node>'), /the <node> element on line 8: the node has no id attribute/],
      ['a boolean that is not one', graphmlDocument([graphmlKey('ok', 'node', 'boolean')], [graphmlNode('n0', [], { ok: 'yes' })]), /the <data> element on line 5: "yes" is not a boolean \(true or false\)/],
      ['a document type with entities', `<?xml version="1.0"?>\n<!DOCTYPE graphml [<!ENTITY a "aaaa">]>\n<graphml><graph></graph></graphml>`, /line 2: the document type declaration has an internal subset/],
    ];
    const byTheLoad: Array<[string, string, RegExp]> = [
      [
        'an edge naming a missing node',
        doc(graphmlNode('n0', ['A']), graphmlNode('n1', ['A']), graphmlEdge('e0', 'n0', 'n1', 'R'), graphmlEdge('e1', 'n1', 'n9', 'R')),
        /the <edge> element on line 11: the relationship's end node "n9" is not a node of the file/,
      ],
      ['a repeated node id', doc(graphmlNode('n0', ['A']), graphmlNode('n1', ['A']), graphmlNode('n0', ['B'])), /the <node> element on line 10: node id "n0" is already used by the node at the <node> element on line 8/],
      ['an edge before its node', doc(graphmlNode('n0', ['A']), graphmlEdge('e0', 'n0', 'n1', 'R'), graphmlNode('n1', ['A'])), /the <edge> element on line 9: the relationship's end node "n1"/],
    ];
    itRefusesBadFiles(suite, { atUpload: atUpload.map(named), byTheLoad: byTheLoad.map(named) });

    it('inspectFile says why such a file cannot be restored', async () => {
      const inspection = await inspect(Buffer.from(doc(graphmlNode('n0', ['A'], { age: 'x' }))));
      assert.equal(inspection.kind, 'GRAPHML');
      assert.equal(inspection.restorable, false);
      assert.equal(inspection.contents, null);
      assert.match(inspection.problem ?? '', /the <data> element on line 8: "x" is not an integer/);
    });
  });

  describe('values GraphML cannot carry refuse the export, naming them', () => {
    const cases: Array<[string, Array<{ labels: string[]; properties: Record<string, unknown> }>, RegExp]> = [
      ['null', [{ labels: ['A'], properties: { gone: null } }], /node \d+'s property "gone" is null, which GraphML cannot carry/],
      ['a list holding null', [{ labels: ['A'], properties: { xs: [1, null] } }], /property "xs" is a list holding null/],
      ['a list of mixed types', [{ labels: ['A'], properties: { xs: [1, 'a'] } }], /property "xs" is a list of mixed types/],
      ['a list of lists', [{ labels: ['A'], properties: { xs: [[1], [2]] } }], /property "xs" is a list holding lists/],
      ['a label holding ":"', [{ labels: ['a:b'], properties: {} }], /node \d+ has the label "a:b"; GraphML labels are written as ":A:B"/],
      ['a node property named labels', [{ labels: ['A'], properties: { labels: 'x' } }], /node \d+'s property "labels" has the name GraphML uses for the labels of a node/],
      [
        'a property whose type differs between nodes',
        [
          { labels: ['A'], properties: { v: 1 } },
          { labels: ['A'], properties: { v: 'one' } },
        ],
        /node \d+'s property "v" is a string where another node's "v" is a long; a GraphML key has one type/,
      ],
      ['a control character', [{ labels: ['A'], properties: { s: 'bell\u0007' } }], /property "s" holds a character XML 1.0 cannot carry/],
      // apoc.import.graphml skips text that is only whitespace (XmlGraphMLReader.peek) and stores "" in its place.
      ['a string of only whitespace', [{ labels: ['A'], properties: { s: ' \t\n' } }], /property "s" is only whitespace, which apoc\.import\.graphml reads as the empty string/],
    ];
    for (const [what, nodes, message] of cases) {
      it(what, async () => {
        const instance = await createInstance(suite.server, { name: 'odd' });
        await createNodes(suite.server, instance.id, nodes);
        const snapshot = await takeSnapshot(suite.server, instance.id);
        const refused = expectCode(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'GRAPHML' }), 'BAD_USER_INPUT');
        assert.match(refused.message, /^this snapshot cannot be exported as GRAPHML: /);
        assert.match(refused.message, message);
        assert.match(refused.message, /Export it as ARCHIVE \(or APOC_JSON, which carries every value\) instead/);
      });
    }

    it('a relationship property named label', async () => {
      const instance = await createInstance(suite.server, { name: 'odd edge' });
      const [node] = await createNodes(suite.server, instance.id, [{ labels: ['A'], properties: {} }]);
      await createRelationships(suite.server, instance.id, [{ type: 'R', startNodeId: node.id, endNodeId: node.id, properties: { label: 'x' } }]);
      const snapshot = await takeSnapshot(suite.server, instance.id);
      const refused = expectCode(await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'GRAPHML' }), 'BAD_USER_INPUT');
      assert.match(refused.message, /relationship \d+'s property "label" has the name GraphML uses for the type of an edge/);
    });
  });
});
