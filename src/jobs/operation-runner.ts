// Runs durable operations: claims queued rows, holds a lease with a heartbeat, throttles progress,
// and fails + compensates whatever a crash or an expired lease left behind.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { LessThan, type DataSource, type Repository } from 'typeorm';
import { OperationEntity, type OperationKind } from '../entities/operation.entity';
import { isAppError } from '../errors/app-error';
import { asStorageFull, isStorageFull } from '../errors/storage-full';
import type { EventBus } from '../events/event-bus';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../observability/metrics';
import type { JobContext, OperationHandler, OperationResult, ProgressUpdate } from './operation-handler';
import { operationJson } from './operation-json';

const PUBLISH_INTERVAL_MS = 100; // ≤ 10 events/s per operation
const PERSIST_INTERVAL_MS = 1_000; // ≤ 1 write/s per operation
const POLL_INTERVAL_MS = 1_000;
const SETTLE_RETRY_MS = 2_000;

export interface RunnerOptions {
  leaseMs: number;
  /** The only process on this metadata database (embedded SQLite): every RUNNING row at boot is an orphan. */
  soleProcess: boolean;
}

interface Running {
  operation: OperationEntity;
  abort: AbortController;
  publishTimer: NodeJS.Timeout | null;
  lastPublished: number;
  lastPersisted: number;
  done: Promise<void>;
}

export class OperationRunner {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly operations: Repository<OperationEntity>;
  private readonly handlers = new Map<OperationKind, OperationHandler>();
  private readonly running = new Map<string, Running>();
  private timers: NodeJS.Timeout[] = [];
  private stopped = true;
  private polling = false;

  constructor(
    private readonly db: DataSource,
    private readonly events: EventBus,
    private readonly logger: Logger,
    private readonly options: RunnerOptions,
    private readonly metrics: Metrics,
  ) {
    this.operations = db.getRepository(OperationEntity);
  }

  register(handler: OperationHandler): void {
    this.handlers.set(handler.kind, handler);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.recoverOrphans(this.options.soleProcess);
    const every = (ms: number, fn: () => Promise<void>) => {
      const timer = setInterval(() => fn().catch((err) => this.logger.error({ err }, 'operation runner tick failed')), ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(Math.max(250, Math.floor(this.options.leaseMs / 3)), () => this.heartbeat());
    every(POLL_INTERVAL_MS, async () => {
      await this.recoverOrphans(false);
      await this.poll();
    });
    await this.poll();
  }

  /** Stops claiming work; running operations are aborted, failed and compensated. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const job of this.running.values()) job.abort.abort(new Error('the server is shutting down'));
    await Promise.all([...this.running.values()].map((job) => job.done));
  }

  /** Asks the runner to look for queued work now (called right after a service inserts a row). */
  kick(): void {
    if (!this.stopped) void this.poll().catch((err) => this.logger.error({ err }, 'operation poll failed'));
  }

  private async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      const queued = await this.operations.find({ where: { status: 'QUEUED' }, order: { createdAt: 'ASC' }, take: 20 });
      for (const operation of queued) {
        if (this.stopped) break;
        if (!this.handlers.has(operation.kind)) continue;
        if (!(await this.claim(operation))) continue;
        if (this.stopped) {
          // Stopped while claiming: hand it back for the next process rather than start it during shutdown.
          await this.operations.update({ id: operation.id, leaseOwner: this.owner }, { status: 'QUEUED', startedAt: null, leaseOwner: null, leaseExpiresAt: null });
          break;
        }
        this.execute(operation);
      }
    } finally {
      this.polling = false;
    }
  }

  private async claim(operation: OperationEntity): Promise<boolean> {
    const now = Date.now();
    const result = await this.operations.update(
      { id: operation.id, status: 'QUEUED' },
      { status: 'RUNNING', startedAt: now, leaseOwner: this.owner, leaseExpiresAt: now + this.options.leaseMs },
    );
    if (!result.affected) return false;
    Object.assign(operation, { status: 'RUNNING', startedAt: now, leaseOwner: this.owner, leaseExpiresAt: now + this.options.leaseMs });
    return true;
  }

