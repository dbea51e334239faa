// Frames of shared subscriptions, written straight to their sockets. Frames asked for within COALESCE_MS of the first
// one not yet sent go out together, all of a socket's frames in one write, in the order they were asked for. A socket
// whose client stopped reading is dropped by its own bound (bounded-web-socket.ts).
//
// With thousands of subscribers nearly all of a flush is the kernel's work for one write per socket (measured: 86% of
// it in the write call itself on loopback). The events of one moment (a restore's swap: UNAVAILABLE, then AVAILABLE,
// the final state and the complete) come a few milliseconds apart: gathered, they cost one write per socket, not four.
//
// Progress is written in slices of at most SLICE_MS, each in a turn of its own: 10,000 sockets took 200-450 ms of
// writing, during which the event loop did nothing else, and the restore those subscribers watched waited at each of
// its steps (its I/O and its workers' messages) as long. Between slices everything else runs.
//
// Urgent frames (an availability or snapshot change, an operation's final state and its complete: what clients wait
// for) are written whole, once their COALESCE_MS are up, with whatever else is queued (10,000 sockets:
// 200-800 ms on a 2-core machine running their clients too, the longest the event loop waited in bench:fanout).
// In slices they waited behind everything else: a turn of the event loop handles every message that came in before it
// (libuv reads up to 48 × 1,024 sockets before it looks at its timers and immediates again), so while 10,000 clients
// subscribed to a restore's progress, the READ_ONLY it had just published waited 400 ms between its first 5 ms slice
// and its second (and slices of 50 ms, each given its turn by the next message, still left them 30-60% later than
// whole). For the same reason every incoming message first asks whether urgent frames are due (writeDue): a flood of
// them (10,000 subscribes, or 10,000 unsubscribes once a restore is over) would hold back the flush's timer too.

import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { canSendTextFrames, type TextFrame } from '../bounded-web-socket';

interface Pending {
  frame: TextFrame;
  urgent: boolean;
  /** Whether the frame is still wanted when its turn comes (a subscription stopped by its client is not). */
  wanted(): boolean;
}

/** How long a frame may wait for others to the same sockets. */
export const COALESCE_MS = 15;
/** The longest a flush of progress writes before it lets the event loop turn. */
export const SLICE_MS = 5;
/** Sockets written between two looks at the clock. */
const SOCKETS_PER_CLOCK_CHECK = 32;
/** Node's timers count whole milliseconds: one set for coalesceMs may fire up to this much early by performance.now(). */
const TIMER_GRANULARITY_MS = 1;

export class SocketFrames {
  /** Sockets with frames to write, in the order their first frame was queued (a Map keeps insertion order). */
  private readonly pending = new Map<WebSocket, Pending[]>();
  /** A flush is planned or under way (between its slices): frames queued meanwhile go with it. */
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private nextSlice: NodeJS.Immediate | null = null;
  /**
   * When the first urgent frame of those waiting was queued (performance.now()), or an earlier one that flush(socket)
   * wrote meanwhile; null: none is waiting.
   */
  private urgentSince: number | null = null;
  /** Urgent frames not yet written. */
  private urgentCount = 0;
  /** Callers of queuedWritten(), by the socket whose write means every frame queued before theirs is out. */
  private readonly barriers = new Map<WebSocket, (() => void)[]>();

  constructor(
    private readonly coalesceMs = COALESCE_MS,
    private readonly sliceMs = SLICE_MS,
  ) {}

  /**
   * Queues a text frame (its payload in parts) for the socket; it goes out within coalesceMs, after those queued before
   * it. An urgent one goes out in a flush written whole.
   */
  queue(socket: WebSocket, frame: TextFrame, wanted: () => boolean, urgent = false): void {
    let frames = this.pending.get(socket);
    if (!frames) {
      frames = [];
      this.pending.set(socket, frames);
    }
    frames.push({ frame, wanted, urgent });
    if (urgent) {
      this.urgentCount += 1;
      this.urgentSince ??= performance.now();
    }
    if (!this.scheduled) {
      this.scheduled = true;
      this.timer = setTimeout(this.flushAll, this.coalesceMs);
    }
  }

  /**
   * Writes now if urgent frames have waited their coalesceMs: for callers handling incoming messages, which a flood of
   * them runs before any timer or immediate.
   */
  writeDue(): void {
    if (this.urgentSince !== null && this.urgentDue(performance.now())) this.flushAll();
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

  /**
   * Writes sockets in queue order: all of them if urgent frames are due, else for at most sliceMs, then goes on in a
   * later turn until none is left.
   */
  private readonly flushAll = (): void => {
    // Called by its timer, its previous slice or writeDue: whichever comes first, the others are off.
    if (this.timer) clearTimeout(this.timer);
    if (this.nextSlice) clearImmediate(this.nextSlice);
    this.timer = null;
    this.nextSlice = null;
    const now = performance.now();
    const deadline = this.urgentDue(now) ? Infinity : now + this.sliceMs;
    let written = 0;
    try {
      for (const [socket, frames] of this.pending) {
        this.writeNow(socket, frames);
        if (++written % SOCKETS_PER_CLOCK_CHECK === 0 && performance.now() >= deadline) break;
      }
    } finally {
      // Even if a write threw: the frames of every other subscription must not stop.
      if (this.pending.size > 0) this.nextSlice = setImmediate(this.flushAll);
      else this.scheduled = false;
    }
  };

  private urgentDue(now: number): boolean {
    return this.urgentSince !== null && now - this.urgentSince >= this.coalesceMs - TIMER_GRANULARITY_MS;
  }

  private writeNow(socket: WebSocket, frames: Pending[]): void {
    this.pending.delete(socket);
    for (const { urgent } of frames) if (urgent) this.urgentCount -= 1;
    if (this.urgentCount === 0) this.urgentSince = null;
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
