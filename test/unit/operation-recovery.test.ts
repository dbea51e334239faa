// Recovery and hand-back of operations, against the product's SQLite metadata database: the runner that takes an
// orphan over compensates with what the row holds once taken, not with what it read before; a cancel accepted while
// an operation is being handed back ends it CANCELLED, never queued to run again; an operation compensated outside a
// run (an orphan recovered, a queued one cancelled) stays under its taker's lease until it is settled.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DataSource, Repository } from 'typeorm';

import { OperationEntity } from '../../src/entities/operation.entity';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { Compensation, OperationHandler } from '../../src/jobs/operation-handler';
import { OperationRunner } from '../../src/jobs/operation-runner';
import { createLogger } from '../../src/logging/logger';
import { Metrics } from '../../src/observability/metrics';
import { eventually } from '../support/wait';
import { migratedSqliteMetadata } from '../support/metadata-database';

/** Inserts an operation (a QUEUED SNAPSHOT of a made-up instance unless `fields` say otherwise); returns its id. */
async function insertOperation(db: DataSource, fields: Partial<Omit<OperationEntity, 'params'>> = {}): Promise<string> {
  const id = randomUUID();
  await db.getRepository(OperationEntity).insert({
    id,
    tenantId: randomUUID(),
    instanceId: randomUUID(),
    kind: 'SNAPSHOT',
    status: 'QUEUED',
    phase: 'queued',
    params: null,
    createdAt: Date.now(),
    attempt: 0,
    ...fields,
  });
  return id;
}

