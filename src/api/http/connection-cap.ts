// How many connections (HTTP and WebSocket) the server holds at once. Every socket is a file descriptor, and so is
// every file the server's own work opens: instance stores (SQLite and its WAL), blobs, uploads. Without a cap, a
// flood of connections (a leaked key's clients, a proxy that never closes its pool) takes the open-file limit, and
// then a restore or a snapshot under way fails with EMFILE. Past the cap, Node closes each new connection as it
// accepts it ('drop'): its client sees the connection reset, and the work under way goes on.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from '../../logging/logger';
import type { Metrics } from '../../observability/metrics';

/** Descriptors kept for the server's own files, whatever the limit: a fifth of it, and at least this many. */
const MIN_RESERVED_FILES = 256;
/** Drops are logged at most this often (with how many there were), not once per connection of a flood. */
const DROP_LOG_INTERVAL_MS = 10_000;

/** The cap for an open-file limit: what is left of it once the server's own files have their share; null: no limit. */
export function connectionCapFor(openFileLimit: number | null): number | null {
  if (openFileLimit === null) return null;
  return Math.max(1, openFileLimit - Math.max(MIN_RESERVED_FILES, Math.ceil(openFileLimit / 5)));
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
export function capConnections(httpServer: Server, configured: number | undefined, metrics: Metrics, logger: Logger): number | null {
  const cap = configured ?? connectionCapFor(openFileLimit());
  if (cap === null) return null;
  httpServer.maxConnections = cap;
  let unlogged = 0;
  let loggedAt = 0;
  httpServer.on('drop', () => {
    metrics.droppedConnections.inc();
    unlogged += 1;
    if (Date.now() - loggedAt < DROP_LOG_INTERVAL_MS) return;
    logger.warn({ dropped: unlogged, maxConnections: cap }, 'dropped new connections: the server holds as many as it may (SNAPGRAPH_MAX_CONNECTIONS)');
    loggedAt = Date.now();
    unlogged = 0;
  });
  return cap;
}
