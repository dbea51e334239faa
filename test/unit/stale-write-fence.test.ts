// The write fence a restore leaves in a store is lifted by the next write once no restore holds it
// (InstanceService.liftStaleWriteFence), but only in the store the instance uses now: a restore that swapped in a new
// store since the write read the instance left its fence on the store it replaced, which is about to be deleted.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';

import { InstanceEntity } from '../../src/entities/instance.entity';
import { WritesFencedError, type WriteLimits } from '../../src/graph/graph-store';
import { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import { InstanceService } from '../../src/services/instance.service';
import { insertInstanceRow } from '../support/instance-rows';
import { type InstanceServiceBed, instanceServiceBed } from '../support/instance-services';

const LIMITS: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: 1e12 };

describe('lifting a write fence that no restore holds', () => {
  let bed: InstanceServiceBed;
  let db: DataSource;
  let stores: SqliteGraphStoreProvider;
  let instances: InstanceService;

  beforeEach(async () => {
    bed = await instanceServiceBed('snapgraph-stale-fence-');
    ({ db, stores, instances } = bed);
  });

  afterEach(async () => {
    await bed.close();
  });

  it('lifts it from the store the instance uses, so that the write goes on', async () => {
    const id = await insertInstanceRow(db, { tenantId: randomUUID() });
    await stores.create(id, 1);
    await stores.use(id, 1, (store) => store.freezeWrites('an ended restore'));
    const instance = (await instances.reload(id))!;
    assert.equal(await instances.liftStaleWriteFence(instance, 'an ended restore'), true);
    await instances.withStore(instance, (store) => store.createNodes([{ labels: ['After'], properties: {} }], LIMITS));
  });

  it('leaves it on a store a restore replaced since the write read the instance: a write lifted there would be lost', async () => {
    const id = await insertInstanceRow(db, { tenantId: randomUUID() });
    await stores.create(id, 1);
    const stale = (await instances.reload(id))!;
    // The restore (on another replica, or here): its fence on generation 1, its new store swapped in, its operation
    // ended; generation 1 is deleted a moment later.
    await stores.use(id, 1, (store) => store.freezeWrites('the restore'));
    await stores.create(id, 2);
    await db.getRepository(InstanceEntity).update({ id }, { storeGeneration: 2 });
    assert.equal(await instances.liftStaleWriteFence(stale, 'the restore'), false);
    await assert.rejects(
      instances.withStore(stale, (store) => store.createNodes([{ labels: ['Lost'], properties: {} }], LIMITS)),
      (error: unknown) => error instanceof WritesFencedError,
    );
  });
});
