// Opaque Relay cursors: base64url of a small JSON array; a malformed cursor is BAD_USER_INPUT.
import { badInput } from '../errors/app-error';

export function encodeCursor(parts: (string | number)[]): string {
  return Buffer.from(JSON.stringify(parts), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string, shape: ('string' | 'number')[]): (string | number)[] {
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badInput(`"${cursor}" is not a valid cursor`);
  }
  if (!Array.isArray(parts) || parts.length !== shape.length || parts.some((part, i) => typeof part !== shape[i])) {
    throw badInput(`"${cursor}" is not a valid cursor`);
  }
  return parts;
}
