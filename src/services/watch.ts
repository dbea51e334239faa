// Live streams of a tenant's events, filtered to what the caller asked for.
import type { AvailabilityEventPayload, EventBus, SnapshotEventPayload } from '../events/event-bus';
import { type Listener, startListening } from './listen';
import type { Principal } from './principal';

/** Until `signal` aborts (see untilReturned). */
export async function* watchAvailability(
  events: EventBus,
  principal: Principal,
  instanceId: string | null,
  signal: AbortSignal,
): AsyncGenerator<AvailabilityEventPayload> {
  yield* filtered(startListening(events.pubSub.subscribe('instance.availability', principal.tenantId), signal), principal, instanceId);
}

/** Until `signal` aborts (see untilReturned). */
export async function* watchSnapshots(
  events: EventBus,
  principal: Principal,
  instanceId: string | null,
  signal: AbortSignal,
): AsyncGenerator<SnapshotEventPayload> {
  yield* filtered(startListening(events.pubSub.subscribe('snapshot.updated', principal.tenantId), signal), principal, instanceId);
}

async function* filtered<T extends { tenantId: string; instanceId: string }>(
  listener: Listener<T>,
  principal: Principal,
  instanceId: string | null,
): AsyncGenerator<T> {
  try {
    for (let event = await listener.next(); event; event = await listener.next()) {
      if (event.tenantId === principal.tenantId && (!instanceId || event.instanceId === instanceId)) yield event;
    }
  } finally {
    await listener.close();
  }
}