  private execute(operation: OperationEntity): void {
    const handler = this.handlers.get(operation.kind)!;
    const job: Running = {
      operation,
      abort: new AbortController(),
      publishTimer: null,
      lastPublished: 0,
      lastPersisted: Date.now(),
      done: Promise.resolve(),
    };
    this.running.set(operation.id, job);
    this.publishNow(job);
    this.logger.info({ operationId: operation.id, kind: operation.kind, instanceId: operation.instanceId }, 'operation started');
    const context: JobContext = {
      signal: job.abort.signal,
      progress: (update) => this.progress(job, update),
      confirmLease: async () => {
        if (!(await this.renewLease(operation.id))) {
          job.abort.abort(new Error('the operation lease was lost'));
          throw job.abort.signal.reason;
        }
      },
    };
    job.done = (async () => {
      let outcome: Outcome;
      try {
        const result = await handler.run(operation, context);
        if (job.abort.signal.aborted) throw job.abort.signal.reason;
        outcome = { failure: null, result: result ?? undefined };
      } catch (error) {
        const failure = job.abort.signal.aborted
          ? { code: 'INTERRUPTED', message: `${(job.abort.signal.reason as Error)?.message ?? 'aborted'}; nothing was changed` }
          : describeFailure(error);
        if (failure.code === 'INTERNAL_SERVER_ERROR') this.logger.error({ err: error, operationId: operation.id }, 'operation crashed');
        outcome = { failure };
      }
      try {
        await this.settle(job, handler, outcome);
      } finally {
        this.running.delete(operation.id);
      }
    })();
  }

  /**
   * Compensates a failure and records the outcome. When the disk is full (the metadata database cannot take the
   * write), the outcome is neither lost nor allowed to stop the server: the operation stays RUNNING under this
   * runner's lease and is settled again every SETTLE_RETRY_MS until space returns. Shutdown or a lost lease ends the
   * retries, and recovery then takes the operation as it takes any other.
   */
  private async settle(job: Running, handler: OperationHandler, outcome: Outcome): Promise<void> {
    const op = job.operation;
    for (;;) {
      try {
        if (!outcome.failure) return await this.finish(job, null, outcome.result);
        const { failure } = outcome;
        const completed = await handler.compensate(op, failure).catch((err) => {
          if (isStorageFull(err)) throw err;
          this.logger.error({ err, operationId: op.id }, 'compensation failed');
          return false;
        });
        return await this.finish(job, completed === true ? null : failure);
      } catch (error) {
        if (!isStorageFull(error)) {
          this.logger.error({ err: error, operationId: op.id }, 'could not record the outcome of an operation; recovery will take it');
          return;
        }
        if (job.abort.signal.aborted) {
          this.logger.warn({ operationId: op.id }, 'the disk is still full; the operation is left to recovery');
          return;
        }
        this.logger.warn({ operationId: op.id, retryInMs: SETTLE_RETRY_MS }, 'the disk is full: the outcome of the operation will be recorded when space returns');
        await sleep(SETTLE_RETRY_MS, undefined, { signal: job.abort.signal }).catch(() => undefined);
      }
    }
  }

