// Open connections by API key (WebSockets, export downloads, uploads), so that revoking a key ends them on every replica
// at once.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import type { App } from '../app';
import type { Role } from '../entities/api-key.entity';
import type { Logger } from '../logging/logger';
import type { Principal } from '../services/principal';
import { KEY_RECHECK_MS } from '../services/tenant.service';
import { closeFromServer } from './server-closed-sockets';

/**
 * The close code of a WebSocket whose API key was revoked, or whose role changed (4403, as graphql-ws's 4401/4403
 * family; graphql-ws clients reconnect after it, and then meet the key as it is now: 4401, or its new role).
 */
export const REVOKED_KEY_CLOSE_CODE = 4403;

/**
 * How long a revocation that arrived is remembered: far longer than checking a key can take (a lookup that read the key
 * just before it was revoked still answers with it, and its socket is added after the revocation has come and gone).
 */
const REVOCATION_MEMORY_MS = 10 * 60_000;

/**
 * How long an upload cut off at its key's revocation keeps its connection once the refusal is sent: a client still
 * sending reads its answer meanwhile (curl, fetch and node's http client read while they send). Closed at once, the
 * client's system could drop the answer it had not read yet (a reset discards it), and the client would see a reset
 * instead of the refusal.
 */
export const CUT_OFF_LINGER_MS = 1_000;

/**
 * A connection that acts for an API key, and how it is ended. A socket runs operations with the role it was opened
 * with; a download or an upload needs only the key to be active.
 */
type KeyConnection = { end(why: 'revoked' | 'role changed'): void } & ({ kind: 'socket'; role: Role } | { kind: 'download' | 'upload' });

/**
 * The open connections of each API key: WebSockets, downloads of the export links the key created, and uploads of files
 * to restore under way. A revocation, published by whichever replica revoked the key, ends that key's connections here
 * at once: their subscriptions would otherwise go on delivering events to a key that no longer exists, their queries
 * and mutations run as it, a download under way (perhaps many GiB, perhaps by whoever the key leaked to) go on sending
 * the snapshot's data, and an upload go on being received and stored, up to the upload limit, only to be refused at its
 * end. A revocation can miss this process (Redis away from it, or from the replica that published it while this one still
 * listens; or made in the database by other means), so the keys of the open connections are also looked up in the
 * database every KEY_RECHECK_MS: revokeApiKey, when its event was lost, answers only once that has happened everywhere.
 * That look-up also closes the sockets of a key whose role is no longer the one they were opened with (changed in the
 * database, the only way a role changes): a socket runs queries and mutations with the role it was opened with, and
 * kept an ADMIN's role for good after the key was made a VIEWER. A download needs no role.
 */
