// Every error leaves with one of the contract's codes. Unexpected errors say nothing internal and no error carries
// a stack trace, unless a developer asked for them (SNAPGRAPH_DEBUG_ERRORS); even then, paths are relative to the app.
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { GraphQLFormattedError } from 'graphql';
import { ERROR_CODES } from '../errors/app-error';
import { asStorageFull } from '../errors/storage-full';
import { asUnstorableText } from '../errors/unstorable-text';

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

export interface ErrorExposure {
  /** Internal messages and stack traces for a developer (SNAPGRAPH_DEBUG_ERRORS=true); never the default. */
  debugErrors: boolean;
}

/** `error` is the error as thrown (Apollo's second argument), so that a full disk met anywhere is STORAGE_FULL. */
export function formatError(formatted: GraphQLFormattedError, { debugErrors }: ErrorExposure, error?: unknown): GraphQLFormattedError {
  const extensions = { ...(formatted.extensions ?? {}) };
  const known = asStorageFull(error) ?? asUnstorableText(error);
  if (known) {
    extensions.code = known.code;
    delete extensions.stacktrace; // a condition of the host or the input, not a bug: its trace would only repeat the driver's text
    formatted = { ...formatted, message: known.message };
  }
  const original = typeof extensions.code === 'string' ? extensions.code : undefined;
  let code = original ?? (formatted.message.startsWith('Variable "') ? 'BAD_USER_INPUT' : 'INTERNAL_SERVER_ERROR');
  if (!CONTRACT_CODES.has(code)) code = CLIENT_INPUT_CODES.has(code) ? 'BAD_USER_INPUT' : 'INTERNAL_SERVER_ERROR';
  extensions.code = code;
  delete extensions.http;
  if (debugErrors && Array.isArray(extensions.stacktrace)) extensions.stacktrace = extensions.stacktrace.map((line) => withoutAbsolutePaths(String(line)));
  else delete extensions.stacktrace;
  const message = code === 'INTERNAL_SERVER_ERROR' && !debugErrors ? 'Internal server error' : withoutSecrets(formatted.message);
  return { ...formatted, message, extensions };
}

// graphql-js prints a variable's whole value when it does not fit its type (`Variable "$input" got invalid value
// { …, secretAccessKey: "…" }`): credentials never come back in an error, not even to their sender.
const SECRET_FIELDS = /\b(secretAccessKey|accessKeyId)(["']?\s*:\s*)"(?:[^"\\]|\\.)*"/g;

function withoutSecrets(message: string): string {
  return message.replace(SECRET_FIELDS, '$1$2"***"');
}

/** The app's root: this file is dist/src/api/format-error.js. */
const APP_ROOT = resolve(__dirname, '..', '..', '..');
// Two segments at least, so that "application/json" in a message is left alone.
const ABSOLUTE_PATH = /(?:file:\/\/)?(\/(?:[^\s/():'"]+\/)+[^\s/():'"]+)/g;

/** `at f (/srv/app/dist/src/x.js:1:2)` → `at f (dist/src/x.js:1:2)`; a path outside the app keeps its last part. */
export function withoutAbsolutePaths(line: string): string {
  return line.replace(ABSOLUTE_PATH, (_match, path: string) => {
    if (!isAbsolute(path)) return path;
    const inside = relative(APP_ROOT, path);
    if (!inside.startsWith('..')) return inside;
    const modules = path.lastIndexOf(`${sep}node_modules${sep}`);
    return modules >= 0 ? path.slice(modules + 1) : path.split(sep).slice(-1)[0];
  });
}
