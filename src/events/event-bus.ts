// Typed topics over a PubSub that is in-process by default and Redis-backed across replicas.
// Payloads are JSON (ISO strings, not Dates) so that they survive the trip through Redis.
import { Repeater, SlidingBuffer } from '@graphql-yoga/subscription';
import type { TypedEventTarget } from '@graphql-yoga/typed-event-target';
import type { Redis } from 'ioredis';
import type { Availability, InstanceStatus } from '../entities/instance.entity';
import type { Logger } from '../logging/logger';
import { groupedWarning } from '../logging/grouped-warning';
import { urlWithoutPassword } from '../logging/url-without-password';

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
  /**
   * Whether events published by any replica reach this process now. In-process always; over Redis, while the
   * subscribing connection is up and subscribed. Whatever this process caches on the promise of being told about
   * changes (API keys) must not cache while this is false.
   */
  isDelivering(): boolean;
  /** Called whenever events may have been missed (the Redis subscription dropped): such caches must be emptied. */
  onDeliveryLost(listener: () => void): void;
  /**
   * Called whenever events reach this process again after they may have been missed: a stream that waits for an event
   * reads afresh the state it follows, since the event it waits for may have been among those lost. Returns a function
   * that stops the calls.
   */
  onDeliveryResumed(listener: () => void): () => void;
  /**
   * Publishes, and resolves once the event has been handed to every replica then subscribed (Redis answered its
   * PUBLISH); rejects when that is not known within timeoutMs (Redis away from this process: the event may be lost).
   */
  publishConfirmed<K extends keyof Topics & string>(topic: K, id: Topics[K][0], payload: Topics[K][1], timeoutMs: number): Promise<void>;
  /**
   * Resolves once every event published on the topic from now on, by any replica, reaches this process's subscriptions
   * to it (call it with one of them started). In-process at once; over Redis once Redis has answered the channel's
   * SUBSCRIBE: until then, an event another replica publishes is lost. A stream that subscribes, then reads the state it
   * follows, waits for this in between, or the event of a change made just after its read could be lost. Also resolves
   * when the SUBSCRIBE failed or the subscribing connection dropped: events may have been missed then, and
   * onDeliveryResumed tells when they reach this process again.
   */
  subscribed<K extends keyof Topics & string>(topic: K, id: Topics[K][0]): Promise<void>;
  /**
   * Resolves when events flow both ways now (readiness): in-process always; over Redis, while the subscribing connection
   * delivers and the publishing one answers a PING. Rejects saying which does not.
   */
  probe(): Promise<void>;
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
  const pubSub = createTypedPubSub(new EventTarget() as TypedEventTarget<CustomEvent>);
  return {
    pubSub,
    // Dispatch is synchronous: nothing is ever missed, and a publish has reached every listener when it returns.
    isDelivering: () => true,
    onDeliveryLost: () => undefined,
    onDeliveryResumed: () => () => undefined,
    publishConfirmed: async (topic, id, payload) => pubSub.publish(topic, id, payload),
    subscribed: async () => undefined,
    probe: async () => undefined,
    close: async () => undefined,
  };
}

/**
 * How often each connection to Redis is asked a PING, and how long its answer may take before the connection is
 * taken for dead and made again. A connection that stops carrying data without closing (a NAT or load balancer dropping
 * an idle one, a partition, the Redis host gone) was noticed only by the kernel's keepalive, after about two hours:
 * meanwhile no event of another replica arrived (a revocation among them), a new progress subscription waited for its
 * SUBSCRIBE's answer for good, and the readiness check, which asked the publishing connection only, said ready.
 */
export interface RedisHeartbeat {
  everyMs: number;
  deadlineMs: number;
}

const REDIS_HEARTBEAT: RedisHeartbeat = { everyMs: 5_000, deadlineMs: 5_000 };

