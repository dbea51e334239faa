// Collection of backup storage keeps the server's heap flat whatever the tenant has stored: the chunks its restore
// points list are marked on disk, not in a set held in memory (a tenant's stored chunks: 64 bytes of manifest per
// 256 KiB of every base it keeps, without bound across its instances).
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { loadMasterKey } from '../../src/crypto/master-key';
import { Keyring } from '../../src/crypto/keyring';
import { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { createInstance, createNodes, eventually, expectData, gql, settledOperation, startServer, takeSnapshot, type TestServer } from '../support';

/** Restore points planted, each listing REFS_PER_POINT chunks of its own: 1.2M chunk ids in all. */
const POINTS = 24;
const REFS_PER_POINT = 50_000;
/** Change-log segments planted in one epoch: a busy instance ships a few a second, 300k in a day. */
const SEGMENTS = 300_000;

describe('collection of backup storage', () => {
  it('marks 1.2M live chunks under a 96 MiB heap: what the manifests list is not held in memory at once', async function () {
    this.timeout(120_000);
    const server = await startServer({
      nodeArgs: ['--max-old-space-size=96'],
      env: { SNAPGRAPH_COLLECT_GRACE_MS: '3000', SNAPGRAPH_COLLECT_INTERVAL_MS: '500' },
    });
    const tenantId = expectData(await gql(server, `{ viewer { tenantId } }`)).viewer.tenantId as string;
    const instance = await createInstance(server, { name: 'marked', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, Array.from({ length: 3_000 }, (_, i) => ({ labels: ['A'], properties: { i, text: randomBytes(24).toString('base64') } })));
    const snapshot = await takeSnapshot(server, instance.id);
    await server.stop({ keepDataDir: true });

    await plantChain(server, tenantId, instance.id, snapshot.id, POINTS);

    // A collection soon after boot marks them all, then removes the point nothing names.
    await server.restart();
    const ended = () => server.process.exitCode !== null || server.process.signalCode !== null;
    await eventually(() => server.logs().includes('collected backup storage') || ended(), { timeoutMs: 60_000, what: 'a collection to finish' }).catch((error) => {
      throw new Error(`${(error as Error).message}\n${server.logs().slice(-3000)}`);
    });
    assert.ok(!ended(), `the server died while collecting:\n${server.logs().slice(-3000)}`);
    await server.stop();
  });

  it("sweeps an instance's change log of 300k segments under a 96 MiB heap: its segments' rows are not held in memory at once", async function () {
    this.timeout(180_000);
    const server = await startServer({
      nodeArgs: ['--max-old-space-size=96'],
      env: { SNAPGRAPH_COLLECT_GRACE_MS: '3000', SNAPGRAPH_COLLECT_INTERVAL_MS: '500' },
    });
    const instance = await createInstance(server, { name: 'long-log', tier: 'PROFESSIONAL' });
    await createNodes(server, instance.id, [{ labels: ['A'] }]);
    const snapshot = await takeSnapshot(server, instance.id);
    await server.stop({ keepDataDir: true });

    await plantLog(server, instance.id, SEGMENTS);
    // And a position on the log that no snapshot names, which the collection removes (and says so in its log line).
    const metadata = new Database(join(server.dataDir, 'metadata.sqlite'));
    const point = metadata.prepare('SELECT * FROM restore_points WHERE id = (SELECT restorePointId FROM snapshots WHERE id = ?)').get(snapshot.id) as Record<string, unknown>;
    const columns = Object.keys(point);
    metadata
      .prepare(`INSERT INTO restore_points (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`)
      .run({ ...point, id: randomUUID() });
    metadata.close();

    // A collection soon after boot sweeps the instance's log (every segment of it in its window: none goes).
    await server.restart();
    const ended = () => server.process.exitCode !== null || server.process.signalCode !== null;
    await eventually(() => server.logs().includes('collected backup storage') || ended(), { timeoutMs: 120_000, what: 'a collection to finish' }).catch((error) => {
      throw new Error(`${(error as Error).message}\n${server.logs().slice(-3000)}`);
    });
    assert.ok(!ended(), `the server died while collecting:\n${server.logs().slice(-3000)}`);
    // Killed, not stopped: the planted log runs ahead of the store, and a graceful stop took 7-14 s opening the store,
    // finding it behind the log shipped from it and starting a new history, none of which is under test here.
    await server.kill();
    await server.stop();
  });

  it('spares the chunks of a base recorded while it marks, untouched for the grace period by the time it sweeps', async function () {
    this.timeout(180_000);
    // A grace period the base below is written well within, and a marking (48 manifests of 50k chunks) that takes
    // several times longer: the base's chunks are written and its point recorded after the collection listed the
    // restore points it keeps, and they have gone untouched for the grace period by the time it sweeps.
    // No collection on a timer: one started at boot was already marking when the test looked, and the test let it end
    // (a whole marking of waiting) before the next one. The collection a deleted snapshot asks for starts when told.
    const server = await startServer({ env: { SNAPGRAPH_COLLECT_GRACE_MS: '2000', SNAPGRAPH_COLLECT_INTERVAL_MS: '3600000' } });
    const tenantId = expectData(await gql(server, `{ viewer { tenantId } }`)).viewer.tenantId as string;
    const planted = await createInstance(server, { name: 'planted', tier: 'PROFESSIONAL' });
    await createNodes(server, planted.id, Array.from({ length: 3_000 }, (_, i) => ({ labels: ['A'], properties: { i, text: randomBytes(24).toString('base64') } })));
    const snapshot = await takeSnapshot(server, planted.id);
    const fresh = await createInstance(server, { name: 'fresh', tier: 'PROFESSIONAL' });
    const trigger = await createInstance(server, { name: 'trigger', tier: 'PROFESSIONAL' });
    await createNodes(server, trigger.id, [{ labels: ['T'] }]);
    const deleted = await takeSnapshot(server, trigger.id);
    await server.stop({ keepDataDir: true });
    await plantChain(server, tenantId, planted.id, snapshot.id, 2 * POINTS);
    await server.restart();

    // A collection starting now (its marks file appears as it lists the points it keeps; one seen running is let end).
    const scratch = join(server.dataDir, 'scratch');
    const marksFiles = async () => (await readdir(scratch).catch(() => [] as string[])).filter((name) => name.startsWith('chunk-marks-'));
    const running = await marksFiles();
    expectData(await gql(server, `mutation ($id: ID!) { deleteSnapshot(id: $id) }`, { id: deleted.id }));
    const marking = await eventually(async () => (await marksFiles()).find((name) => !running.includes(name)), {
      timeoutMs: 60_000,
      intervalMs: 10,
      what: 'a collection to start marking',
    });
    // Data of its own, in new chunks (the instance's first snapshot takes a base of it), recorded while it marks.
    await createNodes(server, fresh.id, Array.from({ length: 3_000 }, (_, i) => ({ labels: ['F'], properties: { i, text: randomBytes(48).toString('base64') } })));
    const taken = await takeSnapshot(server, fresh.id);
    assert.ok((await marksFiles()).includes(marking), 'the snapshot was taken while the collection marked: plant more chunks');
    await eventually(async () => !(await marksFiles()).includes(marking), { timeoutMs: 120_000, what: 'the collection to end' });

    const verification = expectData(await gql(server, `mutation ($id: ID!) { verifySnapshot(id: $id) { id } }`, { id: taken.id })).verifySnapshot as { id: string };
    const verified = await settledOperation(server, verification.id);
    assert.equal(verified.status, 'SUCCEEDED', `the snapshot lost its chunks to the collection: ${JSON.stringify(verified.error)}`);
    await server.stop();
  });
});

/**
 * Puts the snapshot on a chain of `points` legacy delta points over the store's base (the server stopped), as a
 * tenant's many kept bases would: every chunk each one lists (REFS_PER_POINT, none stored) is live, and a collection
 * marks them all, one manifest at a time.
 */
async function plantChain(server: TestServer, tenantId: string, instanceId: string, snapshotId: string, points: number): Promise<void> {
  const metadata = new Database(join(server.dataDir, 'metadata.sqlite'));
  const blobs = new EncryptedBlobStore(new FilesystemBlobStore(join(server.dataDir, 'blobs')), new Keyring((await loadMasterKey({ dataDir: server.dataDir })).key), { bindNames: true });
  await blobs.init();
  try {
    const { restorePointId } = metadata.prepare('SELECT restorePointId FROM snapshots WHERE id = ?').get(snapshotId) as { restorePointId: string };
    const point = metadata.prepare('SELECT * FROM restore_points WHERE id = ?').get(restorePointId) as Record<string, unknown>;
    const base = metadata.prepare('SELECT * FROM restore_points WHERE id = ?').get(point.baseId) as Record<string, unknown>;
    assert.equal(base.kind, 'BASE', 'the snapshot has a base');
    let parentId = base.id as string;
    const rows: Record<string, unknown>[] = [];
    for (let i = 0; i < points; i++) {
      const id = randomUUID();
      const manifestKey = `tenants/${tenantId}/manifests/${id}.json`;
      const ids = randomBytes(32 * REFS_PER_POINT).toString('hex');
      const chunks = Array.from({ length: REFS_PER_POINT }, (_, n) => ({ id: ids.slice(n * 64, n * 64 + 64), plainLength: 1000 }));
      const manifest = { version: 1, id, tenantId, instanceId, kind: 'DELTA', parentId, epoch: base.epoch, seq: base.seq, stats: JSON.parse(base.stats as string), base: null, delta: { lines: 0, chunks } };
      const { storedBytes } = await blobs.write(manifestKey, Readable.from([JSON.stringify(manifest)]));
      rows.push({ ...base, id, kind: 'DELTA', parentId, baseId: base.id, chainLength: i + 1, manifestKey, manifestBytes: storedBytes, addedBytes: storedBytes });
      parentId = id;
    }
    // And a position on the log that no snapshot names, which the collection removes (and says so in its log line).
    rows.push({ ...base, id: randomUUID(), kind: 'LOG', parentId: null, manifestKey: null, manifestBytes: 0, addedBytes: 0 });
    const columns = Object.keys(base);
    const insert = metadata.prepare(`INSERT INTO restore_points (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`);
    metadata.transaction(() => {
      for (const row of rows) insert.run(row);
      metadata.prepare('UPDATE snapshots SET restorePointId = ? WHERE id = ?').run(parentId, snapshotId);
    })();
  } finally {
    metadata.close();
    await blobs.destroy();
  }
}

/**
 * Appends `count` segments of one entry each to the instance's current epoch (the server stopped), after those it
 * shipped, as a busy instance's log would have in its window. Rows only: the blobs are never read by a collection.
 */
function plantLog(server: TestServer, instanceId: string, count: number): void {
  const metadata = new Database(join(server.dataDir, 'metadata.sqlite'));
  try {
    const last = metadata
      .prepare(`SELECT * FROM log_segments WHERE "instanceId" = ? ORDER BY "firstSeq" DESC LIMIT 1`)
      .get(instanceId) as Record<string, unknown> & { epoch: number; lastSeq: number; lastAt: number; sha256: string; blobKey: string };
    const columns = Object.keys(last);
    const insert = metadata.prepare(`INSERT INTO log_segments (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`);
    metadata.transaction(() => {
      let prevSha256 = last.sha256;
      for (let seq = last.lastSeq + 1; seq <= last.lastSeq + count; seq++) {
        const sha256 = randomBytes(32).toString('hex');
        const blobKey = last.blobKey.replace(/\/[^/]+\.seg$/, `/${String(seq).padStart(16, '0')}-${sha256.slice(0, 16)}.seg`);
        insert.run({ ...last, id: randomUUID(), firstSeq: seq, lastSeq: seq, firstAt: last.lastAt, lastAt: last.lastAt, sha256, prevSha256, blobKey });
        prevSha256 = sha256;
      }
      metadata.prepare(`UPDATE store_epochs SET "shippedSeq" = ?, "headSha256" = ? WHERE epoch = ?`).run(last.lastSeq + count, prevSha256, last.epoch);
    })();
  } finally {
    metadata.close();
  }
}
