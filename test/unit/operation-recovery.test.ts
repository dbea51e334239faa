// Recovery of an operation whose owner stopped renewing its lease, against the product's SQLite metadata database:
// the runner that takes it over compensates with what the row holds once taken, not with what it read before.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource, Repository } from 'typeorm';

import { createMetadataDataSource } from '../../src/entities/data-source';
import { OperationEntity } from '../../src/entities/operation.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { Compensation, OperationHandler } from '../../src/jobs/operation-handler';
import { OperationRunner } from '../../src/jobs/operation-runner';
import { createLogger } from '../../src/logging/logger';
import { Metrics } from '../../src/observability/metrics';

describe('operation recovery', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  let runner: OperationRunner;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-recovery-'));
    db = createMetadataDataSource({ dataDir: dir });
    await db.initialize();
    await db.runMigrations({ transaction: 'each' });
  });

  afterEach(async () => {
    await runner?.stop();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('compensates a taken-over operation with the params its stalled owner recorded after the orphan scan', async () => {
    const operations = db.getRepository(OperationEntity);
    const id = randomUUID();
    await operations.insert({
      id,
      tenantId: randomUUID(),
      instanceId: randomUUID(),
      kind: 'EXPORT',
      status: 'RUNNING',
      phase: 'writing',
      params: { format: 'BACKUP' },
      createdAt: Date.now() - 60_000,
      startedAt: Date.now() - 60_000,
      leaseOwner: 'stalled-replica',
      leaseExpiresAt: Date.now() - 1_000,
      attempt: 1,
    });
    const compensated: { params: Record<string, unknown> | null; why: Compensation }[] = [];
    const handler: OperationHandler = {
      kind: 'EXPORT',
      run: async () => assert.fail('a recovered operation is not run by the runner that compensates it'),
      compensate: async (operation, why) => {
        compensated.push({ params: operation.params, why });
      },
    };
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 5_000, soleProcess: false, maxAttempts: 1, maxConcurrent: 1 }, new Metrics());
    runner.register(handler);
    // The stalled owner records where its half-written upload is, between the scan for orphans and their takeover
    // (as JobContext.saveParams does: under its lease, which it still holds then).
    const repository = (runner as unknown as { operations: Repository<OperationEntity> }).operations;
    const scan = repository.find.bind(repository);
    repository.find = (async (...args: Parameters<typeof scan>) => {
      const found = await scan(...args);
      await operations.update({ id, leaseOwner: 'stalled-replica', status: 'RUNNING' }, { params: { write: { uploadId: 'late' } } });
      return found;
    }) as typeof repository.find;

    await runner.start();

    assert.equal(compensated.length, 1);
    assert.deepEqual(compensated[0].params, { write: { uploadId: 'late' } });
    assert.equal(compensated[0].why.retry, false);
    const row = await operations.findOneByOrFail({ id });
    assert.equal(row.status, 'FAILED');
    assert.equal(row.errorCode, 'INTERRUPTED');
  });
});
