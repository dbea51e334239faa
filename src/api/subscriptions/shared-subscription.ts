// One GraphQL subscription executed once for everyone who asked for exactly the same thing (SubscriptionFanout
// decides who that is). Each event is executed, formatted and serialised once; each subscriber is a member that
// writes that payload, framed with its own operation id, straight to its socket (socket-frames.ts), without a
// GraphQL execution or a JSON serialisation of its own.
import { performance } from 'node:perf_hooks';
import type { ExecutionResult, FormattedExecutionResult } from 'graphql';
import type { WebSocket } from 'ws';
import type { ProgressPacing } from './progress-pacing';
import type { SocketFrames } from './socket-frames';

/**
 * How a stream's events may be thinned for a member.
 * - `state`: every event is the whole state (an operation's progress). A member holds only the newest event not yet
 *   sent (latest wins), so one that is behind skips to the present; a new member starts with the newest (the current
 *   state); between the first and the last, the stream releases the newest to all its members at once, at most once
 *   per pacing interval, skipping a member whose socket still holds more than STATE_BACKLOG_BYTES unsent (it gets a
 *   newer one later). The last event is always sent, with the complete, both urgent (see SocketFrames).
 * - `changes`: every event matters (availability, snapshots): each member gets them all, in order, at once, urgent; a
 *   client that stops reading is dropped by its socket's bound (SNAPGRAPH_WS_MAX_BUFFERED_BYTES).
 */
export type StreamKind = 'state' | 'changes';

export type SourceStream = AsyncIterableIterator<ExecutionResult> | ExecutionResult;

/** Where a member writes: its socket and the id of its operation there (graphql-transport-ws). */
export interface FrameSink {
  socket: WebSocket;
  id: string;
  /** graphql-ws forgets the operation, so that it sends no complete of its own after the member's. */
  detach(): void;
}

type Step = IteratorResult<ExecutionResult>;
const DONE: Step = { done: true, value: undefined };
const CLOSE = Buffer.from('}');
/** Members whose operations end in one turn of the event loop, once their stream is over. */
const SETTLE_SLICE = 128;
/** A progress frame waits while its socket holds more than this unsent: a slow client skips to the present. */
export const STATE_BACKLOG_BYTES = 64 * 1024;

export interface SharedSubscriptionOptions {
  kind: StreamKind;
  pacing: ProgressPacing;
  frames: SocketFrames;
  /** What a subscriber is sent of a result (errors formatted as for everyone else), computed once per event. */
  format(result: ExecutionResult): FormattedExecutionResult;
  /** Called once, when nobody may join any more: the source ended, or every member left. */
  onRetired(): void;
}

export class SharedSubscription {
  private readonly members = new Set<SubscriptionMember>();
  private source: AsyncIterator<ExecutionResult> | null = null;
  /** The newest event of a `state` stream: what a member joining now receives first. */
  private latest: Buffer | undefined;
  private ended = false;
  private failure: { error: unknown } | null = null;
  private closed = false;
  private retired = false;
  private releaseTimer: NodeJS.Timeout | null = null;

  constructor(
    start: () => Promise<SourceStream> | SourceStream,
    private readonly options: SharedSubscriptionOptions,
  ) {
    void this.pump(start);
  }

