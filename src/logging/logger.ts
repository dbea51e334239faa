// Structured JSON logs (pino). Secrets never reach them: a key named below is censored wherever it appears in what is
// logged, at the top or one level down (`{ headers: { authorization } }`), and in `req.headers.authorization`: in a
// line's object, a child logger's bindings, and objects interpolated into the message (`%j`, `%o`).
//
// The censoring is ours (redactSecrets), not pino's `redact` option with the same paths: pino runs a wildcard path's
// redaction for every field of every line, and that was 3% of a cheap GraphQL request's CPU (bench:api), where this
// looks each key up in a set.
import pino, { type Logger } from 'pino';

export type { Logger };

export const CENSOR = '[redacted]';
/** Censored at the top of a line and one level down. */
const SECRET_KEYS = new Set(['authorization', 'apiKey', 'secret', 'token', 'masterKey', 'password', 'secretAccessKey', 'sessionToken']);
/** Censored at the top of a line only. */
const TOP_LEVEL_SECRET_KEYS = new Set([...SECRET_KEYS, 'connectionParams']);

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const logger = pino({ level, base: { service: 'snapgraph' }, formatters: { log: redactSecrets }, hooks: { logMethod: redactInterpolated } }, destination);
  // A child's bindings skip formatters.log (pino formats them once, when the child is made): censored here. Children
  // inherit this method (pino makes each from its parent), so their children's are too.
  const pinoChild = logger.child as unknown as (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  logger.child = function child(this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) {
    return pinoChild.call(this, redactSecrets(bindings), options);
  } as unknown as Logger['child'];
  return logger;
}

/**
 * What a line logs, with its secrets censored: the object itself when it has none (the common case, no copy), else a
 * copy. What the caller passed is never changed.
 */
export function redactSecrets(line: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | null = null;
  for (const key of Object.keys(line)) {
    const value = line[key];
    if (value === undefined) continue;
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
  // An error's inherited fields are logged too (pino's serializer copies them): looked at as well.
  const keys = (value instanceof Error ? inheritedAndOwnKeys(value) : Object.keys(value)).filter((key) => SECRET_KEYS.has(key));
  if (keys.length === 0 && !censorHeaders) return value;
  const copy = value instanceof Error ? copyOfError(value) : { ...value };
  for (const key of keys) Object.defineProperty(copy, key, { value: CENSOR, enumerable: true, writable: true, configurable: true });
  if (censorHeaders) copy.headers = { ...(headers as Record<string, unknown>), authorization: CENSOR };
  return copy;
}

function inheritedAndOwnKeys(error: Error): string[] {
  const keys: string[] = [];
  for (const key in error) keys.push(key);
  return keys;
}

/**
 * An error as it was, but not the same object: its class (pino logs its name as `type`), message, stack and fields,
 * each field writable, so that the copy can be censored (the original may be frozen) and pino's serializer can tag it.
 */
function copyOfError(error: Error): Record<string, unknown> {
  const descriptors = Object.getOwnPropertyDescriptors(error);
  for (const descriptor of Object.values(descriptors)) {
    descriptor.configurable = true;
    if ('value' in descriptor) descriptor.writable = true;
  }
  return Object.create(Object.getPrototypeOf(error), descriptors) as Record<string, unknown>;
}

/** pino's logMethod hook: objects interpolated into the message (`logger.info('%j', object)`) censored as a line is. */
function redactInterpolated(this: Logger, args: unknown[], method: (...args: unknown[]) => void): void {
  const first = typeof args[0] === 'string' ? 1 : 2;
  if (args.length <= first) return method.apply(this, args);
  method.apply(
    this,
    args.map((arg, i) => (i >= first && typeof arg === 'object' && arg !== null ? redactSecrets(arg as Record<string, unknown>) : arg)),
  );
}
