// An operation's stream (OperationService.watch) on a replica that still winds down a stale attempt of it: the first
// state a subscriber gets is the operation's current one, never that attempt's.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { OperationEntity } from '../../src/entities/operation.entity';
import { createInMemoryEventBus, type EventBus } from '../../src/events/event-bus';
import { operationJson } from '../../src/jobs/operation-json';
import { insertOperation } from '../../src/jobs/operation-queue';
import type { InstanceService } from '../../src/services/instance.service';
import { OperationService, type OperationView } from '../../src/services/operation.service';
import type { Principal } from '../../src/services/principal';
import { sqliteMetadataPerTest } from '../support/metadata-database';

describe('operation streams', function () {
  this.timeout(20_000);
  let db: DataSource;
  sqliteMetadataPerTest('snapgraph-operation-watch-', (opened) => (db = opened));

  it("start with the operation's current state, not a stale attempt this process still winds down", async () => {
    const tenantId = randomUUID();
    const operation = await insertOperation(db.manager, { tenantId, instanceId: randomUUID(), kind: 'RESTORE' });
    // This process lost the lease of attempt 1 (it stalled); another replica took the operation over and ran attempt 2
    // to its end. Attempt 1 is still stopping here: the runner's in-memory state is still its own.
    const finishedAt = Date.now();
    await db.getRepository(OperationEntity).update({ id: operation.id }, { status: 'SUCCEEDED', phase: 'done', startedAt: finishedAt, finishedAt, attempt: 2 });
    const stale = { ...operation, status: 'RUNNING' as const, phase: 'loading', bytesDone: 100, startedAt: finishedAt - 60_000, attempt: 1, revision: 7 };
    const control = { liveState: () => ({ ...stale }), requestState: () => undefined, cancel: async () => 'finished' as const };
    const operations = new OperationService(db, {} as InstanceService, createInMemoryEventBus(), control);
    const principal: Principal = { tenantId, tenantName: 't', role: 'VIEWER', apiKeyId: randomUUID(), apiKeyName: 'k' };

    const abort = new AbortController();
    try {
      const stream = operations.watch(principal, operation.id, abort.signal);
      const first = (await stream.next()).value as OperationView;
      assert.deepEqual({ status: first.status, attempt: first.attempt }, { status: 'SUCCEEDED', attempt: 2 });
      assert.equal((await stream.next()).done, true, 'the stream of an operation that has ended ends after its state');
    } finally {
      abort.abort();
    }
  });

  it('never step back to an earlier phase of the same bytes: an event published just before the state was read comes after it', async () => {
    const tenantId = randomUUID();
    const operation = await insertOperation(db.manager, { tenantId, instanceId: randomUUID(), kind: 'RESTORE' });
    await db.getRepository(OperationEntity).update({ id: operation.id }, { status: 'RUNNING', phase: 'loading', bytesDone: 100, attempt: 1 });
    const running = { ...operation, status: 'RUNNING' as const, attempt: 1, bytesDone: 100 };
    // The runner moved from loading to verifying at the same bytesDone. Its event of `loading` was published after the
    // subscription began, before the subscriber read the runner's state (now `verifying`): it is in the stream's buffer.
    const bus = createInMemoryEventBus();
    const publish = (state: Record<string, unknown>) =>
      bus.pubSub.publish('operation.updated', operation.id, { tenantId, operationId: operation.id, instanceId: operation.instanceId, operation: state });
    const events: EventBus = {
      ...bus,
      subscribed: async (...args) => {
        publish({ ...operationJson({ ...running, phase: 'loading' }), revision: 4 });
        return bus.subscribed(...args);
      },
    };
    const control = { liveState: () => ({ ...running, phase: 'verifying', revision: 5 }), requestState: () => undefined, cancel: async () => 'finished' as const };
    const operations = new OperationService(db, {} as InstanceService, events, control);
    const principal: Principal = { tenantId, tenantName: 't', role: 'VIEWER', apiKeyId: randomUUID(), apiKeyName: 'k' };

    const abort = new AbortController();
    try {
      const stream = operations.watch(principal, operation.id, abort.signal);
      const phases = [((await stream.next()).value as OperationView).phase];
      publish(operationJson({ ...running, status: 'SUCCEEDED', phase: 'done', finishedAt: Date.now() }));
      for await (const state of stream) phases.push(state.phase);
      assert.deepEqual(phases, ['verifying', 'done']);
    } finally {
      abort.abort();
    }
  });
});
