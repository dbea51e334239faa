// The HTTP and WebSocket front: Apollo Server on express, graphql-ws on the same port and path, health checks,
// graceful shutdown.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type RequestHandler } from 'express';
import { type ExecutionResult, type FormattedExecutionResult, getOperationAST, GraphQLError, type GraphQLSchema } from 'graphql';
import type { Context as WsContext } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import { AnswerBudget } from './api/answer-budget';
import type { ApiContext } from './api/context';
import { formatError } from './api/format-error';
import { capConnections } from './api/http/connection-cap';
import { applyHttpTimeouts, webSocketTimeouts } from './api/http/connection-timeouts';
import { cors } from './api/http/cors';
import { exportDownloadHandler } from './api/http/export-download';
import { sendGraphQLRefusal } from './api/http/graphql-refusal';
import { httpErrorHandler } from './api/http/http-errors';
import { playground } from './api/http/playground';
import { queryGuard } from './api/http/query-guard';
import { createTusUploads } from './api/http/tus-uploads';
import { UPLOADS_PATH } from './api/http/upload-endpoint';
import { publicOrigin } from './api/http/public-origin';
import { jsonBody } from './api/http/json-body';
import { endConnectionsOfRevokedKeys } from './api/key-connections';
import { closeFromServer, closingFromServer, isClosedByServer } from './api/server-closed-sockets';
import { createUploadMiddleware } from './api/http/upload-middleware';
import { costRefusal, listVariableRefusal, type QueryLimits, queryValidationRules } from './api/query-limits';
import { ResponseCache, responseCachePlugin } from './api/response-cache';
import { reusedIdError, RunningOperations } from './api/running-operations';
import { buildApiSchema } from './api/schema';
import { boundedWebSocket } from './api/bounded-web-socket';
import { MessageTurns } from './api/message-turns';
import type { FrameSink } from './api/subscriptions/shared-subscription';
import { SubscriptionFanout } from './api/subscriptions/subscription-fanout';
import { checkWebSocketOperation } from './api/websocket-operations';
import { type App, createApp } from './app';
import type { AppConfig } from './config/app-config';
import { isAppError, unauthenticated } from './errors/app-error';
import { isStorageFull } from './errors/storage-full';
import type { Logger } from './logging/logger';
import { graphqlRequestLogPlugin, logContextFailure, logRefusal, requestIdFrom } from './observability/graphql-request-log';
import { operatorEndpoints } from './observability/operator-endpoints';
import { instrumentWebSocketServer, observeWebSocketOperations } from './observability/websocket-instrumentation';
import { newFlatId } from './runtime/flat-id';
import { exitAfterWorkers } from './runtime/stoppable-worker';
import { EXPORT_PATH } from './services/export.service';
import type { Principal } from './services/principal';

export interface RunningServer {
  app: App;
  url: string;
  port: number;
  close(): Promise<void>;
}

type WsExtra = { socket: WebSocket; request: IncomingMessage };

/** Progress frames per second to all subscribers together; each sees progress less often as they grow in number. */
const PROGRESS_FRAMES_PER_SECOND = 500;

const bearer = (header: unknown): string | null => {
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : null;
};

/** A key refused (unknown, revoked, malformed), as opposed to one that could not be checked. */
const isUnauthenticated = (error: unknown): boolean => isAppError(error) && error.code === 'UNAUTHENTICATED';

export async function startServer(config: AppConfig, logger: Logger): Promise<RunningServer> {
  await assertCanListen(config);
  const app = await createApp(config, logger);
  try {
    return await listen(app, await buildApiSchema());
  } catch (error) {
    await app.close();
    throw error;
  }
}

