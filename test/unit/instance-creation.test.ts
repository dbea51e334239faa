// createInstance writes a store and metadata rows: a creation that fails part way leaves neither behind, never an
// instance listed RUNNING whose store is gone (every read and write of it an internal error).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type DataSource, EntityManager } from 'typeorm';

import { StoreEpochEntity } from '../../src/entities/store-epoch.entity';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import { InstanceService } from '../../src/services/instance.service';
import type { Principal } from '../../src/services/principal';
import { type InstanceServiceBed, instanceServiceBed } from '../support/instance-services';

describe('createInstance', () => {
  let bed: InstanceServiceBed;
  let dir: string;
  let db: DataSource;
  let stores: SqliteGraphStoreProvider;
  let instances: InstanceService;
  const principal: Principal = { tenantId: randomUUID(), tenantName: 't', role: 'ADMIN', apiKeyId: 'key', apiKeyName: 'key' };
  const insert = EntityManager.prototype.insert;

  beforeEach(async () => {
    bed = await instanceServiceBed('snapgraph-instance-creation-');
    ({ dir, db, stores, instances } = bed);
  });

  afterEach(async () => {
    EntityManager.prototype.insert = insert;
    await bed.close();
  });

  it('leaves no instance behind when its history cannot be recorded after its row went in', async () => {
    // The metadata database fails between the two (its disk full, its connection lost).
    EntityManager.prototype.insert = function (this: EntityManager, target: unknown, ...rest: unknown[]) {
      if (target === StoreEpochEntity) return Promise.reject(new Error('the metadata database went away'));
      return (insert as (...args: unknown[]) => ReturnType<EntityManager['insert']>).call(this, target, ...rest);
    } as EntityManager['insert'];
    await assert.rejects(instances.create(principal, { name: 'half', tier: 'PROFESSIONAL', memoryGB: 1, engineVersion: 'V5' }), /went away/);
    EntityManager.prototype.insert = insert;
    assert.deepEqual((await instances.list(principal)).map((instance) => instance.name), []);
    assert.deepEqual(readdirSync(join(dir, 'instances')), []);
  });

  it('records the instance and its history when nothing fails', async () => {
    const instance = await instances.create(principal, { name: 'whole', tier: 'PROFESSIONAL', memoryGB: 1, engineVersion: 'V5' });
    assert.deepEqual((await instances.list(principal)).map((found) => found.id), [instance.id]);
    assert.equal(await db.getRepository(StoreEpochEntity).countBy({ instanceId: instance.id }), 1);
    assert.equal((await stores.use(instance.id, 1, (store) => store.stats())).nodeCount, 0);
  });
});
