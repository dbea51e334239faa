// Operations as clients see them: lookups, history, and live progress streams.
import { In, type DataSource, type Repository } from 'typeorm';
import { OperationEntity, type OperationKind } from '../entities/operation.entity';
import { badInput, notFound } from '../errors/app-error';
import type { EventBus } from '../events/event-bus';
import { isTerminal } from '../jobs/operation-json';
import type { InstanceService } from './instance.service';
import { startListening } from './listen';
import type { Principal } from './principal';

export const MAX_OPERATION_PAGE = 500;
const STATUS_RANK: Record<string, number> = { QUEUED: 0, RUNNING: 1, SUCCEEDED: 2, FAILED: 2 };

/** The operation view carried by events and rows alike (entity fields, params and lease omitted). */
export type OperationView = Omit<OperationEntity, 'params' | 'leaseOwner' | 'leaseExpiresAt'>;

export class OperationService {
  private readonly operations: Repository<OperationEntity>;

  constructor(
    db: DataSource,
    private readonly instances: InstanceService,
    private readonly events: EventBus,
  ) {
    this.operations = db.getRepository(OperationEntity);
  }

  find(principal: Principal, id: string): Promise<OperationEntity | null> {
    return this.operations.findOne({ where: { id, tenantId: principal.tenantId } });
  }

  async require(principal: Principal, id: string): Promise<OperationEntity> {
    const operation = await this.find(principal, id);
    if (!operation) throw notFound('operation', id);
    return operation;
  }

  /** The operation running on or queued for the instance, if any. */
  current(instanceId: string): Promise<OperationEntity | null> {
    return this.operations.findOne({ where: { instanceId, status: In(['QUEUED', 'RUNNING']) } });
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
   * The operation's current state at once, then every change; ends after SUCCEEDED or FAILED.
   * Subscribes before reading the row, so no change falls in between; stale events never move progress back.
   */
  async *watch(principal: Principal, id: string, kinds?: OperationKind[]): AsyncGenerator<OperationView> {
    const found = await this.require(principal, id);
    if (kinds && !kinds.includes(found.kind)) {
      throw badInput(`operation ${id} is a ${found.kind} operation; use operationProgress to follow it`);
    }
    // Listening starts before the row is read, so no change can fall in between.
    const events = startListening(this.events.pubSub.subscribe('operation.updated', id));
    try {
      let last: OperationView = (await this.require(principal, id)) as OperationView;
      yield last;
      while (!isTerminal(last.status)) {
        const event = await events.next();
        if (!event) return;
        const next = event.operation as unknown as OperationView;
        // The topic is the operation's id; checked again so that a misrouted event can never show another operation.
        if (event.operationId !== id || event.tenantId !== principal.tenantId || isBehind(next, last)) continue;
        last = next;
        yield next;
      }
    } finally {
      await events.close();
    }
  }
}

function isBehind(next: OperationView, last: OperationView): boolean {
  const rank = STATUS_RANK[next.status] - STATUS_RANK[last.status];
  if (rank !== 0) return rank < 0;
  return next.bytesDone < last.bytesDone && !isTerminal(next.status);
}
