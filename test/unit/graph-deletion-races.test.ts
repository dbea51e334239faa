// Graph reads and writes that found an instance just before deleteInstance removed its store (a dashboard polling, a
// client writing, while an ADMIN deletes): answered as a request after the deletion is, never as an internal error.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { AppError } from '../../src/errors/app-error';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import type { SqliteGraphStoreProvider } from '../../src/graph/sqlite-graph-store-provider';
import { createLogger } from '../../src/logging/logger';
import { GraphService } from '../../src/services/graph.service';
import { InstanceService } from '../../src/services/instance.service';
import type { Principal } from '../../src/services/principal';
import { type InstanceServiceBed, instanceServiceBed } from '../support/instance-services';

describe('graph requests racing the deletion of their instance', () => {
  let bed: InstanceServiceBed;
  let instances: InstanceService;
  let graph: GraphService;
  /** Set by a test: the next use of a store waits for it before it opens the store. */
  let beforeNextUse: (() => Promise<void>) | null;
  const principal: Principal = { tenantId: randomUUID(), tenantName: 't', role: 'ADMIN', apiKeyId: 'key', apiKeyName: 'key' };

  beforeEach(async () => {
    beforeNextUse = null;
    bed = await instanceServiceBed('snapgraph-graph-deletion-', (stores: SqliteGraphStoreProvider) =>
      new Proxy(stores, {
        get: (target, key) =>
          key === 'use'
            ? async (...args: Parameters<GraphStoreProvider['use']>) => {
                const wait = beforeNextUse;
                beforeNextUse = null;
                await wait?.();
                return target.use(...args);
              }
            : Reflect.get(target, key),
      }),
    );
    ({ instances } = bed);
    graph = new GraphService(instances, { notify: () => undefined }, createLogger('silent'));
  });

  afterEach(async () => {
    await bed.close();
  });

  async function runningInstance(): Promise<string> {
    const instance = await instances.create(principal, { name: 'doomed', tier: 'PROFESSIONAL', memoryGB: 1, engineVersion: 'V5' });
    await graph.createNodes(principal, instance.id, [{ labels: ['A'] }]);
    return instance.id;
  }

  /** The next store use waits until the instance is deleted. */
  const deletedFirst = (id: string) => (beforeNextUse = () => instances.remove(principal, id));

  const code = (expected: string) => (error: unknown) => {
    assert.ok(error instanceof AppError, `expected ${expected}, got ${String(error)}`);
    assert.equal(error.code, expected, error.message);
    return true;
  };

  it('a page of nodes is NOT_FOUND', async () => {
    const id = await runningInstance();
    deletedFirst(id);
    await assert.rejects(graph.nodes(principal, id, undefined, 10), code('NOT_FOUND'));
  });

  it('a write is NOT_FOUND', async () => {
    const id = await runningInstance();
    deletedFirst(id);
    await assert.rejects(graph.createNodes(principal, id, [{ labels: ['B'] }]), code('NOT_FOUND'));
  });

  it('a write whose store the deletion removed as it was being opened (SQLITE_CANTOPEN, not StoreMissingError) is NOT_FOUND', async () => {
    const id = await runningInstance();
    beforeNextUse = async () => {
      await instances.remove(principal, id);
      // What SQLite answers when the file goes between the provider's look for it and its open (seen under load).
      throw Object.assign(new Error('SQLITE_CANTOPEN: unable to open database file'), { code: 'SQLITE_CANTOPEN' });
    };
    await assert.rejects(graph.createNodes(principal, id, [{ labels: ['B'] }]), code('NOT_FOUND'));
  });

  it("the instance's stats are those of an instance without data, so that a list of instances still answers", async () => {
    const id = await runningInstance();
    const instance = (await instances.find(principal, id))!;
    deletedFirst(id);
    const stats = await instances.stats(instance);
    assert.equal(stats.nodeCount, 0);
  });
});
