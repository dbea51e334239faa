// The last express handler: an error no route answered (a body that is not JSON, a body over the limit, a bug)
// becomes a JSON GraphQL error with a code and one log line, never express's HTML page and stack dump.
import type { ErrorRequestHandler } from 'express';
import { GraphQLError } from 'graphql';
import type { Logger } from '../../logging/logger';
import { logRefusal, requestIdFrom } from '../../observability/graphql-request-log';
import type { Metrics } from '../../observability/metrics';
import type { ErrorExposure } from '../format-error';
import { sendGraphQLRefusal } from './graphql-refusal';

/** body-parser's errors: `type` says what went wrong, `status` is the HTTP answer. */
interface BodyError {
  type?: string;
  status?: number;
  limit?: number;
  length?: number;
}

export function httpErrorHandler(logger: Logger, metrics: Metrics, exposure: ErrorExposure): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) return next(error);
    const requestId = requestIdFrom(req.headers['x-request-id']);
    res.setHeader('x-request-id', requestId);
    const { type, status, limit } = (error ?? {}) as BodyError;
    let refusal: { status: number; reason: string; error: GraphQLError };
    if (type === 'entity.parse.failed') {
      refusal = { status: 400, reason: 'json', error: badInput('the request body is not valid JSON') };
    } else if (type === 'entity.too.large') {
      const message = `the request body is over this server's limit of ${limit} bytes: send large data in several requests, or upload files with snapgraph restore-file`;
      refusal = { status: 413, reason: 'body', error: badInput(message, { limit: 'body', max: limit }) };
    } else if (typeof status === 'number' && status >= 400 && status < 500) {
      refusal = { status, reason: type ?? 'request', error: badInput((error as Error).message) };
    } else {
      // No path: an export link's path is its token.
      logger.error({ requestId, err: error, method: req.method }, 'http request failed');
      refusal = { status: 500, reason: 'internal', error: new GraphQLError('Internal server error', { extensions: { code: 'INTERNAL_SERVER_ERROR' } }) };
    }
    // A body refused unread is drained, so that the client can read the answer instead of meeting a reset.
    if (!req.readableEnded && req.readableFlowing !== true) req.resume();
    logRefusal(logger, metrics, { requestId, status: refusal.status, errorCode: String(refusal.error.extensions.code), reason: refusal.reason });
    sendGraphQLRefusal(req, res, refusal.status, [refusal.error], exposure);
  };
}

const badInput = (message: string, extensions: Record<string, unknown> = {}) =>
  new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', ...extensions } });
