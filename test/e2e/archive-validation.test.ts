// Crafted archives whose checksums are all right (issue 10, point 4): every field is validated before anything
// changes, a refusal names the record, capacity is measured on what is really loaded, and what a restore accepts
// it restores exactly. Through the GraphQL multipart upload, the tus endpoint and a previous release's snapshot blob.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { Keyring, loadMasterKey } from '../../src/crypto';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import {
  archiveOf,
  craftArchive,
  createInstance,
  createNodes,
  createRelationships,
  expectCode,
  expectData,
  gql,
  type Graph,
  graphOf,
  graphOfArchive,
  instanceState,
  operationCount,
  refusalCode,
  RESTORE_SNAPSHOT,
  serverPerSuite,
  settledOperation,
  statsOf,
  storeGenerations,
  takeSnapshot,
  tusUpload,
  uploadBlobs,
  uploadFile,
} from '../support';

const node = (id: unknown, labels: unknown = ['Person'], properties: unknown = {}) => JSON.stringify(['N', id, labels, properties]);
const relationship = (id: unknown, type: unknown, start: unknown, end: unknown, properties: unknown = {}) =>
  JSON.stringify(['R', id, type, start, end, properties]);

describe('archive validation', () => {
  // 1 "GB" of storage = 100 kB: a 1 GB instance (2 GB of storage) has room for 200 kB.
  const suite = serverPerSuite({ config: { bytesPerStorageGB: 100_000 } });
  let target: { id: string };
  let targetGraph: Graph;

  before(async () => {
    target = await createInstance(suite.server, { name: 'target', tier: 'PROFESSIONAL', memoryGB: 16 });
    const [a, b] = await createNodes(suite.server, target.id, [{ labels: ['Keep'], properties: { v: 1 } }, { labels: [] }]);
    await createRelationships(suite.server, target.id, [{ type: 'STAYS', startNodeId: a.id, endNodeId: b.id }]);
    targetGraph = await graphOf(suite.server, target.id);
  });

  /** The instance has its data and statistics, is AVAILABLE and idle, and kept no upload or shadow store. */
  async function assertUnchanged(instanceId = target.id, graph = targetGraph): Promise<void> {
    assert.deepEqual(await graphOf(suite.server, instanceId), graph);
    assert.deepEqual(await instanceState(suite.server, instanceId), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
    assert.deepEqual(uploadBlobs(suite.server.dataDir), [], 'an upload was left behind');
    assert.equal(storeGenerations(suite.server.dataDir, instanceId).length, 1, 'a shadow store was left behind');
  }

  /** Uploads through GraphQL multipart and expects INVALID_BACKUP_FILE at once, with a message matching `message`. */
  async function expectRefusedUpload(file: Buffer, message: RegExp): Promise<void> {
    const operations = await operationCount(suite.server, target.id);
    const error = expectCode(await uploadFile(suite.server, { instanceId: target.id, file }), 'INVALID_BACKUP_FILE');
    assert.match(error.message, message);
    assert.equal(await operationCount(suite.server, target.id), operations, 'an operation was queued');
    await assertUnchanged();
  }

  describe('ids are canonical decimal integers from 1 to 2^53 - 1', () => {
    const badIds = ['01', '1e3', ' 7', '1.0', '0', '-5', String(2 ** 53 + 1)];
    for (const id of badIds) {
      it(`refuses node id ${JSON.stringify(id)} over GraphQL multipart and tus, naming the record, and changes nothing`, async () => {
        const file = craftArchive([node('1'), node(id)]);
        const message = new RegExp(`node record 2: id ${escape(JSON.stringify(id))} is not a canonical decimal integer`);
        await expectRefusedUpload(file, message);

        const tus = await tusUpload(suite.server, { instanceId: target.id, file });
        assert.equal(tus.status, 422, tus.body);
        assert.equal(refusalCode(tus.body), 'INVALID_BACKUP_FILE');
        assert.match(JSON.parse(tus.body).errors[0].message, message);
        await assertUnchanged();
      });
    }

    it('refuses the same ids in a relationship id, start and end, and an id that is a JSON number', async () => {
      await expectRefusedUpload(craftArchive([node('1'), relationship('01', 'T', '1', '1')]), /relationship record 1: id "01" is not a canonical/);
      await expectRefusedUpload(craftArchive([node('1'), relationship('1', 'T', '0', '1')]), /relationship record 1: startNodeId "0" is not a canonical/);
      await expectRefusedUpload(
        craftArchive([node('1'), relationship('1', 'T', '1', '9007199254740993')]),
        /relationship record 1: endNodeId "9007199254740993" is not a canonical/,
      );
      await expectRefusedUpload(craftArchive([node(7)]), /node record 1: id 7 is not a string/);
    });
  });

  describe('labels and types are non-empty strings, without duplicates in one record', () => {
    const cases: [string, string[], RegExp][] = [
      ['a null label', [node('1', [null])], /node record 1: label null is not a string/],
      ['a duplicated label', [node('1'), node('2', ['A', 'B', 'A'])], /node record 2: label "A" appears twice/],
      ['an empty label', [node('1', [''])], /node record 1: label is empty/],
      ['labels that are not a list', [node('1', 'Person')], /node record 1: labels "Person" is not a list/],
      ['a lone surrogate in a label', [node('1', ['\ud800'])], /node record 1: label .* lone UTF-16 surrogate/],
      ['a label longer than the API allows', [node('1', ['x'.repeat(201)])], /node record 1: label is longer than 200 characters/],
      ['a null type', [node('1'), relationship('1', null, '1', '1')], /relationship record 1: type null is not a string/],
      ['an empty type', [node('1'), relationship('1', '', '1', '1')], /relationship record 1: type is empty/],
    ];
    for (const [what, lines, message] of cases) {
      it(`refuses ${what}, naming the record, and changes nothing`, async () => {
        await expectRefusedUpload(craftArchive(lines), message);
      });
    }
  });

  describe('properties are JSON objects of archive values; tuples have exactly their shape', () => {
    const cases: [string, string[], RegExp][] = [
      ['properties that are a list', [node('1', [], [])], /node record 1: properties \[\] is not a JSON object/],
      ['properties that are null', [node('1'), relationship('1', 'T', '1', '1', null)], /relationship record 1: properties null is not a JSON object/],
      ['properties that are a string', [node('1', [], 'x')], /node record 1: properties "x" is not a JSON object/],
      ['a number beyond a double', ['["N","1",[],{"big":1e400}]'], /node record 1: properties.big is a number too large/],
      ['-0', ['["N","1",[],{"list":[1,-0]}]'], /node record 1: properties.list\[1\] is -0/],
      ['properties nested deeper than the API allows', [`["N","1",[],{"deep":${'['.repeat(100)}${']'.repeat(100)}}]`], /node record 1: properties nest deeper than 100 levels/],
      ['a node tuple with a fifth element', ['["N","1",[],{},null]'], /node record 1: it has 5 elements/],
      ['a relationship tuple without properties', [node('1'), '["R","1","T","1","1"]'], /relationship record 1: it has 5 elements/],
      ['a line that is not JSON', [node('1'), '["N","2",[],{}'], /node record 2 is not valid JSON/],
      ['two tuples on one line', [`${node('1')},${node('2')}`], /node record 1 is not valid JSON/],
      ['JSON5 that SQLite would read', ['["N","1",[],{a:1}]'], /node record 1 is not valid JSON/],
    ];
    for (const [what, lines, message] of cases) {
      it(`refuses ${what}, naming the record, and changes nothing`, async () => {
        await expectRefusedUpload(craftArchive(lines), message);
      });
    }
  });

  it('the API refuses a lone surrogate in a label too, so that no instance holds what no archive may carry', async () => {
    const refused = await gql(suite.server, `mutation ($id: ID!, $labels: [String!]!) { createNodes(instanceId: $id, nodes: [{ labels: $labels }]) { id } }`, {
      id: target.id,
      labels: ['\ud800'],
    });
    assert.match(expectCode(refused, 'BAD_USER_INPUT').message, /lone UTF-16 surrogate/);
    await assertUnchanged();
  });

  describe('a header must agree with the body', () => {
    it('refuses label and type counts that differ from the records', async () => {
      const lines = [node('1', ['A']), node('2', ['A']), relationship('1', 'T', '1', '2')];
      await expectRefusedUpload(craftArchive(lines, { stats: { labels: [{ name: 'A', count: 1 }] } }), /header announces 1 of the label "A", but node record 2 is one more/);
      await expectRefusedUpload(craftArchive(lines, { stats: { labels: [{ name: 'A', count: 3 }] } }), /header announces 3 of the label "A", but it holds 2/);
      await expectRefusedUpload(craftArchive(lines, { stats: { relationshipTypes: [] } }), /relationship record 1 has the relationship type "T", which its header does not list/);
      await expectRefusedUpload(craftArchive(lines, { stats: { nodeCount: 3 } }), /header announces 3 nodes and 1 relationships, but it holds 2 nodes/);
    });
  });

  describe('checks that need the whole graph: the restore refuses, and the instance keeps its data', () => {
    async function expectFailedRestore(file: Buffer, code: string, message: RegExp, instanceId = target.id, graph = targetGraph) {
      const operations = await operationCount(suite.server, instanceId);
      const operation = expectData(await uploadFile(suite.server, { instanceId, file })).restoreFromFile;
      const finished = await settledOperation(suite.server, operation.id);
      assert.equal(finished.status, 'FAILED');
      assert.equal(finished.error?.code, code, finished.error?.message);
      assert.match(finished.error!.message, message);
      assert.equal(await operationCount(suite.server, instanceId), operations + 1);
      await assertUnchanged(instanceId, graph);
    }

    it('INVALID_BACKUP_FILE for a node id used twice, naming the second record', async () => {
      await expectFailedRestore(craftArchive([node('1'), node('2'), node('1')]), 'INVALID_BACKUP_FILE', /node record 3: id "1" is already used by an earlier node record/);
    });

    it('INVALID_BACKUP_FILE for a relationship id used twice, across frames', async () => {
      const lines = [node('1'), ...Array.from({ length: 150 }, (_, i) => relationship(String(i + 1), 'T', '1', '1')), relationship('7', 'T', '1', '1')];
      await expectFailedRestore(craftArchive(lines, { linesPerFrame: 40 }), 'INVALID_BACKUP_FILE', /relationship record 151: id "7" is already used/);
    });

    it('INVALID_BACKUP_FILE for a relationship whose end is not in the archive', async () => {
      await expectFailedRestore(
        craftArchive([node('1'), node('2'), relationship('5', 'T', '1', '2'), relationship('6', 'T', '2', '99')]),
        'INVALID_BACKUP_FILE',
        /relationship record with id "6": endNodeId "99" is not a node of the archive/,
      );
    });

    it('CAPACITY_EXCEEDED for a header claiming a store size of 0 over a body too large for the target, measured while loading', async () => {
      const small = await createInstance(suite.server, { name: 'small', tier: 'PROFESSIONAL', memoryGB: 1 });
      await createNodes(suite.server, small.id, [{ labels: ['Small'] }]);
      const graph = await graphOf(suite.server, small.id);
      const lines = Array.from({ length: 600 }, (_, i) => node(String(i + 1), ['Big'], { text: `${i}`.padEnd(1000, 'x') }));
      const file = craftArchive(lines, { stats: { storeSizeBytes: 0 } });
      assert.ok(file.length < 200_000, 'compressed, the file itself is small');
      await expectFailedRestore(file, 'CAPACITY_EXCEEDED', /the instance has room for 200000/, small.id, graph);
      assert.ok((await statsOf(suite.server, small.id)).storeSizeBytes <= 200_000);
    });
  });

  it("restores a small body under a header claiming a huge store: the header's claim decides nothing", async () => {
    const small = await createInstance(suite.server, { name: 'claims', tier: 'PROFESSIONAL', memoryGB: 1 });
    const file = craftArchive([node('3', ['Fits']), node('5')], { stats: { storeSizeBytes: 10 ** 12 } });
    const operation = expectData(await uploadFile(suite.server, { instanceId: small.id, file })).restoreFromFile;
    const finished = await settledOperation(suite.server, operation.id);
    assert.equal(finished.status, 'SUCCEEDED', finished.error?.message);
    assert.deepEqual(await graphOf(suite.server, small.id), graphOfArchive(file));
  });

  it("a previous release's snapshot whose blob is a crafted archive (checksums right): the restore FAILS naming the record", async function () {
    this.timeout(90_000);
    const server = suite.server;
    const instance = await createInstance(server, { name: 'tampered' });
    await createNodes(server, instance.id, [{ labels: ['Real'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const graph = await graphOf(server, instance.id);
    const { viewer } = expectData(await gql(server, `{ viewer { tenantId } }`));

    // Snapshots of the previous release are one encrypted archive each (blobKey set, no restore point): turn this one
    // into such a snapshot, its archive crafted, while the server is stopped.
    await server.stop({ keepDataDir: true });
    const crafted = craftArchive([node('01', ['Real'])]);
    const blobKey = `tenants/${viewer.tenantId}/snapshots/${snapshot.id}.blob`;
    const { key } = await loadMasterKey({ dataDir: server.dataDir });
    const blobs = new EncryptedBlobStore(new FilesystemBlobStore(join(server.dataDir, 'blobs')), new Keyring(key));
    await blobs.write(blobKey, Readable.from([crafted]));
    const metadata = new Database(join(server.dataDir, 'metadata.sqlite'));
    try {
      const changed = metadata
        .prepare(`UPDATE snapshots SET "blobKey" = ?, "restorePointId" = NULL, "sizeBytes" = ?, sha256 = ?, "addedBytes" = NULL WHERE id = ?`)
        .run(blobKey, crafted.length, createHash('sha256').update(crafted).digest('hex'), snapshot.id);
      assert.equal(changed.changes, 1);
    } finally {
      metadata.close();
    }
    await server.restart();

    const operation = expectData(await gql(server, RESTORE_SNAPSHOT, { snapshotId: snapshot.id, confirm: 'RESTORE' })).restoreSnapshot;
    const finished = await settledOperation(server, operation.id);
    assert.equal(finished.status, 'FAILED');
    assert.equal(finished.error?.code, 'INVALID_BACKUP_FILE');
    assert.match(finished.error!.message, /node record 1: id "01" is not a canonical decimal integer/);
    await assertUnchanged(instance.id, graph);
  });

  it('restores a crafted but valid archive exactly: the API lists its records, and a snapshot exports the same records', async () => {
    const server = suite.server;
    const lines = [
      node('9007199254740991', ['Person', 'Émigré 東京 🎉'], {
        name: 'Zoë', escapes: 'line\nbreak "q" \\ \u0000 \u2028', lone: '\ud800', max: 1.7976931348623157e308, tiny: 5e-324,
        safe: Number.MAX_SAFE_INTEGER, neg: -17.5, yes: true, none: null, empty: '', list: [1, 'two', [3, [4]], { five: 5 }, []],
        nested: { a: { b: { c: {} } } }, 'key with spaces & ü': 'v',
      }),
      node('42', []),
      '["N","7",["a\\u0000b"],{"written":1.0,"exponent":1E3,"escaped":"\\u00e9\\/"}]',
      node('1', ['Person']),
      relationship('900', 'KNOWS ✓', '42', '9007199254740991', { since: 2020 }),
      relationship('3', 'SELF', '7', '7'),
      relationship('9007199254740991', 'KNOWS ✓', '1', '42', { w: [0.5] }),
    ];
    const file = craftArchive(lines, { linesPerFrame: 3 });
    const copy = await createInstance(server, { name: 'crafted', tier: 'PROFESSIONAL', memoryGB: 16 });
    await createNodes(server, copy.id, [{ labels: ['Replaced'] }]);

    const operation = expectData(await uploadFile(server, { instanceId: copy.id, file })).restoreFromFile;
    const finished = await settledOperation(server, operation.id);
    assert.equal(finished.status, 'SUCCEEDED', finished.error?.message);
    const expected = graphOfArchive(file);
    assert.deepEqual(await graphOf(server, copy.id), expected);

    const snapshot = await takeSnapshot(server, copy.id);
    assert.deepEqual(graphOfArchive(await archiveOf(server, snapshot.id)), expected);
    const sorted = (list: { name: string; count: number }[]) => [...list].sort((a, b) => (a.name < b.name ? -1 : 1));
    assert.deepEqual(sorted(snapshot.contents!.labels), sorted([{ name: 'Person', count: 2 }, { name: 'Émigré 東京 🎉', count: 1 }, { name: 'a\u0000b', count: 1 }]));
    // New ids go on after the archive's highest, which here is the last safe integer: none is left.
    const refused = await gql(server, `mutation ($id: ID!) { createNodes(instanceId: $id, nodes: [{ labels: ["After"] }]) { id } }`, { id: copy.id });
    assert.match(expectCode(refused, 'CAPACITY_EXCEEDED').message, /no ids left/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
