// Operations as clients see them: lookups, history, cancellation and live progress streams.
import type { DataSource, Repository } from 'typeorm';
import { OperationEntity, type OperationKind } from '../entities/operation.entity';
import { badInput, conflict, notFound } from '../errors/app-error';
import type { EventBus, OperationEventPayload } from '../events/event-bus';
import { isTerminal, type LiveOperation } from '../jobs/operation-json';
import { inProgressOn } from '../jobs/operation-queue';
import { POINT_OF_NO_RETURN } from '../jobs/operation-phases';
import type { CancelRequest } from '../jobs/operation-runner';
import type { InstanceService } from './instance.service';
import { type Listener, startListening } from './listen';
import { type Principal, requireRole } from './principal';

export const MAX_OPERATION_PAGE = 500;
const STATUS_RANK: Record<string, number> = { QUEUED: 0, RUNNING: 1, SUCCEEDED: 2, FAILED: 2, CANCELLED: 2 };
/** How long cancelOperation waits for the runner to stop and compensate before answering with the state so far. */
const CANCEL_WAIT_MS = 15_000;
/** How often cancelOperation reads the row while it hears nothing of the operation. */
const CANCEL_RECHECK_MS = 1_000;
/** How long a subscription waits for another replica's runner to answer with its live state. */
const LIVE_STATE_WAIT_MS = 500;
/** How long an operation stream waits for an event before it reads the state afresh (its runner's may be lost). */
const QUIET_RECHECK_MS = 5_000;

/** The operation view carried by events and rows alike (entity fields, params, lease and cancel request omitted). */
export type OperationView = Omit<OperationEntity, 'params' | 'leaseOwner' | 'leaseExpiresAt' | 'cancelRequestedAt'> & {
  /** A running attempt's count of progress updates, in the runner's state and its events (never in the row). */
  revision?: number;
};

/** What the runner offers this service: live state and cancellation. */
export interface OperationControl {
  liveState(operationId: string): LiveOperation | null;
  requestState(operationId: string): void;
  cancel(operationId: string): Promise<CancelRequest>;
}

/**
 * Whether an operation can be cancelled: QUEUED and RUNNING ones can until they reach the point of no return
 * (a restore's swap); a CANCELLED one is answered as it is; anything else is CONFLICT.
 */
export function cancellation(operation: Pick<OperationEntity, 'status' | 'phase'>): 'cancel' | 'already-cancelled' | 'conflict' {
  if (operation.status === 'CANCELLED') return 'already-cancelled';
  if (operation.status === 'QUEUED') return 'cancel';
  if (operation.status === 'RUNNING') return operation.phase === POINT_OF_NO_RETURN ? 'conflict' : 'cancel';
  return 'conflict';
}

/** Restores change data (ADMIN, like starting one); a snapshot is the MEMBER's own. */
const CANCEL_ROLE = {
  SNAPSHOT: 'MEMBER',
  RESTORE: 'ADMIN',
  RESTORE_FROM_FILE: 'ADMIN',
  CREATE_FROM_SNAPSHOT: 'MEMBER',
  VERIFY: 'MEMBER',
  RESTORE_TO_POINT_IN_TIME: 'ADMIN',
  CREATE_FROM_POINT_IN_TIME: 'MEMBER',
  EXPORT: 'ADMIN',
} as const;

export class OperationService {
  private readonly operations: Repository<OperationEntity>;

  constructor(
    db: DataSource,
    private readonly instances: InstanceService,
    private readonly events: EventBus,
    private readonly control: OperationControl,
  ) {
    this.operations = db.getRepository(OperationEntity);
  }