  get kind(): StreamKind {
    return this.options.kind;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get frames(): SocketFrames {
    return this.options.frames;
  }

  join(sink: FrameSink): SubscriptionMember {
    const member = new SubscriptionMember(this, sink);
    this.members.add(member);
    if (this.kind === 'state') this.options.pacing.members += 1;
    if (this.latest) member.offer(this.latest);
    return member;
  }

  leave(member: SubscriptionMember): void {
    if (!this.members.delete(member)) return;
    if (this.kind === 'state') this.options.pacing.members -= 1;
    if (this.members.size === 0 && !this.ended) this.close();
  }

  private async pump(start: () => Promise<SourceStream> | SourceStream): Promise<void> {
    try {
      const stream = await start();
      if (!isAsyncIterable(stream)) {
        this.publish(stream);
        return;
      }
      this.source = stream[Symbol.asyncIterator]();
      if (this.closed) {
        void this.source.return?.()?.catch(() => undefined);
        return;
      }
      for (;;) {
        const step = await this.source.next();
        if (step.done || this.closed) return;
        this.publish(step.value);
      }
    } catch (error) {
      this.failure = { error };
    } finally {
      this.ended = true;
      this.retire();
      if (this.releaseTimer) clearTimeout(this.releaseTimer);
      this.releaseTimer = null;
      const members = [...this.members];
      for (const member of members) member.end(this.failure);
      // Each member's operation ends in graphql-ws (its clean-up, its log line) a slice at a time: 10,000 of them at
      // once held the event loop for half a second, in which the availability events of the same moment waited. And
      // only once the last frames are out (with those events, written in the same flush): they are what clients wait for.
      await this.options.frames.queuedWritten();
      for (const [i, member] of members.entries()) {
        member.settle();
        if ((i + 1) % SETTLE_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }

  /** The event's payload, formatted and serialised once for every member. */
  private publish(result: ExecutionResult): void {
    const payload = Buffer.from(JSON.stringify(this.options.format(result)));
    if (this.kind === 'state') this.latest = payload;
    for (const member of this.members) member.offer(payload);
    if (this.kind === 'state') this.release();
  }

  /**
   * Plans the next release of a `state` stream: one pacing interval from `plannedAt` (now), unless one is planned
   * already; the longer of the interval when planned and when the timer fires. Thousands of clients subscribing at
   * once, just after a release was planned while there were a few of them, would all get a second frame on top of
   * their first. (A member that joins just before a release still gets its first frame and that release close together
   * when members join slower than the budget: the interval is the stream's, not each member's.)
   */
  private release(plannedAt = performance.now()): void {
    if (this.releaseTimer || this.ended) return;
    const waitMs = () => plannedAt + this.options.pacing.intervalMs() - performance.now();
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = null;
      if (waitMs() > 1) {
        this.release(plannedAt); // members joined meanwhile: the interval grew
        return;
      }
      let held = false;
      for (const member of this.members) {
        if (member.isBackedUp()) held ||= member.hasPending();
        else member.sendPending();
      }
      if (held) this.release();
    }, Math.max(0, waitMs()));
  }

  /** Every member left: nobody joins this one any more, and its source stops (a generator at its next event). */
  private close(): void {
    this.closed = true;
    this.retire();
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    this.releaseTimer = null;
    void this.source?.return?.()?.catch(() => undefined);
  }

  private retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.options.onRetired();
  }
}

/**
 * One subscriber's part of a shared subscription. It writes its events to its socket itself; to graphql-ws it is an
 * iterator whose first next() settles only when the subscription is over (done once the member has sent the last
 * event and the complete, or the source's error, which graphql-ws then sends after everything before it).
 */
export class SubscriptionMember implements AsyncGenerator<ExecutionResult> {
  /** A `state` stream's newest event not yet sent. */
  private pending: Buffer | null = null;
  private sent = 0;
  private readonly prefix: Buffer;
  private waiting: { resolve: (step: Step) => void; reject: (error: unknown) => void } | null = null;
  private outcome: { failure: { error: unknown } | null } | null = null;
  /** Stopped by its client (complete, or the socket closed): nothing more is sent. */
  private stopped = false;
  private left = false;
  private readonly wanted = () => !this.stopped;

  constructor(
    private readonly stream: SharedSubscription,
    private readonly sink: FrameSink,
  ) {
    this.prefix = Buffer.from(`{"id":${JSON.stringify(sink.id)},"type":"next","payload":`);
  }

  offer(payload: Buffer): void {
    if (this.left) return;
    if (this.stream.kind === 'changes') {
      this.send(payload, true);
      return;
    }
    this.pending = payload;
    if (this.sent === 0) this.sendPending();
  }

  hasPending(): boolean {
    return this.pending !== null;
  }

  /** Its socket holds too much unsent for another progress event now. */
  isBackedUp(): boolean {
    return this.sink.socket.bufferedAmount > STATE_BACKLOG_BYTES;
  }

  /** Sends the newest event not yet sent, if any: urgent when it is the last one (see SocketFrames). */
  sendPending(urgent = false): void {
    const payload = this.pending;
    if (!payload) return;
    this.pending = null;
    this.send(payload, urgent);
  }

  /**
   * The source is over: the last event (if not sent yet) and the complete, in one write; or the source's error. The
   * stream then settles the member (graphql-ws ends its operation).
   */
  end(failure: { error: unknown } | null): void {
    if (this.left) return;
    if (failure) {
      // graphql-ws sends the error: everything queued before it goes first.
      this.pending = null;
      this.stream.frames.flush(this.sink.socket);
    } else {
      this.sendPending(true);
      this.stream.frames.queue(this.sink.socket, [Buffer.from(`{"id":${JSON.stringify(this.sink.id)},"type":"complete"}`)], this.wanted, true);
    }
    this.outcome = { failure };
    this.leave();
  }

  next(): Promise<Step> {
    if (this.left && !this.outcome) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      if (this.outcome) this.settle();
    });
  }

  async return(): Promise<Step> {
    this.stop();
    return DONE;
  }

  async throw(error?: unknown): Promise<Step> {
    this.stop();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
  }

  private send(payload: Buffer, urgent: boolean): void {
    this.sent += 1;
    this.stream.frames.queue(this.sink.socket, [this.prefix, payload, CLOSE], this.wanted, urgent);
  }

  /** Ends the operation for graphql-ws, once end() has run (now, or at its next call of next()). */
  settle(): void {
    const waiting = this.waiting;
    if (!waiting || !this.outcome) return;
    this.waiting = null;
    const { failure } = this.outcome;
    this.outcome = { failure: null }; // one error, then done
    if (failure) {
      waiting.reject(failure.error);
      return;
    }
    // Only now, with graphql-ws iterating (so holding the operation): before, it would take it for one stopped.
    this.sink.detach();
    waiting.resolve(DONE);
  }

  private stop(): void {
    this.stopped = true;
    this.pending = null;
    this.leave();
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.resolve(DONE);
  }

  private leave(): void {
    if (this.left) return;
    this.left = true;
    this.stream.leave(this);
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterableIterator<ExecutionResult> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function';
}
