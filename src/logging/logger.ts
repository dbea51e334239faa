// Structured JSON logs (pino). Secrets never reach them: the paths below are redacted wherever they appear.
import pino, { type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'apiKey',
  '*.apiKey',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'masterKey',
  '*.masterKey',
  'connectionParams',
];

/**
 * By default the log goes to stdout asynchronously: a line is written at once when no write is under way, and lines
 * that come meanwhile go out together in the next write, so that under load one system call carries many request
 * lines instead of one each (a synchronous write per request cost more than the rest of the request log). What is
 * still buffered is written synchronously when the process exits, a crash's last line included.
 */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination({ dest: 1, sync: false })): Logger {
  return pino({ level, base: { service: 'snapgraph' }, redact: { paths: REDACT, censor: '[redacted]' } }, destination);
}
