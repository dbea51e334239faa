// The composition root: builds every backend from the config, wires the services, and closes them in order.
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { type AppConfig, uploadDirectory } from './config/app-config';
import { openMetadataDatabase, runMetadataMigrations } from './entities/data-source';
import { InstanceEntity } from './entities/instance.entity';
import { RESTORE_KINDS } from './entities/operation.entity';
import { type TenantDataVersion, tenantDataVersion } from './entities/tenant-data-version';
import { createInMemoryEventBus, createRedisEventBus, type EventBus } from './events/event-bus';
import { ChunkStore, TenantChunkKeys } from './chunks';
import { CryptoError, Keyring, loadMasterKey, loadPreviousMasterKeys, MASTER_KEY_ENV } from './crypto';
import { SqliteGraphStoreProvider } from './graph/sqlite-graph-store-provider';
import { OperationRunner } from './jobs/operation-runner';
import type { Logger } from './logging/logger';
import { Metrics } from './observability/metrics';
import { probeWritableDirectory, type ReadinessChecks } from './observability/operator-endpoints';
import { createSchedulerLeadership } from './scheduler/leadership';
import { RetentionSweeper } from './scheduler/retention-sweeper';
import { Scheduler } from './scheduler/scheduler';
import { BackupService } from './services/backup.service';
import { ChangeLogService } from './services/change-log.service';
import { ExportDestinationService, ExportOperationHandler } from './services/export-destination.service';
import { ExportService } from './services/export.service';
import { FileInspectionService } from './services/file-inspection.service';
import { GRAPH_FILE_FORMATS } from './graph-files/graph-file-formats';
import { GraphService } from './services/graph.service';
import { InstanceService } from './services/instance.service';
import { OperationService } from './services/operation.service';
import { RestoreOperationHandler, RestoreService } from './services/restore.service';
import type { Services } from './services/services';
import { SnapshotOperationHandler, SnapshotService } from './services/snapshot.service';
import { TenantService } from './services/tenant.service';
import { UploadCollector } from './services/upload-collector';
import { UploadService } from './services/upload.service';
import { VerifyOperationHandler, VerifyService } from './services/verify.service';
import { EncryptedBlobStore } from './storage/encrypted-blob-store';
import { createConfiguredBlobStore } from './storage/configured-blob-store';
import { initialAdminKeyPath, makeDataDirPrivate, writePrivateFile } from './storage/private-data-dir';
import { holdEmbeddedDataDir } from './storage/embedded-data-dir-lock';
import { removeStaleScratchDirs } from './storage/sealed-scratch-dir';
import { assertSharedDataDir } from './storage/shared-data-dir';
import { assertMasterKeyOpensStoredData, claimCurrentMasterKey, recordRetiredMasterKeys } from './storage/stored-master-keys';

export interface App {
  config: AppConfig;
  logger: Logger;
  db: DataSource;
  events: EventBus;
  services: Services;
  /** This server's Prometheus metrics (GET /metrics). */
  metrics: Metrics;
  /** Checks that the metadata database answers (readiness). */
  ping(): Promise<void>;
  /** A tenant's version of its instances and snapshots: new at every committed change (the API's response cache). */
  tenantDataVersion: TenantDataVersion;
  /** What GET /readyz checks: the metadata database and the stores' directories. */
  readiness: ReadinessChecks;
  close(): Promise<void>;
}

/** How often deletions that a crashed replica left half done are finished (at boot too). */
const DELETION_SWEEP_MS = 60_000;
/**
 * Beside other replicas, a scratch copy none of whose files changed for this long is a crash's: one under way is written
 * as it is made (a day, as for the sealed scratch dirs in the OS temp dir).
 */
const STALE_SCRATCH_MS = 24 * 3_600_000;
/** How often a replica closes the stores that other replicas removed (an instance deleted, a restore's old store). */
const REMOVED_STORE_SWEEP_MS = 5_000;

async function finishDeletions(instances: InstanceService, all: boolean, logger: Logger): Promise<void> {
  try {
    const finished = await instances.finishInterruptedDeletions(all);
    if (finished > 0) logger.warn({ count: finished }, 'finished deleting instances an earlier crash left DESTROYING');
  } catch (err) {
    logger.error({ err }, 'could not finish interrupted deletions');
  }
}