export function endConnectionsOfRevokedKeys({ events, services }: App, logger: Logger): KeyConnections {
  /** Open connections by key, by their socket or response. */
  const byKey = new Map<string, Map<object, KeyConnection>>();
  /** Keys whose revocation arrived, with when (oldest first), for REVOCATION_MEMORY_MS. */
  const revoked = new Map<string, number>();
  const remember = (apiKeyId: string) => {
    const now = Date.now();
    for (const [id, at] of revoked) {
      if (now - at < REVOCATION_MEMORY_MS) break;
      revoked.delete(id);
    }
    revoked.delete(apiKeyId);
    revoked.set(apiKeyId, now);
  };
  const close = (apiKeyId: string) => {
    const connections = byKey.get(apiKeyId);
    if (!connections) return;
    byKey.delete(apiKeyId);
    const all = [...connections.values()];
    const count = (kind: KeyConnection['kind']) => all.filter((connection) => connection.kind === kind).length;
    logger.info({ apiKeyId, sockets: count('socket'), downloads: count('download'), uploads: count('upload') }, 'ended the connections of a revoked API key');
    for (const connection of all) connection.end('revoked');
  };
  /** Closes the key's sockets opened with another role than `role` (they reconnect with the key's role now). */
  const closeOtherRoles = (apiKeyId: string, role: Role) => {
    const connections = byKey.get(apiKeyId);
    if (!connections) return;
    const stale = [...connections].filter(([, connection]) => connection.kind === 'socket' && connection.role !== role);
    if (stale.length === 0) return;
    logger.info({ apiKeyId, role, sockets: stale.length }, "closed the WebSockets of an API key whose role changed");
    for (const [handle, connection] of stale) {
      connections.delete(handle);
      connection.end('role changed');
    }
    if (connections.size === 0 && byKey.get(apiKeyId) === connections) byKey.delete(apiKeyId);
  };
  const revocations = events.pubSub.subscribe('api-key.revoked', 'all');
  void (async () => {
    for await (const { apiKeyId } of revocations) {
      remember(apiKeyId);
      close(apiKeyId);
    }
  })().catch((error) => logger.error({ err: error }, 'stopped following API key revocations'));

  let recheck: NodeJS.Timeout | null = null;
  let stopped = false;
  /** When the latest look-up began: the next begins KEY_RECHECK_MS after it, however long it took. */
  let lastBegan = -Infinity;
  const scheduleRecheck = () => {
    // Counted from the start of the look-up before: counted from its end, a look-up that began just before a revocation
    // and one that took a while put the next one's answer past the KEY_FRESH_MS that revokeApiKey waits.
    if (!stopped) recheck ??= setTimeout(() => void recheckKeys(), Math.max(0, lastBegan + KEY_RECHECK_MS - performance.now())).unref();
  };
  const recheckKeys = async () => {
    recheck = null;
    lastBegan = performance.now();
    try {
      const keys = [...byKey.keys()];
      const active = await services.tenants.activeKeyRoles(keys);
      for (const apiKeyId of keys) {
        const role = active.get(apiKeyId);
        if (role === undefined) close(apiKeyId);
        else closeOtherRoles(apiKeyId, role);
      }
    } catch (error) {
      logger.error({ err: error }, 'could not look up the API keys of open connections; trying again');
    }
    // While connections are open (the next add starts it again).
    if (byKey.size > 0) scheduleRecheck();
  };

  /** Keeps the connection under its key until `gone` tells it ended; false (nothing kept) when the key was revoked. */
  const track = (apiKeyId: string, handle: object, connection: KeyConnection, gone: (listener: () => void) => void): boolean => {
    if (revoked.has(apiKeyId)) return false;
    let connections = byKey.get(apiKeyId);
    if (!connections) byKey.set(apiKeyId, (connections = new Map()));
    connections.set(handle, connection);
    scheduleRecheck();
    const kept = connections;
    gone(() => {
      kept.delete(handle);
      if (kept.size === 0 && byKey.get(apiKeyId) === kept) byKey.delete(apiKeyId);
    });
    return true;
  };

  return {
    addSocket({ apiKeyId, role }, socket) {
      // Added once the key is checked, which takes a while: a socket closed meanwhile may have told its close already.
      if (socket.readyState === socket.CLOSED) return false;
      const end = (why: 'revoked' | 'role changed') =>
        closeFromServer(socket, REVOKED_KEY_CLOSE_CODE, why === 'revoked' ? 'Forbidden: the API key was revoked' : "Forbidden: the API key's role changed; connect again");
      if (track(apiKeyId, socket, { kind: 'socket', role, end }, (listener) => socket.once('close', listener))) return true;
      end('revoked');
      return false;
    },
    addDownload(apiKeyId, response) {
      // A response that has closed already has nothing left to end (and would never tell its close).
      if (response.closed) return true;
      // Cut off: with its length announced, a client cannot take what it received for the whole file.
      const end = () => response.destroy();
      return track(apiKeyId, response, { kind: 'download', end }, (listener) => response.once('close', listener));
    },
    addUpload(apiKeyId, request, response, refuse) {
      if (response.closed) return true;
      const end = () => {
        // Answered already, or every byte is in: the end of the file checks the key again and answers (a restore
        // queued before the revocation is told as queued, not refused).
        if (response.headersSent || request.complete) return;
        // Taken now: node lets go of a response's socket once the answer is written.
        const socket = response.socket;
        // `Connection: close`: no client (nor a proxy pooling its connections) sends another request on it. Node ends
        // such a connection with destroySoon(), which destroys it as soon as the answer is written, and a client still
        // sending met a reset (EPIPE) before it read the answer: here it only ends this side, and the timer below
        // destroys it.
        response.setHeader('connection', 'close');
        if (socket) socket.destroySoon = () => void socket.end();
        refuse();
        const close = () => setTimeout(() => socket?.destroy(), CUT_OFF_LINGER_MS).unref();
        if (response.writableFinished) close();
        else response.once('finish', close);
      };
      return track(apiKeyId, response, { kind: 'upload', end }, (listener) => response.once('close', listener));
    },
    stop: () => {
      stopped = true;
      if (recheck) clearTimeout(recheck);
      void revocations.return();
    },
  };
}

export interface KeyConnections {
  /** Whether the socket may go on: false when it closed while its key was checked, or its key was revoked meanwhile (closed, 4403). */
  addSocket(principal: Pick<Principal, 'apiKeyId' | 'role'>, socket: WebSocket): boolean;
  /** Whether a download of an export link the key created may go on: false when the key's revocation has arrived. */
  addDownload(apiKeyId: string, response: Writable): boolean;
  /**
   * Whether an upload by the key may go on: false when the key's revocation has arrived. Revoked while the upload's
   * bytes still come and it is not answered, `refuse` answers it at once (and stops reading it), and its connection is
   * closed CUT_OFF_LINGER_MS after that answer has gone: nothing more of it is received.
   */
  addUpload(apiKeyId: string, request: IncomingMessage, response: ServerResponse, refuse: () => void): boolean;
  stop(): void;
}
