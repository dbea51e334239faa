// The operations each WebSocket connection runs, so that one client cannot grow the server's memory without bound by
// subscribing: every subscription the server holds costs about 17 KB (its execution, its stream, graphql-ws's state),
// and nothing else limits how many a connection, or an API key over many connections, opens. Past a cap, the
// subscription is refused alone, with an `error` message for its id: the connection and its other operations go on.
//
// An id stays in use until its operation has ended, also after its client completed it: graphql-ws tells an operation's
// messages apart by id alone, so the first one, still running, sent its answer under the id as the second's, then a
// complete that ended the second for its client, and forgot the second (left running for good, never stopped with its
// socket). A `subscribe` that reuses such an id is refused (reusedIdError).
//
// A subscription counts from its `subscribe` until its client completes it, or it ends, or its socket closes; a client
// that completes one may subscribe again right behind the complete. The caps hold per server process: an API key
// connected to several replicas holds up to the key's cap on each.
import { GraphQLError } from 'graphql';
import type { SubscribePayload } from 'graphql-ws';

export interface SubscriptionCaps {
  /** Subscriptions one connection may hold at once. */
  perConnection: number;
  /** Subscriptions one API key may hold at once, all its connections together. */
  perKey: number;
}

/** graphql-ws's record of the operations of one connection: an id is in it from `subscribe` to its end or complete. */
interface ConnectionContext {
  readonly subscriptions: Record<string, unknown>;
}

interface Connection {
  apiKeyId: string;
  /** The operations started and not yet ended, by id: the message that started each. */
  running: Map<string, SubscribePayload>;
  /** The ids of the subscriptions among them that its client has not completed: they count against both caps. */
  counted: Set<string>;
}

export class RunningOperations {
  private readonly connections = new WeakMap<ConnectionContext, Connection>();
  /** Subscriptions counted per API key (keys with none are left out). */
  private readonly byKey = new Map<string, number>();

  constructor(private readonly caps: SubscriptionCaps) {}

  /** Whether an operation started under `id` on this connection has not ended yet (its client may have completed it). */
  inUse(ctx: ConnectionContext, id: string): boolean {
    return this.connections.get(ctx)?.running.has(id) ?? false;
  }

  /**
   * Whether the operation `id` may start on this connection (as `apiKeyId`): null, and it is counted until finished(),
   * or the refusal its client is sent instead.
   */
  admit(ctx: ConnectionContext, apiKeyId: string, id: string, payload: SubscribePayload, isSubscription: boolean): GraphQLError | null {
    let connection = this.connections.get(ctx);
    if (!connection) this.connections.set(ctx, (connection = { apiKeyId, running: new Map(), counted: new Set() }));
    if (isSubscription) {
      this.uncountCompleted(ctx, connection);
      if (connection.counted.size >= this.caps.perConnection) return capError('subscriptions', this.caps.perConnection, 'this connection');
      if ((this.byKey.get(apiKeyId) ?? 0) >= this.caps.perKey) return capError('keySubscriptions', this.caps.perKey, 'this API key');
    }
    this.uncount(connection, id);
    connection.running.set(id, payload);
    if (isSubscription) {
      connection.counted.add(id);
      this.byKey.set(apiKeyId, (this.byKey.get(apiKeyId) ?? 0) + 1);
    }
    return null;
  }

  /** graphql-ws's onComplete: the operation of this message has ended (completed, failed, stopped or its socket gone). */
  finished(ctx: ConnectionContext, id: string, payload: SubscribePayload): void {
    const connection = this.connections.get(ctx);
    if (!connection || connection.running.get(id) !== payload) return;
    connection.running.delete(id);
    this.uncount(connection, id);
  }

  /** The connection closed: whatever it still ran no longer counts (its operations are being stopped). */
  closed(ctx: ConnectionContext): void {
    const connection = this.connections.get(ctx);
    if (!connection) return;
    this.connections.delete(ctx);
    for (const id of connection.counted) this.uncount(connection, id);
  }

  /** Subscriptions whose client completed them are being stopped: they no longer count, though not ended yet. */
  private uncountCompleted(ctx: ConnectionContext, connection: Connection): void {
    for (const id of connection.counted) if (!(id in ctx.subscriptions)) this.uncount(connection, id);
  }

  private uncount(connection: Connection, id: string): void {
    if (!connection.counted.delete(id)) return;
    const left = (this.byKey.get(connection.apiKeyId) ?? 1) - 1;
    if (left > 0) this.byKey.set(connection.apiKeyId, left);
    else this.byKey.delete(connection.apiKeyId);
  }
}

function capError(limit: 'subscriptions' | 'keySubscriptions', max: number, holder: string): GraphQLError {
  return new GraphQLError(
    `${holder} already holds ${max} subscriptions, this server's limit: complete one you no longer need before subscribing again`,
    { extensions: { code: 'BAD_USER_INPUT', limit, max } },
  );
}

export function reusedIdError(id: string): GraphQLError {
  return new GraphQLError(
    `the operation ${JSON.stringify(id)} has not ended yet on this connection: subscribe with a new id, or with this one once its operation has ended`,
    { extensions: { code: 'BAD_USER_INPUT' } },
  );
}
