// Every error leaves with one of the contract's codes; outside development, unexpected errors say nothing internal.
import type { GraphQLFormattedError } from 'graphql';
import { ERROR_CODES } from '../errors/app-error';
import { asStorageFull } from '../errors/storage-full';

const CONTRACT_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

// Apollo's and graphql-js's own codes for a malformed request: the client's input is at fault.
const CLIENT_INPUT_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'PERSISTED_QUERY_NOT_FOUND',
]);

/** `error` is the error as thrown (Apollo's second argument), so that a full disk met anywhere is STORAGE_FULL. */
export function formatError(formatted: GraphQLFormattedError, production: boolean, error?: unknown): GraphQLFormattedError {
  const extensions = { ...(formatted.extensions ?? {}) };
  const storageFull = asStorageFull(error);
  if (storageFull) {
    extensions.code = storageFull.code;
    delete extensions.stacktrace; // a condition of the host, not a bug: its trace would only repeat the driver's text
    formatted = { ...formatted, message: storageFull.message };
  }
  const original = typeof extensions.code === 'string' ? extensions.code : undefined;
  let code = original ?? (formatted.message.startsWith('Variable "') ? 'BAD_USER_INPUT' : 'INTERNAL_SERVER_ERROR');
  if (!CONTRACT_CODES.has(code)) code = CLIENT_INPUT_CODES.has(code) ? 'BAD_USER_INPUT' : 'INTERNAL_SERVER_ERROR';
  extensions.code = code;
  delete extensions.http;
  if (production) delete extensions.stacktrace;
  const message = code === 'INTERNAL_SERVER_ERROR' && production ? 'Internal server error' : formatted.message;
  return { ...formatted, message, extensions };
}
