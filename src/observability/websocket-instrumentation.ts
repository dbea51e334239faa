// WebSocket connections and the operations they carry: the gauges of GET /metrics, one log line per closed
// connection and one per finished operation (a subscription finishes when it completes or is stopped).
import { type ExecutionArgs, type ExecutionResult, getOperationAST, GraphQLError } from 'graphql';
import type { OperationResult } from 'graphql-ws';
import type { WebSocketServer } from 'ws';
import type { ApiContext } from '../api/context';
import { type ErrorExposure, formatError } from '../api/format-error';
import type { Logger } from '../logging/logger';
import { newFlatId } from '../runtime/flat-id';
import type { Metrics } from './metrics';

const MAX_NAME_LENGTH = 100;

/** Counts sockets from the `ws` server itself, so refused and never-initialised connections count too. */
export function instrumentWebSocketServer(wsServer: WebSocketServer, metrics: Metrics, logger: Logger): void {
  wsServer.on('connection', (socket) => {
    const connectionId = newFlatId();
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
 * stopped by the client, socket closed), and its line is logged then.
 */
export function observeWebSocketOperations(metrics: Metrics, logger: Logger, exposure: ErrorExposure) {
  const observer: Observer = { metrics, logger, exposure };
  return (_ctx: unknown, _id: string, _payload: unknown, args: ExecutionArgs, result: OperationResult): OperationResult => {
    const line = new OperationLine(args, performance.now());
    if (!isAsyncIterable(result)) {
      // graphql-ws hands this hook the settled result, never a promise.
      line.note(observer, (result as ExecutionResult).errors ?? []);
      line.write(observer);
      return result;
    }
    metrics.activeSubscriptions.inc();
    return new ObservedSubscription(result[Symbol.asyncIterator](), line, observer) as unknown as OperationResult;
  };
}

interface Observer {
  metrics: Metrics;
  logger: Logger;
  exposure: ErrorExposure;
}

/** What an operation's log line says; kept from its start to its end (a subscription's may be hours later). */
class OperationLine {
  private readonly requestId: string | undefined;
  private readonly operationName: string | null;
  private readonly operationType: string;
  private readonly tenantId: string | null;
  private errorCodes: Set<string> | undefined;

  constructor(
    args: ExecutionArgs,
    private readonly started: number,
  ) {
    const context = args.contextValue as ApiContext | undefined;
    const operation = getOperationAST(args.document, args.operationName);
    this.requestId = context?.requestId;
    this.operationName = operation?.name?.value.slice(0, MAX_NAME_LENGTH) ?? null;
    this.operationType = operation?.operation ?? 'unknown';
    this.tenantId = context?.principal?.tenantId ?? null;
  }

  /**
   * Errors the operation met (in a result, or the stream's own failure): their codes go in its line, and the cause of
   * each INTERNAL_SERVER_ERROR, which its client is not shown, in a line of its own, as over HTTP.
   */
  note({ logger, exposure }: Observer, errors: readonly unknown[]): void {
    for (const error of errors) {
      const code = codeOf(error, exposure);
      (this.errorCodes ??= new Set()).add(code);
      if (code !== 'INTERNAL_SERVER_ERROR') continue;
      const { originalError, path } = error instanceof GraphQLError ? error : { originalError: undefined, path: undefined };
      logger.error({ requestId: this.requestId, transport: 'websocket', err: originalError ?? error, path }, 'graphql request failed');
    }
  }

  write({ logger }: Observer): void {
    logger.info(
      {
        requestId: this.requestId,
        operationName: this.operationName,
        operationType: this.operationType,
        tenantId: this.tenantId,
        transport: 'websocket',
        ...(this.errorCodes ? { errorCodes: [...this.errorCodes] } : {}),
        ms: Math.round(performance.now() - this.started),
      },
      'graphql request',
    );
  }
}

/** The code its client is sent for an error: a GraphQLError's own, else what an error thrown by a stream becomes. */
function codeOf(error: unknown, exposure: ErrorExposure): string {
  const formatted = error instanceof GraphQLError ? error.toJSON() : { message: error instanceof Error ? error.message : String(error) };
  return String(formatError(formatted, exposure, error).extensions?.code);
}

/**
 * A subscription's stream, counted in the gauge until it ends and logged then, once however it ends. A class, not an
 * object of closures: with thousands of subscribers, what each keeps for as long as it lives is what the GC copies
 * and marks. A plain iterator rather than an async generator: a generator's return() would wait for the next event
 * before stopping.
 */
class ObservedSubscription implements AsyncIterableIterator<unknown> {
  private active = true;

  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly line: OperationLine,
    private readonly observer: Observer,
  ) {}

  async next(): Promise<IteratorResult<unknown>> {
    try {
      const step = await this.source.next();
      if (step.done) this.end();
      else if ((step.value as ExecutionResult | undefined)?.errors) this.line.note(this.observer, (step.value as ExecutionResult).errors!);
      return step;
    } catch (error) {
      // The stream failed: graphql-ws sends its client an error message, "Internal server error" for a cause of ours.
      this.line.note(this.observer, [error]);
      this.end();
      throw error;
    }
  }

  async return(value?: unknown): Promise<IteratorResult<unknown>> {
    this.end();
    return (await this.source.return?.(value)) ?? { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<unknown>> {
    this.end();
    if (this.source.throw) return this.source.throw(error);
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private end(): void {
    if (!this.active) return;
    this.active = false;
    this.observer.metrics.activeSubscriptions.dec();
    this.line.write(this.observer);
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function';
}
