// One structured log line per GraphQL request over HTTP (an Apollo plugin) and the request counter; the X-Request-Id
// response header is set where the request's context is made (src/server.ts). Fields are picked one by one: never the
// query text, variables or headers, which may carry keys.
import { randomUUID } from 'node:crypto';
import type { ApolloServerPlugin } from '@apollo/server';
import type { GraphQLFormattedError } from 'graphql';
import type { ApiContext } from '../api/context';
import { type ErrorExposure, formatError } from '../api/format-error';
import type { Logger } from '../logging/logger';
import type { Metrics } from './metrics';

const MAX_NAME_LENGTH = 100;
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/;

/** The client's X-Request-Id when it is a plain token, else a new id: logs hold no arbitrary client text. */
export function requestIdFrom(header: unknown): string {
  return typeof header === 'string' && CLIENT_REQUEST_ID.test(header) ? header : randomUUID();
}

export interface Refusal {
  requestId: string;
  status: number;
  errorCode: string;
  /** Which limit, or what was malformed (e.g. "json"): never the client's text. */
  reason: string;
}

/** The one log line of a request refused before Apollo saw it (its body or its query over a limit). */
export function logRefusal(logger: Logger, metrics: Metrics, { requestId, status, errorCode, reason }: Refusal): void {
  metrics.graphqlRequests.inc({ operation_type: 'unknown', outcome: errorCode });
  logger.info({ requestId, status, errorCodes: [errorCode], reason }, 'graphql request refused');
}

/**
 * A request whose context could not be made: its API key refused, or not checked at all (the metadata database
 * failing). Apollo answers it before any plugin's request hooks run, so its line is written here, under its request id,
 * with the cause when the failure is the server's: the client's answer says only "Internal server error".
 */
export function logContextFailure(logger: Logger, metrics: Metrics, exposure: ErrorExposure, requestId: string, error: unknown): void {
  const extensions = (error as { extensions?: Record<string, unknown> } | null)?.extensions;
  const message = error instanceof Error ? error.message : String(error);
  const code = String(formatError({ message, extensions }, exposure, error).extensions?.code);
  if (code === 'INTERNAL_SERVER_ERROR') logger.error({ requestId, err: error }, 'graphql request failed');
  // Apollo's status for it: the error's own (401 for a refused key), else 500.
  const status = (extensions?.http as { status?: number } | undefined)?.status ?? 500;
  logRefusal(logger, metrics, { requestId, status, errorCode: code, reason: 'key' });
}

interface RequestLine {
  requestId: string;
  operationName: string | null | undefined;
  operationType: string;
  tenantId: string | null;
  status: number;
  errorCodes: string[];
  /** Unknown when Apollo's pipeline itself failed (no request hook ran to time it). */
  ms?: number;
}

/** The one log line of a request Apollo ran (or failed running), and its count by operation type and first error. */
function logRequest(logger: Logger, metrics: Metrics, { requestId, operationName, operationType, tenantId, status, errorCodes, ms }: RequestLine): void {
  metrics.graphqlRequests.inc({ operation_type: operationType, outcome: errorCodes[0] ?? 'ok' });
  logger.info(
    {
      requestId,
      operationName: operationName?.slice(0, MAX_NAME_LENGTH) ?? null,
      operationType,
      tenantId,
      status,
      ...(errorCodes.length > 0 ? { errorCodes } : {}),
      ...(ms !== undefined ? { ms } : {}),
    },
    'graphql request',
  );
}

export function graphqlRequestLogPlugin(logger: Logger, metrics: Metrics, exposure: ErrorExposure): ApolloServerPlugin<ApiContext> {
  return {
    async requestDidStart({ contextValue }) {
      const started = performance.now();
      return {
        async didEncounterErrors({ errors }) {
          // The client sees "Internal server error" (unless debugging); the operator needs the cause.
          for (const error of errors) {
            if (formatError(error.toJSON(), exposure).extensions?.code === 'INTERNAL_SERVER_ERROR') {
              logger.error({ requestId: contextValue.requestId, err: error.originalError ?? error, path: error.path }, 'graphql request failed');
            }
          }
        },
        async willSendResponse({ request, response, operation, operationName }) {
          const body = response.body;
          const errors: readonly GraphQLFormattedError[] =
            (body.kind === 'single' ? body.singleResult.errors : body.initialResult.errors) ?? [];
          const errorCodes = [...new Set(errors.map((error) => String(error.extensions?.code ?? 'INTERNAL_SERVER_ERROR')))];
          logRequest(logger, metrics, {
            requestId: contextValue.requestId,
            operationName: operationName ?? request.operationName,
            operationType: operation?.operation ?? 'unknown',
            tenantId: contextValue.principal?.tenantId ?? null,
            status: response.http.status ?? 200,
            errorCodes,
            ms: Math.round(performance.now() - started),
          });
        },
      };
    },
    // A hook of the pipeline itself threw (the response cache could not read the tenant's data version): Apollo answers
    // 500 "Internal server error" and runs no willSendResponse, so this is the request's only trace.
    async unexpectedErrorProcessingRequest({ requestContext, error }) {
      const { requestId, principal } = requestContext.contextValue;
      logger.error({ requestId, err: error }, 'graphql request failed');
      logRequest(logger, metrics, {
        requestId,
        operationName: requestContext.operationName ?? requestContext.request.operationName,
        operationType: requestContext.operation?.operation ?? 'unknown',
        tenantId: principal?.tenantId ?? null,
        status: 500,
        errorCodes: ['INTERNAL_SERVER_ERROR'],
      });
    },
    // A context that could not be made is logged where it failed (logContextFailure), which knows the request id.
    async invalidRequestWasReceived() {
      metrics.graphqlRequests.inc({ operation_type: 'unknown', outcome: 'BAD_USER_INPUT' });
      logger.info({ errorCodes: ['BAD_USER_INPUT'] }, 'graphql request refused');
    },
  };
}
