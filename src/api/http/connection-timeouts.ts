// Timeouts that drop stalled connections without cutting long transfers: an upload of several GiB or a long
// export download keeps bytes moving, so every limit here is on silence, never on total duration.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../../logging/logger';

/** How long a client may take to send its request headers (slow-header attacks). */
const HEADERS_TIMEOUT_MS = 30_000;
/**
 * Never less, however short the idle timeout: Node checks it on a timer that, after a stall of the event loop, runs
 * before the headers waiting in the socket are read, and answers a request that came in time 408 and resets it.
 */
const MIN_HEADERS_TIMEOUT_MS = 10_000;
/** graphql-ws closes a socket that sends no connection_init within this (4408), capped by the idle timeout. */
const MAX_CONNECTION_INIT_WAIT_MS = 10_000;
/** Pings at least this often: proxies commonly close WebSockets silent for 60 s. */
const MAX_PING_INTERVAL_MS = 15_000;

/**
 * HTTP (uploads, downloads, GraphQL requests): a socket with no byte in either direction for `idleTimeoutMs` is
 * destroyed, unless the silence is the server's own: a request received whole and not answered yet (an export of a
 * large snapshot is built, hashed and sized before `exportSnapshot` answers) waits for its answer, however long. Node's requestTimeout (default 300 s for the whole request, body included) would cut a large upload
 * on a slow link, so it is off; headersTimeout still bounds the headers. WebSocket sockets are exempt here (`ws`
 * clears the socket timeout on upgrade) and get the graphql-ws limits below instead. A kept-alive socket between
 * requests is closed by the keep-alive timeout, which the response advertises (`Keep-Alive: timeout=…`), never later
 * than the idle timeout: a client trusting a longer advertised time would reuse a socket the idle timeout is
 * destroying and see its request reset.
 */
export function applyHttpTimeouts(httpServer: Server, idleTimeoutMs: number, logger: Logger): void {
  httpServer.requestTimeout = 0;
  httpServer.headersTimeout = Math.min(HEADERS_TIMEOUT_MS, Math.max(idleTimeoutMs, MIN_HEADERS_TIMEOUT_MS));
  httpServer.timeout = idleTimeoutMs;
  httpServer.keepAliveTimeout = Math.min(httpServer.keepAliveTimeout, idleTimeoutMs);
  const answering = new WeakMap<Socket, { request: IncomingMessage; response: ServerResponse }>();
  // The socket's latest request; an answered one (headers sent) or a closed socket no longer holds the timeout off.
  httpServer.on('request', (request: IncomingMessage, response: ServerResponse) => answering.set(request.socket, { request, response }));
  // With a listener Node leaves the socket to us: log (no URL — export links hold a token) and destroy it. The next
  // byte read or written arms the timeout again, so an answer that then stalls is still dropped. The verdict waits one
  // turn of the event loop: after a stall of the loop the timer fires before the bytes that came meanwhile are read,
  // and a socket silent only in our own eyes must not be dropped (its client would see its request reset).
  httpServer.on('timeout', (socket: Socket) => {
    const { bytesRead, bytesWritten } = socket;
    setImmediate(() => {
      if (socket.destroyed || socket.bytesRead !== bytesRead || socket.bytesWritten !== bytesWritten) return;
      const current = answering.get(socket);
      if (current && current.request.complete && !current.response.headersSent) return;
      logger.info({ remoteAddress: socket.remoteAddress, idleTimeoutMs }, 'dropped an idle HTTP connection');
      socket.destroy();
    });
  });
}

/** graphql-ws options: a socket must say connection_init soon, and answer pings for as long as it stays open. */
export function webSocketTimeouts(idleTimeoutMs: number): { connectionInitWaitTimeout: number; keepAliveMs: number } {
  return {
    connectionInitWaitTimeout: Math.min(idleTimeoutMs, MAX_CONNECTION_INIT_WAIT_MS),
    // useServer pings every keepAliveMs and terminates a socket whose pong does not come back within keepAliveMs:
    // a stalled peer is dropped within 2 × keepAliveMs ≤ idleTimeoutMs.
    keepAliveMs: Math.max(50, Math.min(Math.floor(idleTimeoutMs / 2), MAX_PING_INTERVAL_MS)),
  };
}
