// A deletion's claim (the instance DESTROYING) left behind by a replica that stopped half-way through deleteInstance,
// on SQLite and PostgreSQL metadata: another replica's sweep finishes the deletion once the claim is older than an
// operation lease, and not before (a claim under way may still be given back); and never while an operation works on
// the instance's data. Two InstanceServices on one database stand for two replicas.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DataSource, Repository } from 'typeorm';

import type { AppConfig } from '../../src/config/app-config';
import { DEFAULT_TIER_POLICIES } from '../../src/config/tiers';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { OperationEntity } from '../../src/entities/operation.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import { insertOperation } from '../../src/jobs/operation-queue';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { InstanceService } from '../../src/services/instance.service';
import type { Principal } from '../../src/services/principal';
import { insertInstanceRow } from '../support/instance-rows';
import { createMigratedTestDatabase, describePostgres, type TestDatabase } from '../support/postgres';

type Backend = { name: 'SQLite' } | { name: 'PostgreSQL'; adminUrl(): string };

/** How a replica stops in the middle of a deletion, once it has claimed the instance. */
type Stop = 'dies' | 'loses the database';

const LEASE_MS = 400;

describe('deletion claims left behind on SQLite metadata', () => deletionClaims({ name: 'SQLite' }));
describePostgres('deletion claims left behind on PostgreSQL metadata', (postgres) =>
  deletionClaims({ name: 'PostgreSQL', adminUrl: () => postgres.adminUrl() }),
);

