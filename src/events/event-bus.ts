// Typed topics over a PubSub that is in-process by default and Redis-backed across replicas.
// Payloads are JSON (ISO strings, not Dates) so that they survive the trip through Redis.
import { Repeater, SlidingBuffer } from '@graphql-yoga/subscription';
import type { TypedEventTarget } from '@graphql-yoga/typed-event-target';
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

/** A request to the runner that holds an operation, wherever it runs: stop it, or publish its live state now. */
export interface OperationControlPayload {
  operationId: string;
  action: 'cancel' | 'publish-state';
}

export interface ApiKeyRevokedPayload {
  tenantId: string;
  apiKeyId: string;
  at: string;
}

export type Topics = {
  'instance.availability': [tenantId: string, payload: AvailabilityEventPayload];
  'operation.updated': [operationId: string, payload: OperationEventPayload];
  'operation.control': [operationId: string, payload: OperationControlPayload];
  'snapshot.updated': [tenantId: string, payload: SnapshotEventPayload];
  /** One stream for the whole server ('all'): every replica closes the revoked key's WebSockets. */
  'api-key.revoked': [scope: 'all', payload: ApiKeyRevokedPayload];
};

/** Typed publish/subscribe over an EventTarget (in-process, or Redis-backed across replicas). */
export interface PubSub<T extends Record<string, [string, unknown]>> {
  publish<K extends keyof T & string>(topic: K, id: T[K][0], payload: T[K][1]): void;
  subscribe<K extends keyof T & string>(topic: K, id: T[K][0]): Repeater<T[K][1]>;
}

export interface EventBus {
  pubSub: PubSub<Topics>;
  close(): Promise<void>;
}

// A subscriber that stops reading loses its oldest events rather than growing memory without bound. Each
// subscriber has its own buffer: @graphql-yoga's createPubSub shares one buffer object between all of them,
// so one subscription could take another's events.
const SUBSCRIBER_BUFFER = 1000;

function createTypedPubSub(target: TypedEventTarget<CustomEvent>): PubSub<Topics> {
  return {
    publish(topic, id, payload) {
      target.dispatchEvent(new CustomEvent(`${topic}:${id}`, { detail: payload }));
    },
    subscribe(topic, id) {
      const name = `${topic}:${id}`;
      return new Repeater((push, stop) => {
        const listener = (event: CustomEvent) => void push(event.detail);
        target.addEventListener(name, listener);
        void stop.then(() => target.removeEventListener(name, listener));
      }, new SlidingBuffer(SUBSCRIBER_BUFFER));
    },
  };
}

export function createInMemoryEventBus(): EventBus {
  return { pubSub: createTypedPubSub(new EventTarget() as TypedEventTarget<CustomEvent>), close: async () => undefined };
}

export async function createRedisEventBus(url: string): Promise<EventBus> {
  const options = { lazyConnect: true, maxRetriesPerRequest: 3 };
  const publishClient = new Redis(url, options);
  const subscribeClient = new Redis(url, options);
  await Promise.all([publishClient.connect(), subscribeClient.connect()]);
  const eventTarget = createRedisEventTarget<CustomEvent>({ publishClient, subscribeClient });
  return {
    pubSub: createTypedPubSub(eventTarget),
    close: async () => {
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}
