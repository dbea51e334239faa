// Runs durable operations: claims queued rows, holds a lease with a heartbeat, throttles progress, and owns the
// operation row: only the runner writes it. What cannot finish is handed back: a shutdown (after its grace period),
// a crash or an expired lease compensates the operation to its starting point and queues it again, until
// maxAttempts; a cancellation compensates it and ends it CANCELLED.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { IsNull, Not, type DataSource, type EntityManager, type Repository } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { beforeDatabaseTime, databaseTime } from '../entities/database-clock';
import { OperationEntity, type OperationKind, type OperationStatus } from '../entities/operation.entity';
import { isAppError } from '../errors/app-error';
import { asStorageFull, isStorageFull } from '../errors/storage-full';
import type { EventBus } from '../events/event-bus';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../observability/metrics';
import type { JobContext, OperationHandler, OperationResult, ProgressUpdate } from './operation-handler';
import { isTerminal, type LiveOperation, operationJson } from './operation-json';
import { POINT_OF_NO_RETURN } from './operation-phases';

const PUBLISH_INTERVAL_MS = 100; // ≤ 10 events/s per operation
const PERSIST_INTERVAL_MS = 1_000; // ≤ 1 write/s per operation
const POLL_INTERVAL_MS = 1_000;
const SETTLE_RETRY_MS = 2_000; // how often an outcome a full disk refused is tried again
/**
 * How many times an attempt's compensation is tried (SETTLE_RETRY_MS after the first failure, twice as long after
 * each next) before the operation is recorded as ended all the same, its instance not put back: a failure of a moment
 * (a dropped database session, a deadlock, a busy SQLite) passes within them; one that does not, would keep the
 * operation RUNNING for good.
 */
const COMPENSATION_ATTEMPTS = 5;

export interface RunnerOptions {
  leaseMs: number;
  /** The only process on this metadata database (embedded SQLite): every RUNNING row at boot is an orphan. */
  soleProcess: boolean;
  /** Starts an operation gets: an interruption of the last one fails it with INTERRUPTED instead of queuing it again. */
  maxAttempts: number;
  /** Operations this process runs at once; more wait QUEUED (0: no limit). */
  maxConcurrent: number;
}

/** What a cancellation request found: done at once (QUEUED), asked of the runner (RUNNING), or refused. */
export type CancelRequest = 'cancelled' | 'requested' | 'past-point-of-no-return' | 'finished';

/** Why the runner stopped a job before its end. */
class Interruption extends Error {
  constructor(
    readonly cause: 'shutdown' | 'lease-lost' | 'cancelled',
    message: string,
  ) {
    super(message);
  }
}

/** How an attempt ended without succeeding: FAILED, CANCELLED, or QUEUED again (handed back). */
type Stop = { status: Exclude<OperationStatus, 'SUCCEEDED' | 'RUNNING'>; code: string; message: string };
type Outcome = { status: 'SUCCEEDED'; result?: OperationResult; cancellable: boolean } | Stop;

const CANCELLED: Stop = { status: 'CANCELLED', code: 'CANCELLED', message: 'cancelled on request; nothing was changed' };

interface Running {
  operation: OperationEntity;
  /** Counts this attempt's progress updates: what a subscriber orders its states by (see isBehind). */
  revision: number;
  abort: AbortController;
  publishTimer: NodeJS.Timeout | null;
  /** Stops the job when its lease is about to run out unrenewed (see holdLease). */
  leaseTimer: NodeJS.Timeout | null;
  /** performance.now() of the last event and of the last progress write (throttles that a clock step must not stop). */
  lastPublished: number;
  lastPersisted: number;
  done: Promise<void>;
  /** How the attempt ended, decided once (a retry of its settling keeps it, whatever comes meanwhile: a cancellation). */
  stop?: Stop;
  /** Its compensations that failed (see COMPENSATION_ATTEMPTS). */
  failedCompensations: number;
}

