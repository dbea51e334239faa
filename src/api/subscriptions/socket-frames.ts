// Frames of shared subscriptions, written straight to their sockets. Every frame asked for during one turn of the
// event loop is sent in the next, all of a socket's frames in one write (the socket corked meanwhile), in the order
// they were asked for. A socket whose client stopped reading is dropped by its own bound (bounded-web-socket.ts).
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';

interface Pending {
  frame: Buffer;
  /** Whether the frame is still wanted when its turn comes (a subscription stopped by its client is not). */
  wanted(): boolean;
}

export class SocketFrames {
  private readonly pending = new Map<WebSocket, Pending[]>();
  private scheduled = false;

  /** Queues a text frame for the socket; it goes out in the next turn, after the frames queued before it. */
  queue(socket: WebSocket, frame: Buffer, wanted: () => boolean): void {
    let frames = this.pending.get(socket);
    if (!frames) {
      frames = [];
      this.pending.set(socket, frames);
    }
    frames.push({ frame, wanted });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushAll);
    }
  }

  /** Writes the socket's queued frames now (before something else is sent on it that must come after them). */
  flush(socket: WebSocket): void {
    const frames = this.pending.get(socket);
    if (!frames) return;
    this.pending.delete(socket);
    write(socket, frames);
  }

  private readonly flushAll = (): void => {
    this.scheduled = false;
    const all = [...this.pending];
    this.pending.clear();
    for (const [socket, frames] of all) write(socket, frames);
  };
}

function write(socket: WebSocket, frames: Pending[]): void {
  if (socket.readyState !== WebSocket.OPEN) return;
  const raw = (socket as unknown as { _socket?: Socket })._socket;
  raw?.cork();
  try {
    for (const { frame, wanted } of frames) {
      if (!wanted()) continue;
      socket.send(frame, { binary: false });
      if (socket.readyState !== WebSocket.OPEN) return; // dropped by its bound: the rest goes with it
    }
  } finally {
    raw?.uncork();
  }
}
