// Child process of bench:fanout: many graphql-transport-ws clients over raw `ws` sockets, kept light so that the
// clients cost the machine as little as possible. Driven by its parent over IPC:
//   {cmd:'connect', url, key, count} → opens `count` sockets (connection_init, connection_ack); answers {ready}.
//   {cmd:'subscribe', instanceId} → every socket subscribes to the instance's availability (fresh figures); {sent}.
//   {cmd:'watch', operationId} → every socket subscribes to restoreProgress; answers {done} once every socket has
//       the operation's final event and the instance's AVAILABLE (or {cmd:'stop'} came), with the figures, and
//       unsubscribes from availability.
//   {cmd:'close'} → closes every socket and exits.
// Latency = this process's receive time − the server's time of the event (availability `at`, the operation's
// `finishedAt`), both from the same machine clock.
import WebSocket from 'ws';

const CONNECTING_AT_ONCE = 100;

interface Client {
  socket: WebSocket;
  progress: number;
  availabilityLatencies: number[];
  /** The availability each of availabilityLatencies is for. */
  availabilities: string[];
  finalLatency: number | null;
  available: boolean;
  outOfOrder: boolean;
  lastBytesDone: number;
}

const clients: Client[] = [];
let onProgressDone: (() => void) | null = null;
let stopWatching: (() => void) | null = null;

const AVAILABILITY = 'subscription ($id: ID) { instanceAvailabilityChanged(instanceId: $id) { availability previousAvailability at } }';
const PROGRESS = 'subscription ($id: ID!) { restoreProgress(operationId: $id) { status phase progress bytesDone finishedAt } }';

function finished(client: Client): boolean {
  return client.finalLatency !== null && client.available;
}

function open(url: string, key: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws');
    const client: Client = { socket, progress: 0, availabilityLatencies: [], availabilities: [], finalLatency: null, available: false, outOfOrder: false, lastBytesDone: -1 };
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${key}` } })));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before connection_ack')));
    socket.on('message', (data) => {
      const received = Date.now();
      const message = JSON.parse(String(data));
      if (message.type === 'connection_ack') {
        resolve(client);
        return;
      }
      if (message.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
        return;
      }
      if (message.type !== 'next') return;
      if (message.id === 'a') {
        const event = message.payload.data.instanceAvailabilityChanged;
        client.availabilityLatencies.push(received - Date.parse(event.at));
        client.availabilities.push(event.availability);
        if (event.availability === 'AVAILABLE') client.available = true;
      } else if (message.id === 'p') {
        const state = message.payload.data.restoreProgress;
        client.progress += 1;
        if (state.bytesDone < client.lastBytesDone && state.status === 'RUNNING') client.outOfOrder = true;
        client.lastBytesDone = Math.max(client.lastBytesDone, state.bytesDone);
        if (state.finishedAt) client.finalLatency = received - Date.parse(state.finishedAt);
      }
      if (onProgressDone && finished(client)) onProgressDone();
    });
  });
}

async function connect(url: string, key: string, count: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      clients.push(await open(url, key));
    }
  };
  await Promise.all(Array.from({ length: CONNECTING_AT_ONCE }, worker));
}

function subscribeAvailability(instanceId: string): void {
  const subscribe = JSON.stringify({ id: 'a', type: 'subscribe', payload: { query: AVAILABILITY, variables: { id: instanceId } } });
  for (const client of clients) {
    Object.assign(client, { progress: 0, availabilityLatencies: [], availabilities: [], finalLatency: null, available: false, outOfOrder: false, lastBytesDone: -1 });
    client.socket.send(subscribe);
  }
}

async function watch(operationId: string) {
  const subscribe = JSON.stringify({ id: 'p', type: 'subscribe', payload: { query: PROGRESS, variables: { id: operationId } } });
  for (const client of clients) client.socket.send(subscribe);
  await new Promise<void>((resolve) => {
    stopWatching = resolve;
    onProgressDone = () => {
      if (clients.every(finished)) resolve();
    };
    onProgressDone();
  });
  onProgressDone = null;
  stopWatching = null;
  const unsubscribe = JSON.stringify({ id: 'a', type: 'complete' });
  for (const client of clients) if (client.socket.readyState === WebSocket.OPEN) client.socket.send(unsubscribe);
  return {
    clients: clients.length,
    finished: clients.filter(finished).length,
    closed: clients.filter((c) => c.socket.readyState !== WebSocket.OPEN).length,
    outOfOrder: clients.filter((c) => c.outOfOrder).length,
    progress: clients.map((c) => c.progress),
    availabilityLatencies: clients.flatMap((c) => c.availabilityLatencies),
    availabilities: clients.flatMap((c) => c.availabilities),
    finalLatencies: clients.flatMap((c) => (c.finalLatency === null ? [] : [c.finalLatency])),
  };
}

process.on('message', (message: { cmd: string; [key: string]: any }) => {
  const reply = (value: unknown) => process.send!(value);
  if (message.cmd === 'connect') {
    connect(message.url, message.key, message.count).then(
      () => reply({ ready: clients.length }),
      (error) => reply({ error: String(error) }),
    );
  } else if (message.cmd === 'subscribe') {
    subscribeAvailability(message.instanceId);
    reply({ sent: clients.length });
  } else if (message.cmd === 'watch') {
    watch(message.operationId).then((figures) => reply({ done: figures }), (error) => reply({ error: String(error) }));
  } else if (message.cmd === 'stop') {
    stopWatching?.();
  } else if (message.cmd === 'close') {
    for (const client of clients) client.socket.terminate();
    process.exit(0);
  }
});
