// The Redis event bus meeting a message it did not publish: something else sharing the Redis (an operator's PUBLISH by
// hand, another application on a channel of the same name) must not end the replicas that listen there.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createRedisEventBus, type OperationControlPayload } from '../../src/events/event-bus';
import type { Logger } from '../../src/logging/logger';
import { type CuttableProxy, cuttableProxy } from '../support/cuttable-proxy';
import { redisUnavailable, TEST_REDIS_URL } from '../support/replicas';
import { eventually } from '../support/wait';

describe('the Redis event bus', function () {
  this.timeout(20_000);

  before(async function () {
    const reason = await redisUnavailable();
    if (reason) {
      console.log(`      (skipped: Redis at ${TEST_REDIS_URL}: ${reason})`);
      this.skip();
    }
  });

  it('drops a message on its channels that is not JSON, says so, and delivers the events after it', async () => {
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const logger = {
      info: () => undefined,
      error: () => undefined,
      warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }),
    } as unknown as Logger;
    const bus = await createRedisEventBus(TEST_REDIS_URL, logger);
    const stranger = new Redis(TEST_REDIS_URL);
    try {
      const operationId = randomUUID();
      const events = bus.pubSub.subscribe('operation.control', operationId);
      const first = events.next();
      await bus.subscribed('operation.control', operationId);
      // Parsed inside ioredis's handling of the socket's data, it was thrown from there: an uncaught exception, which
      // mocha fails the test on (and which ended the server).
      await stranger.publish(`operation.control:${operationId}`, 'not json');
      await stranger.publish(`operation.control:${operationId}`, '{"half":');
      const sent: OperationControlPayload = { operationId, action: 'cancel' };
      await bus.publishConfirmed('operation.control', operationId, sent, 5_000);
      assert.deepEqual((await first).value, sent);
      await events.return();
      // The first at once; the second waits for the interval, or for the bus to close.
      assert.deepEqual(warnings.map((warning) => warning.fields.dropped), [1]);
      assert.match(warnings[0].message, /not JSON/);
      assert.equal(warnings[0].fields.channel, `operation.control:${operationId}`);
      await bus.close();
      await eventually(async () => warnings.length === 2, { timeoutMs: 3_000, what: 'the dropped message still unlogged to be logged at the close (its interval is 10 s)' });
      assert.equal(warnings[1].fields.dropped, 1);
    } finally {
      stranger.disconnect();
      await bus.close();
    }
  });

  const quiet = { info: () => undefined, error: () => undefined, warn: () => undefined } as unknown as Logger;
  const redisPort = () => Number(new URL(TEST_REDIS_URL).port || 6379);
  const throughProxy = (proxy: CuttableProxy) => {
    const url = new URL(TEST_REDIS_URL);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    return url.toString();
  };

  // A NAT or load balancer that drops an idle connection without closing it: only the kernel's keepalive noticed, after
  // about two hours, and meanwhile no event of another replica arrived, a new subscription waited for its SUBSCRIBE's
  // answer for good, and the readiness check (which asked the publishing connection only) said ready.
  it('makes the subscribing connection again when it stops answering, saying events were lost, and delivers after it', async () => {
    const proxy = await cuttableProxy(new URL(TEST_REDIS_URL).hostname, redisPort());
    const bus = await createRedisEventBus(throughProxy(proxy), quiet, { everyMs: 200, deadlineMs: 500 });
    const other = new Redis(TEST_REDIS_URL);
    let lost = 0;
    bus.onDeliveryLost(() => (lost += 1));
    try {
      proxy.stall();
      await assert.rejects(bus.probe(), /does not answer a PING/);
      await eventually(() => lost === 1, { what: 'the lost delivery to be told', timeoutMs: 5_000 });
      await eventually(() => bus.isDelivering(), { what: 'delivery to resume on a new connection', timeoutMs: 10_000 });
      const operationId = randomUUID();
      const events = bus.pubSub.subscribe('operation.control', operationId);
      const first = events.next();
      await bus.subscribed('operation.control', operationId);
      const sent: OperationControlPayload = { operationId, action: 'cancel' };
      await other.publish(`operation.control:${operationId}`, JSON.stringify(sent));
      assert.deepEqual((await first).value, sent);
      await events.return();
      await bus.probe();
    } finally {
      other.disconnect();
      await bus.close();
      await proxy.close();
    }
  });

  it('leaves no channel subscribed whose listener ended while Redis was away', async () => {
    const proxy = await cuttableProxy(new URL(TEST_REDIS_URL).hostname, redisPort());
    const bus = await createRedisEventBus(throughProxy(proxy), quiet);
    const other = new Redis(TEST_REDIS_URL);
    const subscribers = async (channel: string) => Number(((await other.pubsub('NUMSUB', channel)) as [string, number])[1]);
    try {
      const operationId = randomUUID();
      const channel = `operation.control:${operationId}`;
      const events = bus.pubSub.subscribe('operation.control', operationId);
      void events.next();
      await bus.subscribed('operation.control', operationId);
      assert.equal(await subscribers(channel), 1);
      proxy.cut();
      await eventually(() => !bus.isDelivering(), { what: 'the outage to be seen' });
      await events.return();
      // Its UNSUBSCRIBE fails once ioredis gives up on the commands queued meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      proxy.mend();
      await eventually(() => bus.isDelivering(), { what: 'delivery to resume', timeoutMs: 10_000 });
      await eventually(async () => (await subscribers(channel)) === 0, { what: 'the channel to be unsubscribed', timeoutMs: 5_000 });
    } finally {
      other.disconnect();
      await bus.close();
      await proxy.close();
    }
  });
});

