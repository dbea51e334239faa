// Structured JSON logs (pino). Secrets never reach them: a key named below is censored wherever it appears in what is
// logged, at the top or one level down (`{ headers: { authorization } }`), and in `req.headers.authorization`.
//
// The censoring is ours (redactSecrets), not pino's `redact` option with the same paths: pino runs a wildcard path's
// redaction for every field of every line, and that was 3% of a cheap GraphQL request's CPU (bench:api), where this
// looks each key up in a set.
import pino, { type Logger } from 'pino';

export type { Logger };

export const CENSOR = '[redacted]';
/** Censored at the top of a line and one level down. */
const SECRET_KEYS = new Set(['authorization', 'apiKey', 'secret', 'token', 'masterKey']);
/** Censored at the top of a line only. */
const TOP_LEVEL_SECRET_KEYS = new Set([...SECRET_KEYS, 'connectionParams']);

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: 'snapgraph' }, formatters: { log: redactSecrets } }, destination);
}

/**
 * What a line logs, with its secrets censored: the object itself when it has none (the common case, no copy), else a
 * copy. What the caller passed is never changed.
 */
export function redactSecrets(line: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | null = null;
  for (const key of Object.keys(line)) {
    const value = line[key];
    let logged = value;
    if (TOP_LEVEL_SECRET_KEYS.has(key)) logged = CENSOR;
    else if (typeof value === 'object' && value !== null) logged = withoutSecrets(value as Record<string, unknown>, key === 'req');
    if (logged !== value) (copy ??= { ...line })[key] = logged;
  }
  return copy ?? line;
}

/** One level down: `value` itself, or a copy with its secrets censored (and, for `req`, its headers' authorization). */
function withoutSecrets(value: Record<string, unknown>, isRequest: boolean): Record<string, unknown> {
  const headers = isRequest ? value.headers : undefined;
  const censorHeaders = typeof headers === 'object' && headers !== null && Object.hasOwn(headers, 'authorization');
  const keys = Object.keys(value).filter((key) => SECRET_KEYS.has(key));
  if (keys.length === 0 && !censorHeaders) return value;
  // An error is logged as pino's serializer makes it (message, stack, its own fields): censored there, not copied as a
  // plain object, which would lose its message and stack.
  const copy: Record<string, unknown> = value instanceof Error ? pino.stdSerializers.err(value) : { ...value };
  for (const key of keys) copy[key] = CENSOR;
  if (censorHeaders) copy.headers = { ...(headers as Record<string, unknown>), authorization: CENSOR };
  return copy;
}