/**
 * Removes the scratch copies a crash left (a store an export or verification materialised, a copy a base was cut
 * from, a store a restore replaced): as large as their graphs, and in plaintext. Alone on the data dir, all of them; beside other processes, which
 * may be making one now, those untouched for `untouchedForMs`.
 */
async function removeCrashLeftovers(db: DataSource, stores: SqliteGraphStoreProvider, scratchDir: string, logger: Logger, untouchedForMs: number): Promise<void> {
  const instances = await db.getRepository(InstanceEntity).find({ select: { id: true, storeGeneration: true } });
  const owned = new Set(instances.map((row) => row.id));
  const stray = await stores.removeUnowned(owned, { untouchedForMs });
  // The stores a restore replaced: its swap commits with its SUCCEEDED and removes the old store right after, so a crash
  // in between left the instance's old data there until its next restore. A generation below the one the row names is
  // never used again (a restore builds its new store above it), whatever other processes are doing.
  for (const { id, storeGeneration } of instances) await stores.removeGenerationsBefore(id, storeGeneration);
  const cutoff = Date.now() - untouchedForMs;
  const scratch: string[] = [];
  for (const name of await readdir(scratchDir).catch(() => [] as string[])) {
    const changed = untouchedForMs > 0 ? ((await lstat(join(scratchDir, name)).catch(() => null))?.mtimeMs ?? 0) : 0;
    if (changed <= cutoff) scratch.push(name);
  }
  await Promise.all(scratch.map((name) => rm(join(scratchDir, name), { recursive: true, force: true })));
  if (stray.length + scratch.length > 0) {
    logger.warn({ scratchStores: stray.length, scratchFiles: scratch.length }, 'removed scratch copies an earlier crash left');
  }
}

