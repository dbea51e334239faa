// WebSocket connections and the operations they carry: the gauges of GET /metrics, one log line per closed
// connection and one per finished operation (a subscription finishes when it completes or is stopped).
import { randomUUID } from 'node:crypto';
import { type ExecutionArgs, type ExecutionResult, getOperationAST, type GraphQLError } from 'graphql';
import type { OperationResult } from 'graphql-ws';
import type { WebSocketServer } from 'ws';
import type { ApiContext } from '../api/context';
import { type ErrorExposure, formatError } from '../api/format-error';
import type { Logger } from '../logging/logger';
import type { Metrics } from './metrics';

const MAX_NAME_LENGTH = 100;

/** Counts sockets from the `ws` server itself, so refused and never-initialised connections count too. */
export function instrumentWebSocketServer(wsServer: WebSocketServer, metrics: Metrics, logger: Logger): void {
  wsServer.on('connection', (socket) => {
    const connectionId = randomUUID();
    const opened = Date.now();
    metrics.webSocketConnections.inc();
    socket.once('close', (code, reason) => {
      metrics.webSocketConnections.dec();
      logger.info({ connectionId, code, reason: reason.toString('utf8').slice(0, 120), ms: Date.now() - opened }, 'websocket closed');
    });
  });
}

/**
 * graphql-ws `onOperation`. A query or mutation is logged at once. A subscription's event stream is wrapped so that
 * the active-subscriptions gauge goes up when it starts and down exactly once however it ends (completed, failed,
 * stopped by the client, socket closed), and its line is logged then. A plain iterator rather than an async
 * generator: a generator's return() would wait for the next event before stopping.
 */
export function observeWebSocketOperations(metrics: Metrics, logger: Logger, exposure: ErrorExposure) {
  return (_ctx: unknown, _id: string, _payload: unknown, args: ExecutionArgs, result: OperationResult): OperationResult => {
    const started = performance.now();
    const context = args.contextValue as ApiContext | undefined;
    const operation = getOperationAST(args.document, args.operationName);
    const log = (errors: readonly GraphQLError[] = []) => {
      const errorCodes = [...new Set(errors.map((error) => String(formatError(error.toJSON(), exposure).extensions?.code)))];
      logger.info(
        {
          requestId: context?.requestId,
          operationName: operation?.name?.value.slice(0, MAX_NAME_LENGTH) ?? null,
          operationType: operation?.operation ?? 'unknown',
          tenantId: context?.principal?.tenantId ?? null,
          transport: 'websocket',
          ...(errorCodes.length > 0 ? { errorCodes } : {}),
          ms: Math.round(performance.now() - started),
        },
        'graphql request',
      );
    };
    if (!isAsyncIterable(result)) {
      // graphql-ws hands this hook the settled result, never a promise.
      log((result as ExecutionResult).errors);
      return result;
    }

    const source = result[Symbol.asyncIterator]();
    metrics.activeSubscriptions.inc();
    let active = true;
    const end = (errors?: readonly GraphQLError[]) => {
      if (!active) return;
      active = false;
      metrics.activeSubscriptions.dec();
      log(errors);
    };
    const tracked: AsyncGenerator<unknown> = {
      async next() {
        try {
          const step = await source.next();
          if (step.done) end();
          return step;
        } catch (error) {
          end();
          throw error;
        }
      },
      async return(value?: unknown) {
        end();
        return (await source.return?.(value)) ?? { done: true, value: undefined };
      },
      async throw(error?: unknown) {
        end();
        if (source.throw) return source.throw(error);
        throw error;
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return tracked as OperationResult;
  };
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function';
}