async function listen(app: App, schema: GraphQLSchema): Promise<RunningServer> {
  const { config, logger, services } = app;
  const expressApp = express();
  expressApp.disable('x-powered-by');
  // No ETag computed from every body: GraphQL answers are no-store, and hashing each one cost about 2% of a cheap
  // request's CPU (bench:api profile). The playground's fixed page and scripts carry ETags of their own.
  expressApp.disable('etag');
  const httpServer = createServer(expressApp);
  applyHttpTimeouts(httpServer, config.idleTimeoutMs, logger);
  const maxConnections = capConnections(httpServer, config.maxConnections, app.metrics, logger);
  const limits: QueryLimits = {
    maxBytes: config.maxQueryBytes,
    maxTokens: config.maxQueryTokens,
    maxFields: config.maxQueryFields,
    maxAliases: config.maxQueryAliases,
    maxDepth: config.maxQueryDepth,
    maxCost: config.maxQueryCost,
  };
  const exposure = { debugErrors: config.debugErrors };
  const introspection = { introspection: config.introspection };
  const wsTimeouts = webSocketTimeouts(config.idleTimeoutMs);
  let ready = false;
  /** http://HOST:PORT once listening: the base of export links when no public URL or allowed host says otherwise. */
  let listeningUrl = `http://${config.host}:${config.port}`;

  const authenticate = async (authorization: unknown): Promise<Principal | null> => {
    if (authorization === undefined || authorization === null || authorization === '') return null;
    const secret = bearer(authorization);
    const principal = secret ? await services.tenants.authenticate(secret) : null;
    if (!principal) throw unauthenticated('the API key is not valid (Authorization: Bearer <key>)');
    return principal;
  };

  // WebSocket: graphql-transport-ws on /graphql; the key comes in connection_init.
  const stoppedReading = (details: Record<string, unknown>) => logger.warn(details, 'dropped a WebSocket whose client stopped reading');
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: '/graphql',
    // No compression: shared subscriptions write ready-made frames straight to the socket (bounded-web-socket.ts).
    perMessageDeflate: false,
    // A message is bounded as an HTTP request's body is (ws's own default is 100 MiB).
    maxPayload: config.maxBodyBytes,
    WebSocket: boundedWebSocket(config.wsMaxBufferedBytes, (_socket, bufferedBytes) => stoppedReading({ bufferedBytes }), new MessageTurns()),
  });
  instrumentWebSocketServer(wsServer, app.metrics, logger);
  const wsPrincipals = new WeakMap<object, Principal>();
  const checkOperation = checkWebSocketOperation(schema, limits, introspection);
  const keyConnections = endConnectionsOfRevokedKeys(app, logger);
  const runningOperations = new RunningOperations({ perConnection: config.wsMaxSubscriptions, perKey: config.wsMaxKeySubscriptions });
  /** The socket and operation id of each WebSocket operation's context: where a shared subscription writes. */
  const contextSinks = new WeakMap<ApiContext, FrameSink>();
  /** A result as subscribers are sent it: errors formatted (codes, no internals). */
  const formatResult = (result: ExecutionResult): FormattedExecutionResult =>
    result.errors ? { ...result, errors: result.errors.map((e) => formatError(e.toJSON(), exposure, e)) } : (result as FormattedExecutionResult);
  const fanout = new SubscriptionFanout({
    progressFramesPerSecond: PROGRESS_FRAMES_PER_SECOND,
    sinkOf: (context) => contextSinks.get(context) ?? null,
    format: formatResult,
    findsInstance: (context, instanceId) => context.services.instances.require(context.principal!, instanceId).then(() => true, () => false),
  });
  // Before graphql-ws's own listener, so that it runs before each message is handled.
  wsServer.on('connection', (socket) => socket.prependListener('message', fanout.beforeMessage));
  /** Logs an operation's refusal (its codes) and gives it back for graphql-ws to send. */
  const refused = (ctx: WsContext<Record<string, unknown> | undefined, WsExtra>, errors: GraphQLError[]) => {
    const errorCodes = [...new Set(errors.map((error) => String(formatError(error.toJSON(), exposure).extensions?.code)))];
    logger.info({ transport: 'websocket', tenantId: wsPrincipals.get(ctx)?.tenantId ?? null, errorCodes }, 'graphql request refused');
    return errors;
  };
  const wsCleanup = useServer<Record<string, unknown> | undefined, WsExtra>(
    {
      schema,
      // Parsed, limited and validated here: graphql-ws's own parse would close the socket on a syntax error.
      onSubscribe: (ctx, id, payload) => {
        // A socket the server is closing (its key revoked or its role changed, a shutdown) runs nothing more: ws goes on
        // reading it until its client answers the close, which a client may hold back for ws's close timeout (30 s),
        // sending operations that would otherwise run as the key it was opened with. One its client is closing runs
        // what it sent before its close (refused as CLOSING, a mutation sent right before it was lost).
        const { socket } = ctx.extra;
        if (isClosedByServer(socket)) return [unauthenticated('this connection is closing; connect again')];
        if (runningOperations.inUse(ctx, id)) {
          // Refused here, and the id forgotten at once: graphql-ws's own `error`, a few ticks later, would leave the
          // operation still running time to send its answer under the id first, and then forget the new one's id.
          const refusal = [reusedIdError(id)];
          delete ctx.subscriptions[id];
          socket.send(JSON.stringify({ id, type: 'error', payload: refusal.map((error) => formatError(error.toJSON(), exposure)) }));
          return refused(ctx, refusal);
        }
        const checked = checkOperation(payload);
        if (Array.isArray(checked)) return refused(ctx, checked);
        const principal = wsPrincipals.get(ctx);
        // Acknowledged connections all have their principal; the check keeps a bug from letting one past the caps.
        if (!principal) return refused(ctx, [unauthenticated('this connection has no API key; connect again')]);
        const isSubscription = getOperationAST(checked.document, checked.operationName)?.operation === 'subscription';
        const overCap = runningOperations.admit(ctx, principal.apiKeyId, id, payload, isSubscription);
        return overCap ? refused(ctx, [overCap]) : checked;
      },
      onComplete: (ctx, id, payload) => runningOperations.finished(ctx, id, payload),
      onClose: (ctx) => runningOperations.closed(ctx),
      // Whatever NODE_ENV says: graphql-ws otherwise closes a socket whose message handling threw with the error's own
      // text as the close reason, internals a client must never see.
      isProd: true,
      connectionInitWaitTimeout: wsTimeouts.connectionInitWaitTimeout,
      subscribe: fanout.subscribe,
      onOperation: observeWebSocketOperations(app.metrics, logger, exposure),
      onConnect: async (ctx) => {
        let principal: Principal | null;
        try {
          principal = await authenticate(ctx.connectionParams?.authorization);
        } catch (error) {
          if (!isUnauthenticated(error)) {
            // The key could not be checked (the metadata database failing): not the client's fault, so not 4401, after
            // which graphql-ws clients never connect again. 1013 is "try again later", which they retry.
            logger.error({ transport: 'websocket', err: error }, 'could not check the API key of a WebSocket');
            closeFromServer(ctx.extra.socket, 1013, 'Try again later: the API key could not be checked');
            return false;
          }
          principal = null;
        }
        if (!principal) {
          closeFromServer(ctx.extra.socket, 4401, 'Unauthorized: send {"authorization": "Bearer <key>"} in connection_init');
          return false;
        }
        // A key revoked while it was checked (the check read it just before) is refused here all the same.
        if (!keyConnections.addSocket(principal, ctx.extra.socket)) return false;
        wsPrincipals.set(ctx, principal);
        return true;
      },
      context: (ctx: WsContext<Record<string, unknown> | undefined, WsExtra>, id: string): ApiContext => {
        const context: ApiContext = {
          principal: wsPrincipals.get(ctx) ?? null,
          services,
          requestId: newFlatId(),
          origin: publicOrigin(config, listeningUrl, ctx.extra.request.headers.host),
          maxQueryCost: limits.maxCost,
          answerBudget: new AnswerBudget(),
        };
        contextSinks.set(context, { socket: ctx.extra.socket, id, detach: () => delete ctx.subscriptions[id] });
        return context;
      },
      onError: (_ctx, _id, _payload, errors) => errors.map((error) => formatError(error.toJSON(), exposure, error)),
      onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? formatResult(result) : undefined),
    },
    wsServer,
    wsTimeouts.keepAliveMs,
  );
  // ws hands the HTTP server's errors on to the WebSocket server, where graphql-ws takes the first for a bug of its
  // own: a stack trace on stderr ("Internal error … check your implementation") for a port in use at boot, which
  // listen below reports, and every WebSocket closed with 1011 for one later; a second would be uncaught.
  wsServer.removeAllListeners('error');
  wsServer.on('error', (error) => ready && logger.error({ err: error }, 'HTTP server error'));

  const apollo = new ApolloServer<ApiContext>({
    schema,
    csrfPrevention: true,
    // Our own SIGTERM/SIGINT handler drains everything (installSignalHandlers); Apollo's would re-raise the signal.
    stopOnTerminationSignals: false,
    // Switched off by our own validation rule, the same one WebSocket uses, so that the two always agree.
    introspection: true,
    includeStacktraceInErrorResponses: config.debugErrors,
    // Apollo's own lines (a plugin hook that threw, an operation during shutdown) join the JSON log; its default
    // logger wrote them as plain text to the console.
    logger: logger.child({ component: 'apollo' }),
    formatError: (formatted, error) => formatError(formatted, exposure, error),
    parseOptions: { maxTokens: limits.maxTokens },
    validationRules: queryValidationRules(limits, introspection),
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      {
        serverWillStart: async () => ({
          drainServer: async () => {
            // Marked before graphql-ws closes them: what they still send during the drain runs nothing.
            closingFromServer(wsServer.clients);
            await wsCleanup.dispose();
          },
        }),
      },
      ApolloServerPluginLandingPageDisabled(),
      ApolloServerPluginCacheControlDisabled(),
      graphqlRequestLogPlugin(logger, app.metrics, exposure),
      responseCachePlugin(new ResponseCache(), app.tenantDataVersion, app.metrics.graphqlResponseCache),
      {
        // The cost needs the variables: `nodes(first: $f)` costs what $f says.
        requestDidStart: async () => ({
          didResolveOperation: async ({ schema: operationSchema, document, operationName, operation, request }) => {
            const refusal = (operation && listVariableRefusal(operationSchema, operation, request.variables)) ?? costRefusal(operationSchema, document, operationName, request.variables, limits);
            if (refusal) throw refusal;
          },
        }),
      },
    ],
  });
  await apollo.start();

  const corsHeaders = cors(config.corsOrigins);
  /** A request refused before Apollo sees it: its X-Request-Id echoed, one log line under it, the JSON error body. */
  const refuseBeforeApollo = (req: express.Request, res: express.Response, status: number, error: GraphQLError, reason: string) => {
    // The id Apollo's context gave the request, when it has one (an upload cut off while its resolver reads the file).
    const given = res.getHeader('x-request-id');
    const requestId = typeof given === 'string' ? given : requestIdFrom(req.headers['x-request-id']);
    res.setHeader('x-request-id', requestId);
    res.setHeader('cache-control', 'no-store');
    logRefusal(logger, app.metrics, { requestId, status, errorCode: String(error.extensions.code), reason });
    sendGraphQLRefusal(req, res, status, [error], exposure);
  };
  const graphqlHandlers: RequestHandler[] = [
    createUploadMiddleware(
      config,
      async (authorization) => {
        const principal = await authenticate(authorization).catch((error: unknown) => {
          if (isUnauthenticated(error)) return null;
          throw error;
        });
        return principal?.apiKeyId ?? null;
      },
      keyConnections,
      (req, res, status, code, message) => refuseBeforeApollo(req, res, status, new GraphQLError(message, { extensions: { code } }), 'upload'),
    ),
    jsonBody(config.maxBodyBytes),
    queryGuard(limits, (req, res, error) => refuseBeforeApollo(req, res, 400, error, String(error.extensions.limit))),
    expressMiddleware(apollo, {
      context: async ({ req, res }): Promise<ApiContext> => {
        const requestId = requestIdFrom(req.headers['x-request-id']);
        // Every GraphQL answer over HTTP has them, set here before Apollo answers (a request refused here, for its key,
        // reaches no plugin): `no-store`, since what an answer shows is one caller's and changes at any moment (no field
        // has a cache hint; Apollo's cache-control plugin, which wrapped every resolver to find that out, is disabled).
        res.setHeader('x-request-id', requestId);
        res.setHeader('cache-control', 'no-store');
        let principal: Principal | null;
        try {
          principal = await authenticate(req.headers.authorization);
        } catch (error) {
          logContextFailure(logger, app.metrics, exposure, requestId, error);
          throw error;
        }
        return { principal, services, requestId, origin: publicOrigin(config, listeningUrl, req.headers.host), maxQueryCost: limits.maxCost, answerBudget: new AnswerBudget() };
      },
    }),
  ];
  // Nearly every request is a POST to /graphql: it is routed first, past no other route's matching (in a bench:api
  // profile express's routing was 6% of a cheap query's CPU). A POST is never a CORS preflight, so the CORS middleware
  // only adds its headers here; every other method and path goes through the routes below in their order.
  expressApp.post('/graphql', corsHeaders, ...graphqlHandlers);
  expressApp.use(operatorEndpoints({ isServing: () => ready, readiness: app.readiness, metrics: app.metrics, logger }));
  expressApp.use(corsHeaders);
  if (config.playground) expressApp.use(playground(logger));
  expressApp.get(`${EXPORT_PATH}/:token`, exportDownloadHandler(services.exports, keyConnections, logger, app.metrics));
  expressApp.use(UPLOADS_PATH, await createTusUploads(app, keyConnections));
  expressApp.use('/graphql', ...graphqlHandlers);
  expressApp.use(httpErrorHandler(logger, app.metrics, exposure));

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', (error) => reject(cannotListen(config, error as NodeJS.ErrnoException)));
    httpServer.listen(config.port, config.host, () => resolve());
  });
  ready = true;
  const { port } = httpServer.address() as AddressInfo;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  listeningUrl = url;
  logger.info({ url: `${url}/graphql`, dataDir: config.dataDir, metadata: config.databaseUrl ? 'postgres' : 'sqlite', maxConnections }, 'snapgraph is serving');

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      ready = false;
      await apollo.stop();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
      keyConnections.stop();
      await app.close();
      logger.info('snapgraph stopped');
    })());
  return { app, url, port, close };
}

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'not an address of this machine',
  EACCES: 'permission denied',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name could not be resolved now',
};

