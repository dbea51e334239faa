// `snapgraph rotate-master-key`'s work (storage/master-key-rotation.ts): everything the master key seals, moved from a
// previous key to the current one, on both metadata databases.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { TenantChunkKeys } from '../../src/chunks';
import { chunkKeysBlobKey } from '../../src/chunks/tenant-chunk-keys';
import { Keyring, MasterKey, parseEnvelopeHeader } from '../../src/crypto';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { ExportDestinationEntity } from '../../src/entities/export-destination.entity';
import { RetiredMasterKeyEntity } from '../../src/entities/retired-master-key.entity';
import { resealCredentials, sealCredentials } from '../../src/services/export-destination.service';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { rotateMasterKey } from '../../src/storage/master-key-rotation';
import { assertMasterKeyOpensStoredData, claimCurrentMasterKey, recordRetiredMasterKeys } from '../../src/storage/stored-master-keys';
import { createMigratedTestDatabase, describePostgres, TestDatabase } from '../support/postgres';

describe('master key rotation, on SQLite metadata', () => {
  rotationSuite(() => undefined);
});

describePostgres('master key rotation, on PostgreSQL metadata', (postgres) => {
  rotationSuite(postgres.adminUrl);
});

function rotationSuite(adminUrl: () => string | undefined) {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  let blobs: FilesystemBlobStore;
  const oldKey = MasterKey.generate();
  const newKey = MasterKey.generate();
  const onlyOld = new Keyring(oldKey);
  const rotating = new Keyring(newKey, [oldKey]);
  const onlyNew = new Keyring(newKey);
  const tenantId = randomUUID();
  const manifest = `tenants/${tenantId}/manifests/${randomUUID()}.json`;
  const segment = `tenants/${tenantId}/log/${randomUUID()}/1/0000000000000001-0000000000000000.seg`;
  const pack = `tenants/${tenantId}/chunks/packs/${randomUUID()}`;
  const credentials = { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret-of-the-bucket' };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-rotation-'));
    const url = adminUrl();
    database = url ? await createMigratedTestDatabase(url) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    blobs = new FilesystemBlobStore(join(dir, 'blobs'));
    await blobs.init();
  });

  afterEach(async () => {
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const plain = async (keyring: Keyring, key: string) => {
    const parts: Buffer[] = [];
    for await (const part of await new EncryptedBlobStore(blobs, keyring).read(key)) parts.push(part as Buffer);
    return Buffer.concat(parts).toString('utf8');
  };
  const headerKeyId = (key: string) => parseEnvelopeHeader(readFileSync(join(dir, 'blobs', key))).keyId;

  /** What the old key sealed: chunk keys, a destination's credentials, a named blob, an unnamed one, and a pack. */
  async function storeUnderOldKey() {
    const chunkKeys = await new TenantChunkKeys(blobs, db, onlyOld).get(tenantId);
    // Several chunks of 4 bytes: the rewritten blob keeps every one after the header.
    await new EncryptedBlobStore(blobs, onlyOld, { chunkSize: 4 }).write(manifest, Readable.from([Buffer.from('the manifest, in chunks')]));
    await new EncryptedBlobStore(blobs, onlyOld, { bindNames: false }).write(segment, Readable.from([Buffer.from('log entries')]));
    await blobs.write(pack, Readable.from([Buffer.from('SGPACK01 not an envelope')]));
    const destination = { id: randomUUID(), tenantId };
    await db.getRepository(ExportDestinationEntity).insert({
      ...destination,
      name: 'bucket',
      url: 's3://bucket/prefix',
      endpoint: null,
      region: null,
      autoExportInstanceIds: [],
      ...sealCredentials(destination, credentials, onlyOld),
      createdAt: Date.now(),
      lastExportAt: null,
      lastError: null,
    });
    return { chunkKeys, destinationId: destination.id };
  }

  it('seals everything under the previous key again under the current one, which alone then reads it all', async () => {
    const { chunkKeys, destinationId } = await storeUnderOldKey();
    await recordRetiredMasterKeys(db, rotating);
    const lines: string[] = [];
    const counts = await rotateMasterKey(db, blobs, rotating, { progress: (line) => lines.push(line) });
    assert.equal(counts.chunkKeys, 1);
    assert.equal(counts.destinations, 1);
    assert.equal(counts.blobs, 2);
    assert.equal(counts.blobsChecked, 4); // and the chunk keys' copy
    assert.deepEqual([...counts.underUnconfiguredKeys], []);
    assert.deepEqual(counts.failed, []);
    assert.ok(lines.some((line) => /blobs: 4 looked at, 2 rewrapped/.test(line)), lines.join('\n'));

    assert.equal(headerKeyId(manifest), newKey.keyId);
    assert.equal(headerKeyId(segment), newKey.keyId);
    assert.equal(await plain(onlyNew, manifest), 'the manifest, in chunks');
    assert.equal(await plain(onlyNew, segment), 'log entries');
    assert.equal(readFileSync(join(dir, 'blobs', pack), 'utf8'), 'SGPACK01 not an envelope');
    assert.deepEqual(await new TenantChunkKeys(blobs, db, onlyNew).get(tenantId), chunkKeys);
    assert.equal(JSON.parse(readFileSync(join(dir, 'blobs', chunkKeysBlobKey(tenantId)), 'utf8')).masterKeyId, newKey.keyId);
    const destination = await db.getRepository(ExportDestinationEntity).findOneByOrFail({ id: destinationId });
    assert.equal(destination.masterKeyId, newKey.keyId);
    assert.ok(resealCredentials(destination, onlyNew), 'the credentials do not open under the new key');
    assert.equal(await db.getRepository(RetiredMasterKeyEntity).count(), 0, 'the retired key was not forgotten');
    await assertMasterKeyOpensStoredData(db, blobs, onlyNew, 'SNAPGRAPH_MASTER_KEY');

    // Run again (as after a crash): nothing left to do.
    const again = await rotateMasterKey(db, blobs, rotating);
    assert.deepEqual([again.chunkKeys, again.destinations, again.blobs, again.failed.length], [0, 0, 0, 0]);
  });

  // The command run on its own (without the boots with both keys that record the old one as retired), stopped after
  // the chunk keys: servers booted again with the old key alone served, and failed every read of the chunk keys.
  it('refuses, once a rotation has begun, a boot with the previous key alone, though the rotation stopped half-way', async () => {
    const { chunkKeys } = await storeUnderOldKey();
    await claimCurrentMasterKey(db, onlyOld, 'SNAPGRAPH_MASTER_KEY');
    const list = blobs.list.bind(blobs);
    blobs.list = () => {
      throw new Error('the rotation was killed here');
    };
    try {
      await assert.rejects(rotateMasterKey(db, blobs, rotating), /killed here/);
    } finally {
      blobs.list = list;
    }
    assert.deepEqual(await new TenantChunkKeys(blobs, db, onlyNew).get(tenantId), chunkKeys, 'the chunk keys were sealed again');
    await assert.rejects(claimCurrentMasterKey(db, onlyOld, 'SNAPGRAPH_MASTER_KEY'), new RegExp(`write under master key ${newKey.keyId}`));
    await assert.rejects(assertMasterKeyOpensStoredData(db, blobs, onlyNew, 'SNAPGRAPH_MASTER_KEY'), new RegExp(`master key ${oldKey.keyId} was named`));
    // Run again with both keys, it ends, and the new key alone boots.
    assert.deepEqual((await rotateMasterKey(db, blobs, rotating)).failed, []);
    await assertMasterKeyOpensStoredData(db, blobs, onlyNew, 'SNAPGRAPH_MASTER_KEY');
    await claimCurrentMasterKey(db, onlyNew, 'SNAPGRAPH_MASTER_KEY');
  });

  it('counts what is under a key that is not configured, leaves it as it is, and keeps the retired keys until it is gone', async () => {
    await storeUnderOldKey();
    await recordRetiredMasterKeys(db, rotating);
    const stranger = MasterKey.generate();
    const foreign = `tenants/${tenantId}/manifests/${randomUUID()}.json`;
    await new EncryptedBlobStore(blobs, new Keyring(stranger)).write(foreign, Readable.from([Buffer.from('other')]));
    const before = readFileSync(join(dir, 'blobs', foreign));

    const counts = await rotateMasterKey(db, blobs, rotating);
    assert.deepEqual([...counts.underUnconfiguredKeys], [[stranger.keyId, 1]]);
    // Named, so that an operator who has no such key (a damaged header, what a server with a wrong key once wrote) can
    // find it: until it is gone, the rotation cannot end.
    assert.deepEqual(counts.unconfigured, [`blob ${foreign} (master key ${stranger.keyId})`]);
    assert.equal(counts.blobs, 2);
    assert.deepEqual(readFileSync(join(dir, 'blobs', foreign)), before);
    assert.equal(await db.getRepository(RetiredMasterKeyEntity).count(), 1);

    await blobs.delete(foreign);
    assert.deepEqual([...(await rotateMasterKey(db, blobs, rotating)).underUnconfiguredKeys], []);
    assert.equal(await db.getRepository(RetiredMasterKeyEntity).count(), 0);
  });

  it('lists a blob whose header is damaged as one that failed, and seals the rest again: one such blob does not stop it', async () => {
    await storeUnderOldKey();
    await recordRetiredMasterKeys(db, rotating);
    // Envelope blobs under the old key whose header was damaged where it is read before anything is authenticated: an
    // unknown version, an impossible chunk size.
    const damaged = [`tenants/${tenantId}/manifests/${randomUUID()}.json`, `tenants/${tenantId}/manifests/${randomUUID()}.json`];
    for (const [index, key] of damaged.entries()) {
      await new EncryptedBlobStore(blobs, onlyOld).write(key, Readable.from([Buffer.from('damaged')]));
      const bytes = readFileSync(join(dir, 'blobs', key));
      if (index === 0) bytes[6] = 7;
      else bytes.writeUInt32BE(0, 15);
      writeFileSync(join(dir, 'blobs', key), bytes);
    }

    const counts = await rotateMasterKey(db, blobs, rotating);
    assert.equal(counts.blobs, 2);
    assert.equal(counts.failed.length, 2, counts.failed.join('\n'));
    for (const key of damaged) assert.ok(counts.failed.some((line) => line.startsWith(`blob ${key}: `)), counts.failed.join('\n'));
    assert.equal(headerKeyId(manifest), newKey.keyId);
    assert.equal(headerKeyId(segment), newKey.keyId);
    // Something may still be under the old key: it is not forgotten.
    assert.equal(await db.getRepository(RetiredMasterKeyEntity).count(), 1);
  });

  it("refuses a current key other than the one the deployment's servers write under, unless it names that one as previous, changing nothing", async () => {
    const { chunkKeys } = await storeUnderOldKey();
    await claimCurrentMasterKey(db, rotating, 'SNAPGRAPH_MASTER_KEY');
    const stray = MasterKey.generate();
    await assert.rejects(rotateMasterKey(db, blobs, new Keyring(stray, [oldKey])), (error: Error) => {
      assert.match(error.message, new RegExp(`master key ${stray.keyId} \\(and previous master key ${oldKey.keyId}\\) was given, but this deployment's servers write under master key ${newKey.keyId} .*\\(nothing was changed\\)$`));
      return true;
    });
    assert.equal(headerKeyId(manifest), oldKey.keyId);
    assert.equal(headerKeyId(segment), oldKey.keyId);
    assert.deepEqual(await new TenantChunkKeys(blobs, db, onlyOld).get(tenantId), chunkKeys);

    // Naming the servers' key as previous moves the deployment to the new one.
    const moving = new Keyring(stray, [oldKey, newKey]);
    assert.deepEqual([...(await rotateMasterKey(db, blobs, moving)).underUnconfiguredKeys], []);
    assert.equal(headerKeyId(manifest), stray.keyId);
    await claimCurrentMasterKey(db, new Keyring(stray), 'SNAPGRAPH_MASTER_KEY');
  });
}
