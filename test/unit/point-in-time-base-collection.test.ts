// A point-in-time restore reads its base's chunks lazily: retention may move the restore window past a later base
// meanwhile, and a collection then removes the base being read (its point, manifest and chunks). Against the product's
// metadata database, the real chunk store and the real collection; the change log, the instances and the graph store
// are stand-ins (the moment is the base's own seq: no log to replay).
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';
import { type ChunkRef, ChunkStore, TenantChunkKeys } from '../../src/chunks';
import { Keyring, MasterKey } from '../../src/crypto';
import type { InstanceEntity } from '../../src/entities/instance.entity';
import { OperationEntity } from '../../src/entities/operation.entity';
import { RestorePointEntity } from '../../src/entities/restore-point.entity';
import type { StoreEpochEntity } from '../../src/entities/store-epoch.entity';
import { isAppError } from '../../src/errors/app-error';
import { insertOperation } from '../../src/jobs/operation-queue';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import type { GraphStats } from '../../src/graph/records';
import { createLogger } from '../../src/logging/logger';
import { Metrics } from '../../src/observability/metrics';
import { BackupService, manifestKeyOf, type Manifest } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import { BlobNotFoundError } from '../../src/storage/errors';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';
import { migratedSqliteMetadata } from '../support/metadata-database';

const TENANT = '00000000-0000-4000-8000-0000000000c1';
const INSTANCE = '00000000-0000-4000-8000-0000000000c2';
const EPOCH = 7;
const STATS: GraphStats = { nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [] } as unknown as GraphStats;

