import { strict as assert } from 'node:assert';
import { WebSocket } from 'ws';
import type { TextFrame } from '../../src/api/bounded-web-socket';
import { SocketFrames } from '../../src/api/subscriptions/socket-frames';

/** A socket that records each write, as its frames' text. */
class FakeSocket {
  readonly readyState = WebSocket.OPEN;
  readonly writes: string[][] = [];

  sendTextFrames(frames: readonly TextFrame[]): void {
    this.writes.push(frames.map((parts) => Buffer.concat(parts).toString()));
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
});
