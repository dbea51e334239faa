// A deployment of the first release (its two migrations, snapshots as one archive blob each, stores without a change
// log) booted on this one, on SQLite and on PostgreSQL: every row is migrated, and what the first release promised
// keeps working (DESIGN.md section 12). The old state is built as that release left it: its schema (the newer
// migrations undone), rows inserted as it wrote them, its archive blobs bound to no name, its store files.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { Keyring, loadMasterKey } from '../../src/crypto';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import {
  archiveOf,
  craftArchive,
  createTestDatabase,
  describePostgres,
  download,
  expectData,
  gql,
  graphOf,
  graphOfArchive,
  makeTempDir,
  randomToken,
  RESTORE_SNAPSHOT,
  settledOperation,
  startServer,
  type TestDatabase,
} from '../support';
import { EARLIER_RELEASE_STORE_TABLES } from '../support/earlier-release-store';

describe('an upgrade from the first release, SQLite metadata', function () {
  this.timeout(120_000);
  upgradeSuite(() => undefined);
});

describePostgres('an upgrade from the first release, PostgreSQL metadata', (postgres) => {
  upgradeSuite(postgres.adminUrl);
});

const FIRST_RELEASE_MIGRATIONS = 2;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const OPERATIONS = `query ($id: ID!) { operations(instanceId: $id) { edges { node { id kind status attempt error { code } } } } }`;
const SNAPSHOTS = `query ($id: ID!) { snapshots(instanceId: $id) { edges { node { id status sizeBytes sha256 description profile error } } } }`;

