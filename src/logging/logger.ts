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

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: 'snapgraph' }, redact: { paths: REDACT, censor: '[redacted]' } }, destination);
}
