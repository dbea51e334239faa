// The composition root: builds every backend from the config, wires the services, and closes them in order.
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import type { AppConfig } from './config/app-config';
import { createMetadataDataSource } from './entities/data-source';
import { createInMemoryEventBus, createRedisEventBus, type EventBus } from './events/event-bus';
import { Keyring, loadMasterKey } from './crypto';
import { SqliteGraphStoreProvider } from './graph/sqlite-graph-store-provider';
import { OperationRunner } from './jobs/operation-runner';
import type { Logger } from './logging/logger';
import { ExportService } from './services/export.service';
import { GraphService } from './services/graph.service';
import { InstanceService } from './services/instance.service';
import { OperationService } from './services/operation.service';
import { RestoreOperationHandler, RestoreService } from './services/restore.service';
import type { Services } from './services/services';
import { SnapshotOperationHandler, SnapshotService } from './services/snapshot.service';
import { TenantService } from './services/tenant.service';
import { UploadService } from './services/upload.service';
import { EncryptedBlobStore } from './storage/encrypted-blob-store';
import { FilesystemBlobStore } from './storage/filesystem-blob-store';

export interface App {
  config: AppConfig;
  logger: Logger;
  db: DataSource;
  events: EventBus;
  services: Services;
  /** Checks that the metadata database answers (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export async function createApp(config: AppConfig, logger: Logger): Promise<App> {
  const db = createMetadataDataSource(config);
  await db.initialize();
  const closers: (() => Promise<unknown>)[] = [() => db.destroy()];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch((error) => logger.error({ err: error }, 'error while closing'));
  };
  try {
    const migrations = await db.runMigrations({ transaction: 'each' });
    if (migrations.length > 0) logger.info({ migrations: migrations.map((m) => m.name) }, 'metadata migrations applied');

    const events = config.redisUrl ? await createRedisEventBus(config.redisUrl) : createInMemoryEventBus();
    closers.push(() => events.close());
    const stores = new SqliteGraphStoreProvider(join(config.dataDir, 'instances'));
    closers.push(() => stores.close());

    const masterKey = await loadMasterKey({ dataDir: config.dataDir, envValue: config.masterKey });
    if (masterKey.generated) logger.warn({ path: masterKey.path }, 'generated a new master key for encryption at rest; back it up');
    const blobs = new EncryptedBlobStore(new FilesystemBlobStore(join(config.dataDir, 'blobs')), new Keyring(masterKey.key));
    await blobs.init();
    const removedTemp = await blobs.removeTemporaryFiles();
    if (removedTemp > 0) logger.warn({ count: removedTemp }, 'removed partial blobs left by an earlier crash');

    const runner = new OperationRunner(db, events, logger, { leaseMs: config.operationLeaseMs, soleProcess: !config.databaseUrl });
    const tenants = new TenantService(db);
    const instances = new InstanceService(db, config, stores, events);
    const graph = new GraphService(instances);
    const snapshots = new SnapshotService(db, config, instances, blobs, events, logger, () => runner.kick());
    const operations = new OperationService(db, instances, events);
    const restores = new RestoreService(db, instances, snapshots, () => runner.kick());
    const exports = new ExportService(db, config, instances, snapshots);
    const uploads = new UploadService(instances, restores, blobs, config.maxUploadBytes);
    const services: Services = { tenants, instances, graph, snapshots, operations, restores, exports, uploads, events };

    instances.onRemove((instance) => snapshots.deleteAllOf(instance));
    runner.register(new SnapshotOperationHandler(snapshots, instances, async () => undefined));
    for (const kind of ['RESTORE', 'RESTORE_FROM_FILE', 'CREATE_FROM_SNAPSHOT'] as const) {
      runner.register(new RestoreOperationHandler(kind, db, instances, snapshots, stores, blobs));
    }
    await runner.start();
    closers.push(() => runner.stop());

    const bootstrapped = await tenants.bootstrap(config.bootstrapToken);
    if (bootstrapped?.generatedSecret) {
      // Printed once, on stdout only, outside the structured log: the operator's first key.
      process.stdout.write(
        `\nSnapgraph created tenant "default" with an ADMIN API key (shown once, keep it safe):\n\n  ${bootstrapped.generatedSecret}\n\n`,
      );
    } else if (bootstrapped) {
      logger.info('created tenant "default" with the ADMIN key from SNAPGRAPH_BOOTSTRAP_TOKEN');
    }

    return {
      config,
      logger,
      db,
      events,
      services,
      ping: async () => {
        await db.query('SELECT 1');
      },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
