// The Redis event bus meeting a message it did not publish: something else sharing the Redis (an operator's PUBLISH by
// hand, another application on a channel of the same name) must not end the replicas that listen there.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createRedisEventBus, type OperationControlPayload } from '../../src/events/event-bus';
import type { Logger } from '../../src/logging/logger';
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
});