function upgradeSuite(adminUrl: () => string | undefined) {
  it('migrates every row, and the old snapshots, links, keys and unfinished operations keep working', async function () {
    this.timeout(120_000);
    const dataDir = makeTempDir();
    const url = adminUrl();
    const database: TestDatabase | undefined = url ? await createTestDatabase(url) : undefined;
    const now = Date.now();
    const [tenantId, keyId, live, target, copy, snapshotId, failedId, running, queued, done] = Array.from({ length: 10 }, () => randomUUID());
    const adminKey = randomToken('sg_');
    const exportToken = randomToken('link_');
    const hash = (text: string) => sha256(Buffer.from(text, 'utf8'));
    // The graph of `live`, in its store and in its snapshot's archive.
    const lines = [
      JSON.stringify(['N', '1', ['Person'], { name: 'Ada' }]),
      JSON.stringify(['N', '2', ['Person'], { name: 'Alan' }]),
      JSON.stringify(['R', '1', 'KNOWS', '1', '2', { since: 1936 }]),
    ];
    const archive = craftArchive(lines);
    const blobKey = `tenants/${tenantId}/snapshots/${snapshotId}.blob`;
    const stats = graphOfArchive(archive);
    const contents = JSON.stringify({ nodeCount: 2, relationshipCount: 1, labels: [{ name: 'Person', count: 2 }], relationshipTypes: [{ name: 'KNOWS', count: 1 }], storeSizeBytes: 4096 });

    // The first release's schema and rows.
    const db = createMetadataDataSource({ dataDir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    while (Number((await db.query(`SELECT count(*) AS n FROM "migrations"`))[0].n) > FIRST_RELEASE_MIGRATIONS) {
      await db.undoLastMigration({ transaction: 'each' });
    }
    const insert = (table: string, row: Record<string, unknown>) =>
      db.query(
        `INSERT INTO "${table}" (${Object.keys(row).map((column) => `"${column}"`).join(', ')}) VALUES (${Object.keys(row)
          .map((_, i) => (database ? `$${i + 1}` : '?'))
          .join(', ')})`,
        Object.values(row),
      );
    await insert('tenants', { id: tenantId, name: 'default', createdAt: now - 5000 });
    await insert('api_keys', { id: keyId, tenantId, name: 'bootstrap', role: 'ADMIN', secretHash: hash(adminKey), createdAt: now - 5000, revokedAt: null });
    const instance = (id: string, name: string, status = 'RUNNING', availability = 'AVAILABLE') => ({
      id, tenantId, name, tier: 'PROFESSIONAL', memoryGB: 1, storageGB: 8, engineVersion: 'V5', status, availability,
      sourceSnapshotId: null, storeGeneration: 1, createdAt: now - 4000, lastScheduledAt: null,
    });
    await insert('instances', instance(live, 'live'));
    // A restore the first release was running when it stopped (READ_ONLY while it prepared).
    await insert('instances', instance(target, 'target', 'RESTORING', 'READ_ONLY'));
    await insert('instances', instance(copy, 'copy'));
    const snapshot = (id: string, fields: Record<string, unknown>) => ({
      id, tenantId, instanceId: live, profile: 'ON_DEMAND', status: 'COMPLETED', createdAt: now - 3000, completedAt: now - 2900,
      expiresAt: now + 86_400_000, description: null, sizeBytes: null, sha256: null, engineVersion: 'V5', contents: null, error: null,
      blobKey: null, ...fields,
    });
    await insert('snapshots', snapshot(snapshotId, { description: 'before the upgrade', sizeBytes: archive.length, sha256: sha256(archive), contents, blobKey }));
    await insert('snapshots', snapshot(failedId, { status: 'FAILED', createdAt: now - 2000, completedAt: null, error: 'the disk was full' }));
    const operation = (id: string, instanceId: string, kind: string, status: string, fields: Record<string, unknown> = {}) => ({
      id, tenantId, instanceId, kind, status, phase: status === 'QUEUED' ? 'queued' : 'done', bytesDone: 0, bytesTotal: null,
      snapshotId: null, params: null, errorCode: null, errorMessage: null, createdAt: now - 1000, startedAt: null, finishedAt: null,
      leaseOwner: null, leaseExpiresAt: null, ...fields,
    });
    await insert('operations', operation(done, live, 'SNAPSHOT', 'SUCCEEDED', { snapshotId, startedAt: now - 3000, finishedAt: now - 2900 }));
    await insert('operations', operation(randomUUID(), live, 'SNAPSHOT', 'FAILED', { snapshotId: failedId, startedAt: now - 2000, finishedAt: now - 1900, errorCode: 'STORAGE_FULL', errorMessage: 'the disk was full' }));
    await insert('operations', operation(running, target, 'RESTORE', 'RUNNING', {
      snapshotId, phase: 'loading', startedAt: now - 900, params: JSON.stringify({ shadowGeneration: 2 }), leaseOwner: 'first-release', leaseExpiresAt: now - 100,
    }));
    await insert('operations', operation(queued, copy, 'RESTORE', 'QUEUED', { snapshotId }));
    await insert('export_tokens', { id: randomUUID(), tenantId, snapshotId, tokenHash: hash(exportToken), fileName: 'live.backup', createdAt: now, expiresAt: now + 3_600_000 });
    await db.destroy();

    // Its archive blob (encrypted, bound to no name) and its stores (no change log).
    const { key } = await loadMasterKey({ dataDir });
    const blobs = new EncryptedBlobStore(new FilesystemBlobStore(join(dataDir, 'blobs')), new Keyring(key), { bindNames: false });
    await blobs.write(blobKey, Readable.from([archive]));
    for (const id of [live, target, copy]) {
      mkdirSync(join(dataDir, 'instances', id), { recursive: true });
      const store = new Database(join(dataDir, 'instances', id, 'graph-1.sqlite'));
      store.exec(EARLIER_RELEASE_STORE_TABLES);
      store.exec(`
        INSERT INTO meta VALUES ('next_node_id', ${id === live ? 3 : 2}), ('next_relationship_id', ${id === live ? 2 : 1});`);
      if (id === live) {
        store.exec(`
          INSERT INTO nodes VALUES (1, '["Person"]', '{"name":"Ada"}'), (2, '["Person"]', '{"name":"Alan"}');
          INSERT INTO node_labels VALUES ('Person', 1), ('Person', 2);
          INSERT INTO relationships VALUES (1, 'KNOWS', 1, 2, '{"since":1936}');
          INSERT INTO counts VALUES ('nodes', '', 2), ('relationships', '', 1), ('label', 'Person', 2), ('type', 'KNOWS', 1);`);
      } else {
        store.exec(`
          INSERT INTO nodes VALUES (1, '["Other"]', '{}');
          INSERT INTO node_labels VALUES ('Other', 1);
          INSERT INTO counts VALUES ('nodes', '', 1), ('relationships', '', 0), ('label', 'Other', 1);`);
      }
      store.close();
    }

    const server = await startServer({ dataDir, bootstrapToken: adminKey, env: { DATABASE_URL: database?.url } });
    try {
      // The unfinished operations: the restore the first release was running is run again, the queued one runs.
      for (const id of [running, queued]) {
        const settled = await settledOperation(server, id);
        assert.equal(settled.status, 'SUCCEEDED', `${id}: ${settled.error?.message}`);
      }
      for (const id of [target, copy]) assert.deepEqual(await graphOf(server, id), stats);
      assert.deepEqual(await graphOf(server, live), stats);
      const operations = expectData(await gql(server, OPERATIONS, { id: live })).operations.edges.map(
        (edge: { node: { status: string; attempt: number; error: { code: string } | null } }) => [edge.node.status, edge.node.attempt, edge.node.error?.code ?? null],
      );
      assert.deepEqual(operations.sort(), [['FAILED', 1, 'STORAGE_FULL'], ['SUCCEEDED', 1, null]]);

      // The snapshots, listed as they were; the archive exports with the bytes and sha256 it had, also through the link
      // made before the upgrade.
      const listed = expectData(await gql(server, SNAPSHOTS, { id: live })).snapshots.edges.map((edge: { node: unknown }) => edge.node);
      assert.deepEqual(
        listed.sort((a: { id: string }, b: { id: string }) => (a.id === snapshotId ? -1 : b.id === snapshotId ? 1 : 0)),
        [
          { id: snapshotId, status: 'COMPLETED', sizeBytes: archive.length, sha256: sha256(archive), description: 'before the upgrade', profile: 'ON_DEMAND', error: null },
          { id: failedId, status: 'FAILED', sizeBytes: null, sha256: null, description: null, profile: 'ON_DEMAND', error: 'the disk was full' },
        ],
      );
      assert.deepEqual(await archiveOf(server, snapshotId), archive);
      const early = await download(`${server.url}/exports/${exportToken}`);
      assert.equal(early.status, 200);
      assert.deepEqual(early.body, archive);

      // Restored again, and deleted with its blob.
      const restore = expectData(await gql(server, RESTORE_SNAPSHOT, { snapshotId, confirm: 'RESTORE', instanceId: copy })).restoreSnapshot;
      assert.equal((await settledOperation(server, restore.id)).status, 'SUCCEEDED');
      assert.deepEqual(await graphOf(server, copy), stats);
      assert.equal(expectData(await gql(server, `mutation ($id: ID!) { deleteSnapshot(id: $id) }`, { id: snapshotId })).deleteSnapshot, true);
      assert.ok(!existsSync(join(dataDir, 'blobs', blobKey)), 'the archive blob is removed with its snapshot');
    } finally {
      await server.stop();
      await database?.drop();
    }
  });
}
