// One GraphQL subscription executed once for everyone who asked for exactly the same thing (SubscriptionFanout
// decides who that is); each subscriber is a member with its own stream, and the result of an event, computed once,
// is the same object for every member, whichever socket it goes to.
import type { ExecutionResult } from 'graphql';
import type { ProgressPacing } from './progress-pacing';

/**
 * How a stream's events may be thinned for a member.
 * - `state`: every event is the whole state (an operation's progress). A member holds only the newest event not yet
 *   sent (latest wins), so one that is behind skips to the present; a new member starts with the newest (the current
 *   state); between the first and the last, a member gets at most one event per pacing interval.
 * - `changes`: every event matters (availability, snapshots): each member gets them all, in order, at once; one that
 *   falls more than `maxQueued` behind has stopped reading and is dropped (`onTooFarBehind` closes its socket).
 */
export type StreamKind = 'state' | 'changes';

export type SourceStream = AsyncIterableIterator<ExecutionResult> | ExecutionResult;

type Step = IteratorResult<ExecutionResult>;
const DONE: Step = { done: true, value: undefined };

export interface SharedSubscriptionOptions {
  kind: StreamKind;
  pacing: ProgressPacing;
  maxQueued: number;
  /** A member's queue overflowed: its subscriber stopped reading. */
  onTooFarBehind(member: SubscriptionMember): void;
  /** Called once, when nobody may join any more: the source ended, or every member left. */
  onRetired(): void;
}

export class SharedSubscription {
  private readonly members = new Set<SubscriptionMember>();
  private source: AsyncIterator<ExecutionResult> | null = null;
  /** The newest result of a `state` stream: what a member joining now receives first. */
  private latest: ExecutionResult | undefined;
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

  /** How the source ended when it threw; members rethrow it once they have had every event before it. */
  get failed(): { error: unknown } | null {
    return this.failure;
  }

  get maxQueued(): number {
    return this.options.maxQueued;
  }

  intervalMs(): number {
    return this.options.pacing.intervalMs();
  }

  join(context: unknown): SubscriptionMember {
    const member = new SubscriptionMember(this, context);
    this.members.add(member);
    if (this.kind === 'state') this.options.pacing.members += 1;
    if (this.latest) member.offer(this.latest);
    return member;
  }

  /** A member asked for its next event: at once when it may have it, else when its pacing interval is up. */
  requestRelease(member: SubscriptionMember): void {
    if (member.isReady()) member.release();
    else if (member.hasQueued()) this.scheduleRelease(member.readyInMs());
  }

  leave(member: SubscriptionMember): void {
    if (!this.members.delete(member)) return;
    if (this.kind === 'state') this.options.pacing.members -= 1;
    if (this.members.size === 0 && !this.ended) this.close();
  }

  overflowed(member: SubscriptionMember): void {
    this.options.onTooFarBehind(member);
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
      this.release();
    }
  }

  private publish(result: ExecutionResult): void {
    if (this.kind === 'state') this.latest = result;
    for (const member of this.members) member.offer(result);
    this.release();
  }

  /** Hands their next step to the waiting members that may have it now; plans the next release for paced ones. */
  private release(): void {
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    this.releaseTimer = null;
    let nextInMs = Infinity;
    for (const member of this.members) {
      if (!member.isWaiting()) continue;
      if (member.isReady()) member.release();
      else if (member.hasQueued()) nextInMs = Math.min(nextInMs, member.readyInMs());
    }
    if (nextInMs < Infinity) this.scheduleRelease(nextInMs);
  }

  private scheduleRelease(inMs: number): void {
    if (this.releaseTimer || this.ended) return;
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = null;
      this.release();
    }, Math.max(0, inMs));
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

/** One subscriber's stream of a shared subscription: what graphql-ws iterates and sends on its socket. */
export class SubscriptionMember implements AsyncGenerator<ExecutionResult> {
  private queue: ExecutionResult[] = [];
  private delivered = 0;
  private lastDeliveredAt = 0;
  private waiting: { resolve: (step: Step) => void; reject: (error: unknown) => void } | null = null;
  private left = false;

  constructor(
    private readonly stream: SharedSubscription,
    /** The subscriber's own GraphQL context, by which its socket is found when it falls too far behind. */
    readonly context: unknown,
  ) {}

  offer(result: ExecutionResult): void {
    if (this.left) return;
    if (this.stream.kind === 'state') {
      this.queue[0] = result;
      return;
    }
    this.queue.push(result);
    if (this.queue.length > this.stream.maxQueued) {
      this.leave(DONE);
      this.stream.overflowed(this);
    }
  }

  isWaiting(): boolean {
    return this.waiting !== null;
  }

  hasQueued(): boolean {
    return this.queue.length > 0;
  }

  /** Whether a waiting next() can be settled now: with an event that is not paced, or with the end. */
  isReady(): boolean {
    if (this.queue.length === 0) return this.stream.isEnded;
    if (this.stream.kind === 'changes' || this.delivered === 0 || this.stream.isEnded) return true;
    return this.readyInMs() <= 0;
  }

  readyInMs(): number {
    return this.lastDeliveredAt + this.stream.intervalMs() - Date.now();
  }

  /** Settles the waiting next() with the next event, or with the end (the source's error, if it threw). */
  release(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    this.waiting = null;
    const value = this.queue.shift();
    if (value) {
      this.delivered += 1;
      this.lastDeliveredAt = Date.now();
      waiting.resolve({ done: false, value });
      return;
    }
    const failure = this.stream.failed;
    this.leave(DONE);
    if (failure) waiting.reject(failure.error);
    else waiting.resolve(DONE);
  }

  next(): Promise<Step> {
    if (this.left) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.stream.requestRelease(this);
    });
  }

  async return(): Promise<Step> {
    this.leave(DONE);
    return DONE;
  }

  async throw(error?: unknown): Promise<Step> {
    this.leave(DONE);
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.leave(DONE);
  }

  private leave(step: Step): void {
    if (this.left) return;
    this.left = true;
    this.queue = [];
    this.stream.leave(this);
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.resolve(step);
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterableIterator<ExecutionResult> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function';
}