/**
 * Refuses a HOST and PORT this process cannot listen on before anything boots: found only at listen, the server had
 * first run its migrations, made its keys and default tenant and started its operation runner and scheduler (which,
 * beside replicas sharing its database, may claim a queued operation), all to close them again. A listening socket is
 * opened and closed; should the port be taken in between, the real listen fails as it did.
 */
async function assertCanListen(config: AppConfig): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (error) => reject(cannotListen(config, error as NodeJS.ErrnoException)));
    probe.listen(config.port, config.host, () => probe.close(() => resolve()));
  });
}

/** A failure to listen, naming the address and the variables that chose it (the boot's one line on stderr). */
function cannotListen(config: AppConfig, error: NodeJS.ErrnoException): Error {
  const why = error.code ? `${LISTEN_ERRORS[error.code] ?? error.message} (${error.code})` : error.message;
  return new Error(`cannot listen on ${config.host}:${config.port} (HOST, PORT): ${why}`, { cause: error });
}

/**
 * SIGTERM and SIGINT drain and stop the server. Installed before it boots: without a handler node's default kills the
 * process at once, and a signal sent on the "snapgraph is serving" line could arrive before a handler installed after
 * the boot (seen in CI: `npm start`'s SIGTERM on a loaded machine killed the server without a line). A signal during
 * the boot stops the server once it is up; a boot that fails is reported by its caller.
 */
