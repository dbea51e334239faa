import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { applyHttpTimeouts } from '../../src/api/http/connection-timeouts';
import { createLogger } from '../../src/logging/logger';

const IDLE_MS = 300;

/** What the socket saw: the bytes, and when it closed (ms after the request was sent). */
async function rawExchange(port: number, text: string): Promise<{ received: string; closedAfterMs: number }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const started = Date.now();
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.write(text);
  await once(socket, 'close');
  return { received, closedAfterMs: Date.now() - started };
}

describe('HTTP connection timeouts (idle sockets dropped, the server never cut off while it works on an answer)', () => {
  let server: Server;
  let port: number;
  const timers: NodeJS.Timeout[] = [];

  before(async () => {
    server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.url === '/thinks') {
          // An answer that takes several idle timeouts to work out (an export built before it is answered).
          timers.push(setTimeout(() => response.end('worked it out'), IDLE_MS * 4));
        } else if (request.url === '/stalls') {
          response.writeHead(200, { 'content-type': 'text/plain' });
          response.write('first part');
          // …and never the rest: a stalled answer is dropped like a stalled client.
        } else {
          response.end('ok');
        }
      });
    });
    applyHttpTimeouts(server, IDLE_MS, createLogger('silent'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const timer of timers) clearTimeout(timer);
    server.closeAllConnections();
    server.close();
  });

  it('answers a request that takes longer than the idle timeout to answer', async () => {
    const { received } = await rawExchange(port, 'GET /thinks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(received, /^HTTP\/1\.1 200/);
    assert.match(received, /worked it out/);
  });

  it('drops a request whose body stops arriving', async () => {
    const { received, closedAfterMs } = await rawExchange(port, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a few bytes');
    assert.equal(received, '');
    assert.ok(closedAfterMs >= IDLE_MS - 50 && closedAfterMs < IDLE_MS * 20, `closed after ${closedAfterMs} ms`);
  });

  it('drops an answer that stops halfway', async () => {
    const { received } = await rawExchange(port, 'GET /stalls HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(received, /first part/);
  });

  it('answers a request that arrived while the event loop was stalled past the idle timeout', async () => {
    const accepted = once(server, 'connection');
    const socket = connect(port, '127.0.0.1');
    await accepted;
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const closed = once(socket, 'close');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    // The request sits in the server's socket while the loop is busy: when it is free again, the idle timer fires
    // before the request is read.
    const stalledUntil = Date.now() + IDLE_MS * 2;
    while (Date.now() < stalledUntil);
    await closed;
    assert.match(received, /^HTTP\/1\.1 200/, `the answer: ${JSON.stringify(received)}`);
  });

  it('drops a kept-alive socket left silent, and advertises no longer a keep-alive than that', async () => {
    const { received, closedAfterMs } = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(received, /keep-alive: timeout=0\b/i);
    assert.ok(closedAfterMs < IDLE_MS * 20, `closed after ${closedAfterMs} ms`);
  });
});
