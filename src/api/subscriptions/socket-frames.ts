// Frames of shared subscriptions, written straight to their sockets. Frames asked for within COALESCE_MS of the first
// one not yet sent go out together, all of a socket's frames in one write, in the order they were asked for. A socket
// whose client stopped reading is dropped by its own bound (bounded-web-socket.ts).
//
// With thousands of subscribers nearly all of a flush is the kernel's work for one write per socket (measured: 86% of
// it in the write call itself on loopback). The events of one moment (a restore's swap: UNAVAILABLE, then AVAILABLE,
// the final state and the complete) come a few milliseconds apart: gathered, they cost one write per socket, not four.
//
// A flush is written in slices of at most SLICE_MS, each in a turn of its own: 10,000 sockets took 200-450 ms of
// writing, during which the event loop did nothing else, and the restore those subscribers watched waited at each of
// its steps (its I/O and its workers' messages) as long. Between slices everything else runs.
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { canSendTextFrames, type TextFrame } from '../bounded-web-socket';

interface Pending {
  frame: TextFrame;
  /** Whether the frame is still wanted when its turn comes (a subscription stopped by its client is not). */
  wanted(): boolean;
}

/** How long a frame may wait for others to the same sockets. */
export const COALESCE_MS = 15;
/** The longest a flush writes before it lets the event loop turn. */
export const SLICE_MS = 5;
/** Sockets written between two looks at the clock. */
const SOCKETS_PER_CLOCK_CHECK = 32;

export class SocketFrames {
  /** Sockets with frames to write, in the order their first frame was queued (a Map keeps insertion order). */
  private readonly pending = new Map<WebSocket, Pending[]>();
  /** A flush is planned or under way (between its slices): frames queued meanwhile go with it. */
  private scheduled = false;
  /** Callers of queuedWritten(), by the socket whose write means every frame queued before theirs is out. */
  private readonly barriers = new Map<WebSocket, (() => void)[]>();

  constructor(
    private readonly coalesceMs = COALESCE_MS,
    private readonly sliceMs = SLICE_MS,
  ) {}

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
    if (frames) this.writeNow(socket, frames);
  }

  /**
   * Resolves once every frame queued so far is written: when the socket queued last is (sockets are written in the
   * order they were queued). Frames queued later do not put it off.
   */
  queuedWritten(): Promise<void> {
    let last: WebSocket | undefined;
    for (const socket of this.pending.keys()) last = socket;
    if (!last) return Promise.resolve();
    const socket = last;
    return new Promise((resolve) => this.barriers.set(socket, [...(this.barriers.get(socket) ?? []), resolve]));
  }

  /** Writes sockets in queue order for at most sliceMs, then goes on in a later turn until none is left. */
  private readonly flushAll = (): void => {
    const deadline = performance.now() + this.sliceMs;
    let written = 0;
    for (const [socket, frames] of this.pending) {
      this.writeNow(socket, frames);
      if (++written % SOCKETS_PER_CLOCK_CHECK === 0 && performance.now() >= deadline) break;
    }
    if (this.pending.size > 0) setImmediate(this.flushAll);
    else this.scheduled = false;
  };

  private writeNow(socket: WebSocket, frames: Pending[]): void {
    this.pending.delete(socket);
    write(socket, frames);
    const waiting = this.barriers.get(socket);
    if (!waiting) return;
    this.barriers.delete(socket);
    for (const resolve of waiting) resolve();
  }
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
