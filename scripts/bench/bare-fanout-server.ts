// Child process of bench:fanout: the floor its latencies are measured against. A bare `ws` server that speaks just
// enough graphql-transport-ws for fanout-clients.ts and does nothing else: no restore, no GraphQL, no authentication.
// It sends the frames a restore's subscribers get, of the same shapes and sizes, with the same writes per socket as
// the product at its best: READ_ONLY, then each progress subscriber's first state, then at the swap UNAVAILABLE,
// AVAILABLE, the final state and its complete in one write (corked). How late those reach 10,000 clients on this
// machine is what one thread writing to 10,000 loopback sockets costs here, whatever the server.
// Driven by its parent over IPC:
//   {cmd:'listen'} → {port}
//   {cmd:'subscribed'} → {count}: sockets subscribed to availability (id 'a')
//   {cmd:'start', expect} → writes READ_ONLY to every availability subscriber, answers {written}; once `expect`
//       progress subscriptions (id 'p') have come, waits SWAP_AFTER_MS and writes the swap's frames.
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

/** The quiet between the last progress subscription and the swap: as in a restore, the swap is not among them. */
const SWAP_AFTER_MS = 200;

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/graphql', perMessageDeflate: false });
const availability = new Set<WebSocket>();
const progress = new Set<WebSocket>();
let expected = Infinity;

const next = (id: string, data: object) => JSON.stringify({ id, type: 'next', payload: { data } });
const availabilityFrame = (now: string, previous: string) =>
  next('a', { instanceAvailabilityChanged: { availability: now, previousAvailability: previous, at: new Date().toISOString() } });
const progressFrame = (status: string, phase: string, finishedAt: string | null) =>
  next('p', { restoreProgress: { status, phase, progress: finishedAt ? 1 : 0.5, bytesDone: finishedAt ? 2 : 1, finishedAt } });

server.on('connection', (socket) => {
  socket.on('message', (data) => {
    const message = JSON.parse(String(data)) as { type: string; id?: string };
    if (message.type === 'connection_init') socket.send(JSON.stringify({ type: 'connection_ack' }));
    else if (message.type === 'ping') socket.send(JSON.stringify({ type: 'pong' }));
    else if (message.type === 'subscribe' && message.id === 'a') availability.add(socket);
    else if (message.type === 'complete' && message.id === 'a') availability.delete(socket);
    else if (message.type === 'subscribe' && message.id === 'p') {
      progress.add(socket);
      socket.send(progressFrame('RUNNING', 'loading', null));
      if (progress.size === expected) setTimeout(swap, SWAP_AFTER_MS);
    }
  });
  socket.on('close', () => {
    availability.delete(socket);
    progress.delete(socket);
  });
});

/** UNAVAILABLE, AVAILABLE, the final state and its complete: one write per socket, each frame serialised once. */
function swap(): void {
  expected = Infinity;
  const unavailable = availabilityFrame('UNAVAILABLE', 'READ_ONLY');
  const available = availabilityFrame('AVAILABLE', 'UNAVAILABLE');
  const final = progressFrame('SUCCEEDED', 'done', new Date().toISOString());
  const complete = JSON.stringify({ id: 'p', type: 'complete' });
  for (const socket of progress) {
    const tcp = (socket as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    tcp.cork();
    if (availability.has(socket)) {
      socket.send(unavailable);
      socket.send(available);
    }
    socket.send(final);
    socket.send(complete);
    tcp.uncork();
  }
  progress.clear();
}

process.on('message', (message: { cmd: string; expect?: number }) => {
  const reply = (value: unknown) => process.send!(value);
  if (message.cmd === 'listen') {
    if (server.address()) reply({ port: (server.address() as AddressInfo).port });
    else server.once('listening', () => reply({ port: (server.address() as AddressInfo).port }));
  } else if (message.cmd === 'subscribed') {
    reply({ count: availability.size });
  } else if (message.cmd === 'start') {
    expected = message.expect!;
    const readOnly = availabilityFrame('READ_ONLY', 'AVAILABLE');
    for (const socket of availability) socket.send(readOnly);
    reply({ written: availability.size });
  }
});
