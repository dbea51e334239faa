import { Arg, Ctx, FieldResolver, Float, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import type { SnapshotEntity } from '../../entities/snapshot.entity';
import type { OperationView } from '../../services/operation.service';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { decodeAfter, encodeCursor } from '../cursor';
import { pageInfo } from '../types/common.type';
import { Instance } from '../types/instance.type';
import { Operation, OperationConnection, OperationError } from '../types/operation.type';
import { Snapshot } from '../types/snapshot.type';

const cursorOf = (operation: OperationView) => encodeCursor({ connection: 'operations', instanceId: operation.instanceId }, [operation.createdAt, operation.id]);
/** A page's default size. An explicit `first: null` (clients send it for an unset variable) means it too. */
const DEFAULT_PAGE = 20;

@Resolver(() => Operation)
export class OperationResolver {
  @Query(() => Operation, { nullable: true })
  operation(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<OperationView | null> {
    return services.operations.find(caller, id);
  }

  @Query(() => OperationConnection, { description: 'newest first' })
  async operations(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('first', () => Int, { nullable: true, defaultValue: DEFAULT_PAGE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
  ): Promise<OperationConnection> {
    const cursor = decodeAfter(after, { connection: 'operations', instanceId }, ['integer', 'string']);
    const page = await services.operations.list(
      caller,
      instanceId,
      first ?? DEFAULT_PAGE,
      cursor ? { createdAt: cursor[0] as number, id: cursor[1] as string } : null,
    );
    return {
      edges: page.items.map((operation) => ({ cursor: cursorOf(operation), node: operation })),
      pageInfo: pageInfo(page.items, cursorOf, page.hasNextPage, after),
      totalCount: page.totalCount,
    };
  }

  @Mutation(() => Operation, {
    description: `Stops a QUEUED or RUNNING operation before its point of no return: status CANCELLED, nothing
changed, the instance AVAILABLE on its old data. CONFLICT once it is past that point.`,
  })
  cancelOperation(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<OperationView> {
    return services.operations.cancel(caller, id);
  }

  @FieldResolver(() => Float, { description: '0 to 1; 1 when SUCCEEDED' })
  progress(@Root() operation: OperationView): number {
    if (operation.status === 'SUCCEEDED') return 1;
    if (!operation.bytesTotal) return 0;
    return Math.min(0.999, operation.bytesDone / operation.bytesTotal);
  }

  @FieldResolver(() => OperationError, { nullable: true })
  error(@Root() operation: OperationView): OperationError | null {
    return operation.errorCode ? { code: operation.errorCode, message: operation.errorMessage ?? operation.errorCode } : null;
  }

  @FieldResolver(() => Instance, { nullable: true })
  instance(@Root() operation: OperationView, @Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<InstanceEntity | null> {
    return services.instances.find(caller, operation.instanceId);
  }

  @FieldResolver(() => Snapshot, { nullable: true })
  snapshot(@Root() operation: OperationView, @Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<SnapshotEntity | null> | null {
    return operation.snapshotId ? services.snapshots.find(caller, operation.snapshotId) : null;
  }
}
