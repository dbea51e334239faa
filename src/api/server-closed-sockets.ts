// The WebSockets the server itself is closing (an API key revoked or its role changed, a refused connection_init, a
// shutdown): they run nothing more. A socket its client is closing still runs what the client sent before its close,
// in order (message-turns.ts): a client may send a mutation and leave at once.
import type { WebSocket } from 'ws';

const closedByServer = new WeakSet<WebSocket>();

/** Closes `socket` from the server's side: an operation it still sends is refused (isClosedByServer). */
export function closeFromServer(socket: WebSocket, code: number, reason: string): void {
  closedByServer.add(socket);
  socket.close(code, reason);
}

/** Marks sockets the server is about to close all at once (a shutdown), before it does. */
export function closingFromServer(sockets: Iterable<WebSocket>): void {
  for (const socket of sockets) closedByServer.add(socket);
}

export function isClosedByServer(socket: WebSocket): boolean {
  return closedByServer.has(socket);
}
