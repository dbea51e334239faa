// WebSocket clients' messages handled in turns: in the order they came, never at once, a few milliseconds at a time
// with the event loop turning between turns; a socket with too many messages, or too many bytes of them, waiting
// paused until they are handled. Then through the server's WebSocket class and a real client: every message, in order,
// then the close, though the client closed before their turn.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { boundedWebSocket } from '../../src/api/bounded-web-socket';
import { MessageTurns, type TurnTaker } from '../../src/api/message-turns';
import { eventually } from '../support/wait';

class FakeSocket implements TurnTaker {
  paused = 0;
  resumed = 0;
  constructor(
    readonly name: string,
    private readonly seen: string[],
    private readonly costMs = 0,
  ) {}
  emitNow(event: string, args: unknown[]): void {
    const until = performance.now() + this.costMs;
    while (performance.now() < until) {
      // the handler's own work
    }
    this.seen.push(`${this.name} ${event}${args.length > 0 ? ` ${String(args[0])}` : ''}`);
  }
  pause(): void {
    this.paused += 1;
  }
  resume(): void {
    this.resumed += 1;
  }
}

/** Until every event deferred so far is handled (a fixed sleep could end first on a loaded machine). */
const settled = (turns: MessageTurns) => eventually(() => turns.waiting === 0, { intervalMs: 2, what: 'every event handled' });

describe('message turns', () => {
  it('handles events later, in the order they came, across sockets', async () => {
    const seen: string[] = [];
    const turns = new MessageTurns();
    const a = new FakeSocket('a', seen);
    const b = new FakeSocket('b', seen);
    turns.defer(a, 'message', ['1']);
    turns.defer(b, 'message', ['1']);
    turns.defer(a, 'message', ['2']);
    turns.defer(b, 'close', [1000]);
    assert.deepEqual(seen, [], 'nothing is handled while the events are read');
    await settled(turns);
    assert.deepEqual(seen, ['a message 1', 'b message 1', 'a message 2', 'b close 1000']);
    assert.equal(turns.waiting, 0);
  });

  it('lets the event loop turn between turns of a flood', async () => {
    const seen: string[] = [];
    const turns = new MessageTurns({ turnMs: 5, maxWaitingPerSocket: 1_000, maxWaitingBytesPerSocket: 1024 ** 2 });
    const sockets = Array.from({ length: 30 }, (_, i) => new FakeSocket(`s${i}`, seen, 1));
    for (const socket of sockets) turns.defer(socket, 'message', ['subscribe']);
    setImmediate(() => seen.push('other work'));
    await eventually(() => seen.length === 31, { intervalMs: 2, what: 'every event and the other work handled' });
    const at = seen.indexOf('other work');
    assert.equal(seen.length, 31);
    assert.ok(at > 0 && at < 10, `other work ran after the first turn, not after the whole flood (at ${at} of 31)`);
  });

  it('pauses a socket with too many events waiting and resumes it once they are handled', async () => {
    const seen: string[] = [];
    const turns = new MessageTurns({ turnMs: 5, maxWaitingPerSocket: 3, maxWaitingBytesPerSocket: 1024 ** 2 });
    const busy = new FakeSocket('busy', seen);
    const quiet = new FakeSocket('quiet', seen);
    turns.defer(quiet, 'message', ['1']);
    for (let i = 0; i < 5; i++) turns.defer(busy, 'message', [String(i)]);
    assert.equal(busy.paused, 1, 'paused once, at the bound');
    assert.equal(quiet.paused, 0);
    await settled(turns);
    assert.equal(busy.resumed, 1, 'resumed once, when it fell below the bound');
    assert.equal(seen.length, 6);
  });

  it('pauses a socket with too many bytes of messages waiting, however few they are', async () => {
    const seen: string[] = [];
    const turns = new MessageTurns({ turnMs: 5, maxWaitingPerSocket: 64, maxWaitingBytesPerSocket: 1024 ** 2 });
    const large = new FakeSocket('large', seen);
    turns.defer(large, 'message', [Buffer.alloc(600 * 1024)]);
    assert.equal(large.paused, 0);
    turns.defer(large, 'message', [[Buffer.alloc(300 * 1024), Buffer.alloc(300 * 1024)]]);
    assert.equal(large.paused, 1, 'paused at 1.2 MiB waiting, in two messages');
    turns.defer(large, 'close', [1000]);
    await settled(turns);
    assert.equal(large.resumed, 1);
    assert.equal(seen.length, 3);
  });
});

describe('message turns: through the server WebSocket class', () => {
  let http: Server;
  let wss: WebSocketServer;
  let url: string;

  before(async () => {
    http = createServer();
    const turns = new MessageTurns({ turnMs: 5, maxWaitingPerSocket: 4, maxWaitingBytesPerSocket: 1024 ** 2 });
    wss = new WebSocketServer({ server: http, perMessageDeflate: false, WebSocket: boundedWebSocket(256 * 1024, () => undefined, turns) });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  after(async () => {
    for (const client of wss.clients) client.terminate();
    await new Promise((resolve) => wss.close(resolve));
    await new Promise((resolve) => http.close(resolve));
  });

  it("sees every message in order, then the close, though the socket is paused and resumed on the way", async () => {
    const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
    const client = new WebSocket(url);
    await once(client, 'open');
    const [server] = await accepted;
    const seen: string[] = [];
    let handledSynchronously = false;
    let pauses = 0;
    const pause = server.pause.bind(server);
    server.pause = () => {
      pauses += 1;
      pause();
    };
    server.on('message', (data) => seen.push(String(data)));
    const closed = new Promise<number>((resolve) => server.once('close', (code: number) => resolve(code)));
    const sent = Array.from({ length: 200 }, (_, i) => `m${i}`);
    for (const text of sent) client.send(text);
    client.close(4000);
    const emitted = server.emit('message', Buffer.from('x'), false);
    handledSynchronously = seen.includes('x');
    assert.equal(await closed, 4000);
    assert.ok(emitted && !handledSynchronously, 'a message is handled in a later turn, not when it is read');
    assert.deepEqual(seen.slice(0, 1), ['x']);
    assert.deepEqual(seen.slice(1), sent);
    assert.ok(pauses > 0, 'the socket was paused at its bound of 4 waiting');
  });
});