describe('a point-in-time restore whose base a collection removes while it is read', function () {
  this.timeout(60_000);
  let dir: string;
  let db: DataSource;
  let chunks: ChunkStore;
  let backups: BackupService;
  let chunkClock: number;
  /** The instance's restore window: retention moves it on during the read. */
  let windowMs: number;
  /** Runs once, when the graph store has taken the base's first bytes. */
  let whileRead: (() => Promise<void>) | null;
  let read: Buffer;
  /** The stretches of log the last collection kept, by epoch. */
  let swept: Map<number, [number, number][]>;
  const manifests = new Map<string, Buffer>();
  const epoch = { epoch: EPOCH, tenantId: TENANT, instanceId: INSTANCE, anchor: 'EMPTY', originPointId: null, startedAt: 0, endedAt: null } as unknown as StoreEpochEntity;
  const instance = { id: INSTANCE, tenantId: TENANT, status: 'RUNNING', tier: 'BUSINESS_CRITICAL' } as unknown as InstanceEntity;

  /** A base of the epoch at `seq`, taken at `at`: its chunks (tiny, so that it lists several index look-ups' worth), manifest and point. */
  async function base(seq: number, at: number, pieces: Buffer[]): Promise<RestorePointEntity> {
    const writer = chunks.writer(TENANT);
    const refs: ChunkRef[] = [];
    for (const piece of pieces) refs.push(await writer.put(piece));
    await writer.finish();
    const id = randomUUID();
    const manifest: Manifest = {
      version: 1,
      id,
      tenantId: TENANT,
      instanceId: INSTANCE,
      kind: 'BASE',
      parentId: null,
      epoch: EPOCH,
      seq,
      stats: STATS,
      base: { sizeBytes: pieces.reduce((sum, piece) => sum + piece.length, 0), pageSize: 4096, chunks: refs },
      delta: null,
    };
    const manifestKey = manifestKeyOf(TENANT, id);
    manifests.set(manifestKey, Buffer.from(JSON.stringify(manifest)));
    const point = Object.assign(new RestorePointEntity(), {
      id,
      tenantId: TENANT,
      instanceId: INSTANCE,
      kind: 'BASE',
      parentId: null,
      baseId: id,
      epoch: EPOCH,
      seq,
      at,
      chainLength: 0,
      chainDeltaLines: 0,
      chainDeltaBytes: 0,
      addedBytes: 0,
      manifestBytes: 0,
      manifestKey,
      stats: STATS,
      damage: null,
      createdAt: at,
    } satisfies RestorePointEntity);
    await db.getRepository(RestorePointEntity).insert(point);
    return point;
  }

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-pitr-base-collection-'));
    const packBlobs = new FilesystemBlobStore(join(dir, 'blobs'));
    await packBlobs.init();
    chunkClock = Date.now() - 3_600_000; // the bases were stored an hour ago
    chunks = new ChunkStore(packBlobs, db, new TenantChunkKeys(packBlobs, db, new Keyring(MasterKey.generate())), { workers: 0, clock: () => chunkClock });
    manifests.clear();
    windowMs = 3_600_000 * 24;
    whileRead = null;
    read = Buffer.alloc(0);
    const manifestBlobs = {
      read: async (key: string) => {
        const bytes = manifests.get(key);
        if (!bytes) throw new BlobNotFoundError(key);
        return Readable.from([bytes]);
      },
      delete: async (key: string) => void manifests.delete(key),
    } as unknown as EncryptedBlobStore;
    const log = {
      onShipped: () => undefined,
      onDamaged: () => undefined,
      epochAt: async () => epoch,
      seqAt: async () => 5,
      holdsLogAfter: async () => true,
      epochsOfTenant: async () => [epoch],
      sweep: async (_tenantId: string, _examined: Set<number>, _live: Set<number>, ranges: Map<number, [number, number][]>) => {
        swept = ranges;
        return 0;
      },
      orphanSegmentCheck: () => async () => [],
    } as unknown as ChangeLogService;
    const instances = { reload: async () => instance, restoreWindowMs: () => windowMs } as unknown as InstanceService;
    const stores = {
      materialise: async (_instanceId: string, _generation: number, bytes: Readable) => {
        const pieces: Buffer[] = [];
        for await (const piece of bytes) {
          pieces.push(piece as Buffer);
          const hook = whileRead;
          whileRead = null;
          await hook?.();
        }
        read = Buffer.concat(pieces);
        return STATS;
      },
    } as unknown as GraphStoreProvider;
    backups = new BackupService(db, chunks, manifestBlobs, stores, instances, log, createLogger('silent'), new Metrics(), {
      scratchDir: join(dir, 'scratch'),
      collectGraceMs: 60_000,
      listBlobs: async function* () {},
    });
  });

  afterEach(async () => {
    backups.close();
    await chunks.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The restore to the moment of the older base (seq 5), taken 2 minutes ago; a later base (seq 8) a minute ago. */
  async function restoreToOlderBase(): Promise<{ pieces: Buffer[]; restore: Promise<unknown> }> {
    const pieces = Array.from({ length: 2_500 }, () => randomBytes(64));
    await base(5, Date.now() - 120_000, pieces);
    await base(8, Date.now() - 60_000, [randomBytes(64)]);
    const context = { signal: new AbortController().signal, progress: () => undefined, saveParams: async () => undefined, enterPointOfNoReturn: async () => undefined, underLease: () => assert.fail('not run under a lease') };
    const restore = backups.materialiseAt(instance, Date.now() - 90_000, { instanceId: randomUUID(), generation: 1, limits: { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER } }, context);
    return { pieces, restore };
  }

  it('reads the whole base when no collection comes in between', async () => {
    const { pieces, restore } = await restoreToOlderBase();
    await restore;
    assert.deepEqual(read, Buffer.concat(pieces));
  });

  it('fails as out of the window (OUT_OF_RESTORE_WINDOW), not as damage, once retention collected the base under it', async () => {
    whileRead = async () => {
      // The window now starts after the later base: the older one is no longer needed, and goes with its chunks.
      windowMs = 30_000;
      chunkClock = Date.now();
      const collected = await backups.collect(TENANT);
      assert.equal(collected.removedPoints, 1, 'the collection did not remove the base being read');
    };
    const { restore } = await restoreToOlderBase();
    const error = await restore.then(
      () => assert.fail('the restore read a base whose chunks were collected'),
      (failure: unknown) => failure,
    );
    assert.ok(isAppError(error) && error.code === 'OUT_OF_RESTORE_WINDOW', String(error));
    assert.match(error.message, /collected|retention/);
  });

  it('keeps the base while a restore accepted for its moment has not ended, though the window has slid past it', async () => {
    // Accepted, and running (or queued behind others): it checks the window as it stood when it was asked for.
    const operation = await insertOperation(db.manager, {
      tenantId: TENANT,
      instanceId: randomUUID(),
      kind: 'CREATE_FROM_POINT_IN_TIME',
      pointInTime: Date.now() - 90_000,
      sourceInstanceId: INSTANCE,
    });
    await db.getRepository(OperationEntity).update({ id: operation.id }, { status: 'RUNNING' });
    whileRead = async () => {
      windowMs = 30_000;
      chunkClock = Date.now();
      const collected = await backups.collect(TENANT);
      assert.equal(collected.removedPoints, 0, 'the collection removed the base a restore reads');
    };
    const { pieces, restore } = await restoreToOlderBase();
    await restore;
    assert.deepEqual(read, Buffer.concat(pieces));

    await db.getRepository(OperationEntity).update({ id: operation.id }, { status: 'SUCCEEDED' });
    assert.equal((await backups.collect(TENANT)).removedPoints, 1, 'once it has ended, the base goes');
  });

  it("keeps the current store's log from its newest base older than the grace period, where a snapshot being taken may begin", async () => {
    // No restore window (FREE): only the current store's reach is kept. A snapshot captured at seq 6 on the base at
    // seq 5 is recorded as its operation commits; meanwhile the base at seq 8 was taken, and a collection ran.
    windowMs = null as unknown as number;
    const older = await base(5, Date.now() - 7_200_000, [randomBytes(64)]);
    // Its moment is old (the store's last write, hours ago), but it was recorded just now: a base that took long to store.
    const newest = await base(8, Date.now() - 3_600_000, [randomBytes(64)]);
    await db.getRepository(RestorePointEntity).update({ id: newest.id }, { createdAt: Date.now() - 1_000 });
    await backups.collect(TENANT);
    assert.deepEqual(swept.get(EPOCH), [[5, Number.MAX_SAFE_INTEGER]], 'the log after the older base, which the snapshot reads');
    const kept = await db.getRepository(RestorePointEntity).findBy({ tenantId: TENANT });
    assert.deepEqual(kept.map((point) => point.id).sort(), [older.id, newest.id].sort());

    // Once the newest base was recorded longer than the grace period ago, the log before it goes.
    await db.getRepository(RestorePointEntity).update({ id: newest.id }, { createdAt: Date.now() - 120_000 });
    await backups.collect(TENANT);
    assert.deepEqual(swept.get(EPOCH), [[8, Number.MAX_SAFE_INTEGER]]);
  });
});
