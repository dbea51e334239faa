// How many connections (HTTP and WebSocket) the server holds at once. Every socket is a file descriptor, and so is
// every file the server's own work opens: instance stores (SQLite and its WAL), blobs, uploads. Without a cap, a
// flood of connections (a leaked key's clients, a proxy that never closes its pool) takes the open-file limit, and
// then a restore or a snapshot under way fails with EMFILE. Past the cap, Node closes each new connection as it
// accepts it ('drop'): its client sees the connection reset, and the work under way goes on.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { groupedWarning } from '../../logging/grouped-warning';
import type { Logger } from '../../logging/logger';
import type { Metrics } from '../../observability/metrics';

/** Descriptors kept for the server's own files, whatever the limit: a fifth of it, and at least this many. */
const MIN_RESERVED_FILES = 256;
/** A limit that leaves fewer connections than this is taken for a mistake to be fixed, not a cap to apply (no cap). */
const MIN_DERIVED_CAP = 64;
/** Drops are logged at most this often (with how many there were), not once per connection of a flood. */
const DROP_LOG_INTERVAL_MS = 10_000;

/**
 * The cap for an open-file limit: what is left of it once the server's own files have their share. Null (no cap) for
 * no limit, or one too low to leave MIN_DERIVED_CAP connections: capped at a handful, the server would refuse its
 * clients for a limit that is the mistake.
 */
export function connectionCapFor(openFileLimit: number | null): number | null {
  if (openFileLimit === null) return null;
  const cap = openFileLimit - Math.max(MIN_RESERVED_FILES, Math.ceil(openFileLimit / 5));
  return cap >= MIN_DERIVED_CAP ? cap : null;
}

/**
 * The soft limit on open files of this process, from Linux's /proc/<pid>/limits (Node raises it to the hard limit as it
 * starts); null when unlimited or unknown.
 */
export function openFileLimit(limits = readProcLimits()): number | null {
  const soft = /^Max open files\s+(\S+)/m.exec(limits ?? '')?.[1];
  return soft && /^\d+$/.test(soft) ? Number(soft) : null;
}

function readProcLimits(): string | null {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
}

/**
 * Caps `httpServer`'s connections at `configured` (SNAPGRAPH_MAX_CONNECTIONS), else at what the open-file limit
 * leaves; counts and logs the connections dropped. Returns the cap (null: none).
 */
export function capConnections(
  httpServer: Server,
  configured: number | undefined,
  metrics: Pick<Metrics, 'droppedConnections'>,
  logger: Pick<Logger, 'warn'>,
  logIntervalMs = DROP_LOG_INTERVAL_MS,
): number | null {
  const cap = configured ?? connectionCapFor(openFileLimit());
  if (cap === null) return null;
  httpServer.maxConnections = cap;
  const dropped = groupedWarning(logIntervalMs, (count) =>
    logger.warn({ dropped: count, maxConnections: cap }, 'dropped new connections: the server holds as many as it may (SNAPGRAPH_MAX_CONNECTIONS)'),
  );
  httpServer.on('drop', () => {
    metrics.droppedConnections.inc();
    dropped.note();
  });
  // Stopping: the drops not logged yet are logged now.
  httpServer.once('close', () => dropped.flush());
  return cap;
}
