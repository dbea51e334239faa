// The boot's check of the master key against what is stored, on both metadata databases.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { TenantChunkKeys } from '../../src/chunks';
import { CryptoError, Keyring, MasterKey } from '../../src/crypto';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { LogSegmentEntity } from '../../src/entities/log-segment.entity';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { rotateMasterKey } from '../../src/storage/master-key-rotation';
import { assertMasterKeyOpensStoredData, claimCurrentMasterKey, recordRetiredMasterKeys } from '../../src/storage/stored-master-keys';
import { createMigratedTestDatabase, describePostgres, TestDatabase } from '../support/postgres';

describe('the master key check at boot, on SQLite metadata', () => {
  storedMasterKeysSuite(() => undefined);
});

describePostgres('the master key check at boot, on PostgreSQL metadata', (postgres) => {
  storedMasterKeysSuite(postgres.adminUrl);
});

function storedMasterKeysSuite(adminUrl: () => string | undefined) {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  let blobs: FilesystemBlobStore;
  const right = new Keyring(MasterKey.generate());
  const wrong = new Keyring(MasterKey.generate());
  const check = (keyring: Keyring) => assertMasterKeyOpensStoredData(db, blobs, keyring, 'SNAPGRAPH_MASTER_KEY');

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-key-check-'));
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

  it('takes any key while nothing is stored', async () => {
    await check(wrong);
  });

  it('takes the first key booted as the deployment\'s, and refuses another even while nothing is stored', async () => {
    const claim = (keyring: Keyring) => claimCurrentMasterKey(db, keyring, 'SNAPGRAPH_MASTER_KEY');
    await claim(right);
    await claim(right);
    await assert.rejects(claim(wrong), (error: Error) => {
      assert.ok(error instanceof CryptoError);
      assert.match(error.message, new RegExp(`holds master key ${wrong.current.keyId}, but this deployment's servers write under master key ${right.current.keyId}`));
      return true;
    });
    // A rotation: the deployment's key named as previous moves it to the new one, and a boot with the old one alone is
    // refused from then on (it could not read what the others write).
    const rotated = new Keyring(wrong.current, [right.current]);
    await claim(rotated);
    await assert.rejects(claim(right), /but this deployment's servers write under master key/);
    await claim(wrong);
    // rotate-master-key, once nothing is under another key, records its current key as the deployment's.
    await rotateMasterKey(db, blobs, new Keyring(right.current, [wrong.current]));
    await claim(right);
  });

  it('lets a sole server with nothing encrypted stored take another key (its key file was lost)', async () => {
    await claimCurrentMasterKey(db, right, 'SNAPGRAPH_MASTER_KEY');
    await claimCurrentMasterKey(db, wrong, 'SNAPGRAPH_MASTER_KEY', { mayReplace: true });
    await assert.rejects(claimCurrentMasterKey(db, right, 'SNAPGRAPH_MASTER_KEY'), new RegExp(`write under master key ${wrong.current.keyId}`));
  });

  it("refuses a key other than the one tenants' chunk keys are sealed under, naming both key ids", async () => {
    await new TenantChunkKeys(blobs, db, right).get(randomUUID());
    await check(right);
    await assert.rejects(check(wrong), (error: Error) => {
      assert.ok(error instanceof CryptoError);
      assert.match(error.message, new RegExp(`SNAPGRAPH_MASTER_KEY holds master key ${wrong.current.keyId}, .* under master key ${right.current.keyId}`));
      return true;
    });
  });

  it('boots with either key where data is under both (an earlier release served with a wrong key for a while)', async () => {
    await new TenantChunkKeys(blobs, db, right).get(randomUUID());
    await new TenantChunkKeys(blobs, db, wrong).get(randomUUID());
    await check(right);
    await check(wrong);
    await assert.rejects(check(new Keyring(MasterKey.generate())), CryptoError);
  });

  // The sample above finds the chunk keys a server booted with the old key as previous rewrapped as it used them, and
  // not the blobs still under the old key: the boot's record of the previous keys is what refuses.
  it('refuses to boot without a key named as previous at an earlier boot, until rotate-master-key moved everything off it', async () => {
    const tenantId = randomUUID();
    await new TenantChunkKeys(blobs, db, right).get(tenantId);
    const next = MasterKey.generate();
    const rotating = new Keyring(next, [right.current]);
    await check(rotating);
    await recordRetiredMasterKeys(db, rotating);
    await new TenantChunkKeys(blobs, db, rotating).get(tenantId);
    await assert.rejects(check(new Keyring(next)), (error: Error) => {
      assert.ok(error instanceof CryptoError);
      assert.match(error.message, new RegExp(`holds master key ${next.keyId}, but master key ${right.current.keyId} was named in SNAPGRAPH_PREVIOUS_MASTER_KEYS at an earlier boot`));
      return true;
    });
    await check(rotating);
    await rotateMasterKey(db, blobs, rotating);
    await check(new Keyring(next));
  });

  /** A change-log segment row, its blob sealed under `keyring` (or none: a blob lost). */
  async function logSegment(keyring: Keyring | null, firstSeq = 1): Promise<void> {
    const tenantId = randomUUID();
    const instanceId = randomUUID();
    const blobKey = `tenants/${tenantId}/log/${instanceId}/1/${firstSeq}-0000000000000000.seg`;
    if (keyring) await new EncryptedBlobStore(blobs, keyring).write(blobKey, Readable.from([Buffer.from('entries')]));
    await db.getRepository(LogSegmentEntity).insert({
      id: randomUUID(),
      tenantId,
      instanceId,
      epoch: 1,
      firstSeq,
      lastSeq: firstSeq,
      firstAt: 0,
      lastAt: 0,
      lines: 1,
      plainBytes: 7,
      storedBytes: 0,
      sha256: '0'.repeat(64),
      prevSha256: null,
      blobKey,
      createdAt: Date.now(),
    });
  }

  it('refuses a key other than the one the change log is sealed under, when there are no chunk keys yet', async () => {
    await logSegment(right);
    await check(right);
    await assert.rejects(check(wrong), CryptoError);
  });

  // One segment was looked at: its blob lost, a wrong key found nothing stored, and a sole server took it as the
  // deployment's, sealing what it wrote under it while the rest of the change log stayed under the right one.
  it('looks past a segment whose blob is lost, and counts the change log as stored though no blob tells its key', async () => {
    await logSegment(null, 1);
    assert.deepEqual(await check(wrong), { stored: true });
    await logSegment(right, 2);
    await check(right);
    await assert.rejects(check(wrong), CryptoError);
  });

  // A deployment of the first release stored nothing but its snapshots' archives (a blob each): upgraded with another
  // key (keys/master.key not carried over, a mistyped SNAPGRAPH_MASTER_KEY), it booted, generated or took that key,
  // sealed the change log and chunk keys it then wrote under it, and every one of its snapshots failed to read.
  it("refuses a key other than the one a previous release's snapshot archives are sealed under", async () => {
    const tenantId = randomUUID();
    const snapshotId = randomUUID();
    const blobKey = `tenants/${tenantId}/snapshots/${snapshotId}.blob`;
    await new EncryptedBlobStore(blobs, right, { bindNames: false }).write(blobKey, Readable.from([Buffer.from('an archive')]));
    await db.getRepository(SnapshotEntity).insert({
      id: snapshotId,
      tenantId,
      instanceId: randomUUID(),
      profile: 'ON_DEMAND',
      status: 'COMPLETED',
      createdAt: Date.now(),
      completedAt: Date.now(),
      engineVersion: 'V5',
      sizeBytes: 10,
      sha256: '0'.repeat(64),
      blobKey,
    });
    await check(right);
    await assert.rejects(check(wrong), (error: Error) => {
      assert.ok(error instanceof CryptoError);
      assert.match(error.message, new RegExp(`holds master key ${wrong.current.keyId}, .* under master key ${right.current.keyId}`));
      return true;
    });
  });
}
