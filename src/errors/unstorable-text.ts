// Text the metadata database cannot keep: PostgreSQL's text refuses NUL (SQLSTATE 22021, "invalid byte sequence for
// encoding UTF8: 0x00"), and text it cannot convert (22P05). It arrives in a client's input (an id to look up, a
// description, a key's name): the client's fault, answered as BAD_USER_INPUT, never as an internal error.
import { AppError } from './app-error';
import { anyInChain } from './error-chain';

const UNSTORABLE_TEXT_CODES: ReadonlySet<unknown> = new Set(['22021', '22P05']);

/** BAD_USER_INPUT for a database error about such text, or null for any other error. */
export function asUnstorableText(error: unknown): AppError | null {
  if (error instanceof AppError || !anyInChain(error, (e) => UNSTORABLE_TEXT_CODES.has(e.code))) return null;
  return new AppError(
    'BAD_USER_INPUT',
    'the input holds a NUL character or text that is not valid Unicode, which cannot be stored or looked up; nothing was changed',
  );
}