function deletionClaims(backend: Backend) {
  let dir: string;
  let database: TestDatabase | undefined;
  let db: DataSource;
  let other: InstanceService;
  const tenantId = randomUUID();
  const principal: Principal = { tenantId, tenantName: 'claims', role: 'ADMIN', apiKeyId: 'key', apiKeyName: 'key' };
  const config = { tiers: DEFAULT_TIER_POLICIES, bytesPerStorageGB: 2 ** 30, operationLeaseMs: LEASE_MS } as AppConfig;
  const stores = { removeGenerations: async () => undefined } as unknown as GraphStoreProvider;

  beforeEach(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-deletion-claims-'));
    database = backend.name === 'PostgreSQL' ? await createMigratedTestDatabase(backend.adminUrl()) : undefined;
    db = createMetadataDataSource({ dataDir: dir, databaseUrl: database?.url });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
    other = new InstanceService(db, config, stores, createInMemoryEventBus());
  });

  afterEach(async () => {
    await db.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A replica whose deletion stops once it has claimed the instance: it looks for operations on the instance's data
   * and never hears back (it died), or its look and then its giving the claim back fail (the database went away).
   */
  function replicaThatStops(how: Stop): { instances: InstanceService; claimed: Promise<void> } {
    let claimedNow!: () => void;
    const claimed = new Promise<void>((resolve) => (claimedNow = resolve));
    const lost = () => Promise.reject(new Error('Connection terminated unexpectedly'));
    const stalled = new Proxy(db, {
      get: (target, key) => {
        if (key !== 'getRepository') return Reflect.get(target, key);
        return (entity: unknown) => {
          const repository = target.getRepository(entity as never) as Repository<object>;
          if (entity === OperationEntity) {
            return new Proxy(repository, {
              get: (repo, name) => (name === 'exists' ? () => (claimedNow(), how === 'dies' ? new Promise(() => undefined) : lost()) : Reflect.get(repo, name)),
            });
          }
          if (entity === InstanceEntity && how === 'loses the database') {
            let updates = 0;
            return new Proxy(repository, {
              get: (repo, name) => (name === 'update' ? (...args: unknown[]) => (++updates > 1 ? lost() : (repo.update as (...a: unknown[]) => unknown)(...args)) : Reflect.get(repo, name)),
            });
          }
          return repository;
        };
      },
    });
    return { instances: new InstanceService(stalled, config, stores, createInMemoryEventBus()), claimed };
  }

  async function instance(fields: Partial<InstanceEntity> = {}): Promise<string> {
    return insertInstanceRow(db, { tenantId, createdAt: Date.now() - 60_000, ...fields });
  }

  const row = (id: string) => db.getRepository(InstanceEntity).findOneBy({ id });

  for (const how of ['dies', 'loses the database'] as const) {
    it(`finishes the deletion of a replica that ${how} after claiming the instance, once the claim is a lease old`, async function () {
      this.timeout(20_000);
      const id = await instance();
      const stopping = replicaThatStops(how);
      const deletion = stopping.instances.remove(principal, id);
      deletion.catch(() => undefined);
      await stopping.claimed;
      if (how === 'loses the database') await assert.rejects(deletion, /Connection terminated/);
      assert.equal((await row(id))?.status, 'DESTROYING');

      // A claim younger than a lease may still be given back by its replica: left alone.
      await other.finishInterruptedDeletions(false);
      assert.equal((await row(id))?.status, 'DESTROYING', 'a fresh claim was taken over');

      await sleep(LEASE_MS + 200);
      await other.finishInterruptedDeletions(false);
      assert.equal(await row(id), null, 'the instance stayed DESTROYING: every deletion of it is refused for good');
    });
  }

  it('leaves a stale claim alone while an operation works on the instance data, and finishes it after', async function () {
    this.timeout(20_000);
    const id = await instance();
    const operationId = randomUUID();
    await db.getRepository(OperationEntity).insert({
      id: operationId,
      tenantId,
      instanceId: randomUUID(),
      sourceInstanceId: id,
      kind: 'CREATE_FROM_POINT_IN_TIME',
      status: 'RUNNING',
      phase: 'loading',
      params: null,
      createdAt: Date.now(),
      attempt: 1,
    });
    const stopping = replicaThatStops('dies');
    stopping.instances.remove(principal, id).catch(() => undefined);
    await stopping.claimed;
    await sleep(LEASE_MS + 200);
    await other.finishInterruptedDeletions(false);
    assert.equal((await row(id))?.status, 'DESTROYING', 'deleted under an operation reading its data');
    await db.getRepository(OperationEntity).update({ id: operationId }, { status: 'SUCCEEDED', finishedAt: Date.now() });
    await other.finishInterruptedDeletions(false);
    assert.equal(await row(id), null);
  });

  it('gives a refused claim back as the instance was when claimed: a restore that ended just before is not brought back', async function () {
    this.timeout(20_000);
    const id = await instance({ tier: 'PROFESSIONAL', status: 'RESTORING', availability: 'READ_ONLY' });
    const deleting = new InstanceService(db, config, stores, createInMemoryEventBus());
    const read = deleting.require.bind(deleting);
    // The deletion reads the instance while its restore runs; before it claims it, the restore ends (RUNNING) and the
    // scheduler queues the snapshot that fell due meanwhile, so the deletion finds work in progress and gives back.
    deleting.require = async (...args: Parameters<InstanceService['require']>) => {
      const found = await read(...args);
      await db.getRepository(InstanceEntity).update({ id }, { status: 'RUNNING', availability: 'AVAILABLE' });
      await insertOperation(db.manager, { tenantId, instanceId: id, kind: 'SNAPSHOT' });
      return found;
    };
    await assert.rejects(deleting.remove(principal, id), (error: { extensions?: { code?: string } }) => error.extensions?.code === 'CONFLICT');
    assert.deepEqual(await row(id).then((found) => found && { status: found.status, availability: found.availability }), {
      status: 'RUNNING',
      availability: 'AVAILABLE',
    }, 'the instance was left RESTORING with no restore running: every operation and deletion of it refused for good');
  });

  it('leaves the claim of a FAILED instance alone while its deletion looks for operations on its data', async function () {
    this.timeout(20_000);
    const id = await instance({ status: 'FAILED', availability: 'UNAVAILABLE' });
    await db.getRepository(OperationEntity).insert({
      id: randomUUID(),
      tenantId,
      instanceId: randomUUID(),
      sourceInstanceId: id,
      kind: 'CREATE_FROM_POINT_IN_TIME',
      status: 'QUEUED',
      phase: 'queued',
      params: null,
      createdAt: Date.now(),
      attempt: 0,
    });
    let letItLook!: () => void;
    const look = new Promise<void>((resolve) => (letItLook = resolve));
    let looking!: () => void;
    const claimed = new Promise<void>((resolve) => (looking = resolve));
    const slow = new Proxy(db, {
      get: (target, key) =>
        key === 'getRepository'
          ? (entity: unknown) => {
              const repository = target.getRepository(entity as never) as Repository<object>;
              if (entity !== OperationEntity) return repository;
              return new Proxy(repository, {
                get: (repo, name) =>
                  name === 'exists'
                    ? async (...args: unknown[]) => {
                        looking();
                        await look;
                        return (repo.exists as (...a: unknown[]) => Promise<boolean>)(...args);
                      }
                    : Reflect.get(repo, name),
              });
            }
          : Reflect.get(target, key),
    });
    const deleting = new InstanceService(slow, config, stores, createInMemoryEventBus());
    const deletion = deleting.remove(principal, id);
    deletion.catch(() => undefined);
    await claimed;
    await other.finishInterruptedDeletions(false);
    letItLook();
    await assert.rejects(deletion, (error: { extensions?: { code?: string } }) => error.extensions?.code === 'CONFLICT');
    assert.deepEqual(await row(id).then((found) => found && { status: found.status, availability: found.availability }), {
      status: 'FAILED',
      availability: 'UNAVAILABLE',
    });
  });
}
