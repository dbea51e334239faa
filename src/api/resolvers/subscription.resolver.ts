import { Arg, Ctx, FieldResolver, ID, Resolver, Root, Subscription } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import { RESTORE_KINDS } from '../../entities/operation.entity';
import { unauthenticated } from '../../errors/app-error';
import type { AvailabilityEventPayload, EventBus, SnapshotEventPayload } from '../../events/event-bus';
import type { OperationView } from '../../services/operation.service';
import { untilReturned } from '../../services/listen';
import type { Principal } from '../../services/principal';
import { watchAvailability, watchSnapshots } from '../../services/watch';
import { type ApiContext, Caller } from '../context';
import { Instance, InstanceAvailabilityEvent } from '../types/instance.type';
import { Operation } from '../types/operation.type';
import { Snapshot } from '../types/snapshot.type';

type SubscribeData = { args: Record<string, unknown>; context: ApiContext };

const callerOf = (context: ApiContext): Principal => {
  if (!context.principal) throw unauthenticated();
  return context.principal;
};

/**
 * The events of one instance, or of all the caller's when the subscription names none, until its client leaves. A
 * refusal (a missing or foreign id) comes out of the stream's first step, as the operation streams' does: graphql-ws
 * then sends an `error` message for the subscription, the same for all four, instead of a `next` carrying errors
 * (what a refusal thrown while the stream is being created would become).
 */
function instanceEvents<T>(
  { args, context }: SubscribeData,
  watch: (events: EventBus, caller: Principal, instanceId: string | null, signal: AbortSignal) => AsyncGenerator<T>,
): AsyncGenerator<T> {
  const caller = callerOf(context);
  const instanceId = (args.instanceId as string | null | undefined) ?? null;
  return untilReturned(async function* (signal) {
    if (instanceId) await context.services.instances.require(caller, instanceId);
    yield* watch(context.services.events, caller, instanceId, signal);
  });
}

@Resolver()
export class SubscriptionResolver {
  @Subscription(() => Operation, {
    description: `For RESTORE, RESTORE_FROM_FILE, CREATE_FROM_SNAPSHOT, RESTORE_TO_POINT_IN_TIME and CREATE_FROM_POINT_IN_TIME operations: the operation's live
state at once, then every change; completes after SUCCEEDED, FAILED or CANCELLED.`,
    subscribe: ({ args, context }: SubscribeData) =>
      untilReturned((signal) => context.services.operations.watch(callerOf(context), String(args.operationId), signal, [...RESTORE_KINDS])),
  })
  restoreProgress(@Root() operation: OperationView, @Arg('operationId', () => ID) _operationId: string): OperationView {
    return operation;
  }

  @Subscription(() => Operation, {
    description: 'the same, for an operation of any kind',
    subscribe: ({ args, context }: SubscribeData) => untilReturned((signal) => context.services.operations.watch(callerOf(context), String(args.operationId), signal)),
  })
  operationProgress(@Root() operation: OperationView, @Arg('operationId', () => ID) _operationId: string): OperationView {
    return operation;
  }

  @Subscription(() => InstanceAvailabilityEvent, {
    description: "every availability change of one instance, or of all the caller's instances when instanceId is omitted",
    subscribe: (data: SubscribeData) => instanceEvents(data, watchAvailability),
  })
  instanceAvailabilityChanged(
    @Root() event: AvailabilityEventPayload,
    @Arg('instanceId', () => ID, { nullable: true }) _instanceId: string | null,
  ): AvailabilityEventPayload {
    return event;
  }

  @Subscription(() => Snapshot, {
    description: "snapshots created, changing status, or removed by retention, for one instance or all the caller's",
    subscribe: (data: SubscribeData) => instanceEvents(data, watchSnapshots),
  })
  snapshotUpdated(
    @Root() event: SnapshotEventPayload,
    @Arg('instanceId', () => ID, { nullable: true }) _instanceId: string | null,
  ): Record<string, unknown> {
    return { ...event.snapshot, removed: event.removed };
  }
}

@Resolver(() => InstanceAvailabilityEvent)
export class AvailabilityEventResolver {
  @FieldResolver(() => Instance, { nullable: true })
  instance(
    @Root() event: AvailabilityEventPayload,
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
  ): Promise<InstanceEntity | null> {
    return services.instances.find(caller, event.instanceId);
  }
}