export async function createApp(config: AppConfig, logger: Logger): Promise<App> {
  const tightened = await makeDataDirPrivate(config.dataDir);
  if (tightened > 0) logger.warn({ dataDir: config.dataDir, entries: tightened }, 'made the data dir readable by its owner only');
  // Beside other replicas (PostgreSQL metadata) the data dir is shared by design; embedded, this server must be alone.
  const releaseDataDir = config.databaseUrl ? async () => undefined : holdEmbeddedDataDir(config.dataDir);
  const onSessionError = (error: Error) => logger.warn({ err: error }, 'a PostgreSQL session of the metadata pool ended; the pool opens another for what follows');
  const db = await openMetadataDatabase({ ...config, onSessionError }).catch(async (error: unknown) => {
    await releaseDataDir();
    throw error;
  });
  const closers: (() => Promise<unknown>)[] = [releaseDataDir, () => db.destroy()];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch((error) => logger.error({ err: error }, 'error while closing'));
  };
  try {
    const migrations = await runMetadataMigrations(db);
    if (migrations.length > 0) logger.info({ migrations: migrations.map((m) => m.name) }, 'metadata migrations applied');
    // Replicas serve the instances' stores from one shared data dir: a server on another one is refused.
    if (config.databaseUrl) await assertSharedDataDir(db, config.dataDir);

    const events = config.redisUrl ? await createRedisEventBus(config.redisUrl, logger) : createInMemoryEventBus();
    closers.push(() => events.close());
    const metrics = new Metrics();
    const instanceDir = join(config.dataDir, 'instances');
    // Made here, once: readiness then finds it gone (a lost mount) rather than make an empty one (probeWritableDirectory).
    await mkdir(instanceDir, { recursive: true });
    /** Where a base is cut from a copy of its store. */
    const scratchDir = join(config.dataDir, 'scratch');
    const stores = new SqliteGraphStoreProvider(instanceDir);
    closers.push(() => stores.close());
    if (config.databaseUrl) {
      // Another replica removes stores this one may have open and never use again (an instance it deleted).
      const storeSweep = setInterval(
        () => void stores.retireRemoved().catch((err) => logger.warn({ err }, 'could not close the stores other replicas removed; it is retried')),
        REMOVED_STORE_SWEEP_MS,
      );
      storeSweep.unref();
      closers.push(async () => clearInterval(storeSweep));
    }

    const masterKey = await loadMasterKey({ dataDir: config.dataDir, envValue: config.masterKey });
    const blobStore = await createConfiguredBlobStore(config);
    const rawBlobs = blobStore.store;
    if (config.blobStore.kind === 's3') logger.info({ blobs: blobStore.description }, 'snapshot data is kept in S3');
    // Retired keys only decrypt: what is still under one reads until `snapgraph rotate-master-key` moved it.
    const keyring = new Keyring(masterKey.key, loadPreviousMasterKeys(config.previousMasterKeys));
    const blobs = new EncryptedBlobStore(rawBlobs, keyring, { bindNames: config.bindBlobNames });
    await blobs.init();
    closers.push(() => blobs.destroy());
    const keySource = masterKey.path === undefined ? MASTER_KEY_ENV : `The master key file ${masterKey.path}${masterKey.generated ? ' (generated now: there was none)' : ''}`;
    const checkMasterKey = async () => {
      const { stored } = await assertMasterKeyOpensStoredData(db, rawBlobs, keyring, keySource);
      await claimCurrentMasterKey(db, keyring, keySource, { mayReplace: !config.databaseUrl && !stored });
    };
    await checkMasterKey().catch(async (error: unknown) => {
      // A key file written by this boot is none of the data's (keys/ was lost, or not restored with the rest): it goes,
      // so that the refusal leaves the data dir as it found it, and the next boot is not told that this key is the data's.
      // Only for that refusal: a boot that failed otherwise (the database or the bucket away) may have written the key
      // of a new data dir, which another replica booting beside it may be using already.
      if (error instanceof CryptoError && masterKey.generated && masterKey.path) await rm(masterKey.path, { force: true });
      throw error;
    });
    await recordRetiredMasterKeys(db, keyring);
    if (keyring.keyIds.length > 1) {
      logger.info({ current: keyring.current.keyId, previous: keyring.keyIds.filter((id) => id !== keyring.current.keyId) }, 'previous master keys configured: they only decrypt; `snapgraph rotate-master-key` moves what is under them');
    }
    if (masterKey.generated) logger.warn({ path: masterKey.path }, 'generated a new master key for encryption at rest; back it up');
    // Alone on the data (embedded SQLite), every temp blob is a crash's leftover; with replicas sharing it, only
    // the ones nobody has touched for an hour are.
    const staleScratch = await removeStaleScratchDirs();
    if (staleScratch > 0) logger.warn({ dirs: staleScratch }, 'removed scratch directories an earlier crash left in the OS temp dir');
    const removedTemp = await blobs.removeTemporaryFiles({ olderThanMs: config.databaseUrl ? 3_600_000 : 0 });
    if (removedTemp > 0) logger.warn({ count: removedTemp }, 'removed partial blobs left by an earlier crash');

    const soleProcess = !config.databaseUrl;
    await removeCrashLeftovers(db, stores, scratchDir, logger, soleProcess ? 0 : STALE_SCRATCH_MS);
    const runner = new OperationRunner(db, events, logger, { leaseMs: config.operationLeaseMs, soleProcess, maxAttempts: config.maxAttempts, maxConcurrent: config.maxConcurrentOperations }, metrics);
    const tenants = new TenantService(db, events, { cacheMs: config.apiKeyCacheMs });
    closers.push(() => tenants.close());
    const instances = new InstanceService(db, config, stores, events);
    const changeLog = new ChangeLogService(db, blobs, instances, logger, {
      shipDelayMs: config.logShipDelayMs,
      tickMs: config.logShipIntervalMs,
      segmentBytes: config.logSegmentBytes,
    });
    // Before any store is opened for use: one a power loss rolled back is found as it opens (see checkOpened).
    stores.onOpen((instanceId, store) => changeLog.checkOpened(instanceId, store));
    const graph = new GraphService(instances, changeLog, logger);
    const chunks = new ChunkStore(rawBlobs, db, new TenantChunkKeys(rawBlobs, db, keyring), {
      workers: config.chunkWorkers,
      compression: config.chunkCompression,
      collectGraceMs: config.collectGraceMs,
    });
    closers.push(() => chunks.close());
    const backups = new BackupService(db, chunks, blobs, stores, instances, changeLog, logger, metrics, {
      scratchDir,
      collectGraceMs: config.collectGraceMs,
      listBlobs: (prefix) => rawBlobs.list(prefix),
    });
    const snapshots = new SnapshotService(db, config, instances, blobs, events, () => runner.kick(), backups);
    const operations = new OperationService(db, instances, events, runner);
    const restores = new RestoreService(db, instances, snapshots, () => runner.kick(), changeLog);
    const exports = new ExportService(db, config, instances, snapshots, tenants, backups);
    const uploads = new UploadService(instances, restores, tenants, blobs, config.maxUploadBytes, metrics);
    const inspections = new FileInspectionService(GRAPH_FILE_FORMATS);
    const verify = new VerifyService(db, snapshots, () => runner.kick());
    const destinations = new ExportDestinationService(db, keyring, instances, snapshots, () => runner.kick(), {
      retryBaseMs: config.exportRetryMs,
      allowPrivateAddresses: config.allowPrivateDestinations,
    });
    snapshots.onCompleted((snapshot, manager) => destinations.enqueueAutoExports(snapshot, manager));
    const services: Services = { tenants, instances, graph, snapshots, operations, restores, exports, destinations, uploads, inspections, backups, verify, events, changeLog };

    instances.onRemove(async (instance) => {
      await snapshots.deleteAllOf(instance);
      // Background work on its store ends before the store goes.
      await changeLog.endEpochs(instance.id);
      await backups.settle(instance.id);
      void backups.collectSoon(instance.tenantId);
    });
    metrics.countInstancesWith(
      () => instances.countByAvailability(),
      (err) => logger.warn({ err }, 'could not count the instances for /metrics'),
    );
    const retention = new RetentionSweeper(db, config, snapshots, logger);
    snapshots.onReplacement((snapshot, manager) => retention.onReplacement(snapshot, manager));
    runner.register(new SnapshotOperationHandler(snapshots, instances, (instance) => retention.onSnapshotCompleted(instance)));
    for (const kind of RESTORE_KINDS) {
      runner.register(new RestoreOperationHandler(kind, instances, snapshots, stores, blobs, backups, changeLog, metrics));
    }
    runner.register(new VerifyOperationHandler(snapshots, instances, backups));
    runner.register(new ExportOperationHandler(destinations, snapshots, instances, logger));
    await backups.recordLegacySizes(rawBlobs);
    const uploadCollector = new UploadCollector(db, rawBlobs, logger, { graceMs: config.collectGraceMs });
    const collection = setInterval(() => {
      void backups.collectAll().catch((err) => logger.error({ err }, 'could not look for unreferenced snapshot data; it is retried'));
      void uploadCollector.collect().catch((err) => logger.error({ err }, 'could not look for uploaded files no restore names; it is retried'));
    }, config.collectIntervalMs);
    collection.unref();
    closers.push(async () => {
      clearInterval(collection);
      await uploadCollector.stop();
      backups.close();
    });
    await finishDeletions(instances, soleProcess, logger);
    const deletionSweep = setInterval(() => void finishDeletions(instances, false, logger), DELETION_SWEEP_MS);
    deletionSweep.unref();
    closers.push(async () => clearInterval(deletionSweep));
    const exportRetries = setInterval(
      () => void destinations.retryFailedAutoExports().catch((err) => logger.error({ err }, 'could not queue the retries of failed exports')),
      Math.min(60_000, Math.max(250, Math.floor(config.exportRetryMs / 4))),
    );
    exportRetries.unref();
    closers.push(async () => clearInterval(exportRetries));
    changeLog.start();
    closers.push(() => changeLog.stop());
    await runner.start();
    closers.push(() => runner.stop(config.shutdownGraceMs));
    const scheduler = new Scheduler(db, config, snapshots, retention, createSchedulerLeadership(config, logger), logger);
    scheduler.start();
    closers.push(() => scheduler.stop());

    const bootstrapped = await tenants.bootstrap(config.bootstrapToken);
    if (bootstrapped?.generatedSecret) {
      // The log is a JSON stream that is collected and shipped: the key goes to a file only its owner can read.
      const path = initialAdminKeyPath(config.dataDir);
      await writePrivateFile(path, `${bootstrapped.generatedSecret}\n`);
      logger.warn({ path }, 'created tenant "default" with an ADMIN API key, written to this file (mode 0600): read it, keep it safe, delete the file');
    } else if (bootstrapped) {
      logger.info('created tenant "default" with the ADMIN key from SNAPGRAPH_BOOTSTRAP_TOKEN');
    }

    const ping = async () => {
      await db.query('SELECT 1');
    };
    return {
      config,
      logger,
      db,
      events,
      services,
      metrics,
      ping,
      tenantDataVersion: tenantDataVersion(db),
      readiness: {
        metadata: ping,
        blobs: blobStore.probe,
        instanceStores: () => probeWritableDirectory(instanceDir),
        uploads: () => probeWritableDirectory(uploadDirectory(config)),
        events: () => events.probe(),
      },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