export async function createRedisEventBus(url: string, logger: Logger, heartbeat: RedisHeartbeat = REDIS_HEARTBEAT): Promise<EventBus> {
  // Loaded only with REDIS_URL set: a server on its own does not pay for it at every boot.
  const { Redis } = await import('ioredis');
  const options = { lazyConnect: true, maxRetriesPerRequest: 3 };
  const publishClient = new Redis(url, options);
  const subscribeClient = new Redis(url, options);
  // Until both are connected, what went wrong is kept for the boot's error: without a listener ioredis printed each
  // failure to stderr, stack and all, and the boot stopped with "Connection is closed.", naming neither Redis nor why.
  let failure: Error | null = null;
  const failedAtBoot = (error: Error) => (failure ??= error);
  for (const client of [publishClient, subscribeClient]) client.on('error', failedAtBoot);
  try {
    await Promise.all([publishClient.connect(), subscribeClient.connect()]);
  } catch (error) {
    // Neither goes on trying in the background of a boot that has failed.
    publishClient.disconnect();
    subscribeClient.disconnect();
    const cause = failure ?? (error as Error);
    throw new Error(`cannot connect to Redis at REDIS_URL (${urlWithoutPassword(url)}): ${cause.message}`, { cause });
  } finally {
    for (const client of [publishClient, subscribeClient]) client.off('error', failedAtBoot);
  }
  const connections = [
    ['publishing', publishClient, 'events reach no other replica'],
    ['subscribing', subscribeClient, 'events of other replicas may not reach this one'],
  ] as const;
  // Without a listener ioredis prints every failed reconnection to stderr; one warning per outage says enough.
  for (const [name, client] of connections) {
    let reported = false;
    client.on('error', (error: unknown) => {
      if (!reported) logger.warn({ err: withoutCommandArguments(error) }, `the ${name} connection to Redis failed; retrying`);
      reported = true;
    });
    client.on('ready', () => (reported = false));
  }
  const { eventTarget, subscribed } = redisEventTarget(publishClient, subscribeClient, logger);
  // Messages published while the subscribing connection is down are lost for good. It counts as delivering again
  // only once a PING has come back after the reconnection: ioredis re-sends its SUBSCRIBEs first, so by then
  // Redis has them.
  let delivering = true;
  const lostListeners: (() => void)[] = [];
  const resumedListeners = new Set<() => void>();
  subscribeClient.on('close', () => {
    if (!delivering) return;
    delivering = false;
    for (const listener of lostListeners) listener();
  });
  subscribeClient.on('ready', () => {
    subscribeClient.ping().then(
      () => {
        const resumed = !delivering && subscribeClient.status === 'ready';
        delivering = subscribeClient.status === 'ready';
        if (resumed) for (const listener of [...resumedListeners]) listener();
      },
      () => undefined,
    );
  });
  /**
   * A connection's answer to a PING within the deadline; else its socket is destroyed, and ioredis makes it again (the
   * subscribing one's 'close' tells that events were lost). Ending it gracefully waited on a peer that no longer answers.
   * One PING at a time per connection, shared by the heartbeat and the readiness check.
   */
  let closed = false;
  const inFlight = new Map<Redis, Promise<boolean>>();
  const answersPing = (client: Redis, name: string): Promise<boolean> => {
    const pending = inFlight.get(client);
    if (pending) return pending;
    const asked = new Promise<boolean>((resolve) => {
      let answered = false;
      const timer = setTimeout(() => {
        // Decided after the event loop's next look at the sockets: after a stall of the loop (timers run before it reads
        // them), an answer that came meanwhile is read first.
        setImmediate(() => {
          if (answered || closed) return resolve(answered);
          logger.warn({ deadlineMs: heartbeat.deadlineMs }, `the ${name} connection to Redis did not answer a PING; it is made again`);
          (client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
          resolve(false);
        });
      }, heartbeat.deadlineMs);
      timer.unref();
      client.ping().then(
        () => {
          answered = true;
          clearTimeout(timer);
          resolve(true);
        },
        () => {
          // Failed at once: ioredis's own reconnection is under way.
          clearTimeout(timer);
          resolve(false);
        },
      );
    }).finally(() => inFlight.delete(client));
    inFlight.set(client, asked);
    return asked;
  };
  const beat = setInterval(() => {
    for (const [name, client] of connections) if (client.status === 'ready') void answersPing(client, name);
  }, heartbeat.everyMs);
  beat.unref();
  return {
    pubSub: createTypedPubSub(eventTarget),
    isDelivering: () => delivering,
    onDeliveryLost: (listener) => void lostListeners.push(listener),
    onDeliveryResumed: (listener) => {
      resumedListeners.add(listener);
      return () => void resumedListeners.delete(listener);
    },
    // Redis has fanned the event out to the subscribers' connections once it answers the PUBLISH itself (a PING after
    // it would not do: a PUBLISH that failed while the connection was down can be followed by a PING that succeeds).
    publishConfirmed: (topic, id, payload, timeoutMs) => {
      const published = publishClient.publish(`${topic}:${id}`, JSON.stringify(payload));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer a PUBLISH within ${timeoutMs} ms`)), timeoutMs);
      });
      published.catch(() => undefined);
      return Promise.race([published.then(() => undefined), late]).finally(() => clearTimeout(timer));
    },
    // While events are not delivered, the resumption tells the stream to read afresh (and to wait for this again then).
    subscribed: async (topic, id) => (delivering ? subscribed(`${topic}:${id}`) : undefined),
    probe: async () => {
      if (!delivering) throw new Error(`events of other replicas do not reach this one: the subscribing connection to Redis is ${subscribeClient.status}`);
      if (publishClient.status !== 'ready') throw new Error(`events reach no other replica: the publishing connection to Redis is ${publishClient.status}`);
      // ioredis's own errors name no server ("Reached the max retries per request limit" while it reconnects, before
      // either connection's status says so): the readiness check is read by an operator who must know what is away.
      const answers = await Promise.all(connections.map(([name, client]) => answersPing(client, name)));
      const silent = connections.find((_, i) => !answers[i]);
      if (silent) throw new Error(`Redis does not answer a PING on the ${silent[0]} connection: ${silent[2]}`);
    },
    close: async () => {
      closed = true;
      clearInterval(beat);
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}

/**
 * An ioredis error as it is logged: ioredis gives an error Redis answered the `command` it answered, with its arguments,
 * and those of the AUTH it sends on each connection are REDIS_URL's user name and password (refused after a rotation,
 * or answered LOADING by a Redis restarting): only the command's name is kept.
 */
function withoutCommandArguments(error: unknown): unknown {
  const command = (error as { command?: { name?: unknown } } | null)?.command;
  if (!(error instanceof Error) || typeof command !== 'object' || command === null) return error;
  const copy = Object.create(Object.getPrototypeOf(error), Object.getOwnPropertyDescriptors(error)) as Error & { command: unknown };
  copy.command = { name: command.name };
  return copy;
}

/** Messages on Redis channels that are not JSON are dropped, with at most one warning this often (how many). */
const UNREADABLE_WARNING_MS = 10_000;

/**
 * Events as Redis PUBLISH and SUBSCRIBE, one channel per event name. Redis may be away (a restart, a failover): ioredis
 * then fails the commands queued meanwhile, and a command's failure must not end the process, as an unobserved
 * rejection would. A PUBLISH that failed is an event lost, as any published while the subscribing connection is down
 * (onDeliveryLost tells the caches); a SUBSCRIBE that failed is sent again once the connection is back, so that a
 * subscription made during the outage gets the events that follow it. Failures are logged once per outage.
 */
function redisEventTarget(
  publishClient: Redis,
  subscribeClient: Redis,
  logger: Logger,
): { eventTarget: TypedEventTarget<CustomEvent>; subscribed(channel: string): Promise<void> } {
  const listeners = new Map<string, Set<(event: CustomEvent) => void>>();
  const unsubscribed = new Set<string>();
  /** Per channel listened to: settles once Redis answered its latest SUBSCRIBE (see EventBus.subscribed). */
  const confirmations = new Map<string, Promise<void>>();
  /** SUBSCRIBEs not answered yet: the connection dropping settles them (events are lost then; the resumption tells). */
  const unanswered = new Set<() => void>();
  subscribeClient.on('close', () => {
    for (const settle of unanswered) settle();
    unanswered.clear();
  });
  const failing = { publish: false, subscribe: false };
  const failed = (what: keyof typeof failing) => (error: unknown) => {
    if (failing[what]) return;
    failing[what] = true;
    logger.warn({ err: withoutCommandArguments(error) }, `Redis ${what} failed; events are lost until Redis answers again`);
  };
  publishClient.on('ready', () => (failing.publish = false));
  /**
   * Channels nobody listens to any more whose UNSUBSCRIBE failed (Redis away): ioredis still counts them as subscribed
   * and subscribes them again when it reconnects, so each outage left those of the listeners that ended during it
   * subscribed for good (every run's and progress stream's, fanned out to this replica for nothing). Dropped at 'ready'.
   */
  const abandoned = new Set<string>();
  subscribeClient.on('ready', () => {
    failing.subscribe = false;
    if (unsubscribed.size > 0) subscribe([...unsubscribed]);
    if (abandoned.size > 0) {
      const channels = [...abandoned].filter((channel) => !listeners.has(channel));
      abandoned.clear();
      if (channels.length > 0) unsubscribe(channels);
    }
  });
  const unsubscribe = (channels: string[]) =>
    subscribeClient.unsubscribe(...channels).catch((error: unknown) => {
      for (const channel of channels) if (!listeners.has(channel)) abandoned.add(channel);
      failed('subscribe')(error);
    });
  const subscribe = (channels: string[]) => {
    let settle!: () => void;
    const confirmation = new Promise<void>((resolve) => (settle = resolve));
    unanswered.add(settle);
    void confirmation.then(() => unanswered.delete(settle));
    for (const channel of channels) {
      unsubscribed.delete(channel);
      confirmations.set(channel, confirmation);
    }
    subscribeClient.subscribe(...channels).then(settle, (error: unknown) => {
      // Still wanted (nobody unsubscribed meanwhile): again at the next 'ready'.
      for (const channel of channels) if (listeners.has(channel)) unsubscribed.add(channel);
      failed('subscribe')(error);
      settle();
    });
  };
  /** The channel of the last message that was not JSON, named in the warning. */
  let unreadableOn = '';
  const unreadable = groupedWarning(UNREADABLE_WARNING_MS, (count) =>
    logger.warn({ channel: unreadableOn, dropped: count }, 'dropped Redis messages that are not JSON: something other than Snapgraph publishes on its channels'),
  );
  // Closed for good (the bus closing): those still waiting for their line are logged now.
  subscribeClient.on('end', () => unreadable.flush());
  subscribeClient.on('message', (channel: string, message: string) => {
    const callbacks = listeners.get(channel);
    if (!callbacks) return;
    let detail: unknown;
    try {
      detail = message === '' ? null : JSON.parse(message);
    } catch {
      // Not one of ours (a PUBLISH by hand, another application's on the same channel name): thrown here, inside
      // ioredis's handling of the socket's data, it was an uncaught exception that ended every replica subscribed.
      unreadableOn = channel;
      unreadable.note();
      return;
    }
    const event = new CustomEvent(channel, { detail });
    for (const callback of callbacks) callback(event);
  });
  const eventTarget = {
    addEventListener(channel: string, listener: ((event: CustomEvent) => void) | null) {
      if (!listener) return;
      let callbacks = listeners.get(channel);
      if (!callbacks) {
        listeners.set(channel, (callbacks = new Set()));
        abandoned.delete(channel);
        subscribe([channel]);
      }
      callbacks.add(listener);
    },
    removeEventListener(channel: string, listener: ((event: CustomEvent) => void) | null) {
      const callbacks = listeners.get(channel);
      if (!listener || !callbacks?.delete(listener) || callbacks.size > 0) return;
      listeners.delete(channel);
      unsubscribed.delete(channel);
      confirmations.delete(channel);
      void unsubscribe([channel]);
    },
    dispatchEvent(event: CustomEvent) {
      publishClient.publish(event.type, event.detail === undefined ? '' : JSON.stringify(event.detail)).catch(failed('publish'));
      return true;
    },
  } as TypedEventTarget<CustomEvent>;
  return { eventTarget, subscribed: async (channel) => confirmations.get(channel) };
}