export class OperationRunner {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly operations: Repository<OperationEntity>;
  private readonly handlers = new Map<OperationKind, OperationHandler>();
  private readonly running = new Map<string, Running>();
  /**
   * Operations this process compensates outside a run of its own (orphans it recovers, queued ones it cancels). Their
   * leases are renewed as a running job's: a compensation that outlasts the lease (a large safety snapshot deleted)
   * would otherwise be taken over by another replica, compensated twice at once, and its next attempt started while
   * this one still puts the instance back (makes it AVAILABLE, lifts the write fence, removes the shadow store). By id,
   * the compensation itself: stop() waits for them, under their leases, before the process closes its stores.
   */
  private readonly compensating = new Map<string, Promise<void>>();
  /** Aborted by stop(): ends the waits between tries of a settling (its operation is then left to recovery). */
  private stopping = new AbortController();
  /**
   * Recoveries of orphans under way: stop() waits for them too. One may be taking an orphan's row when stop() is called
   * (its compensation not in `compensating` yet): it went on to compensate it after stop() had resolved, with the lease no
   * longer renewed and the stores and database closing under it.
   */
  private readonly recoveries = new Set<Promise<void>>();
  private pollTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private stopped = true;
  private polling: Promise<void> | null = null;
  private readonly heartbeatMs: number;

  constructor(
    private readonly db: DataSource,
    private readonly events: EventBus,
    private readonly logger: Logger,
    private readonly options: RunnerOptions,
    private readonly metrics: Metrics,
  ) {
    this.operations = db.getRepository(OperationEntity);
    this.heartbeatMs = Math.max(250, Math.floor(options.leaseMs / 3));
  }

  register(handler: OperationHandler): void {
    this.handlers.set(handler.kind, handler);
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.stopping = new AbortController();
    const every = (ms: number, fn: () => Promise<void>) => {
      const timer = setInterval(() => fn().catch((err) => this.logger.error({ err }, 'operation runner tick failed')), ms);
      timer.unref();
      return timer;
    };
    // Beating before the first recovery: the orphans it compensates are held under their leases meanwhile.
    this.heartbeatTimer = every(this.heartbeatMs, () => this.heartbeat());
    await this.recoverOrphans(this.options.soleProcess);
    this.pollTimer = every(POLL_INTERVAL_MS, async () => {
      await this.recoverOrphans(false);
      await this.poll();
    });
    await this.poll();
  }

  /**
   * Stops claiming work, lets running operations finish for up to `graceMs`, then interrupts the rest: each is
   * compensated and queued again for the next process (or FAILED INTERRUPTED after its last attempt).
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    await this.polling;
    const finished = Promise.all([...this.running.values()].map((job) => job.done));
    if (this.running.size > 0) {
      this.logger.info({ operations: [...this.running.keys()], graceMs }, 'waiting for running operations before stopping');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    for (const job of this.running.values()) {
      if (!job.abort.signal.aborted) job.abort.abort(new Interruption('shutdown', 'the server shut down before the operation finished'));
    }
    await Promise.all([...this.running.values()].map((job) => job.done));
    // A recovery under way takes no orphan after the one it is taking (it sees `stopped`), and settles that one.
    while (this.recoveries.size > 0) await Promise.allSettled([...this.recoveries]);
    // Orphans being recovered and queued operations being cancelled are put back to the end: cut off by the stores and
    // the database closing after this, an orphan's compensation failed it for good ('putting things back failed'), or
    // left it half put back for another replica, which could take it over while it went on without its lease renewed.
    while (this.compensating.size > 0) await Promise.allSettled([...this.compensating.values()]);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  /** Asks the runner to look for queued work now (called right after a service inserts a row). */
  kick(): void {
    if (!this.stopped) void this.poll().catch((err) => this.logger.error({ err }, 'operation poll failed'));
  }

  /** The live state of an operation this process runs (fresher than its row, which is persisted ≤ 1/s). */
  liveState(operationId: string): LiveOperation | null {
    const job = this.running.get(operationId);
    return job ? { ...job.operation, revision: job.revision } : null;
  }

  /** Asks whichever runner holds the operation (this process or another replica) to publish its live state now. */
  requestState(operationId: string): void {
    this.events.pubSub.publish('operation.control', operationId, { operationId, action: 'publish-state' });
  }

  /**
   * Cancels a QUEUED operation here and now (compensated, CANCELLED), or records the request on a RUNNING one and
   * tells its runner, which stops it at its next step (it also sees the request at its next lease renewal).
   * Once the operation has entered POINT_OF_NO_RETURN, the request is refused.
   */
  async cancel(operationId: string): Promise<CancelRequest> {
    // Between the two conditional updates the operation may move from QUEUED to RUNNING: then try again.
    for (let tries = 0; tries < 3; tries++) {
      const now = Date.now();
      if (await this.cancelQueued(operationId, now)) return 'cancelled';
      const requested = await this.operations.update(
        { id: operationId, status: 'RUNNING', phase: Not(POINT_OF_NO_RETURN) },
        { cancelRequestedAt: now },
      );
      if (requested.affected) {
        this.events.pubSub.publish('operation.control', operationId, { operationId, action: 'cancel' });
        return 'requested';
      }
      const current = await this.operations.findOneBy({ id: operationId });
      if (!current || isTerminal(current.status)) return 'finished';
      if (current.status === 'RUNNING' && current.phase === POINT_OF_NO_RETURN) return 'past-point-of-no-return';
    }
    return 'finished';
  }

