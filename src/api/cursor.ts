// Opaque Relay cursors: base64url of a small JSON array; a malformed cursor is BAD_USER_INPUT.
import { badInput } from '../errors/app-error';

/**
 * What each part of a cursor holds. 'integer' is a time in milliseconds as this server issues it: a safe integer, since
 * the column it is compared with is a bigint, which PostgreSQL refuses to compare with 1.5 or 1e300 (an internal error
 * where a cursor the server never issued is the client's input).
 */
export type CursorPart = 'string' | 'integer';

export function encodeCursor(parts: (string | number)[]): string {
  return Buffer.from(JSON.stringify(parts), 'utf8').toString('base64url');
}

const fits = (part: unknown, kind: CursorPart) => (kind === 'integer' ? Number.isSafeInteger(part) : typeof part === 'string');

/**
 * A connection's `after`: null when none was given (omitted, or null, as clients send an unset variable), else the
 * cursor's parts. An empty string is no cursor this server issued: it is refused like any other malformed one, by
 * every connection alike (docs/api.md, Pages).
 */
export function decodeAfter(after: string | null | undefined, shape: CursorPart[]): (string | number)[] | null {
  return after === null || after === undefined ? null : decodeCursor(after, shape);
}

export function decodeCursor(cursor: string, shape: CursorPart[]): (string | number)[] {
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badInput(`"${cursor}" is not a valid cursor`);
  }
  if (!Array.isArray(parts) || parts.length !== shape.length || parts.some((part, i) => !fits(part, shape[i]))) {
    throw badInput(`"${cursor}" is not a valid cursor`);
  }
  return parts;
}