export function installSignalHandlers(started: Promise<RunningServer>, config: Pick<AppConfig, 'shutdownGraceMs'>, logger: Logger): void {
  const shutdown = (signal: string) => {
    logger.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: draining connections, then running operations');
    // Running operations get the grace period, then are handed back; the rest (connections, stores) gets 15 s more.
    const limitMs = config.shutdownGraceMs + 15_000;
    const force = setTimeout(() => {
      logger.error({ limitMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, limitMs);
    force.unref();
    started.then(
      (server) =>
        server.close().then(
          // The worker threads too: process.exit() would stop one inside a zlib call (see stoppable-worker.ts).
          () => exitAfterWorkers(0),
          (error: unknown) => {
            logger.error({ err: error }, 'error during shutdown');
            exitAfterWorkers(1);
          },
        ),
      () => undefined,
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

/**
 * glibc's malloc gives each thread that allocates (libuv's pool running SQLite, zstd and crypto; V8's helpers) an arena
 * of its own, up to 8 per core, and keeps what was freed in each: the largest part of the server's peak RSS after a
 * snapshot or restore. The snapgraph launcher (bin/snapgraph) sets MALLOC_ARENA_MAX=2; a server started some other way
 * on glibc without it says so once. Nothing to say on musl (Alpine) and other C libraries.
 */
export function warnAboutMallocArenas(logger: Logger, env: NodeJS.ProcessEnv = process.env): void {
  if (env.MALLOC_ARENA_MAX || process.platform !== 'linux') return;
  (process.report as { excludeNetwork?: boolean }).excludeNetwork = true; // Node ≥ 20.13: no network interfaces in it
  const { header } = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
  if (!header?.glibcVersionRuntime) return;
  logger.warn(
    { glibc: header.glibcVersionRuntime },
    'MALLOC_ARENA_MAX is not set: glibc keeps freed memory in up to 8 malloc arenas per core, tens of MiB more peak ' +
      'memory (docs/operations.md, Memory); start the server with bin/snapgraph (npx snapgraph serve, npm start), ' +
      'which sets MALLOC_ARENA_MAX=2, or set it yourself',
  );
}

/**
 * A full disk met by work nobody awaits (a background write, a stream's 'error' event) is logged and the server
 * serves on: whoever asked for that work is answered STORAGE_FULL, and everything works again once space returns.
 * Anything else that escapes is a bug: it is logged and the process exits, as Node's default would.
 */
export function installProcessErrorHandlers(logger: Logger): void {
  const handle = (what: string) => (error: unknown) => {
    if (isStorageFull(error)) {
      logger.error({ err: error }, `${what}: the disk is full; serving on`);
      return;
    }
    logger.fatal({ err: error }, what);
    process.exit(1);
  };
  process.on('unhandledRejection', handle('unhandled promise rejection'));
  process.on('uncaughtException', handle('uncaught exception'));
}