  /** Takes a QUEUED operation and ends it CANCELLED, compensated; false when it is no longer QUEUED. */
  private async cancelQueued(operationId: string, requestedAt: number): Promise<boolean> {
    const taken = await this.operations.update(
      { id: operationId, status: 'QUEUED' },
      { status: 'RUNNING', leaseOwner: this.owner, leaseExpiresAt: this.leaseFromNow(), cancelRequestedAt: requestedAt },
    );
    if (!taken.affected) return false;
    const operation = await this.operations.findOneByOrFail({ id: operationId });
    await this.settleTaken(operation, CANCELLED);
    return true;
  }

  /** Compensates and records an operation this process took without running it, renewing its lease meanwhile. */
  private async settleTaken(operation: OperationEntity, outcome: Stop): Promise<void> {
    const job = this.jobFor(operation);
    const settle = async (): Promise<void> => {
      for (;;) {
        try {
          return await this.compensateAndRecord(job, outcome);
        } catch (error) {
          if (!(error instanceof CompensationFailed)) throw error;
          // Stopping: its lease is no longer renewed, and once it lapses, recovery (the next process, or another
          // replica) compensates it again.
          if (!(await this.waitToSettleAgain(job, error, this.stopping.signal))) return;
        }
      }
    };
    const settled = settle().finally(() => this.compensating.delete(operation.id));
    this.compensating.set(operation.id, settled);
    await settled;
  }

