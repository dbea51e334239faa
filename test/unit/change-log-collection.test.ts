// Reading an instance's change log (a point-in-time restore's replay) while a collection removes part of it: what
// retention removed is no damage. Against the product's metadata database and the real sweep; the blob store is
// a map whose read of a segment can run the collection first. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';
import { encodeSegment } from '../../src/changelog/segment-format';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { LogSegmentEntity } from '../../src/entities/log-segment.entity';
import { StoreEpochEntity } from '../../src/entities/store-epoch.entity';
import { isAppError } from '../../src/errors/app-error';
import type { LogEntry } from '../../src/graph/graph-store';
import { createLogger } from '../../src/logging/logger';
import { ChangeLogService, segmentKeyOf } from '../../src/services/change-log.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { BlobNotFoundError } from '../../src/storage/errors';
import { createMigratedTestDatabase, describePostgres, type TestDatabase } from '../support/postgres';

const TENANT = '00000000-0000-4000-8000-00000000000a';
const INSTANCE = '00000000-0000-4000-8000-00000000000b';
const EPOCH = 42;

describe('the change log read while a collection removes part of it, on SQLite', function () {
  this.timeout(20_000);
  collectionSuite({ name: 'SQLite' });
});

describePostgres('the change log read while a collection removes part of it, on PostgreSQL', (postgres) => {
  collectionSuite({ name: 'PostgreSQL', adminUrl: postgres.adminUrl });
});

