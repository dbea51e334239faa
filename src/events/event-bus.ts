// Typed topics over a PubSub that is in-process by default and Redis-backed across replicas.
// Payloads are JSON (ISO strings, not Dates) so that they survive the trip through Redis.
import { createPubSub, type PubSub, SlidingBuffer } from '@graphql-yoga/subscription';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { Redis } from 'ioredis';
import type { Availability, InstanceStatus } from '../entities/instance.entity';

export interface AvailabilityEventPayload {
  tenantId: string;
  instanceId: string;
  availability: Availability;
  previousAvailability: Availability | null;
  status: InstanceStatus;
  reason: string | null;
  at: string;
}

export interface OperationEventPayload {
  tenantId: string;
  operationId: string;
  instanceId: string;
  /** The operation row as JSON, so subscribers need no database read per event. */
  operation: Record<string, unknown>;
}

export interface SnapshotEventPayload {
  tenantId: string;
  instanceId: string;
  snapshotId: string;
  removed: boolean;
  snapshot: Record<string, unknown>;
}

export type Topics = {
  'instance.availability': [tenantId: string, payload: AvailabilityEventPayload];
  'operation.updated': [operationId: string, payload: OperationEventPayload];
  'snapshot.updated': [tenantId: string, payload: SnapshotEventPayload];
};

export interface EventBus {
  pubSub: PubSub<Topics>;
  close(): Promise<void>;
}

// A subscriber that stops reading loses its oldest events rather than growing memory without bound.
const SUBSCRIBER_BUFFER = 1000;

export function createInMemoryEventBus(): EventBus {
  return { pubSub: createPubSub<Topics>({ repeaterBuffer: new SlidingBuffer(SUBSCRIBER_BUFFER) }), close: async () => undefined };
}

export async function createRedisEventBus(url: string): Promise<EventBus> {
  const options = { lazyConnect: true, maxRetriesPerRequest: 3 };
  const publishClient = new Redis(url, options);
  const subscribeClient = new Redis(url, options);
  await Promise.all([publishClient.connect(), subscribeClient.connect()]);
  const eventTarget = createRedisEventTarget<CustomEvent>({ publishClient, subscribeClient });
  return {
    pubSub: createPubSub<Topics>({ eventTarget, repeaterBuffer: new SlidingBuffer(SUBSCRIBER_BUFFER) }),
    close: async () => {
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}
