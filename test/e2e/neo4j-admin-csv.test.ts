// neo4j-admin import CSV bundles (issue 15): exportSnapshotAs(NEO4J_ADMIN_CSV) writes a .tar that restoreFromFile,
// `snapgraph restore-file` and `snapgraph inspect` read back; a bundle written the way the neo4j-admin documentation
// shows (ID spaces, typed arrays, relationship files anywhere in the tar) restores; bad bundles are
// INVALID_BACKUP_FILE naming the file and line, and nothing changes.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createInstance,
  createNodes,
  createRelationships,
  download,
  expectData,
  gql,
  type Graph,
  graphOf,
  makeTempDir,
  runCli,
  serverEnv,
  serverPerSuite,
  settledOperation,
  sha256Of,
  takeSnapshot,
  uploadFile,
} from '../support';
import { DOCS_EXAMPLE } from '../support/admin-csv-files';
import { filesOfTar, keptInstance, tarOfFiles } from '../support/graph-files';

/** A ustar header block of `size` bytes: a regular file ('0'), an extended header ('x'), or a GNU long name ('L'). */
function ustarHeader(name: string, size: number, type: '0' | 'x' | 'L'): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  block.write('0000644\0', 100);
  block.write('0000000\0', 108);
  block.write('0000000\0', 116);
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  block.write('14761035120\0', 136);
  block.write(type, 156);
  block.write('ustar\0', 257);
  block.write('00', 263);
  block.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return block;
}

const EXPORT_AS = `mutation ($id: ID!, $format: ExportFormat!) { exportSnapshotAs(id: $id, format: $format) { url fileName sizeBytes sha256 } }`;

