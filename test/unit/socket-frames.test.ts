import { strict as assert } from 'node:assert';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import type { TextFrame } from '../../src/api/bounded-web-socket';
import { SocketFrames } from '../../src/api/subscriptions/socket-frames';
import { eventually } from '../support/wait';

/** A socket that records each write, as its frames' text. */
class FakeSocket {
  readonly readyState = WebSocket.OPEN;
  readonly writes: string[][] = [];

  constructor(private readonly onWrite: () => void = () => undefined) {}

  sendTextFrames(frames: readonly TextFrame[]): void {
    this.writes.push(frames.map((parts) => Buffer.concat(parts).toString()));
    this.onWrite();
  }
}

const frame = (text: string): TextFrame => [Buffer.from(text)];
const always = () => true;

describe('socket frames: the writes of shared subscriptions', () => {
  it("writes each socket's frames in the order queued, in one write per flush", async () => {
    const frames = new SocketFrames(1);
    const sockets = Array.from({ length: 3 }, () => new FakeSocket());
    for (const [i, socket] of sockets.entries()) {
      frames.queue(socket as unknown as WebSocket, frame(`a${i}`), always);
      frames.queue(socket as unknown as WebSocket, frame(`b${i}`), always);
    }
    frames.queue(sockets[0] as unknown as WebSocket, frame('unwanted'), () => false);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(
      sockets.map((socket) => socket.writes),
      sockets.map((_, i) => [[`a${i}`, `b${i}`]]),
    );
  });

  it('writes a large flush in slices, the event loop turning in between, each socket in order and once per frame queued', async () => {
    // No time per slice: a slice is the sockets written between two looks at the clock (32).
    const frames = new SocketFrames(1, 0);
    let turned = false;
    let seenBySecondSlice: boolean | undefined;
    const sockets: FakeSocket[] = [];
    for (let i = 0; i < 100; i++) {
      sockets.push(
        new FakeSocket(() => {
          if (i === 0 && sockets[0].writes.length === 1) {
            // Runs once the first slice lets the loop turn: queues frames for a socket written and one not yet.
            setImmediate(() => {
              turned = true;
              frames.queue(sockets[0] as unknown as WebSocket, frame('late0'), always);
              frames.queue(sockets[99] as unknown as WebSocket, frame('b99'), always);
            });
          }
          if (i === 40) seenBySecondSlice = turned;
        }),
      );
    }
    for (const [i, socket] of sockets.entries()) frames.queue(socket as unknown as WebSocket, frame(`a${i}`), always);
    // Every socket written, and the frames queued between slices too (a fixed sleep could end between two slices).
    await eventually(() => sockets.every((socket) => socket.writes.length > 0) && sockets[0].writes.length === 2, { intervalMs: 2, what: 'every slice written' });
    assert.equal(seenBySecondSlice, true, 'the loop did not turn between the first slice and a later one');
    assert.deepEqual(sockets[0].writes, [['a0'], ['late0']]);
    assert.deepEqual(sockets[99].writes, [['a99', 'b99']]);
    for (let i = 1; i < 99; i++) assert.deepEqual(sockets[i].writes, [[`a${i}`]]);
  });

  it('tells when every frame queued so far is written, not waiting for frames queued after', async () => {
    // A slice is 32 sockets here: the 40 queued first are out in the second slice, the last 16 of the next 40 in a third.
    const frames = new SocketFrames(1, 0);
    await frames.queuedWritten(); // nothing queued: at once
    const sockets = Array.from({ length: 80 }, () => new FakeSocket());
    for (const [i, socket] of sockets.slice(0, 40).entries()) frames.queue(socket as unknown as WebSocket, frame(`${i}`), always);
    let seen: number[] = [];
    const written = frames.queuedWritten().then(() => (seen = sockets.map((socket) => socket.writes.length)));
    for (const [i, socket] of sockets.slice(40).entries()) frames.queue(socket as unknown as WebSocket, frame(`${40 + i}`), always);
    await written;
    assert.deepEqual(seen.slice(0, 40), Array(40).fill(1), 'a frame queued before was not written yet');
    assert.deepEqual(seen.slice(64), Array(16).fill(0), 'it waited for frames queued after');
  });

  it("writes one socket's queued frames at once when asked (before something else is sent on it), the others later", async () => {
    const frames = new SocketFrames(5);
    const [first, second] = [new FakeSocket(), new FakeSocket()];
    frames.queue(first as unknown as WebSocket, frame('1'), always);
    frames.queue(second as unknown as WebSocket, frame('2'), always);
    frames.flush(first as unknown as WebSocket);
    assert.deepEqual([first.writes, second.writes], [[['1']], []]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual([first.writes, second.writes], [[['1']], [['2']]]);
  });

  it('writes a flush with urgent frames whole, without letting the event loop turn, once their time to gather is up', async () => {
    // No time per slice: a flush of progress alone would let the loop turn every 32 sockets.
    const frames = new SocketFrames(3, 0);
    let turnedAt: number | null = null;
    const sockets: FakeSocket[] = [];
    for (let i = 0; i < 100; i++) {
      sockets.push(
        new FakeSocket(() => {
          if (i === 0) setImmediate(() => (turnedAt = sockets.filter((socket) => socket.writes.length > 0).length));
        }),
      );
    }
    // The frames of one moment: the urgent one's time to gather ends with the flush's timer. (On a loaded machine the
    // 100 calls can take longer than the timer's granularity, and the urgent frame is then rightly not yet due when the
    // timer writes a slice of progress: a CI run with three test files at once saw the loop turn after 32 sockets.)
    const moment = performance.now();
    const clock = performance.now;
    performance.now = () => moment;
    try {
      for (const [i, socket] of sockets.entries()) frames.queue(socket as unknown as WebSocket, frame(`progress${i}`), always);
      frames.queue(sockets[99] as unknown as WebSocket, frame('READ_ONLY'), always, true);
    } finally {
      performance.now = clock;
    }
    // Until the loop has turned once after the first write (a fixed sleep could end first, the write and the sleep's
    // timer due in the same pass of the loop).
    await eventually(() => turnedAt !== null, { intervalMs: 2, what: 'the loop to turn after the first write' });
    assert.equal(turnedAt, 100, 'the loop turned before every socket was written');
    assert.deepEqual(sockets[99].writes, [['progress99', 'READ_ONLY']]);
  });

  it('writes urgent frames that are due when asked by incoming work, before any timer or immediate', async () => {
    const frames = new SocketFrames(3, 0);
    const [early, late] = [new FakeSocket(), new FakeSocket()];
    frames.queue(early as unknown as WebSocket, frame('AVAILABLE'), always, true);
    frames.writeDue(); // not due yet: gathering
    assert.deepEqual(early.writes, []);
    const until = performance.now() + 4;
    while (performance.now() < until); // a flood of messages keeps the loop from its timers
    frames.queue(late as unknown as WebSocket, frame('progress'), always);
    frames.writeDue();
    assert.deepEqual([early.writes, late.writes], [[['AVAILABLE']], [['progress']]]);
  });

  it('does not write progress alone when asked by incoming work: it waits for its own flush', async () => {
    const frames = new SocketFrames(1);
    const socket = new FakeSocket();
    frames.queue(socket as unknown as WebSocket, frame('progress'), always);
    const until = performance.now() + 2;
    while (performance.now() < until);
    frames.writeDue();
    assert.deepEqual(socket.writes, []);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(socket.writes, [['progress']]);
  });

  it('forgets urgent frames once written, however (a flush of one socket, unwanted, socket closed)', async () => {
    const frames = new SocketFrames(2, 0);
    const [a, b, c, d] = [new FakeSocket(), new FakeSocket(), new FakeSocket(), new FakeSocket()];
    const closed = Object.assign(c, { readyState: WebSocket.CLOSED }) as unknown as WebSocket;
    frames.queue(a as unknown as WebSocket, frame('AVAILABLE'), always, true);
    frames.flush(a as unknown as WebSocket);
    frames.queue(b as unknown as WebSocket, frame('unwanted'), () => false, true);
    frames.queue(closed, frame('closed'), always, true);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual([a.writes, b.writes.flat()], [[['AVAILABLE']], []]);
    frames.queue(d as unknown as WebSocket, frame('progress'), always);
    const until = performance.now() + 4;
    while (performance.now() < until);
    frames.writeDue();
    assert.deepEqual(d.writes, [], 'progress alone written by writeDue: urgent frames written before still counted');
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(d.writes, [['progress']]);
  });

  it('after a flush asked by incoming work, frames queued next gather for their own time, then go', async () => {
    const frames = new SocketFrames(10, 0);
    const [early, late] = [new FakeSocket(), new FakeSocket()];
    frames.queue(early as unknown as WebSocket, frame('AVAILABLE'), always, true);
    const until = performance.now() + 9.5;
    while (performance.now() < until);
    frames.writeDue();
    assert.deepEqual(early.writes, [['AVAILABLE']]);
    frames.queue(late as unknown as WebSocket, frame('progress'), always);
    await new Promise((resolve) => setTimeout(resolve, 4));
    assert.deepEqual(late.writes, [], 'written by the timer of the flush before');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(late.writes, [['progress']], 'never written');
  });
});
