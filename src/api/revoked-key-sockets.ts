// Open WebSockets by API key, so that revoking a key closes its connections on every replica at once.
import type { WebSocket } from 'ws';
import type { App } from '../app';
import type { Logger } from '../logging/logger';

/** The close code of a WebSocket whose API key was revoked (4403, as graphql-ws's 4401/4403 family). */
export const REVOKED_KEY_CLOSE_CODE = 4403;

/**
 * Open WebSockets by API key. A revocation, published by whichever replica revoked the key, closes that key's sockets
 * here at once: their subscriptions would otherwise go on delivering events to a key that no longer exists.
 */
export function closeSocketsOfRevokedKeys({ events }: App, logger: Logger): { add(apiKeyId: string, socket: WebSocket): void; stop(): void } {
  const byKey = new Map<string, Set<WebSocket>>();
  const revocations = events.pubSub.subscribe('api-key.revoked', 'all');
  void (async () => {
    for await (const { apiKeyId } of revocations) {
      const sockets = byKey.get(apiKeyId);
      if (!sockets) continue;
      logger.info({ apiKeyId, sockets: sockets.size }, 'closed the WebSockets of a revoked API key');
      for (const socket of sockets) socket.close(REVOKED_KEY_CLOSE_CODE, 'Forbidden: the API key was revoked');
      byKey.delete(apiKeyId);
    }
  })().catch((error) => logger.error({ err: error }, 'stopped following API key revocations'));
  return {
    add(apiKeyId, socket) {
      // Added once the key is checked, which takes a while: a socket closed meanwhile may have told its close already.
      if (socket.readyState === socket.CLOSED) return;
      let sockets = byKey.get(apiKeyId);
      if (!sockets) byKey.set(apiKeyId, (sockets = new Set()));
      sockets.add(socket);
      socket.once('close', () => {
        sockets.delete(socket);
        if (sockets.size === 0 && byKey.get(apiKeyId) === sockets) byKey.delete(apiKeyId);
      });
    },
    stop: () => void revocations.return(),
  };
}