describe('operation recovery', function () {
  this.timeout(30_000);
  let dir: string;
  let db: DataSource;
  let runner: OperationRunner;

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-recovery-'));
  });

  let others: OperationRunner[] = [];

  afterEach(async () => {
    await runner?.stop();
    for (const other of others.splice(0)) await other.stop();
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

  describe('an operation being compensated is held under its lease until it is settled', () => {
    const runnerWith = (handler: OperationHandler) => {
      const created = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 900, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
      created.register(handler);
      others.push(created);
      return created;
    };
    /** A restore-like handler whose compensation (a large safety snapshot deleted, say) outlasts the lease. */
    const slowCompensation = () => {
      const seen = { compensating: 0, mostAtOnce: 0, compensations: 0, runsWhileCompensating: 0, release: null as (() => void) | null };
      const handler: OperationHandler = {
        kind: 'SNAPSHOT',
        run: async () => {
          if (seen.compensating > 0) seen.runsWhileCompensating += 1;
        },
        compensate: async () => {
          seen.compensations += 1;
          seen.compensating += 1;
          seen.mostAtOnce = Math.max(seen.mostAtOnce, seen.compensating);
          if (seen.compensations === 1) await new Promise<void>((resolve) => (seen.release = resolve));
          seen.compensating -= 1;
        },
      };
      return { seen, handler };
    };
    const insertOrphan = (fields: Partial<Omit<OperationEntity, 'params'>>) =>
      insertOperation(db, {
        status: 'RUNNING',
        phase: 'capturing',
        createdAt: Date.now() - 60_000,
        startedAt: Date.now() - 60_000,
        leaseOwner: 'dead-replica',
        leaseExpiresAt: Date.now() - 1_000,
        attempt: 1,
        ...fields,
      });

    it('by recovery: another replica does not take the orphan over again while it is compensated', async () => {
      const { seen, handler } = slowCompensation();
      const id = await insertOrphan({});
      const recovering = runnerWith(handler).start();
      await eventually(() => seen.release !== null, { intervalMs: 10, what: 'recovery to compensate' });
      await runnerWith(handler).start();
      await sleep(2_500); // the lease is 900 ms; the other runner looks for expired ones every second
      seen.release!();
      await recovering;

      assert.equal(seen.mostAtOnce, 1, 'compensated by two runners at once');
      assert.equal(seen.runsWhileCompensating, 0, 'its next attempt ran while its last one was still being put back');
      assert.equal(seen.compensations, 1);
      const row = await eventually(async () => {
        const found = await db.getRepository(OperationEntity).findOneByOrFail({ id });
        return found.status === 'SUCCEEDED' && found;
      }, { what: 'the next attempt to run' });
      assert.equal(row.attempt, 2);
    });

    it('by a cancellation of a queued operation: nobody recovers it as an orphan meanwhile', async () => {
      const { seen, handler } = slowCompensation();
      // The cancelling replica is busy with other work (a verification), at its limit: it does not claim the snapshot.
      const busy: OperationHandler = {
        kind: 'VERIFY',
        run: (_operation, context) => new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true })),
        compensate: async () => undefined,
      };
      const cancelling = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 900, soleProcess: false, maxAttempts: 3, maxConcurrent: 1 }, new Metrics());
      cancelling.register(handler);
      cancelling.register(busy);
      others.push(cancelling);
      await insertOrphan({ kind: 'VERIFY', status: 'QUEUED', phase: 'queued', leaseOwner: null, leaseExpiresAt: null, startedAt: null, attempt: 0 });
      await cancelling.start();
      const id = await insertOrphan({ status: 'QUEUED', phase: 'queued', leaseOwner: null, leaseExpiresAt: null, startedAt: null, attempt: 0 });
      const cancelled = cancelling.cancel(id);
      await eventually(() => seen.release !== null, { intervalMs: 10, what: 'the cancellation to compensate' });
      await runnerWith(handler).start();
      await sleep(2_500);
      seen.release!();
      assert.equal(await cancelled, 'cancelled');

      assert.equal(seen.mostAtOnce, 1, 'compensated by cancel and by recovery at once');
      assert.equal(seen.compensations, 1);
      const row = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      assert.equal(row.status, 'CANCELLED');
    });
  });

  it('does not stop (and stop renewing the lease) while it still compensates an orphan it took over', async () => {
    const seen = { compensating: 0, release: null as (() => void) | null };
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async () => assert.fail('not run: the runner is stopping'),
      compensate: async () => {
        seen.compensating += 1;
        await new Promise<void>((resolve) => (seen.release = resolve));
        seen.compensating -= 1;
      },
    };
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 900, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    await runner.start();
    // Its replica died after start: the orphan is found by the periodic recovery, not the one at boot.
    const id = await insertOperation(db, { status: 'RUNNING', phase: 'capturing', startedAt: Date.now() - 60_000, leaseOwner: 'dead-replica', leaseExpiresAt: Date.now() - 1_000, attempt: 1 });
    await eventually(() => seen.release !== null, { intervalMs: 10, what: 'recovery to compensate the orphan' });

    // A SIGTERM meanwhile. The compensation may go on for a while (a large shadow store removed); the process closes
    // its stores and database once stop() has resolved.
    const stopped = runner.stop(0).then(() => seen.compensating);
    setImmediate(() => seen.release!());
    assert.equal(await stopped, 0, 'stop() resolved while a compensation was under way, its lease no longer renewed');
    const row = await db.getRepository(OperationEntity).findOneByOrFail({ id });
    assert.deepEqual({ status: row.status, leaseOwner: row.leaseOwner }, { status: 'QUEUED', leaseOwner: null });
  });

  it('does not stop while its recovery is taking an orphan over, nor compensate it once stopped', async () => {
    const seen = { stopped: false, compensations: 0, compensationsAfterStop: 0 };
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async () => assert.fail('not run: the runner is stopping'),
      compensate: async () => {
        seen.compensations += 1;
        if (seen.stopped) seen.compensationsAfterStop += 1;
      },
    };
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 60_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    const own = runner as unknown as { operations: Repository<OperationEntity>; recoverOrphans(all: boolean): Promise<void> };
    // Every recovery this runner starts, to wait for them all once the test is over.
    const recoveries: Promise<void>[] = [];
    const recoverOrphans = own.recoverOrphans.bind(runner);
    own.recoverOrphans = (all) => {
      const recovery = recoverOrphans(all);
      recoveries.push(recovery.catch(() => undefined));
      return recovery;
    };
    // The recovery's taking of the orphan's row is held back (a busy database) until the process is told to stop.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let takeHeld = false;
    const update = own.operations.update.bind(own.operations);
    own.operations.update = ((criteria: { attempt?: number }, patch: Partial<OperationEntity>) => {
      if (!takeHeld && criteria.attempt !== undefined && patch.leaseOwner !== undefined && patch.status === undefined) {
        takeHeld = true;
        return released.then(() => update(criteria as never, patch as never));
      }
      return update(criteria as never, patch as never);
    }) as typeof own.operations.update;
    await runner.start();
    // Its replica died after start: the orphan is found by the periodic recovery, not the one at boot.
    const id = await insertOperation(db, { status: 'RUNNING', phase: 'capturing', startedAt: Date.now() - 60_000, leaseOwner: 'dead-replica', leaseExpiresAt: Date.now() - 1_000, attempt: 1 });
    await eventually(() => takeHeld, { intervalMs: 10, what: 'recovery to take the orphan' });

    // A SIGTERM meanwhile; the process closes its stores and database once stop() has resolved.
    const stopped = runner.stop(0).then(() => {
      seen.stopped = true;
    });
    setImmediate(release);
    await stopped;
    await Promise.all(recoveries);
    assert.equal(seen.compensationsAfterStop, 0, 'an orphan was compensated after stop() resolved, its lease no longer renewed');
    const row = await db.getRepository(OperationEntity).findOneByOrFail({ id });
    // Either put back before stop() resolved, or left to the next process (its lease expires).
    const left = seen.compensations === 0 ? { status: 'RUNNING', leaseOwner: 'dead-replica' } : { status: 'QUEUED', leaseOwner: null };
    assert.deepEqual({ status: row.status, leaseOwner: row.leaseOwner }, left);
  });

  it('refuses a cancel once the point of no return is entered, even when a progress write of before lands after it', async () => {
    const id = await insertOperation(db);
    let answer: string | undefined;
    let persistHeld: Promise<unknown> | null = null;
    let swapEntered!: () => void;
    const entered = new Promise<void>((resolve) => (swapEntered = resolve));
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async (_operation, context) => {
        let bytesDone = 0;
        // Progress until the runner persists some (at most once a second).
        await eventually(() => {
          context.progress({ phase: 'verifying', bytesDone: ++bytesDone });
          return persistHeld !== null;
        }, { intervalMs: 50, what: 'a progress write' });
        await context.enterPointOfNoReturn();
        swapEntered();
        await persistHeld;
        answer = await runner.cancel(id);
      },
      compensate: async () => undefined,
    };
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 60_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    // With PostgreSQL, two writes go out on two pooled connections: the progress write sent just before the point of no
    // return's can reach the database after it. Here it is held back until then.
    const own = runner as unknown as { operations: Repository<OperationEntity> };
    const update = own.operations.update.bind(own.operations);
    own.operations.update = ((criteria: never, patch: Partial<OperationEntity>) => {
      if (persistHeld === null && patch.bytesDone !== undefined && patch.status === undefined) {
        persistHeld = entered.then(() => update(criteria, patch as never));
        return persistHeld;
      }
      return update(criteria, patch as never);
    }) as typeof own.operations.update;
    await runner.start();

    const row = await eventually(async () => {
      const found = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      return found.status !== 'RUNNING' && found.status !== 'QUEUED' && found;
    }, { what: 'the operation to end' });
    assert.equal(answer, 'past-point-of-no-return');
    assert.equal(row.status, 'SUCCEEDED');
  });

  it('stops a run whose lease it cannot renew before another runner may take the operation over', async () => {
    const id = await insertOperation(db);
    const seen = { running: 0, mostAtOnce: 0, runs: 0, compensatedWhileRunning: false };
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async (_operation, context) => {
        seen.runs += 1;
        seen.running += 1;
        seen.mostAtOnce = Math.max(seen.mostAtOnce, seen.running);
        // Writing its shadow store, say, until it is told to stop.
        await new Promise((_resolve, reject) =>
          context.signal.addEventListener('abort', () => {
            seen.running -= 1;
            reject(context.signal.reason);
          }, { once: true }),
        );
      },
      compensate: async () => {
        if (seen.running > 0) seen.compensatedWhileRunning = true;
      },
    };
    const newRunner = () => {
      const created = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 3_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
      created.register(handler);
      others.push(created);
      return created;
    };
    const cutOff = newRunner();
    await cutOff.start();
    await eventually(() => seen.runs === 1, { intervalMs: 10, what: 'the first run' });
    // The metadata database no longer answers this runner (a network partition): its renewals fail.
    const own = cutOff as unknown as { operations: Repository<OperationEntity> };
    const repository = own.operations;
    const unreachable = async () => {
      throw new Error('connection terminated unexpectedly');
    };
    own.operations = new Proxy(repository, { get: (target, key) => (['update', 'find', 'findOneBy'].includes(String(key)) ? unreachable : Reflect.get(target, key)) });

    await newRunner().start();
    const row = await eventually(async () => {
      const found = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      return found.attempt === 2 && found.status !== 'QUEUED' && found;
    }, { what: 'another runner to take the operation over and run it again' });
    await sleep(100);
    own.operations = repository;

    assert.equal(seen.compensatedWhileRunning, false, 'compensated while its first run still went on');
    assert.equal(seen.mostAtOnce, 1, 'two runs at once');
    assert.notEqual(row.leaseOwner, cutOff.owner);
  });

  it('never runs two attempts of one operation at once, nor lets a stale attempt record its outcome', async () => {
    const id = await insertOperation(db);
    const seen = { runs: [] as number[], running: 0, mostAtOnce: 0, succeeded: [] as number[] };
    const gate = () => {
      let resolve!: () => void;
      return { promise: new Promise<void>((done) => (resolve = done)), resolve: () => resolve() };
    };
    const finish = [gate(), gate()];
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async (operation) => {
        const attempt = operation.attempt;
        seen.runs.push(attempt);
        seen.running += 1;
        seen.mostAtOnce = Math.max(seen.mostAtOnce, seen.running);
        // A step that does not look at the signal (a long write, an event loop stalled by a GC pause): the run goes on
        // past the moment its lease was lost.
        await finish[seen.runs.length - 1].promise;
        seen.running -= 1;
        // What a restore commits with its SUCCEEDED: the swap to its shadow store.
        return { afterCommit: async () => void seen.succeeded.push(attempt) };
      },
      compensate: async () => undefined,
    };
    // A long lease: the run is not stopped by its own lease timer or heartbeat before the takeover below.
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 60_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    await runner.start();
    await eventually(() => seen.runs.length === 1, { intervalMs: 10, what: 'the first run' });
    // Meanwhile another replica took the operation over (its clock ahead, or this process stalled past the lease),
    // compensated it and queued it again, as its record(QUEUED) leaves the row.
    await db.getRepository(OperationEntity).update({ id }, { status: 'QUEUED', phase: 'queued', leaseOwner: null, leaseExpiresAt: null });
    runner.kick();
    await sleep(300);
    finish[0].resolve(); // the stale first attempt ends and tries to record SUCCEEDED
    await sleep(300);
    finish[1].resolve();

    const row = await eventually(async () => {
      const found = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      return found.status === 'SUCCEEDED' && found;
    }, { what: 'the operation to succeed' });
    await eventually(() => seen.succeeded.length > 0, { intervalMs: 10, what: 'the after-commit step' });
    assert.equal(seen.mostAtOnce, 1, 'two attempts ran at once in one process');
    assert.deepEqual(seen.succeeded, [2], 'the outcome recorded was not the running attempt\'s');
    assert.equal(row.attempt, 2);
  });

  it("writes what a run does under its lease only while the run holds it: never after another runner took it over", async () => {
    const id = await insertOperation(db);
    const written: string[] = [];
    let takenOver!: () => void;
    const afterTakeover = new Promise<void>((resolve) => (takenOver = resolve));
    let outcome: unknown;
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async (operation, context) => {
        await context.underLease(async (manager) => {
          await manager.update(OperationEntity, { id: operation.id }, { phase: 'under the lease' });
          written.push('before');
        });
        // A step that does not look at the signal (an event loop stalled, a slow link to the database): the run goes
        // on past the moment another runner took the operation over.
        await afterTakeover;
        outcome = await context.underLease(async () => void written.push('after')).catch((error: Error) => error);
        throw outcome;
      },
      compensate: async () => undefined,
    };
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 60_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    await runner.start();
    await eventually(() => written.length === 1, { intervalMs: 10, what: 'the first write under the lease' });
    assert.equal((await db.getRepository(OperationEntity).findOneByOrFail({ id })).phase, 'under the lease');
    // Another replica took the operation over (this process stalled past the lease) and runs it as attempt 2.
    await db.getRepository(OperationEntity).update({ id }, { leaseOwner: 'another-replica', attempt: 2 });
    takenOver();
    await eventually(() => outcome !== undefined, { intervalMs: 10, what: 'the second write under the lease' });
    assert.deepEqual(written, ['before'], 'written under a lease another runner holds');
    assert.match(String(outcome), /the operation lease was lost/);
  });

  // A restore's commit starts the restored data's history at the moment it runs: a finishedAt taken before it named a
  // moment of the old history, and a restore to a point between finishedAt and the first write after it brought the
  // replaced data back (point-in-time.test.ts, "between the restore and the first write after it", under load).
  it('records finishedAt once what the operation commits is done, never before it', async () => {
    const id = await insertOperation(db);
    let committedAt = 0;
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async () => ({
        commit: async () => {
          await sleep(50); // a commit that waits for the database (another transaction, a busy disk)
          committedAt = Date.now();
        },
      }),
      compensate: async () => undefined,
    };
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 60_000, soleProcess: true, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    await runner.start();
    const row = await eventually(async () => {
      const found = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      return found.status === 'SUCCEEDED' && found;
    }, { what: 'the operation to succeed' });
    assert.ok(row.finishedAt! >= committedAt, `finishedAt ${row.finishedAt} is ${committedAt - row.finishedAt!} ms before its commit ran`);
  });

  it('leaves an operation alone that another runner took over when a stale attempt of it fails: no compensation', async () => {
    const id = await insertOperation(db);
    let fail!: () => void;
    const failed = new Promise<void>((resolve) => (fail = resolve));
    const compensations: Compensation[] = [];
    const handler: OperationHandler = {
      kind: 'SNAPSHOT',
      run: async (operation) => {
        // A step that does not look at the signal; then the run fails on its own (a restore whose shadow the takeover's
        // compensation removed under it), before its lease timer or a heartbeat said the lease was lost.
        await failed;
        throw new Error(`attempt ${operation.attempt} found its shadow store gone`);
      },
      compensate: async (_operation, why) => void compensations.push(why),
    };
    // A long lease: the run is not stopped by its own lease timer or heartbeat before the takeover below.
    runner = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 60_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
    runner.register(handler);
    await runner.start();
    const operations = db.getRepository(OperationEntity);
    await eventually(async () => (await operations.findOneByOrFail({ id })).attempt === 1, { intervalMs: 10, what: 'the first run' });
    // Meanwhile another replica (its clock ahead) took the operation over, compensated it, queued it again and claimed
    // its next attempt, whose restore is now building its own shadow store.
    await operations.update({ id }, { status: 'RUNNING', leaseOwner: 'replica-b', leaseExpiresAt: Date.now() + 60_000, attempt: 2 });
    fail();
    await sleep(500);

    assert.deepEqual(compensations, [], 'the stale attempt compensated the operation another runner is running');
    const row = await operations.findOneByOrFail({ id });
    assert.deepEqual({ status: row.status, leaseOwner: row.leaseOwner, attempt: row.attempt }, { status: 'RUNNING', leaseOwner: 'replica-b', attempt: 2 });
  });

  describe('a cancel accepted while an operation is handed back', () => {
    const newRunner = (handler: OperationHandler) => {
      const created = new OperationRunner(db, createInMemoryEventBus(), createLogger('silent'), { leaseMs: 3_000, soleProcess: false, maxAttempts: 3, maxConcurrent: 0 }, new Metrics());
      created.register(handler);
      others.push(created);
      return created;
    };
    /** A handler whose run lasts until it is stopped, and whose compensation (a safety snapshot deleted, say) takes a while. */
    const slowToCompensate = () => {
      const seen = { runs: 0, compensations: [] as Compensation[], finishCompensation: null as (() => void) | null };
      const handler: OperationHandler = {
        kind: 'SNAPSHOT',
        run: async (_operation, context) => {
          seen.runs += 1;
          await new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true }));
        },
        compensate: async (_operation, why) => {
          seen.compensations.push(why);
          if (seen.compensations.length === 1) await new Promise<void>((resolve) => (seen.finishCompensation = resolve));
        },
      };
      return { seen, handler };
    };
    const until = (check: () => boolean, what: string) => eventually(check, { intervalMs: 10, what });

    it('ends CANCELLED when it came during a shutdown, and no other process runs it again', async () => {
      const { seen, handler } = slowToCompensate();
      const first = newRunner(handler);
      const id = await insertOperation(db);
      await first.start();
      await until(() => seen.runs === 1, 'the first run');
      const stopping = first.stop(0); // the grace period is over: the operation is handed back
      await until(() => seen.finishCompensation !== null, 'the hand-back to compensate');
      assert.equal(await first.cancel(id), 'requested');
      seen.finishCompensation!();
      await stopping;

      const row = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      assert.equal(row.status, 'CANCELLED');
      assert.equal(row.errorCode, 'CANCELLED');
      assert.deepEqual(seen.compensations.map((why) => why.retry), [true, false], 'compensated again as an ending: the inputs kept for a retry go');
      await newRunner(handler).start();
      await sleep(100);
      assert.equal(seen.runs, 1);
    });

    it('ends CANCELLED when it came while recovery compensated an orphan', async () => {
      const { seen, handler } = slowToCompensate();
      const id = await insertOperation(db, { status: 'RUNNING', phase: 'capturing', startedAt: Date.now() - 60_000, leaseOwner: 'dead-replica', leaseExpiresAt: Date.now() - 1_000, attempt: 1 });
      const recovering = newRunner(handler);
      const starting = recovering.start();
      await until(() => seen.finishCompensation !== null, 'recovery to compensate');
      assert.equal(await recovering.cancel(id), 'requested');
      seen.finishCompensation!();
      await starting;

      const row = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      assert.equal(row.status, 'CANCELLED');
      assert.equal(seen.runs, 0);
    });

    it('cancels a queued operation that carries a cancel request instead of running it', async () => {
      const { seen, handler } = slowToCompensate();
      // As a hand-back left it before this was fixed, or a stop between a claim and the start.
      const id = await insertOperation(db, { attempt: 1, cancelRequestedAt: Date.now() - 1_000 });
      const starting = newRunner(handler).start();
      await until(() => seen.finishCompensation !== null, 'the compensation');
      seen.finishCompensation!();
      await starting;

      const row = await db.getRepository(OperationEntity).findOneByOrFail({ id });
      assert.equal(row.status, 'CANCELLED');
      assert.equal(row.attempt, 1, 'not counted as an attempt');
      assert.equal(seen.runs, 0);
      assert.deepEqual(seen.compensations.map((why) => why.retry), [false]);
    });
  });
});
