// Snapshots the first release took (its whole archive in one encrypted blob, no restore point) after an upgrade:
// what a snapshot of this release offers, they offer too.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { Keyring, loadMasterKey } from '../../src/crypto';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { archiveOf, createInstance, createNodes, createRelationships, download, expectData, gql, serverPerSuite, takeSnapshot } from '../support';

const EXPORT_AS = `mutation ($id: ID!, $format: ExportFormat!) { exportSnapshotAs(id: $id, format: $format) { url fileName sizeBytes sha256 } }`;

describe("a previous release's snapshots", () => {
  const suite = serverPerSuite();

  it('export in the other formats (exportSnapshotAs) the same file as the restore point they came from', async function () {
    this.timeout(90_000);
    const server = suite.server;
    const instance = await createInstance(server, { name: 'first-release' });
    await createNodes(server, instance.id, [{ labels: ['Person'], properties: { name: 'Ada' } }, { labels: ['Person'], properties: { name: 'Alan' } }]);
    await createRelationships(server, instance.id, [{ type: 'KNOWS', startNodeId: '1', endNodeId: '2', properties: { since: 1936 } }]);
    const snapshot = await takeSnapshot(server, instance.id);
    const archive = await archiveOf(server, snapshot.id);
    const exportAs = async (format: string) => {
      const link = expectData(await gql(server, EXPORT_AS, { id: snapshot.id, format })).exportSnapshotAs;
      const { status, body } = await download(link.url);
      assert.equal(status, 200);
      assert.equal(createHash('sha256').update(body).digest('hex'), link.sha256);
      return body;
    };
    const { viewer } = expectData(await gql(server, `{ viewer { tenantId } }`));
    const formats = ['APOC_JSON', 'GRAPHML'];
    const expected = new Map<string, Buffer>();
    for (const format of formats) expected.set(format, await exportAs(format));

    // The snapshot as the first release stored it: its archive in one blob bound to no name, no restore point.
    await server.stop({ keepDataDir: true });
    const blobKey = `tenants/${viewer.tenantId}/snapshots/${snapshot.id}.blob`;
    const { key } = await loadMasterKey({ dataDir: server.dataDir });
    const blobs = new EncryptedBlobStore(new FilesystemBlobStore(join(server.dataDir, 'blobs')), new Keyring(key), { bindNames: false });
    await blobs.write(blobKey, Readable.from([archive]));
    const metadata = new Database(join(server.dataDir, 'metadata.sqlite'));
    try {
      const changed = metadata
        .prepare(`UPDATE snapshots SET "blobKey" = ?, "restorePointId" = NULL, "addedBytes" = NULL WHERE id = ?`)
        .run(blobKey, snapshot.id);
      assert.equal(changed.changes, 1);
      metadata.prepare(`DELETE FROM export_tokens`).run();
    } finally {
      metadata.close();
    }
    await server.restart();

    assert.deepEqual(await archiveOf(server, snapshot.id), archive);
    for (const format of formats) assert.deepEqual((await exportAs(format)).toString(), expected.get(format)!.toString(), format);
  });
});