  /**
   * Stops a QUEUED or RUNNING operation before its point of no return; waits (up to CANCEL_WAIT_MS) until it is
   * CANCELLED and answers with it. CONFLICT when it has ended or is past that point.
   */
  async cancel(principal: Principal, id: string): Promise<OperationEntity> {
    const operation = await this.require(principal, id);
    requireRole(principal, CANCEL_ROLE[operation.kind], `cancelling a ${operation.kind} operation`);
    const tooLate = (status: string) =>
      conflict(
        status === 'RUNNING'
          ? `operation ${id} is past its point of no return (${POINT_OF_NO_RETURN}); it can no longer be cancelled`
          : `operation ${id} has already ended (${status}); only QUEUED or RUNNING operations can be cancelled`,
      );
    const rule = cancellation(operation);
    if (rule === 'already-cancelled') return operation;
    if (rule === 'conflict') throw tooLate(operation.status);

    const events = startListening(this.events.pubSub.subscribe('operation.updated', id));
    try {
      const request = await this.control.cancel(id);
      if (request === 'past-point-of-no-return') throw tooLate('RUNNING');
      if (request === 'requested') await this.untilEnded(events, id, CANCEL_WAIT_MS);
      const current = await this.require(principal, id);
      if (current.status === 'SUCCEEDED' || current.status === 'FAILED') throw tooLate(current.status);
      return current;
    } finally {
      await events.close();
    }
  }

