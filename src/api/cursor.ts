// Opaque Relay cursors: base64url of a small JSON array naming the list they were issued for and a position in it; a
// malformed cursor, or one of another list, is BAD_USER_INPUT.
import { badInput } from '../errors/app-error';

/**
 * What each part of a cursor's position holds. 'integer' is a time in milliseconds as this server issues it: a safe
 * integer, since the column it is compared with is a bigint, which PostgreSQL refuses to compare with 1.5 or 1e300 (an
 * internal error where a cursor the server never issued is the client's input).
 */
export type CursorPart = 'string' | 'integer';

/**
 * The list a cursor belongs to: one connection of one instance (Query.snapshots and Instance.snapshots are one list).
 * A position means nothing in another list: another instance's (another tenant's) or another connection's cursor is
 * refused rather than taken for a place in this one.
 */
export interface CursorList {
  connection: 'snapshots' | 'operations' | 'nodes' | 'relationships';
  instanceId: string;
}

export function encodeCursor(list: CursorList, position: (string | number)[]): string {
  return Buffer.from(JSON.stringify([list.connection, list.instanceId, ...position]), 'utf8').toString('base64url');
}

const fits = (part: unknown, kind: CursorPart) => (kind === 'integer' ? Number.isSafeInteger(part) : typeof part === 'string');

/**
 * A connection's `after`: null when none was given (omitted, or null, as clients send an unset variable), else the
 * cursor's position in `list`. An empty string is no cursor this server issued: it is refused like any other malformed
 * one, by every connection alike (docs/api.md, Pages).
 */
export function decodeAfter(after: string | null | undefined, list: CursorList, shape: CursorPart[]): (string | number)[] | null {
  return after === null || after === undefined ? null : decodeCursor(after, list, shape);
}

function decodeCursor(cursor: string, list: CursorList, shape: CursorPart[]): (string | number)[] {
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badInput(`"${cursor}" is not a valid cursor`);
  }
  if (!Array.isArray(parts) || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') throw badInput(`"${cursor}" is not a valid cursor`);
  if (parts[0] !== list.connection || parts[1] !== list.instanceId) {
    throw badInput(
      `"${cursor}" is a cursor of another list (another connection, or another instance's ${list.connection}): pass an endCursor this list gave, or no after for its first page`,
    );
  }
  const position = parts.slice(2);
  if (position.length !== shape.length || position.some((part, i) => !fits(part, shape[i]))) throw badInput(`"${cursor}" is not a valid cursor`);
  return position;
}
