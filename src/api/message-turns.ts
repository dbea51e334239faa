// What WebSocket clients send, handled in turns. Node reads every socket that has data in one pass of the event loop
// (libuv's poll phase) and ws hands each message to graphql-ws at once, so 10,000 dashboards subscribing together, or
// closing together, were 10,000 handlers in a row, in which no timer ran, no HTTP request was answered and the restore
// they watch made no progress. Here a socket's messages and its close wait in one queue, in the order they came, and
// are handled a few milliseconds at a time, the loop turning between turns (setImmediate), so that everything else
// gets its share while a flood is worked off. bench:fanout, 10,000 subscribers to a restore: the event loop's delay
// p99 went from 489 ms to 187-289 ms.
//
// Nothing is reordered or dropped for a client: its messages, then its close, are handled in the order it sent them,
// also when it closed before their turn (as a client does that sends a mutation and leaves). Only ws's `error` (a frame
// that breaks the protocol) is told at once, ahead of messages still waiting; the socket is closing by then.
//
// A turn bounds the handlers' synchronous part. What graphql-ws does after its first await (running the operation,
// the first send) runs as microtasks right after the turn, for every message the turn started, so a turn of tiny
// messages can take longer than its 5 ms.
//
// A socket with 64 events or 1 MiB of messages waiting is paused (no more is read from it) until they are handled, so
// that a client sending faster than it is served holds its messages in its own TCP window, not in this process's
// memory: it holds at most those, the messages in one read from the network, and one message of at most
// `maxPayload` (the WebSocket server's limit on a message).

/** A socket whose events wait their turn (the server's WebSocket class, bounded-web-socket.ts). */
export interface TurnTaker {
  /** Emits the event now, to its listeners (the base class's emit). */
  emitNow(event: string, args: unknown[]): void;
  pause(): void;
  resume(): void;
}

interface Waiting {
  socket: TurnTaker;
  event: string;
  args: unknown[];
  bytes: number;
}

export interface MessageTurnsOptions {
  /** How long one turn may handle events before the loop turns. */
  turnMs: number;
  /** Events of one socket waiting at once before it is paused. */
  maxWaitingPerSocket: number;
  /** Bytes of messages of one socket waiting at once before it is paused. */
  maxWaitingBytesPerSocket: number;
}

interface SocketWaiting {
  events: number;
  bytes: number;
  paused: boolean;
}

const COMPACT_AFTER = 4096;

export class MessageTurns {
  private readonly queue: (Waiting | undefined)[] = [];
  private head = 0;
  private scheduled = false;
  private readonly waitingOf = new Map<TurnTaker, SocketWaiting>();

  constructor(private readonly options: MessageTurnsOptions = { turnMs: 5, maxWaitingPerSocket: 64, maxWaitingBytesPerSocket: 1024 * 1024 }) {}

  /** Events waiting now, every socket together (for tests). */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  /** Queues `event` of `socket` behind every event queued before it; handled in a later turn. */
  defer(socket: TurnTaker, event: string, args: unknown[]): void {
    const bytes = event === 'message' ? byteLength(args[0]) : 0;
    this.queue.push({ socket, event, args, bytes });
    let waiting = this.waitingOf.get(socket);
    if (!waiting) this.waitingOf.set(socket, (waiting = { events: 0, bytes: 0, paused: false }));
    waiting.events += 1;
    waiting.bytes += bytes;
    if (!waiting.paused && this.tooMany(waiting)) {
      waiting.paused = true;
      socket.pause();
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.turn);
    }
  }

  private tooMany({ events, bytes }: SocketWaiting): boolean {
    return events >= this.options.maxWaitingPerSocket || bytes >= this.options.maxWaitingBytesPerSocket;
  }

  private readonly turn = (): void => {
    const until = performance.now() + this.options.turnMs;
    try {
      while (this.head < this.queue.length) {
        const { socket, event, args, bytes } = this.queue[this.head]!;
        this.queue[this.head++] = undefined;
        const waiting = this.waitingOf.get(socket)!;
        waiting.events -= 1;
        waiting.bytes -= bytes;
        if (waiting.events === 0) this.waitingOf.delete(socket);
        if (waiting.paused && !this.tooMany(waiting)) {
          waiting.paused = false;
          socket.resume();
        }
        socket.emitNow(event, args);
        if (performance.now() >= until) break;
      }
    } finally {
      // A listener that throws is the process's uncaught exception, as it was without turns; the events behind it are
      // still handled.
      if (this.head < this.queue.length) {
        if (this.head >= COMPACT_AFTER && this.head * 2 >= this.queue.length) {
          // A flood that never quite ends would otherwise keep every slot it ever used.
          this.queue.splice(0, this.head);
          this.head = 0;
        }
        setImmediate(this.turn);
      } else {
        this.queue.length = 0;
        this.head = 0;
        this.scheduled = false;
      }
    }
  };
}

/** A ws message's size: a Buffer, or its fragments, or an ArrayBuffer (by the socket's binaryType). */
function byteLength(data: unknown): number {
  if (Array.isArray(data)) return data.reduce((sum: number, part) => sum + byteLength(part), 0);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}