  /**
   * Until the operation has ended, or timeoutMs has passed. Its runner's event may be lost (Redis out of that replica's
   * reach): without an event for CANCEL_RECHECK_MS, the row says whether it has ended meanwhile.
   */
  private async untilEnded(events: Listener<OperationEventPayload>, id: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const event = await events.nextWithin(Math.min(CANCEL_RECHECK_MS, deadline - Date.now()));
      if (event) {
        if (event.operationId === id && isTerminal(String(event.operation.status))) return;
        continue;
      }
      const row = await this.operations.findOneBy({ id });
      if (!row || isTerminal(row.status)) return;
    }
  }

  /**
   * The operation as the caller may see it: its row, or the runner's in-memory state when it runs in this process
   * (the row of a running operation is persisted at most once a second; another replica's lags by up to that).
   */
  async find(principal: Principal, id: string): Promise<OperationEntity | null> {
    const row = await this.operations.findOne({ where: { id, tenantId: principal.tenantId } });
    const local = row && this.control.liveState(id);
    return local && !isBehind(local, row) ? local : row;
  }

  async require(principal: Principal, id: string): Promise<OperationEntity> {
    const operation = await this.find(principal, id);
    if (!operation) throw notFound('operation', id);
    return operation;
  }

  /** The operation running on or queued for the instance, if any (exports of its snapshots run beside it). */
  current(instanceId: string): Promise<OperationEntity | null> {
    return this.operations.findOne({ where: inProgressOn(instanceId) });
  }

  /** Newest first, keyset-paginated over (createdAt, id). */
  async list(
    principal: Principal,
    instanceId: string,
    first: number,
    after: { createdAt: number; id: string } | null,
  ): Promise<{ items: OperationEntity[]; hasNextPage: boolean; totalCount: number }> {
    if (!Number.isInteger(first) || first < 0 || first > MAX_OPERATION_PAGE) {
      throw badInput(`first must be between 0 and ${MAX_OPERATION_PAGE}`);
    }
    await this.instances.require(principal, instanceId);
    const query = this.operations
      .createQueryBuilder('o')
      .where('o.instanceId = :instanceId AND o.tenantId = :tenantId', { instanceId, tenantId: principal.tenantId });
    const totalCount = await query.getCount();
    if (after) {
      query.andWhere('(o.createdAt < :createdAt OR (o.createdAt = :createdAt AND o.id < :id))', after);
    }
    const rows = await query.orderBy('o.createdAt', 'DESC').addOrderBy('o.id', 'DESC').take(first + 1).getMany();
    return { items: rows.slice(0, first), hasNextPage: rows.length > first, totalCount };
  }

  /**
   * The operation's live state at once, then every change; ends after SUCCEEDED, FAILED or CANCELLED.
   * Subscribes before looking (and, over Redis, looks only once Redis has the subscription), so no change falls in
   * between; stale events never move progress back. Events lost may include the last one: while this process
   * received none (Redis away), the state is read afresh once events flow again; and since the runner's events can be
   * lost while this process hears Redis well (Redis out of the reach of the replica that runs the operation, or that
   * replica dying as it ended it), the state is read afresh too after QUIET_RECHECK_MS without an event. Either way
   * the stream still shows how the operation ended, and ends. Ends when `signal` aborts (see untilReturned).
   */
  async *watch(principal: Principal, id: string, signal: AbortSignal, kinds?: OperationKind[]): AsyncGenerator<OperationView> {
    const found = await this.require(principal, id);
    if (kinds && !kinds.includes(found.kind)) {
      throw badInput(`operation ${id} is a ${found.kind} operation; use operationProgress to follow it`);
    }
    const events = startListening(this.events.pubSub.subscribe('operation.updated', id), signal);
    let missed = false;
    let resume!: () => void;
    let resumed = new Promise<void>((resolve) => (resume = resolve));
    const stopWatchingDelivery = this.events.onDeliveryResumed(() => {
      missed = true;
      resume();
    });
    try {
      let last = await this.liveState(principal, id, events);
      yield last;
      while (!isTerminal(last.status)) {
        let quiet = false;
        let timer: NodeJS.Timeout | undefined;
        const quietFor = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            quiet = true;
            resolve();
          }, QUIET_RECHECK_MS);
        });
        const event = await events.nextBefore(Promise.race([resumed, quietFor])).finally(() => clearTimeout(timer));
        let next: OperationView;
        if (event) {
          next = event.operation as unknown as OperationView;
          // The topic is the operation's id; checked again so that a misrouted event can never show another operation.
          if (event.operationId !== id || event.tenantId !== principal.tenantId) continue;
        } else if (!missed && !quiet) {
          return;
        } else {
          if (missed) resumed = new Promise<void>((resolve) => (resume = resolve));
          missed = false;
          next = await this.liveState(principal, id, events);
          // Read again, not told of a change: the same state is no news (an operation quiet for a while stays so).
          if (sameState(next, last)) continue;
        }
        if (isBehind(next, last)) continue;
        last = next;
        yield next;
      }
    } finally {
      stopWatchingDelivery();
      await events.close();
    }
  }

  /**
   * The freshest state there is: the runner's in-memory state when it runs here (unless the row is ahead of it); when
   * it runs on another replica, the state its runner publishes on request (the row is persisted at most once a second);
   * else the row. Read once `events` gets whatever is published from then on: an event published before Redis had its
   * SUBSCRIBE never comes.
   */
  private async liveState(principal: Principal, id: string, events: Listener<OperationEventPayload>): Promise<OperationView> {
    await this.events.subscribed('operation.updated', id);
    const row = await this.operations.findOne({ where: { id, tenantId: principal.tenantId } });
    if (!row) throw notFound('operation', id);
    // As find() does: an attempt this process still winds down after losing its lease is not the operation's state
    // (another replica may be running its next attempt, or have ended it).
    const local = this.control.liveState(id);
    if (local && !isBehind(local, row)) return local;
    if (row.status !== 'RUNNING') return row;
    this.control.requestState(id);
    const answer = await events.nextWithin(LIVE_STATE_WAIT_MS);
    if (!answer || answer.operationId !== id) return row;
    const published = answer.operation as unknown as OperationView;
    return isBehind(published, row) ? row : published;
  }
}

function sameState(a: OperationView, b: OperationView): boolean {
  return a.status === b.status && a.attempt === b.attempt && a.phase === b.phase && a.bytesDone === b.bytesDone && a.bytesTotal === b.bytesTotal;
}

/**
 * Whether `next` is older than `last`. An operation handed back to the queue goes RUNNING → QUEUED within one
 * attempt, and a new attempt starts over (bytesDone 0): attempts order first, then status, then the attempt's
 * revision where both have one (its runner's state and events), else bytes. Bytes alone do not order phases: several
 * follow each other at the same bytesDone (loading → verifying → capturing → swapping), and an event published just
 * before a subscriber read the runner's state came after that state, its phase a step back.
 */
export function isBehind(next: OperationView, last: OperationView): boolean {
  if (isTerminal(next.status) || isTerminal(last.status)) return STATUS_RANK[next.status] < STATUS_RANK[last.status];
  if (next.attempt !== last.attempt) return next.attempt < last.attempt;
  if (next.status !== last.status) return next.status === 'RUNNING' && last.status === 'QUEUED';
  if (next.revision !== undefined && last.revision !== undefined) return next.revision < last.revision;
  return next.bytesDone < last.bytesDone;
}