  private poll(): Promise<void> {
    if (this.polling || this.stopped) return this.polling ?? Promise.resolve();
    this.polling = this.claimQueued().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  private async claimQueued(): Promise<void> {
    const queued = await this.operations.find({ where: { status: 'QUEUED' }, order: { createdAt: 'ASC' }, take: 20 });
    for (const operation of queued) {
      if (this.stopped || this.atCapacity()) break;
      if (!this.handlers.has(operation.kind)) continue;
      // An earlier attempt of it is still winding down here (its lease was lost to another replica, which put it back
      // and queued it again): the next attempt waits for that run to end rather than run beside it under this
      // runner's name, the same shadow store written by both.
      if (this.running.has(operation.id) || this.compensating.has(operation.id)) continue;
      if (operation.cancelRequestedAt !== null) {
        // Cancelled while it was being handed back (a version that queued it all the same, or a stop while
        // claiming): it ends here, never run again.
        await this.cancelQueued(operation.id, operation.cancelRequestedAt);
        continue;
      }
      const claimedAt = performance.now();
      if (!(await this.claim(operation))) continue;
      if (this.stopped) {
        // Stopped while claiming: hand it back untouched for the next process rather than start it during shutdown.
        await this.operations.update(
          this.held(operation),
          { status: 'QUEUED', leaseOwner: null, leaseExpiresAt: null, attempt: operation.attempt - 1 },
        );
        break;
      }
      this.execute(operation, claimedAt);
    }
  }

  private atCapacity(): boolean {
    return this.options.maxConcurrent > 0 && this.running.size >= this.options.maxConcurrent;
  }

  private async claim(operation: OperationEntity): Promise<boolean> {
    const claimed = { status: 'RUNNING' as const, startedAt: Date.now(), leaseOwner: this.owner, attempt: operation.attempt + 1 };
    const result = await this.operations.update({ id: operation.id, status: 'QUEUED', attempt: operation.attempt }, { ...claimed, leaseExpiresAt: this.leaseFromNow() });
    if (!result.affected) return false;
    Object.assign(operation, claimed);
    return true;
  }

  /**
   * A lease's end, a lease from now by the database's clock (see databaseTime): every replica judges a lease by the
   * clock that set it. By its own, a replica whose clock ran ahead by most of a lease took the live operations of the
   * others for abandoned, and interrupted them.
   */
  private leaseFromNow(): () => string {
    return databaseTime(this.db, this.options.leaseMs);
  }

  /**
   * The row as long as this attempt holds it: this runner's lease on this attempt. The attempt fences every write of a
   * run: a run that outlived its lease (another replica compensated it and queued it again) must find the row no
   * longer its own even once this runner has claimed the next attempt, or it recorded its outcome (a restore's swap
   * to a shadow store that compensation removed, or that the next attempt is writing) as the operation's.
   */
  private held(operation: Pick<OperationEntity, 'id' | 'attempt'>) {
    return { id: operation.id, leaseOwner: this.owner, attempt: operation.attempt };
  }

  private jobFor(operation: OperationEntity): Running {
    return {
      operation,
      revision: 0,
      abort: new AbortController(),
      publishTimer: null,
      leaseTimer: null,
      lastPublished: 0,
      lastPersisted: performance.now(),
      done: Promise.resolve(),
      failedCompensations: 0,
    };
  }

  /**
   * Stops the job unless its lease, renewed by a write this process sent at `renewedAt` (performance.now(), which a step
   * of the wall clock does not move: with Date.now(), a step back during a renewal pushed this stop out by the step; the
   * lease runs a lease from when the database took the write, later still), is renewed before half a heartbeat is left
   * of it.
   * With the metadata database out of reach (renewals failing, or hanging), another runner takes the operation over
   * once the lease has expired and runs its next attempt: this run must have stopped by then, not go on writing what
   * that attempt writes (the same shadow store) or clean up after itself what is by then the other's.
   */
  private holdLease(job: Running, renewedAt: number): void {
    if (job.leaseTimer) clearTimeout(job.leaseTimer);
    // The sole process has nobody to take over: it stops nothing for a late renewal (a stalled event loop, a full
    // disk failing the update), which would only run the operation again.
    if (this.options.soleProcess) return;
    job.leaseTimer = setTimeout(() => {
      if (!job.abort.signal.aborted) job.abort.abort(new Interruption('lease-lost', 'the operation lease could not be renewed in time'));
    }, Math.max(0, renewedAt + this.options.leaseMs - performance.now() - this.heartbeatMs / 2));
    job.leaseTimer.unref();
  }

  private execute(operation: OperationEntity, claimedAt: number): void {
    const handler = this.handlers.get(operation.kind)!;
    const job = this.jobFor(operation);
    this.running.set(operation.id, job);
    this.holdLease(job, claimedAt);
    const stopListening = this.listenForControl(job);
    this.publishNow(job);
    this.logger.info(
      { operationId: operation.id, kind: operation.kind, instanceId: operation.instanceId, attempt: operation.attempt },
      'operation started',
    );
    job.done = (async () => {
      try {
        let result: OperationResult | undefined;
        let stopped: { error: unknown } | null = null;
        try {
          result = (await handler.run(operation, this.contextFor(job))) ?? undefined;
          job.abort.signal.throwIfAborted();
        } catch (error) {
          stopped = { error };
        }
        await this.untilSettled(job, async () => {
          if (!stopped) {
            try {
              return await this.record(job, { status: 'SUCCEEDED', result, cancellable: true });
            } catch (error) {
              if (isStorageFull(error)) throw error;
              stopped = { error }; // e.g. a cancellation that came before the result could be committed
            }
          }
          await this.afterStop(job, stopped.error);
        });
      } catch (error) {
        this.logger.error({ err: error, operationId: operation.id }, 'could not record the outcome of an operation');
      } finally {
        if (job.leaseTimer) clearTimeout(job.leaseTimer);
        this.running.delete(operation.id);
        await stopListening();
        this.kick();
      }
    })();
  }

  private contextFor(job: Running): JobContext {
    const { operation } = job;
    const stopUnlessUpdated = async (affected: number | undefined) => {
      if (affected) return;
      job.abort.abort(await this.interruptionOf(job));
      throw job.abort.signal.reason;
    };
    return {
      signal: job.abort.signal,
      progress: (update) => this.progress(job, update),
      saveParams: async (params) => {
        // Stopped here already (its lease timer, a cancel): nothing more is recorded, though the row may still take it.
        job.abort.signal.throwIfAborted();
        const { affected } = await this.operations.update({ ...this.held(operation), status: 'RUNNING' }, { params } as QueryDeepPartialEntity<OperationEntity>);
        await stopUnlessUpdated(affected);
        operation.params = params;
      },
      underLease: async <T>(work: (manager: EntityManager) => Promise<T>) => {
        job.abort.signal.throwIfAborted();
        const outcome = await this.db.transaction(async (manager) => {
          const { affected } = await manager.update(OperationEntity, { ...this.held(operation), status: 'RUNNING' }, { attempt: operation.attempt });
          return affected ? { done: await work(manager) } : null;
        });
        if (!outcome) await stopUnlessUpdated(0);
        return outcome!.done;
      },
      enterPointOfNoReturn: async () => {
        job.abort.signal.throwIfAborted();
        const renewedAt = performance.now();
        const { affected } = await this.operations.update(
          { ...this.held(operation), status: 'RUNNING', cancelRequestedAt: IsNull() },
          { phase: POINT_OF_NO_RETURN, leaseExpiresAt: this.leaseFromNow() },
        );
        await stopUnlessUpdated(affected);
        this.holdLease(job, renewedAt);
        this.progress(job, { phase: POINT_OF_NO_RETURN });
      },
    };
  }

  /** Cancellation requests and live-state requests for a running job, from this process or another replica. */
  private listenForControl(job: Running): () => Promise<void> {
    const messages = this.events.pubSub.subscribe('operation.control', job.operation.id);
    void (async () => {
      for await (const message of messages) {
        if (message.operationId !== job.operation.id) continue;
        if (message.action === 'publish-state') this.publishNow(job);
        else if (!job.abort.signal.aborted) job.abort.abort(new Interruption('cancelled', 'cancelled on request'));
      }
    })().catch((err) => this.logger.warn({ err, operationId: job.operation.id }, 'operation control channel failed'));
    return async () => {
      await messages.return();
    };
  }

  /** Why the row no longer lets this runner go on: a cancellation request, or another runner's lease. */
  private async interruptionOf(job: Running): Promise<Interruption> {
    const row = await this.operations.findOneBy({ id: job.operation.id });
    if (row && row.status === 'RUNNING' && row.leaseOwner === this.owner && row.attempt === job.operation.attempt && row.cancelRequestedAt !== null) {
      return new Interruption('cancelled', 'cancelled on request');
    }
    return new Interruption('lease-lost', 'the operation lease was lost');
  }

  /**
   * Runs `settle` (compensation and the final write) until it gets past a full disk or a failed compensation. The
   * outcome is neither lost nor allowed to stop the server: the operation stays RUNNING under this runner's lease (the
   * heartbeat goes on) and is settled again every SETTLE_RETRY_MS until space returns, or after a compensation that
   * failed, at most COMPENSATION_ATTEMPTS times in all. A shutdown or a lost lease ends the retries; recovery then
   * takes the operation as it takes any other. A cancellation does not: the outcome was decided before it.
   */
  private async untilSettled(job: Running, settle: () => Promise<void>): Promise<void> {
    for (;;) {
      try {
        return await settle();
      } catch (error) {
        const compensation = error instanceof CompensationFailed;
        if (!isStorageFull(error) && !compensation) throw error;
        const interruption = job.abort.signal.aborted ? (job.abort.signal.reason as Interruption) : null;
        if ((interruption && interruption.cause !== 'cancelled') || this.stopped) {
          this.logger.warn({ operationId: job.operation.id }, compensation ? 'putting things back still fails; the operation is left to recovery' : 'the disk is still full; the operation is left to recovery');
          return;
        }
        // A cancelled job's signal has fired already: the wait is cut short by a stop only.
        const signal = interruption ? this.stopping.signal : AbortSignal.any([job.abort.signal, this.stopping.signal]);
        if (!(await this.waitToSettleAgain(job, error, signal))) {
          this.logger.warn({ operationId: job.operation.id }, 'stopping while the outcome of the operation waits to be recorded; it is left to recovery');
          return;
        }
      }
    }
  }

  /**
   * Says why a settling is tried again (`failure`: a compensation that failed, or a full disk), and waits until then:
   * after a failed compensation, twice as long as after the one before; a full disk, SETTLE_RETRY_MS. False once the
   * runner is stopping: no try is made then.
   */
  private async waitToSettleAgain(job: Running, failure: unknown, signal: AbortSignal): Promise<boolean> {
    if (this.stopped) return false;
    const { id: operationId } = job.operation;
    let retryInMs = SETTLE_RETRY_MS;
    if (failure instanceof CompensationFailed) {
      retryInMs = SETTLE_RETRY_MS * 2 ** Math.max(0, job.failedCompensations - 1);
      this.logger.error({ err: failure.failure, operationId, retryInMs }, 'compensation failed: it is tried again, and the operation ends once it succeeds');
    } else {
      this.logger.warn({ operationId, retryInMs }, 'the disk is full: the outcome of the operation will be recorded when space returns');
    }
    await sleep(retryInMs, undefined, { signal }).catch(() => undefined);
    return !this.stopped;
  }

  /** A run that threw or was interrupted: compensated, then FAILED, CANCELLED or queued again. */
  private async afterStop(job: Running, error: unknown): Promise<void> {
    const { operation } = job;
    const interruption = job.abort.signal.aborted ? (job.abort.signal.reason as Interruption) : error instanceof Interruption ? error : null;
    if (interruption?.cause === 'lease-lost') {
      // Another runner has taken the operation, or will once the lease has expired (it could not be renewed): that
      // runner compensates; touching anything here could undo its next attempt.
      this.logger.warn({ operationId: operation.id, why: interruption.message }, 'lost the lease of a running operation; another runner owns it now');
      return;
    }
    if (!job.stop) {
      if (interruption?.cause === 'cancelled') job.stop = CANCELLED;
      else if (interruption?.cause === 'shutdown') job.stop = this.interrupted(operation, interruption.message);
      else {
        const failure = describeFailure(error);
        if (failure.code === 'INTERNAL_SERVER_ERROR') this.logger.error({ err: error, operationId: operation.id }, 'operation crashed');
        job.stop = { status: 'FAILED', ...failure };
      }
    }
    await this.compensateAndRecord(job, job.stop);
  }

  /** An interrupted attempt: queued again while attempts remain, else FAILED with INTERRUPTED. */
  private interrupted(operation: OperationEntity, why: string): Stop {
    if (operation.attempt < this.options.maxAttempts) return { status: 'QUEUED', code: 'INTERRUPTED', message: why };
    return {
      status: 'FAILED',
      code: 'INTERRUPTED',
      message: `${why}; interrupted on each of its ${operation.attempt} attempts, so it was given up; nothing was changed`,
    };
  }

  private async compensateAndRecord(job: Running, outcome: Stop): Promise<void> {
    const { operation } = job;
    // Only while this attempt still holds the row. A run that outlived its lease (this process stalled, or its renewals
    // did not reach the database) may fail on its own before its lease timer or a heartbeat tells it: the runner that took
    // the operation over has compensated it already and may be running its next attempt, which this compensation would
    // undo (a restore's removes every store generation but the current one, the next attempt's shadow among them, and
    // makes the instance writable under that restore).
    if (!(await this.operations.existsBy({ ...this.held(operation), status: 'RUNNING' }))) {
      this.logger.warn({ operationId: operation.id, attempt: operation.attempt }, 'lost the lease before compensating; another runner owns this operation');
      return;
    }
    const handler = this.handlers.get(operation.kind);
    let completed: boolean | void = false;
    try {
      completed = await handler?.compensate(operation, { code: outcome.code, message: outcome.message, retry: outcome.status === 'QUEUED' });
    } catch (err) {
      if (isStorageFull(err)) throw err; // settled again once space returns
      // Not back at its starting point (a restore's instance still RESTORING and READ_ONLY): recorded as ended at once,
      // nothing ever put it back, since recovery looks only at RUNNING operations. Tried again (untilSettled,
      // settleTaken): the failure is most often a moment's (a dropped database session, a deadlock, a busy SQLite).
      job.failedCompensations += 1;
      if (job.failedCompensations < COMPENSATION_ATTEMPTS) throw new CompensationFailed(err);
      this.logger.error({ err, operationId: operation.id, attempts: job.failedCompensations }, 'compensation failed on every try; the operation ends without putting things back');
      // Not back at its starting point: another attempt would start from an unknown state.
      const note = `${outcome.message}; putting things back failed (see the server log)`;
      outcome = { status: outcome.status === 'CANCELLED' ? 'CANCELLED' : 'FAILED', code: outcome.code, message: note };
    }
    try {
      await this.record(job, completed === true ? { status: 'SUCCEEDED', cancellable: false } : outcome);
    } catch (error) {
      // Cancelled while being handed back (during its compensation, say): it ends CANCELLED rather than run again.
      // Compensated once more, as an ending: what it kept for its next attempt (an uploaded file) goes now.
      if (outcome.status === 'QUEUED' && error instanceof Interruption && error.cause === 'cancelled') return this.compensateAndRecord(job, CANCELLED);
      throw error;
    }
  }

  private progress(job: Running, update: ProgressUpdate): void {
    const op = job.operation;
    job.revision += 1;
    const phaseChanged = update.phase !== undefined && update.phase !== op.phase;
    if (update.phase !== undefined) op.phase = update.phase;
    if (update.bytesTotal !== undefined) op.bytesTotal = update.bytesTotal;
    if (update.bytesDone !== undefined) op.bytesDone = Math.max(op.bytesDone, update.bytesDone);
    if (phaseChanged) this.logger.info({ operationId: op.id, phase: op.phase }, 'operation phase');
    const now = performance.now();
    if (now - job.lastPersisted >= PERSIST_INTERVAL_MS) {
      job.lastPersisted = now;
      // Never over the point of no return: sent before enterPointOfNoReturn's write, this one can land after it (two
      // pooled PostgreSQL connections), and the row's earlier phase let cancel() accept a request during the swap.
      const before = op.phase === POINT_OF_NO_RETURN ? {} : { phase: Not(POINT_OF_NO_RETURN) };
      void this.operations
        .update({ ...this.held(op), status: 'RUNNING', ...before }, { phase: op.phase, bytesDone: op.bytesDone, bytesTotal: op.bytesTotal })
        .catch((err) => this.logger.warn({ err, operationId: op.id }, 'could not persist progress'));
    }
    // Coalesce: at most one event per interval, always carrying the latest state.
    if (job.publishTimer) return;
    const wait = Math.max(0, job.lastPublished + PUBLISH_INTERVAL_MS - now);
    job.publishTimer = setTimeout(() => {
      job.publishTimer = null;
      this.publishNow(job);
    }, wait);
  }

  private publishNow(job: Running): void {
    job.lastPublished = performance.now();
    this.publish(job.operation, job.revision);
  }

  /** `revision`: the running attempt's (see Running); none for an operation that has ended or been handed back. */
  private publish(operation: OperationEntity, revision?: number): void {
    this.events.pubSub.publish('operation.updated', operation.id, {
      tenantId: operation.tenantId,
      operationId: operation.id,
      instanceId: operation.instanceId,
      operation: { ...operationJson(operation), ...(revision === undefined ? {} : { revision }) },
    });
  }

  /**
   * Records the outcome, only while this runner holds the lease (recovery takes the lease before it finishes an
   * orphan), with the handler's result in the same transaction. A SUCCEEDED, or a hand-back (QUEUED), that finds a
   * cancellation request throws it instead: the result is rolled back and the operation is cancelled.
   */
  private async record(job: Running, outcome: Outcome): Promise<void> {
    if (job.publishTimer) clearTimeout(job.publishTimer);
    job.publishTimer = null;
    const op = job.operation;
    let patch!: ReturnType<typeof outcomePatch>;
    const cancellable = (outcome.status === 'SUCCEEDED' && outcome.cancellable) || outcome.status === 'QUEUED';
    const condition = cancellable ? { ...this.held(op), cancelRequestedAt: IsNull() } : this.held(op);
    const recorded = await this.db.transaction(async (manager) => {
      if (outcome.status === 'SUCCEEDED') await outcome.result?.commit?.(manager);
      // Its finishedAt is taken once what it commits is done: a restore's commit starts the restored data's history, and
      // a finishedAt before that named a moment of the old history, to which a restore brought the replaced data back.
      patch = outcomePatch(op, outcome);
      const { affected } = await manager.update(OperationEntity, condition, patch);
      if (!affected) throw new NotRecorded();
    }).then(
      () => true,
      (error) => {
        if (error instanceof NotRecorded) return false;
        throw error;
      },
    );
    if (!recorded) {
      const interruption = await this.interruptionOf(job);
      if (cancellable && interruption.cause === 'cancelled') throw interruption;
      this.logger.warn({ operationId: op.id }, 'lost the lease before recording the outcome; another runner owns this operation');
      return;
    }
    Object.assign(op, patch);
    if (outcome.status === 'QUEUED') {
      this.publish(op);
      this.logger.warn({ operationId: op.id, kind: op.kind, attempt: op.attempt, why: outcome.message }, 'operation handed back to the queue');
      return;
    }
    // The operation ended at the commit: its metrics and log line come before anyone is told (clients that see it
    // ended find them in place), and before the clean-up that follows.
    const ms = op.finishedAt! - (op.startedAt ?? op.createdAt);
    this.metrics.recordOperation(op.kind, op.status, ms);
    this.logger.info({ operationId: op.id, kind: op.kind, status: op.status, errorCode: op.errorCode, attempt: op.attempt, ms }, 'operation finished');
    if (outcome.status === 'SUCCEEDED') outcome.result?.announce?.();
    this.publish(op);
    if (outcome.status === 'SUCCEEDED') {
      await outcome.result?.afterCommit?.().catch((err) => this.logger.error({ err, operationId: op.id }, 'after-commit step failed'));
    }
  }

  private async heartbeat(): Promise<void> {
    for (const job of this.running.values()) {
      // While a stopped job compensates, its lease is still renewed, or another runner would compensate it too.
      const stopping = job.abort.signal.aborted;
      const renewedAt = performance.now();
      // Each job on its own: one renewal failing must not leave the others' leases to run out.
      try {
        const { affected } = await this.operations.update(
          stopping
            ? { ...this.held(job.operation), status: 'RUNNING' }
            : { ...this.held(job.operation), status: 'RUNNING', cancelRequestedAt: IsNull() },
          { leaseExpiresAt: this.leaseFromNow() },
        );
        if (affected) this.holdLease(job, renewedAt);
        else if (!stopping) job.abort.abort(await this.interruptionOf(job));
      } catch (err) {
        this.logger.warn({ err, operationId: job.operation.id }, 'could not renew the lease of a running operation');
      }
    }
    for (const id of this.compensating.keys()) {
      await this.operations.update({ id, leaseOwner: this.owner, status: 'RUNNING' }, { leaseExpiresAt: this.leaseFromNow() });
    }
  }

  /**
   * Compensates RUNNING operations nobody runs any more (all of them when this is the sole process) and queues
   * them again, or ends them CANCELLED (a cancellation was asked) or FAILED (no attempts left).
   */
  private recoverOrphans(all: boolean): Promise<void> {
    const recovery: Promise<void> = this.recoverOrphansNow(all).finally(() => this.recoveries.delete(recovery));
    this.recoveries.add(recovery);
    return recovery;
  }

  private async recoverOrphansNow(all: boolean): Promise<void> {
    const orphans = await this.operations.find({
      where: all ? { status: 'RUNNING' } : { status: 'RUNNING', leaseExpiresAt: beforeDatabaseTime(this.db) },
    });
    for (const operation of orphans) {
      // Stopping: the orphans left are for the next process, or another replica.
      if (this.stopped) break;
      if (this.running.has(operation.id) || this.compensating.has(operation.id)) continue;
      // Take the row first so that two replicas never compensate the same operation; only the attempt found orphaned
      // (its owner may have handed it back and claimed the next one since the scan, under a fresh lease).
      const taken = await this.operations.update(
        { id: operation.id, status: 'RUNNING', attempt: operation.attempt, leaseOwner: operation.leaseOwner === null ? IsNull() : operation.leaseOwner },
        { leaseOwner: this.owner, leaseExpiresAt: this.leaseFromNow() },
      );
      if (!taken.affected) continue;
      // Read again once taken: until then its owner (stalled, not dead) could still record params, such as the
      // upload id of a half-written export, which compensation must see. From now on nobody else can.
      const current = await this.operations.findOneBy({ id: operation.id, leaseOwner: this.owner, status: 'RUNNING' });
      if (!current) continue;
      const outcome = current.cancelRequestedAt !== null ? CANCELLED : this.interrupted(current, 'the server stopped while the operation was running');
      this.logger.warn({ operationId: current.id, kind: current.kind, attempt: current.attempt, next: outcome.status }, 'recovering an interrupted operation');
      await this.settleTaken(current, outcome);
    }
  }
}

class NotRecorded extends Error {}

/** A compensation that failed for another reason than a full disk: tried again (untilSettled, settleTaken). */
class CompensationFailed extends Error {
  constructor(readonly failure: unknown) {
    super('compensation failed');
  }
}

/** The row's fields for an outcome. */
function outcomePatch(op: OperationEntity, outcome: Outcome): Omit<Partial<OperationEntity>, 'params'> {
  const released = { leaseOwner: null, leaseExpiresAt: null };
  if (outcome.status === 'QUEUED') {
    // Back to its starting point: the next attempt starts over, and its progress with it.
    return { ...released, status: 'QUEUED', phase: 'queued', bytesDone: 0, errorCode: null, errorMessage: null };
  }
  const finishedAt = Date.now();
  if (outcome.status === 'SUCCEEDED') {
    return {
      ...released,
      status: 'SUCCEEDED',
      phase: 'done',
      bytesDone: op.bytesTotal ?? op.bytesDone,
      bytesTotal: op.bytesTotal,
      finishedAt,
      errorCode: null,
      errorMessage: null,
    };
  }
  return {
    ...released,
    status: outcome.status,
    phase: op.phase,
    bytesDone: op.bytesDone,
    bytesTotal: op.bytesTotal,
    finishedAt,
    errorCode: outcome.code,
    errorMessage: outcome.message.slice(0, 1000),
  };
}

function describeFailure(error: unknown): { code: string; message: string } {
  const known = isAppError(error) ? error : asStorageFull(error);
  if (known) return { code: known.code, message: known.message };
  return { code: 'INTERNAL_SERVER_ERROR', message: 'the operation failed unexpectedly; see the server log' };
}
