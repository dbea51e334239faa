// An operation's stream (OperationService.watch) over the Redis event bus, whose SUBSCRIBE takes a while to reach
// Redis (a busy or slower connection than the publishing one; here a proxy holds it back): an event published after
// the stream read the state it starts with must still reach it, or a client waits for the final state for ever.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { DataSource } from 'typeorm';
import { OperationEntity } from '../../src/entities/operation.entity';
import { createRedisEventBus, type EventBus } from '../../src/events/event-bus';
import { insertOperation } from '../../src/jobs/operation-queue';
import { operationJson } from '../../src/jobs/operation-json';
import type { Logger } from '../../src/logging/logger';
import type { InstanceService } from '../../src/services/instance.service';
import { OperationService, type OperationView } from '../../src/services/operation.service';
import type { Principal } from '../../src/services/principal';
import { redisUnavailable, TEST_REDIS_URL } from '../support/replicas';
import { migratedSqliteMetadata } from '../support/metadata-database';

const logger = { info: () => undefined, error: () => undefined, warn: () => undefined } as unknown as Logger;
const SUBSCRIBE_DELAY_MS = 400;

/** A TCP proxy to Redis that holds back a connection's bytes for `delayMs` from its first SUBSCRIBE on. */
async function delayingSubscribes(target: URL, delayMs: number): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: target.hostname, port: Number(target.port || 6379) });
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    let delaying = false;
    let chain = Promise.resolve();
    client.on('data', (chunk: Buffer) => {
      delaying ||= /subscribe/i.test(chunk.toString('latin1'));
      if (!delaying) {
        upstream.write(chunk);
        return;
      }
      chain = chain.then(() => new Promise<void>((resolve) => setTimeout(resolve, delayMs))).then(() => void upstream.write(chunk));
    });
    for (const socket of [client, upstream]) {
      socket.on('error', () => undefined);
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('operation streams over Redis', function () {
  this.timeout(20_000);
  let dir: string;
  let db: DataSource;
  const closing: (() => Promise<void>)[] = [];

  before(async function () {
    const reason = await redisUnavailable();
    if (reason) {
      console.log(`      (skipped: Redis at ${TEST_REDIS_URL}: ${reason})`);
      this.skip();
    }
  });

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-operation-watch-'));
  });

  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gets the final state published just after it read the first state, while its SUBSCRIBE is still on the way', async () => {
    const proxy = await delayingSubscribes(new URL(TEST_REDIS_URL), SUBSCRIBE_DELAY_MS);
    closing.push(proxy.close);
    const watching: EventBus = await createRedisEventBus(proxy.url, logger);
    closing.push(() => watching.close());
    // The replica that runs the operation.
    const running: EventBus = await createRedisEventBus(TEST_REDIS_URL, logger);
    closing.push(() => running.close());

    const tenantId = randomUUID();
    const operation = await insertOperation(db.manager, { tenantId, instanceId: randomUUID(), kind: 'RESTORE' });
    const control = { liveState: () => null, requestState: () => undefined, cancel: async () => 'finished' as const };
    const operations = new OperationService(db, {} as InstanceService, watching, control);
    const principal: Principal = { tenantId, tenantName: 't', role: 'VIEWER', apiKeyId: randomUUID(), apiKeyName: 'k' };

    const abort = new AbortController();
    closing.push(async () => abort.abort());
    const stream = operations.watch(principal, operation.id, abort.signal);
    const first = await stream.next();
    assert.equal((first.value as OperationView).status, 'QUEUED');

    // It ends now: the row, then the event, as the runner records and publishes an outcome.
    const finished = { ...operation, status: 'SUCCEEDED' as const, startedAt: Date.now(), finishedAt: Date.now(), attempt: 1 };
    await db.getRepository(OperationEntity).update({ id: operation.id }, { status: 'SUCCEEDED', startedAt: finished.startedAt, finishedAt: finished.finishedAt, attempt: 1 });
    await running.publishConfirmed(
      'operation.updated',
      operation.id,
      { tenantId, operationId: operation.id, instanceId: operation.instanceId, operation: operationJson(finished) },
      2_000,
    );

    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      stream.next(),
      new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), SUBSCRIBE_DELAY_MS + 3_000))),
    ]).finally(() => clearTimeout(timer));
    assert.notEqual(next, 'waiting', 'the stream never got the final state: the event was lost');
    assert.equal(((next as IteratorResult<OperationView>).value as OperationView).status, 'SUCCEEDED');
  });
});
