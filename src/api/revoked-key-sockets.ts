// Open WebSockets by API key, so that revoking a key closes its connections on every replica at once.
import { performance } from 'node:perf_hooks';
import type { WebSocket } from 'ws';
import type { App } from '../app';
import type { Role } from '../entities/api-key.entity';
import type { Logger } from '../logging/logger';
import type { Principal } from '../services/principal';
import { KEY_RECHECK_MS } from '../services/tenant.service';

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
 * Open WebSockets by API key. A revocation, published by whichever replica revoked the key, closes that key's sockets
 * here at once: their subscriptions would otherwise go on delivering events to a key that no longer exists, and their
 * queries and mutations run as it. A revocation can miss this process (Redis away from it, or from the replica that
 * published it while this one still listens; or made in the database by other means), so the keys of the open
 * sockets are also looked up in the database every KEY_RECHECK_MS: revokeApiKey, when its event was lost, answers
 * only once that has happened everywhere. That look-up also closes the sockets of a key whose role is no longer the one
 * they were opened with (changed in the database, the only way a role changes): a socket runs queries and mutations
 * with the role it was opened with, and kept an ADMIN's role for good after the key was made a VIEWER.
 */
export function closeSocketsOfRevokedKeys(
  { events, services }: App,
  logger: Logger,
): { add(principal: Pick<Principal, 'apiKeyId' | 'role'>, socket: WebSocket): boolean; stop(): void } {
  /** Open sockets by key, each with the role it runs operations with. */
  const byKey = new Map<string, Map<WebSocket, Role>>();
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
    const sockets = byKey.get(apiKeyId);
    if (!sockets) return;
    logger.info({ apiKeyId, sockets: sockets.size }, 'closed the WebSockets of a revoked API key');
    for (const socket of sockets.keys()) socket.close(REVOKED_KEY_CLOSE_CODE, 'Forbidden: the API key was revoked');
    byKey.delete(apiKeyId);
  };
  /** Closes the key's sockets opened with another role than `role` (they reconnect with the key's role now). */
  const closeOtherRoles = (apiKeyId: string, role: Role) => {
    const sockets = byKey.get(apiKeyId);
    if (!sockets) return;
    const stale = [...sockets].filter(([, opened]) => opened !== role).map(([socket]) => socket);
    if (stale.length === 0) return;
    logger.info({ apiKeyId, role, sockets: stale.length }, "closed the WebSockets of an API key whose role changed");
    for (const socket of stale) {
      sockets.delete(socket);
      socket.close(REVOKED_KEY_CLOSE_CODE, "Forbidden: the API key's role changed; connect again");
    }
    if (sockets.size === 0 && byKey.get(apiKeyId) === sockets) byKey.delete(apiKeyId);
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
      logger.error({ err: error }, 'could not look up the API keys of open WebSockets; trying again');
    }
    // While sockets are open (the next add starts it again).
    if (byKey.size > 0) scheduleRecheck();
  };

  return {
    /** Whether the socket may go on: false when it closed while its key was checked, or its key was revoked meanwhile. */
    add({ apiKeyId, role }, socket) {
      // Added once the key is checked, which takes a while: a socket closed meanwhile may have told its close already.
      if (socket.readyState === socket.CLOSED) return false;
      if (revoked.has(apiKeyId)) {
        socket.close(REVOKED_KEY_CLOSE_CODE, 'Forbidden: the API key was revoked');
        return false;
      }
      let sockets = byKey.get(apiKeyId);
      if (!sockets) byKey.set(apiKeyId, (sockets = new Map()));
      sockets.set(socket, role);
      scheduleRecheck();
      socket.once('close', () => {
        sockets.delete(socket);
        if (sockets.size === 0 && byKey.get(apiKeyId) === sockets) byKey.delete(apiKeyId);
      });
      return true;
    },
    stop: () => {
      stopped = true;
      if (recheck) clearTimeout(recheck);
      void revocations.return();
    },
  };
}
