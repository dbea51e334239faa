// The frames shared subscriptions write in one go (sendTextFrames) arrive at a real `ws` client as the same messages,
// in order, whatever their length (the three header sizes of RFC 6455), interleaved correctly with ordinary sends;
// and a socket whose client stopped reading is dropped by its bound either way.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { boundedWebSocket, canSendTextFrames, type TextFrameSocket } from '../../src/api/bounded-web-socket';

describe('bounded WebSocket: frames written in one go', () => {
  let http: Server;
  let wss: WebSocketServer;
  let url: string;
  const dropped: number[] = [];

  before(async () => {
    http = createServer();
    wss = new WebSocketServer({ server: http, perMessageDeflate: false, WebSocket: boundedWebSocket(256 * 1024, (_s, bytes) => dropped.push(bytes)) });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  after(async () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    http.close();
  });

  /** A connected client and the server's side of it. */
  async function connect(): Promise<{ client: WebSocket; server: TextFrameSocket }> {
    const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
    const client = new WebSocket(url);
    await once(client, 'open');
    const [server] = await accepted;
    assert.ok(canSendTextFrames(server));
    return { client, server };
  }

  function messages(client: WebSocket, count: number): Promise<string[]> {
    const seen: string[] = [];
    return new Promise((resolve, reject) => {
      client.on('message', (data, isBinary) => {
        if (isBinary) reject(new Error('a binary frame'));
        seen.push(String(data));
        if (seen.length === count) resolve(seen);
      });
    });
  }

  it('delivers every frame as sent, short, medium (16-bit length) and long (64-bit length), from their parts', async () => {
    const { client, server } = await connect();
    const texts = ['', 'x', 'a'.repeat(125), 'b'.repeat(126), 'é'.repeat(40_000), 'c'.repeat(65_535), 'd'.repeat(65_536), '😀'.repeat(100_000)];
    const received = messages(client, texts.length + 2);
    server.send('before');
    server.sendTextFrames(texts.map((text) => [Buffer.from('{'), Buffer.from(text), Buffer.from('}')]));
    server.send('after');
    assert.deepEqual(await received, ['before', ...texts.map((text) => `{${text}}`), 'after']);
    client.close();
  });

  it('drops a socket whose client stopped reading, as an ordinary send does', async () => {
    const { client, server } = await connect();
    client.pause();
    const closed = once(server, 'close');
    const big = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < 200 && server.readyState === WebSocket.OPEN; i++) server.sendTextFrames([[big]]);
    await closed;
    assert.ok(dropped.length > 0 && dropped.at(-1)! > 256 * 1024, `dropped: ${dropped.join(', ')}`);
    client.terminate();
  });
});
