import { strict as assert } from 'node:assert';
import { mock } from 'node:test';
import type { ExecutionResult, FormattedExecutionResult } from 'graphql';
import { WebSocket } from 'ws';
import type { TextFrame } from '../../src/api/bounded-web-socket';
import { ProgressPacing } from '../../src/api/subscriptions/progress-pacing';
import { SharedSubscription } from '../../src/api/subscriptions/shared-subscription';
import { SocketFrames } from '../../src/api/subscriptions/socket-frames';

/** A socket that keeps the `n` of every event frame written to it. */
class FakeSocket {
  readonly readyState = WebSocket.OPEN;
  readonly bufferedAmount = 0;
  readonly seen: number[] = [];

  sendTextFrames(frames: readonly TextFrame[]): void {
    for (const parts of frames) {
      const message = JSON.parse(Buffer.concat(parts).toString());
      if (message.type === 'next') this.seen.push(message.payload.data.n);
    }
  }
}

/** A source of events pushed by the test, as a subscription's async iterator. */
function pushedSource() {
  const queue: ExecutionResult[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      while (queue.length === 0 && !ended) await new Promise<void>((resolve) => (wake = resolve));
      return queue.length > 0 ? { value: queue.shift()!, done: false } : { value: undefined, done: true };
    },
    async return() {
      ended = true;
      wake?.();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  const wakeUp = () => {
    const resolve = wake;
    wake = null;
    resolve?.();
  };
  return {
    iterator,
    push(n: number) {
      queue.push({ data: { n } });
      wakeUp();
    },
    end() {
      ended = true;
      wakeUp();
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('shared subscription: progress paced for all its members', () => {
  it('paces members who joined after a release was planned by the interval as it is when the release comes', async () => {
    // On a clock of the test's own: the release is planned by performance.now() and set with setTimeout, and on a
    // loaded machine real sleeps overran the very intervals the test is about.
    let now = 0;
    mock.method(performance, 'now', () => now);
    mock.timers.enable({ apis: ['setTimeout'] });
    /** Moves the clock on, a millisecond at a time, running what falls due and the promises that settles. */
    const advance = async (ms: number) => {
      for (let i = 0; i < ms; i++) {
        now += 1;
        mock.timers.tick(1);
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    try {
      // 10 frames a second for everyone: an interval of 100 ms per member.
      const pacing = new ProgressPacing(10, 20);
      const source = pushedSource();
      const stream = new SharedSubscription(() => source.iterator, {
        kind: 'state',
        pacing,
        frames: new SocketFrames(1),
        format: (result) => result as FormattedExecutionResult,
        onRetired: () => undefined,
      });
      const join = (id: string) => {
        const socket = new FakeSocket();
        stream.join({ socket: socket as unknown as WebSocket, id, detach: () => undefined });
        return socket;
      };
      const first = join('first');
      source.push(1); // sent to the first member at once, and a release is planned 100 ms ahead (one member)
      await advance(10);
      source.push(2);
      await advance(10);
      const later = [join('a'), join('b'), join('c'), join('d')]; // five members: 500 ms
      source.push(3);
      await advance(200);
      assert.deepEqual(first.seen, [1], 'released before the interval of five members');
      for (const socket of later) assert.deepEqual(socket.seen, [2], 'a member got more than its first event within the interval');
      await advance(450);
      for (const socket of [first, ...later]) assert.deepEqual(socket.seen.at(-1), 3, 'the newest event was not released after the interval');
      source.push(4);
      source.end();
      await advance(20);
      for (const socket of [first, ...later]) assert.equal(socket.seen.at(-1), 4, 'the last event is always sent');
    } finally {
      mock.timers.reset();
      mock.restoreAll();
    }
  });

  it('marks as urgent what clients wait for: every change, the last state and its complete; not the first or paced states', async () => {
    /** SocketFrames that keeps, for each frame queued, its text and whether it was urgent. */
    class RecordingFrames extends SocketFrames {
      readonly queued: [string, boolean][] = [];
      override queue(socket: WebSocket, frame: TextFrame, wanted: () => boolean, urgent = false): void {
        const message = JSON.parse(Buffer.concat(frame).toString());
        this.queued.push([message.type === 'next' ? `next ${message.payload.data.n}` : message.type, urgent]);
        super.queue(socket, frame, wanted, urgent);
      }
    }
    const streamOf = (kind: 'state' | 'changes', frames: SocketFrames) => {
      const source = pushedSource();
      const stream = new SharedSubscription(() => source.iterator, {
        kind,
        pacing: new ProgressPacing(1_000, 20),
        frames,
        format: (result) => result as FormattedExecutionResult,
        onRetired: () => undefined,
      });
      return { source, stream };
    };

    const changes = new RecordingFrames(1);
    const availability = streamOf('changes', changes);
    availability.stream.join({ socket: new FakeSocket() as unknown as WebSocket, id: 'a', detach: () => undefined });
    availability.source.push(1);
    availability.source.push(2);
    await sleep(10);
    assert.deepEqual(changes.queued, [['next 1', true], ['next 2', true]]);

    const states = new RecordingFrames(1);
    const progress = streamOf('state', states);
    progress.source.push(1);
    await sleep(5);
    progress.stream.join({ socket: new FakeSocket() as unknown as WebSocket, id: 'p', detach: () => undefined });
    progress.source.push(2);
    await sleep(200); // one release (an interval of 20 ms)
    progress.source.push(3);
    progress.source.end();
    await sleep(10);
    assert.deepEqual(states.queued, [['next 1', false], ['next 2', false], ['next 3', true], ['complete', true]]);
  });
});
