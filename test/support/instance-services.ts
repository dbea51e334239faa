// An InstanceService on a fresh SQLite metadata database (every migration run) and real instance stores in a temp dir,
// for unit tests of what instances do with their stores. close() ends both and removes the dir.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import { InstanceService } from '../../src/services/instance.service';
import { migratedSqliteMetadata } from './metadata-database';

export interface InstanceServiceBed {
  dir: string;
  db: DataSource;
  stores: SqliteGraphStoreProvider;
  instances: InstanceService;
  close(): Promise<void>;
}

/** `storesAs` lets a test stand between the service and the stores (the service is given what it returns). */
export async function instanceServiceBed(
  prefix: string,
  storesAs: (stores: SqliteGraphStoreProvider) => GraphStoreProvider = (stores) => stores,
): Promise<InstanceServiceBed> {
  const { dir, db } = await migratedSqliteMetadata(prefix);
  const stores = new SqliteGraphStoreProvider(join(dir, 'instances'));
  const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30 } as AppConfig;
  const instances = new InstanceService(db, config, storesAs(stores), createInMemoryEventBus());
  return {
    dir,
    db,
    stores,
    instances,
    async close() {
      await stores.close();
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