function collectionSuite(backend: { name: 'SQLite' } | { name: 'PostgreSQL'; adminUrl: () => string }) {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  let log: ChangeLogService;
  const blobs = new Map<string, Buffer>();
  /** Runs while a blob is read (once); the collection, in the tests that want one. */
  let whileRead: ((key: string) => Promise<void>) | null;
  let damageTold: number;

  /** An epoch of an EMPTY store with one segment per write: seqs 1 to `count`, a second apart. */
  async function plantSegments(count: number): Promise<LogSegmentEntity[]> {
    await db.getRepository(StoreEpochEntity).insert({
      epoch: EPOCH,
      tenantId: TENANT,
      instanceId: INSTANCE,
      anchor: 'EMPTY',
      originPointId: null,
      startedAt: 1_000,
      endedAt: null,
      shippedSeq: 0,
      headSha256: null,
      shippedThrough: 999,
      damage: null,
      damagedFromSeq: null,
    });
    let prevSha256: string | null = null;
    const rows: LogSegmentEntity[] = [];
    for (let seq = 1; seq <= count; seq++) {
      const entries: LogEntry[] = [{ seq, at: 1_000 * (seq + 1), lines: [`write ${seq}`] }];
      const segment = encodeSegment({ instanceId: INSTANCE, epoch: EPOCH, prevSha256 }, entries);
      const blobKey = segmentKeyOf(TENANT, INSTANCE, EPOCH, seq, segment.sha256);
      blobs.set(blobKey, segment.plaintext);
      rows.push({
        id: randomUUID(),
        tenantId: TENANT,
        instanceId: INSTANCE,
        epoch: EPOCH,
        firstSeq: seq,
        lastSeq: seq,
        firstAt: entries[0].at,
        lastAt: entries[0].at,
        lines: 1,
        plainBytes: segment.plaintext.length,
        storedBytes: segment.plaintext.length,
        sha256: segment.sha256,
        prevSha256,
        blobKey,
        createdAt: Date.now(),
      } satisfies LogSegmentEntity);
      prevSha256 = segment.sha256;
    }
    for (let start = 0; start < rows.length; start += 100) await db.getRepository(LogSegmentEntity).insert(rows.slice(start, start + 100));
    await db.getRepository(StoreEpochEntity).update({ epoch: EPOCH }, { shippedSeq: count, headSha256: prevSha256 });
    return rows;
  }

  const threeSegments = () => plantSegments(3);

  /** Replays the whole log (as a restore to the moment of seq 3 does); the error it fails with. */
  async function replayFailure(): Promise<unknown> {
    const epoch = (await log.epoch(EPOCH))!;
    try {
      for await (const entry of log.entries(epoch, 0, { seq: 3 })) void entry;
    } catch (error) {
      return error;
    }
    return assert.fail('the replay read every segment');
  }

  const damageOf = async () => (await db.getRepository(StoreEpochEntity).findOneByOrFail({ epoch: EPOCH })).damage;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-log-collection-'));
    database = backend.name === 'PostgreSQL' ? await createMigratedTestDatabase(backend.adminUrl()) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    blobs.clear();
    whileRead = null;
    damageTold = 0;
    const store = {
      read: async (key: string) => {
        // The blob is opened first: a collection while it is read removes it from under the reader, not before.
        const bytes = blobs.get(key);
        const hook = whileRead;
        whileRead = null;
        await hook?.(key);
        if (!bytes) throw new BlobNotFoundError(key);
        return Readable.from([bytes]);
      },
      delete: async (key: string) => void blobs.delete(key),
    } as unknown as EncryptedBlobStore;
    log = new ChangeLogService(db, store, {} as InstanceService, createLogger('silent'), { shipDelayMs: 10, tickMs: 1_000, segmentBytes: 1024 });
    log.onDamaged(() => (damageTold += 1));
  });

  afterEach(async () => {
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records a segment whose row is there and whose blob is missing as damage (INVALID_BACKUP_FILE)', async () => {
    const [, second] = await threeSegments();
    blobs.delete(second.blobKey);
    const error = await replayFailure();
    assert.ok(isAppError(error) && error.code === 'INVALID_BACKUP_FILE', String(error));
    assert.match((await damageOf()) ?? '', /segment 2–2 .* is missing/);
    assert.equal(damageTold, 1);
  });

  it('fails a replay whose segments a collection removed meanwhile as out of the window (OUT_OF_RESTORE_WINDOW), recording no damage', async () => {
    await threeSegments();
    // While the first segment is read, retention moves on: only the log after seq 2 is still needed (a base there).
    whileRead = async () => void (await log.sweep(TENANT, new Set([EPOCH]), new Set([EPOCH]), new Map([[EPOCH, [[2, Number.MAX_SAFE_INTEGER]]]])));
    const error = await replayFailure();
    assert.ok(isAppError(error) && error.code === 'OUT_OF_RESTORE_WINDOW', String(error));
    assert.match(error.message, /segment 2–2 .*collected/);
    assert.equal(await damageOf(), null, 'retention was recorded as damage');
    assert.equal(damageTold, 0, 'the base policy was told of damage');
    const { collectedThroughSeq } = await db.getRepository(StoreEpochEntity).findOneByOrFail({ epoch: EPOCH });
    assert.equal(collectedThroughSeq, 2, 'the collection recorded how far it removed the log (the window starts past it)');
  });

  it('fails a replay planned before a collection removed the log it starts with as out of the window, recording no damage', async () => {
    await threeSegments();
    // Planned (the log after the anchor was held), then the base written back while retention moved on: the replay
    // finds no segment for seqs 1–2 when it starts.
    await log.sweep(TENANT, new Set([EPOCH]), new Set([EPOCH]), new Map([[EPOCH, [[2, Number.MAX_SAFE_INTEGER]]]]));
    const error = await replayFailure();
    assert.ok(isAppError(error) && error.code === 'OUT_OF_RESTORE_WINDOW', String(error));
    assert.match(error.message, /seqs 1–2 .*collected/);
    assert.equal(await damageOf(), null, 'retention was recorded as damage');
    assert.equal(damageTold, 0, 'the base policy was told of damage');
  });

  it('records a stretch of log with no segment that no collection removed as damage', async () => {
    const [, second] = await threeSegments();
    await db.getRepository(LogSegmentEntity).delete({ id: second.id });
    const error = await replayFailure();
    assert.ok(isAppError(error) && error.code === 'INVALID_BACKUP_FILE', String(error));
    assert.match((await damageOf()) ?? '', /no segment holds seqs 2–2/);
    assert.equal(damageTold, 1);
  });

  // Its segment rows are read a page at a time (a replay from a base taken long ago may span hundreds of thousands).
  it('replays a log of more segments than a page of rows holds, every entry once, in order', async () => {
    await plantSegments(2_500);
    const seqs: number[] = [];
    for await (const entry of log.entries((await log.epoch(EPOCH))!, 0, {})) seqs.push(entry.seq);
    assert.deepEqual(seqs, Array.from({ length: 2_500 }, (_, i) => i + 1));
    const tail: number[] = [];
    for await (const entry of log.entries((await log.epoch(EPOCH))!, 1_500, { seq: 2_200 })) tail.push(entry.seq);
    assert.deepEqual(tail, Array.from({ length: 700 }, (_, i) => 1_501 + i));
  });

  it('finds a break in the chain of segments where one page of rows ends and the next begins', async () => {
    const rows = await plantSegments(1_200);
    await db.getRepository(LogSegmentEntity).update({ id: rows[1_000].id }, { prevSha256: rows[998].sha256 });
    const epoch = (await log.epoch(EPOCH))!;
    const error = await (async () => {
      for await (const entry of log.entries(epoch, 0, {})) void entry;
    })().then(() => assert.fail('the replay read every segment'), (failure: unknown) => failure);
    assert.ok(isAppError(error) && error.code === 'INVALID_BACKUP_FILE', String(error));
    assert.match((await damageOf()) ?? '', /segment 1001–1001 does not follow the one before it/);
  });
}
