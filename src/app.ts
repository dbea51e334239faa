// The composition root: builds every backend from the config, wires the services, and closes them in order.
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import type { AppConfig } from './config/app-config';
import { createMetadataDataSource } from './entities/data-source';
import { createInMemoryEventBus, createRedisEventBus, type EventBus } from './events/event-bus';
import { SqliteGraphStoreProvider } from './graph/sqlite-graph-store-provider';
import type { Logger } from './logging/logger';
import { GraphService } from './services/graph.service';
import { InstanceService } from './services/instance.service';
import type { Services } from './services/services';
import { TenantService } from './services/tenant.service';

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

    const tenants = new TenantService(db);
    const instances = new InstanceService(db, config, stores, events);
    const graph = new GraphService(instances);
    const services: Services = { tenants, instances, graph };

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
