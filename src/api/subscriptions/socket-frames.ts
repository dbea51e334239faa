// Frames of shared subscriptions, written straight to their sockets. Frames asked for within COALESCE_MS of the first
// one not yet sent go out together, all of a socket's frames in one write, in the order they were asked for. A socket
// whose client stopped reading is dropped by its own bound (bounded-web-socket.ts).
//
// With thousands of subscribers nearly all of a flush is the kernel's work for one write per socket (measured: 86% of
// it in the write call itself on loopback). The events of one moment (a restore's swap: UNAVAILABLE, then AVAILABLE,
// the final state and the complete) come a few milliseconds apart: gathered, they cost one write per socket, not four.
import { WebSocket } from 'ws';
import { canSendTextFrames, type TextFrame } from '../bounded-web-socket';

interface Pending {
  frame: TextFrame;
  /** Whether the frame is still wanted when its turn comes (a subscription stopped by its client is not). */
  wanted(): boolean;
}

/** How long a frame may wait for others to the same sockets. */
export const COALESCE_MS = 15;

export class SocketFrames {
  private readonly pending = new Map<WebSocket, Pending[]>();
  private scheduled = false;

  constructor(private readonly coalesceMs = COALESCE_MS) {}

  /** Queues a text frame (its payload in parts) for the socket; it goes out within coalesceMs, after those queued before it. */
  queue(socket: WebSocket, frame: TextFrame, wanted: () => boolean): void {
    let frames = this.pending.get(socket);
    if (!frames) {
      frames = [];
      this.pending.set(socket, frames);
    }
    frames.push({ frame, wanted });
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushAll, this.coalesceMs);
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

function write(socket: WebSocket, pending: Pending[]): void {
  if (socket.readyState !== WebSocket.OPEN) return;
  const frames = pending.filter(({ wanted }) => wanted()).map(({ frame }) => frame);
  if (canSendTextFrames(socket)) {
    socket.sendTextFrames(frames);
    return;
  }
  for (const parts of frames) {
    socket.send(Buffer.concat(parts), { binary: false });
    if (socket.readyState !== WebSocket.OPEN) return; // dropped by its bound: the rest goes with it
  }
}