describe('neo4j-admin CSV bundles', function () {
  this.timeout(120_000);
  const suite = serverPerSuite();

  async function restore(instanceId: string, file: Buffer) {
    const operation = expectData(await uploadFile(suite.server, { instanceId, file, fileName: 'bundle.tar' })).restoreFromFile;
    return settledOperation(suite.server, operation.id);
  }

  async function restored(file: Buffer): Promise<Graph> {
    const target = await createInstance(suite.server, { name: 'target' });
    const operation = await restore(target.id, file);
    assert.equal(operation.status, 'SUCCEEDED', JSON.stringify(operation.error));
    return graphOf(suite.server, target.id);
  }

  async function exported(snapshotId: string) {
    const link = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format: 'NEO4J_ADMIN_CSV' })).exportSnapshotAs;
    const { status, body } = await download(link.url);
    assert.equal(status, 200);
    assert.equal(body.length, link.sizeBytes);
    assert.equal(sha256Of(body), link.sha256);
    return { link, body };
  }

  async function inspected(file: Buffer) {
    const path = join(makeTempDir(), 'bundle.tar');
    writeFileSync(path, file);
    const run = await runCli(['inspect', path, '--json'], serverEnv({}));
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout);
  }

  describe('exportSnapshotAs(NEO4J_ADMIN_CSV) and back', () => {
    let sourceGraph: Graph;
    let snapshotId: string;

    before(async () => {
      // Each label set and each type listed together, so the bundle's file order is the id order and the restored
      // graph (numbered from 1 in file order) has the same ids.
      const source = await createInstance(suite.server, { name: 'Movies & more' });
      const nodes = await createNodes(suite.server, source.id, [
        { labels: ['Person', 'Actor'], properties: { name: 'Keanu "K", Reeves', born: 1964, height: 1.86, active: true, nick: '' } },
        { labels: ['Person', 'Actor'], properties: { name: 'line\nbreak\ttab \\ ; é😀 \u0001', born: 1.5e300, roles: ['Neo', 'John Wick'] } },
        { labels: ['Movie'], properties: { title: 'The Matrix', released: '1999-03-31', rating: 8.7, scores: [1, 2.5], counts: [1, 2, 3], flags: [true, false] } },
        { labels: [], properties: {} },
        { labels: ['Odd Label', 'with`backtick,comma'], properties: { 'odd key, "quoted"': 'x', tiny: 1e-7, large: 9007199254740991, small: -9007199254740991 } },
        { labels: ['Place'], properties: { at: { crs: 'wgs-84', longitude: 12.5, latitude: 55.1 }, corner: { crs: 'cartesian-3d', x: 1, y: 2.5, z: -3 }, path: [{ crs: 'cartesian', x: 0, y: 0 }, { crs: 'cartesian', x: 1, y: 1 }] } },
        { labels: ['Place'], properties: { at: 'somewhere else' } },
      ]);
      await createRelationships(suite.server, source.id, [
        { type: 'ACTED_IN', startNodeId: nodes[0].id, endNodeId: nodes[2].id, properties: { roles: ['Neo'], since: '2024-01-01T10:00:00Z' } },
        { type: 'ACTED_IN', startNodeId: nodes[1].id, endNodeId: nodes[2].id, properties: { weight: 0.25 } },
        // Keys that name Object.prototype's own: properties like any other.
        { type: 'odd type', startNodeId: nodes[3].id, endNodeId: nodes[4].id, properties: JSON.parse('{"__proto__":"kept","constructor":"too"}') as Record<string, unknown> },
        { type: 'SELF', startNodeId: nodes[5].id, endNodeId: nodes[5].id, properties: { weight: 2 } },
      ]);
      sourceGraph = await graphOf(suite.server, source.id);
      snapshotId = (await takeSnapshot(suite.server, source.id)).id;
    });

    it('downloads as a deterministic .tar that restores into another instance as the same graph, every property type kept', async () => {
      const { link, body } = await exported(snapshotId);
      assert.match(link.fileName, /^Movies-more-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.tar$/);
      const again = expectData(await gql(suite.server, EXPORT_AS, { id: snapshotId, format: 'NEO4J_ADMIN_CSV' })).exportSnapshotAs;
      assert.equal(again.sha256, link.sha256);
      assert.deepEqual(await restored(body), sourceGraph);
    });

    it('holds one file per label set and type with typed headers, and import.sh with the neo4j-admin command line', async () => {
      const files = await filesOfTar((await exported(snapshotId)).body);
      assert.deepEqual(
        files.map((file) => file.name),
        [
          'nodes-001-Person-Actor.csv',
          'nodes-002-Movie.csv',
          'nodes-003.csv',
          'nodes-004-Odd_Label-with_backtick_comma.csv',
          'nodes-005-Place.csv',
          'nodes-006-Place.csv',
          'relationships-001-ACTED_IN.csv',
          'relationships-002-odd_type.csv',
          'relationships-003-SELF.csv',
          'import.sh',
        ],
      );
      assert.equal(files[0].text.split('\n')[0], ':ID,:LABEL,name:string,born:double,height:double,active:boolean,nick:string,roles:string[]');
      assert.equal(files[1].text.split('\n')[0], ':ID,:LABEL,title:string,released:string,rating:double,scores:double[],counts:long[],flags:boolean[]');
      assert.equal(files[4].text.split('\n')[0], ':ID,:LABEL,at:point,corner:point,path:point[]');
      assert.equal(files[5].text.split('\n')[0], ':ID,:LABEL,at:string');
      assert.match(files[9].text, /^neo4j-admin database import full "\$\{1:-neo4j\}" \\$/m);
      assert.match(files[9].text, /--nodes=nodes-001-Person-Actor\.csv \\\n {2}--nodes=nodes-002-Movie\.csv/);
      assert.match(files[9].text, /--relationships=relationships-003-SELF\.csv\n$/);
    });

    it('snapgraph inspect counts what the bundle holds', async () => {
      const inspection = await inspected((await exported(snapshotId)).body);
      assert.equal(inspection.kind, 'NEO4J_ADMIN_CSV');
      assert.equal(inspection.restorable, true);
      assert.equal(inspection.problem, null);
      assert.equal(inspection.contents.nodeCount, 7);
      assert.equal(inspection.contents.relationshipCount, 4);
      assert.deepEqual(inspection.contents.relationshipTypes, [
        { name: 'ACTED_IN', count: 2 },
        { name: 'SELF', count: 1 },
        { name: 'odd type', count: 1 },
      ]);
      assert.deepEqual(inspection.contents.labels.find((label: { name: string }) => label.name === 'Place'), { name: 'Place', count: 2 });
    });

    it('an empty snapshot exports as a valid bundle that restores as an empty graph', async () => {
      const empty = await createInstance(suite.server, { name: 'empty' });
      const snapshot = await takeSnapshot(suite.server, empty.id);
      const { body } = await exported(snapshot.id);
      assert.deepEqual((await filesOfTar(body)).map((file) => file.name), ['nodes.csv', 'import.sh']);
      assert.deepEqual(await restored(body), { nodes: [], relationships: [] });
      const inspection = await inspected(body);
      assert.equal(inspection.kind, 'NEO4J_ADMIN_CSV');
      assert.equal(inspection.contents.nodeCount, 0);
    });

    it('a value CSV cannot carry refuses the export, naming the node and property', async () => {
      const other = await createInstance(suite.server, { name: 'maps' });
      const [created] = await createNodes(suite.server, other.id, [{ labels: ['A'], properties: { address: { city: 'Oslo' } } }]);
      const snapshot = await takeSnapshot(suite.server, other.id);
      const result = await gql(suite.server, EXPORT_AS, { id: snapshot.id, format: 'NEO4J_ADMIN_CSV' });
      assert.equal(result.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
      assert.match(result.errors?.[0]?.message ?? '', new RegExp(`cannot be exported as NEO4J_ADMIN_CSV: node ${created.id}'s property "address" is a map`));
    });
  });

  describe('bundles written the way the neo4j-admin documentation shows', () => {
    it('restores ID spaces, typed columns and arrays, with the relationship file first in the tar', async () => {
      const tar = await tarOfFiles({ 'import/roles.csv': DOCS_EXAMPLE['roles.csv'], 'import/movies.csv': DOCS_EXAMPLE['movies.csv'], 'import/actors.csv': DOCS_EXAMPLE['actors.csv'] });
      const graph = await restored(tar);
      assert.deepEqual(
        graph.nodes.map((n) => [n.id, n.labels, n.properties]),
        [
          ['1', ['Movie'], { movieId: 'tt0133093', title: 'The Matrix', year: 1999, genres: ['Action', 'Sci-Fi'] }],
          ['2', ['Movie', 'Sequel'], { movieId: 'tt0234215', title: 'The Matrix Reloaded', year: 2003, genres: ['Action'] }],
          ['3', ['Movie', 'Sequel'], { movieId: 'tt0242653', title: 'The Matrix Revolutions', year: 2003 }],
          ['4', ['Actor'], { personId: 'keanu', name: 'Keanu Reeves', born: '1964-09-02', ratings: [9.5, 8] }],
          ['5', ['Actor'], { personId: 'laurence', name: 'Laurence Fishburne' }],
          ['6', ['Actor'], { personId: 'carrieanne', name: 'Carrie-Anne Moss', born: '1967-08-21', ratings: [7.25] }],
        ],
      );
      assert.deepEqual(
        graph.relationships.map((r) => [r.type, r.startNodeId, r.endNodeId, r.properties]),
        [
          ['ACTED_IN', '4', '1', { role: 'Neo' }],
          ['ACTED_IN', '4', '2', { role: 'Neo' }],
          ['ACTED_IN', '5', '1', { role: 'Morpheus' }],
          ['ACTED_IN', '6', '3', { role: 'Trinity' }],
        ],
      );
      const inspection = await inspected(tar);
      assert.deepEqual([inspection.kind, inspection.contents.nodeCount, inspection.contents.relationshipCount], ['NEO4J_ADMIN_CSV', 6, 4]);
    });

    it('restores a bundle whose files each come after an extended (pax) header, as GNU tar --format=posix and macOS tar write them', async () => {
      // GNU tar --format=posix names each file's extended header ./PaxHeaders/<file>; macOS tar (bsdtar) writes one,
      // PaxHeader/<file>, for every file with extended attributes: both names end in .csv, and neither is a CSV file.
      const blocks: Buffer[] = [];
      const add = (name: string, type: '0' | 'x', content: string) => {
        const body = Buffer.from(content);
        blocks.push(ustarHeader(name, body.length, type), body, Buffer.alloc((512 - (body.length % 512)) % 512));
      };
      for (const [name, content] of Object.entries(DOCS_EXAMPLE)) {
        const record = ' mtime=1764990000.5\n';
        add(`./PaxHeaders/${name}`, 'x', `${record.length + 2}${record}`);
        add(name, '0', content);
      }
      const tar = Buffer.concat([...blocks, Buffer.alloc(1024)]);
      assert.deepEqual((await filesOfTar(tar)).map((file) => file.name), Object.keys(DOCS_EXAMPLE));

      const graph = await restored(tar);
      assert.equal(graph.nodes.length, 6);
      assert.equal(graph.relationships.length, 4);
      const inspection = await inspected(tar);
      assert.deepEqual([inspection.kind, inspection.contents?.nodeCount, inspection.contents?.relationshipCount], ['NEO4J_ADMIN_CSV', 6, 4]);
    });

    it('restores a bundle whose file names are longer than a tar header holds, as GNU tar writes them', async () => {
      // GNU tar (its default format) puts a path over 100 bytes in a ././@LongLink entry of its own, and the first
      // 100 bytes of it in the file's header: that cut name ends in no .csv.
      const directory = `exports/${'production-cluster-'.repeat(4)}2026-12-01`;
      const blocks: Buffer[] = [];
      const add = (name: string, type: '0' | 'L', content: string) => {
        const body = Buffer.from(content);
        blocks.push(ustarHeader(name, body.length, type), body, Buffer.alloc((512 - (body.length % 512)) % 512));
      };
      for (const [name, content] of Object.entries(DOCS_EXAMPLE)) {
        const path = `${directory}/${name}`;
        add('././@LongLink', 'L', `${path}\0`);
        add(path.slice(0, 100), '0', content);
      }
      const tar = Buffer.concat([...blocks, Buffer.alloc(1024)]);
      assert.deepEqual((await filesOfTar(tar)).map((file) => file.name), Object.keys(DOCS_EXAMPLE).map((name) => `${directory}/${name}`));

      const graph = await restored(tar);
      assert.equal(graph.nodes.length, 6);
      assert.equal(graph.relationships.length, 4);
      const inspection = await inspected(tar);
      assert.deepEqual([inspection.kind, inspection.contents?.nodeCount, inspection.contents?.relationshipCount], ['NEO4J_ADMIN_CSV', 6, 4]);
    });

    it('snapgraph restore-file uploads a bundle (tus) and restores it', async () => {
      const path = join(makeTempDir(), 'bundle.tar');
      writeFileSync(path, await tarOfFiles(DOCS_EXAMPLE));
      const target = await createInstance(suite.server, { name: 'cli target' });
      const env = serverEnv({ SNAPGRAPH_URL: suite.server.url, SNAPGRAPH_API_KEY: suite.server.adminKey, XDG_STATE_HOME: makeTempDir() });
      const run = await runCli(['restore-file', target.id, path, '--confirm', 'RESTORE'], env, 60_000);
      assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
      assert.match(run.stdout, /restore SUCCEEDED/);
      const graph = await graphOf(suite.server, target.id);
      assert.equal(graph.nodes.length, 6);
      assert.equal(graph.relationships.length, 4);
    });
  });

  describe('bad bundles: INVALID_BACKUP_FILE naming the file and line, nothing changed', () => {
    const target = keptInstance(suite);

    const people = 'id:ID(P),name,:LABEL\n1,Ann,P\n2,Bob,P\n';
    const refusedAtUpload: Array<[string, Record<string, string>, RegExp]> = [
      ['a bad typed value', { 'p.csv': ':ID,age:int,:LABEL\n1,40,P\n2,forty,P\n' }, /at p\.csv line 3: age:int: "forty" is not an integer/],
      ['a bad point', { 'p.csv': people, 'k.csv': ':START_ID(P),:END_ID(P),:TYPE,at:point\n1,2,K,"{x:1}"\n' }, /at k\.csv line 2: at:point: .*needs x and y/],
      ['a quote left open', { 'p.csv': ':ID,name,:LABEL\n1,"Ann,P\n' }, /at p\.csv line 2: a quoted field is never closed/],
      ['a relationship file without :TYPE', { 'p.csv': people, 'k.csv': ':START_ID(P),:END_ID(P)\n1,2\n' }, /at k\.csv line 1: .*no :TYPE column/],
      ['a header in a separate file', { 'h.csv': 'id:ID,name,:LABEL\n', 'd.csv': '1,Ann,P\n' }, /at d\.csv line 1: its first line is not a neo4j-admin header/],
    ];
    for (const [what, files, message] of refusedAtUpload) {
      it(what, async () => {
        const result = await uploadFile(suite.server, { instanceId: target.id, file: await tarOfFiles(files), fileName: 'bad.tar' });
        assert.equal(result.errors?.[0]?.extensions?.code, 'INVALID_BACKUP_FILE', JSON.stringify(result));
        assert.match(result.errors?.[0]?.message ?? '', message);
        await target.assertUnchanged();
      });
    }

    const refusedByTheLoad: Array<[string, Record<string, string>, RegExp]> = [
      ['a relationship naming a missing node', { 'k.csv': ':START_ID(P),:END_ID(P),:TYPE\n1,2,K\n2,9,K\n', 'p.csv': people }, /at k\.csv line 3: the relationship's end node "9 in ID space P" is not a node of the file/],
      ['an id used twice in an ID space', { 'p.csv': people + '1,Again,P\n' }, /at p\.csv line 4: node id "1 in ID space P" is already used by the node at p\.csv line 2/],
    ];
    for (const [what, files, message] of refusedByTheLoad) {
      it(what, async () => {
        const operation = await restore(target.id, await tarOfFiles(files));
        assert.equal(operation.status, 'FAILED');
        assert.equal(operation.error?.code, 'INVALID_BACKUP_FILE');
        assert.match(operation.error?.message ?? '', message);
        await target.assertUnchanged();
      });
    }

    it('the same id in two ID spaces is two nodes', async () => {
      const graph = await restored(await tarOfFiles({ 'a.csv': ':ID(A),:LABEL\n1,A\n', 'b.csv': ':ID(B),:LABEL\n1,B\n', 'r.csv': ':START_ID(A),:END_ID(B),:TYPE\n1,1,R\n' }));
      assert.deepEqual(graph.relationships.map((r) => [r.startNodeId, r.endNodeId]), [['1', '2']]);
    });
  });
});