  private progress(job: Running, update: ProgressUpdate): void {
    const op = job.operation;
    const phaseChanged = update.phase !== undefined && update.phase !== op.phase;
    if (update.phase !== undefined) op.phase = update.phase;
    if (update.bytesTotal !== undefined) op.bytesTotal = update.bytesTotal;
    if (update.bytesDone !== undefined) op.bytesDone = Math.max(op.bytesDone, update.bytesDone);
    if (phaseChanged) this.logger.info({ operationId: op.id, phase: op.phase }, 'operation phase');
    const now = Date.now();
    if (now - job.lastPersisted >= PERSIST_INTERVAL_MS) {
      job.lastPersisted = now;
      void this.operations
        .update({ id: op.id, status: 'RUNNING' }, { phase: op.phase, bytesDone: op.bytesDone, bytesTotal: op.bytesTotal })
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
    job.lastPublished = Date.now();
    this.publish(job.operation);
  }

  private publish(operation: OperationEntity): void {
    this.events.pubSub.publish('operation.updated', operation.id, {
      tenantId: operation.tenantId,
      operationId: operation.id,
      instanceId: operation.instanceId,
      operation: operationJson(operation),
    });
  }

  private async finish(job: Running, failure: { code: string; message: string } | null, result?: OperationResult): Promise<void> {
    if (job.publishTimer) clearTimeout(job.publishTimer);
    const op = job.operation;
    Object.assign(op, {
      status: failure ? 'FAILED' : 'SUCCEEDED',
      finishedAt: Date.now(),
      errorCode: failure?.code ?? null,
      errorMessage: failure?.message ?? null,
      leaseOwner: null,
      leaseExpiresAt: null,
    });
    if (!failure && op.bytesTotal !== null) op.bytesDone = op.bytesTotal;
    if (!failure) op.phase = 'done';
    // Only the lease holder records the outcome (recovery takes the lease before it finishes an orphan), and the
    // handler's result is recorded in the same transaction.
    const recorded = await this.db
      .transaction(async (manager) => {
        await result?.commit?.(manager);
        const update = await manager.update(
          OperationEntity,
          { id: op.id, leaseOwner: this.owner },
          {
            status: op.status,
            phase: op.phase,
            bytesDone: op.bytesDone,
            bytesTotal: op.bytesTotal,
            finishedAt: op.finishedAt,
            errorCode: op.errorCode,
            errorMessage: op.errorMessage,
            leaseOwner: null,
            leaseExpiresAt: null,
          },
        );
        if (!update.affected) throw new LeaseLost();
      })
      .then(
        () => true,
        (error) => {
          if (error instanceof LeaseLost) return false;
          throw error;
        },
      );
    if (!recorded) {
      this.logger.warn({ operationId: op.id }, 'lost the lease before recording the outcome; another runner owns this operation');
      return;
    }
    this.publish(op);
    await result?.afterCommit?.().catch((err) => this.logger.error({ err, operationId: op.id }, 'after-commit step failed'));
    const ms = op.finishedAt! - (op.startedAt ?? op.createdAt);
    this.metrics.recordOperation(op.kind, op.status, ms);
    this.logger.info({ operationId: op.id, kind: op.kind, status: op.status, errorCode: op.errorCode, ms }, 'operation finished');
  }

  private async heartbeat(): Promise<void> {
    for (const job of this.running.values()) {
      if (!(await this.renewLease(job.operation.id))) job.abort.abort(new Error('the operation lease was lost'));
    }
  }

  /** Extends this runner's lease on the operation; false when another runner has taken it. */
  private async renewLease(operationId: string): Promise<boolean> {
    const leaseExpiresAt = Date.now() + this.options.leaseMs;
    const result = await this.operations.update({ id: operationId, leaseOwner: this.owner, status: 'RUNNING' }, { leaseExpiresAt });
    return Boolean(result.affected);
  }

  /** Fails and compensates RUNNING operations nobody runs any more (all of them when this is the sole process). */
  private async recoverOrphans(all: boolean): Promise<void> {
    const orphans = await this.operations.find({
      where: all ? { status: 'RUNNING' } : { status: 'RUNNING', leaseExpiresAt: LessThan(Date.now()) },
    });
    for (const operation of orphans) {
      if (this.running.has(operation.id)) continue;
      const failure = { code: 'INTERRUPTED', message: 'the server stopped while the operation was running; nothing was changed' };
      // Take the row first so that two replicas never compensate the same operation.
      const taken = await this.operations.update(
        { id: operation.id, status: 'RUNNING', leaseOwner: operation.leaseOwner ?? undefined },
        { leaseOwner: this.owner, leaseExpiresAt: Date.now() + this.options.leaseMs },
      );
      if (!taken.affected) continue;
      this.logger.warn({ operationId: operation.id, kind: operation.kind }, 'failing an interrupted operation');
      const handler = this.handlers.get(operation.kind);
      const completed = await handler?.compensate(operation, failure).catch((err) => {
        this.logger.error({ err, operationId: operation.id }, 'compensation failed');
        return false;
      });
      const job: Running = { operation, abort: new AbortController(), publishTimer: null, lastPublished: 0, lastPersisted: 0, done: Promise.resolve() };
      await this.finish(job, completed === true ? null : failure);
    }
  }
}

class LeaseLost extends Error {}

type Outcome = { failure: null; result?: OperationResult } | { failure: { code: string; message: string } };

function describeFailure(error: unknown): { code: string; message: string } {
  const known = isAppError(error) ? error : asStorageFull(error);
  if (known) return { code: known.code, message: known.message };
  return { code: 'INTERNAL_SERVER_ERROR', message: 'the operation failed unexpectedly; see the server log' };
}
