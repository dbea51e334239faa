// GraphQL over WebSocket (graphql-transport-ws) as clients use it: a graphql-ws client for subscriptions, and a raw
// socket for what a client library hides (close codes of refused connections).
import { type Client, createClient, type FormattedExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';
import { registerCleanup } from './cleanup';
import type { TestServer } from './server';

type WsServerLike = Pick<TestServer, 'wsUrl'>;

export type ExecutionResult<TData = any> = FormattedExecutionResult<TData, unknown>;

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface Subscription<TData = any> {
  /** Every result received so far, in order. */
  readonly results: ExecutionResult<TData>[];
  /** The next result not yet taken by next()/waitFor(); rejects after timeoutMs or when the subscription ends first. */
  next(timeoutMs?: number): Promise<ExecutionResult<TData>>;
  /** Takes results until one matches; rejects after timeoutMs or when the subscription ends first. */
  waitFor(predicate: (result: ExecutionResult<TData>) => boolean, timeoutMs?: number): Promise<ExecutionResult<TData>>;
  /** Resolves when the server acknowledged the connection (the subscription itself starts a moment later). */
  readonly connected: Promise<void>;
  /** Resolves when the server completes the subscription; rejects with its error (GraphQL errors or a close event). */
  readonly complete: Promise<void>;
  /** Unsubscribes and closes the connection. */
  close(): Promise<void>;
}

/**
 * Subscribes (or runs a query/mutation) over graphql-ws with connection_init {"authorization": "Bearer <key>"}.
 * The connection is closed after the test if the test does not close it.
 */
export function subscribe<TData = any>(
  server: WsServerLike,
  key: string | null,
  query: string,
  variables?: Record<string, unknown>,
): Subscription<TData> {
  let onConnected!: () => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const client: Client = createClient({
    url: server.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: key === null ? {} : { authorization: `Bearer ${key}` },
    lazy: true,
    retryAttempts: 0,
    on: { connected: () => onConnected() },
  });
  const results: ExecutionResult<TData>[] = [];
  let taken = 0;
  let ended: { error?: unknown } | null = null;
  const wake = new Set<() => void>();
  const notify = () => {
    for (const waiter of [...wake]) waiter();
  };

  let resolveComplete!: () => void;
  let rejectComplete!: (error: unknown) => void;
  const complete = new Promise<void>((resolve, reject) => {
    resolveComplete = resolve;
    rejectComplete = reject;
  });
  complete.catch(() => undefined); // a test that does not look at `complete` should not see an unhandled rejection

  const unsubscribe = client.subscribe<TData>(
    { query, variables },
    {
      next: (result) => {
        results.push(result);
        notify();
      },
      error: (error) => {
        ended = { error };
        rejectComplete(describeWsError(error));
        notify();
      },
      complete: () => {
        ended = {};
        resolveComplete();
        notify();
      },
    },
  );

  const close = registerCleanup(async () => {
    unsubscribe();
    await client.dispose();
  });

  const waitFor = (predicate: (result: ExecutionResult<TData>) => boolean, timeoutMs = 10_000) =>
    new Promise<ExecutionResult<TData>>((resolve, reject) => {
      const check = () => {
        while (taken < results.length) {
          const result = results[taken++];
          if (predicate(result)) {
            done();
            resolve(result);
            return;
          }
        }
        if (ended) {
          done();
          const failure = ended.error === undefined ? null : describeWsError(ended.error);
          const why = failure ? `failed: ${failure.message}` : 'completed';
          // The failure's details (graphQLErrors of an `error` message, or the close code) stay on the rejection.
          reject(Object.assign(new Error(`the subscription ${why} before the expected result; received ${JSON.stringify(results)}`), { ...failure }));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching result within ${timeoutMs} ms; received ${JSON.stringify(results)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        wake.delete(check);
      };
      wake.add(check);
      check();
    });

  return {
    results,
    next: (timeoutMs) => waitFor(() => true, timeoutMs),
    waitFor,
    connected,
    complete,
    close,
  };
}

function describeWsError(error: unknown): Error {
  if (error instanceof Error) return error;
  if (Array.isArray(error)) return Object.assign(new Error(`GraphQL errors: ${JSON.stringify(error)}`), { graphQLErrors: error });
  if (error && typeof error === 'object' && 'code' in error) {
    const { code, reason } = error as { code: number; reason?: string };
    return Object.assign(new Error(`the socket closed with ${code} ${reason ?? ''}`.trim()), { closeCode: code });
  }
  return new Error(String(error));
}

export interface WsConnection {
  socket: WebSocket;
  /** True when the server answered connection_init with connection_ack. */
  acknowledged: boolean;
  /** Set when the server closed the socket before acknowledging (e.g. 4401 for a bad key). */
  closeCode?: number;
  closeReason?: string;
  /** Resolves when the socket closes, for whatever reason. */
  closed: Promise<CloseInfo>;
  close(): Promise<CloseInfo>;
}

/**
 * Opens a raw graphql-transport-ws socket and sends connection_init. Resolves on connection_ack or on close,
 * whichever comes first. `key` null sends an empty payload; `connectionParams` replaces the payload entirely.
 */
export function connectWs(
  server: WsServerLike,
  key: string | null,
  { connectionParams, timeoutMs = 10_000 }: { connectionParams?: unknown; timeoutMs?: number } = {},
): Promise<WsConnection> {
  const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
  const closed = new Promise<CloseInfo>((resolve) =>
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })),
  );
  const close = registerCleanup(async () => {
    if (socket.readyState === WebSocket.CLOSED) return;
    socket.close(1000, 'test done');
    await closed;
  });
  const payload = connectionParams !== undefined ? connectionParams : key === null ? {} : { authorization: `Bearer ${key}` };

  return new Promise<WsConnection>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connection_ack or close within ${timeoutMs} ms`)), timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload })));
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string };
      if (message.type === 'connection_ack') {
        clearTimeout(timer);
        resolve({ socket, acknowledged: true, closed, close: async () => (await close(), closed) });
      }
    });
    void closed.then(({ code, reason }) => {
      clearTimeout(timer);
      resolve({ socket, acknowledged: false, closeCode: code, closeReason: reason, closed, close: async () => closed });
    });
  });
}
