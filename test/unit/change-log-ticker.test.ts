import assert from 'node:assert/strict';
import type { DataSource } from 'typeorm';
import type { Logger } from '../../src/logging/logger';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';
import type { InstanceService } from '../../src/services/instance.service';
import { ChangeLogService } from '../../src/services/change-log.service';
import { eventually } from '../support/wait';

describe('the change log ticker', () => {
  it('logs a look that failed (the metadata database away) and looks again, rather than ending the process', async () => {
    let looks = 0;
    const unavailable = async () => {
      looks += 1;
      throw new Error('Connection terminated unexpectedly');
    };
    const db = { getRepository: () => ({ find: unavailable }) } as unknown as DataSource;
    const instances = { runningIds: unavailable } as unknown as InstanceService;
    const warnings: string[] = [];
    const logger = { warn: (_details: unknown, message: string) => warnings.push(message) } as unknown as Logger;
    const changeLog = new ChangeLogService(db, {} as EncryptedBlobStore, instances, logger, { shipDelayMs: 10, tickMs: 10, segmentBytes: 1024 });
    // An unhandled rejection would fail this test (mocha reports it) and end the server.
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      changeLog.start();
      await eventually(() => looks >= 2 && warnings.length >= 2, { intervalMs: 10, what: 'two failed looks, each logged' });
      await changeLog.stop();
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.deepEqual(unhandled, []);
    assert.ok(looks >= 2, `looked ${looks} times`);
    assert.ok(warnings.length >= 2 && warnings.every((message) => /failed; it is retried/.test(message)), warnings.join('; '));
  });
});
