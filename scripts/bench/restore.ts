// Restore benchmark at 10,000 and 1,000,000 nodes (+ 2× relationships); `--sizes 10000,100000` to choose.
// The server runs in its own process (`bin/snapgraph serve`, fresh data dir per size, LOG_LEVEL=warn; server-process.ts)
// and is driven only through its public API: the graph is written through GraphQL over HTTP (`fill`), and the
// restore's progress and the instance's availability come over graphql-ws (`restoreProgress`,
// `instanceAvailabilityChanged`). Prints figures; asserts nothing. Not part of `npm test`.
//
//   npm run bench:restore -- [--sizes 10000,1000000] [--batch 10000] [--realistic]
//
// For each size, restoreSnapshot of the instance's snapshot over the instance itself:
// - seconds: the RESTORE operation's startedAt → finishedAt (the server's clock), and per phase: the time between
//   the restoreProgress events whose phase changed (as received; the server paces progress frames at most every
//   100 ms, so a shorter phase may be folded into the next; the first phase starts at the operation's startedAt);
// - records/s; the server process's peak RSS while restoring (its VmHWM, reset when the restore is requested) and
//   its event-loop delay p99 over the restore (its /metrics);
// - the UNAVAILABLE window: the server's `at` of the instance's AVAILABLE event − that of its UNAVAILABLE event;
// - the p99 latency of a read query (`nodes`, first 10) issued every 50 ms from before the restore to its end (a
//   read refused while the instance is unavailable counts with its time; `readErrors` says how many were);
// - beside it, the time of a plain snapshot of the same data (the SNAPSHOT operation's startedAt → finishedAt), and
//   createInstanceFromSnapshot of that snapshot (the pipeline without a safety snapshot of existing data).
// `--realistic` fills the stores with realistic, less compressible properties (synthetic-graph.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { activeSubscriptions, ADMIN_KEY, fill, flag, gql, MAX_BATCH, operationDone, percentile, rssSampler, secs, sleep, startServer, stopServer, until } from './server-process';
import { propertyMaker, propertyStyleFromArgs, rng } from './synthetic-graph';

const sizes = (process.argv.includes('--sizes') ? process.argv[process.argv.indexOf('--sizes') + 1] : '10000,1000000')
  .split(',')
  .map(Number);
const batch = Math.min(MAX_BATCH, Math.round(flag('batch', MAX_BATCH)));
const style = propertyStyleFromArgs();

const mb = (bytes: number) => +(bytes / 1024 / 1024).toFixed(1);
const TERMINAL = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/** A minimal graphql-transport-ws client over a raw `ws` socket (as fanout-clients.ts), with the ADMIN key. */
class Subscriptions {
  private readonly handlers = new Map<string, { next(data: any): void; complete(): void }>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw));
      if (message.type === 'ping') socket.send(JSON.stringify({ type: 'pong' }));
      const handler = this.handlers.get(message.id);
      if (!handler) return;
      if (message.type === 'next') handler.next(message.payload.data);
      else if (message.type === 'error' || message.type === 'complete') {
        if (message.type === 'error') console.error(`subscription ${message.id} refused: ${JSON.stringify(message.payload)}`);
        this.handlers.delete(message.id);
        handler.complete();
      }
    });
  }

  static open(url: string): Promise<Subscriptions> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws');
      socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${ADMIN_KEY}` } })));
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed before connection_ack')));
      socket.on('message', function ack(raw) {
        if (JSON.parse(String(raw)).type !== 'connection_ack') return;
        socket.off('message', ack);
        resolve(new Subscriptions(socket));
      });
    });
  }

  subscribe(id: string, query: string, variables: Record<string, unknown>, next: (data: any) => void, complete: () => void = () => undefined): void {
    this.handlers.set(id, { next, complete });
    this.socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
  }

  close(): void {
    this.socket.terminate();
  }
}

/** The id of the instance's newest operation of `kind` (for `snapshotId` when given), through the operations list. */
async function operationOf(instanceId: string, kind: string, snapshotId?: string): Promise<string> {
  return until(`the ${kind} operation`, async () => {
    const { operations } = await gql(`query($id: ID!) { operations(instanceId: $id, first: 20) { edges { node { id kind snapshotId } } } }`, { id: instanceId });
    const found = operations.edges.find(({ node }: { node: { kind: string; snapshotId: string | null } }) => node.kind === kind && (!snapshotId || node.snapshotId === snapshotId));
    return found?.node.id as string | undefined;
  });
}

const serverSeconds = (op: { startedAt: string; finishedAt: string }) => (Date.parse(op.finishedAt) - Date.parse(op.startedAt)) / 1000;

async function benchSize(nodes: number) {
  const relationships = 2 * nodes;
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-restore-'));
  const server = await startServer(join(work, 'data'), {});
  const rss = rssSampler(server.child.pid!);
  let ws: Subscriptions | null = null;
  try {
    await rss.part('fill');
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "bench", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    const filling = performance.now();
    const random = rng(42);
    await fill(instanceId, nodes, relationships, batch, random, propertyMaker(style, random));
    console.error(`${nodes} nodes + ${relationships} relationships (${style} properties) written through the API in ${secs(performance.now() - filling)}`);

    await rss.part('snapshot');
    const { createSnapshot } = await gql(`mutation($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: instanceId });
    const snapshotOp = await operationDone(await operationOf(instanceId, 'SNAPSHOT', createSnapshot.id));
    const snapshotSeconds = serverSeconds(snapshotOp);

    // Availability over graphql-ws, subscribed (and seen active on the server) before the restore is requested.
    ws = await Subscriptions.open(server.url);
    const before = await activeSubscriptions();
    let unavailableAt: number | null = null;
    let availableAgainAt: number | null = null;
    ws.subscribe('a', `subscription($id: ID) { instanceAvailabilityChanged(instanceId: $id) { availability at } }`, { id: instanceId }, (data) => {
      const event = data.instanceAvailabilityChanged;
      if (event.availability === 'UNAVAILABLE') unavailableAt = Date.parse(event.at);
      if (event.availability === 'AVAILABLE' && unavailableAt !== null) availableAgainAt = Date.parse(event.at);
    });
    await until('the availability subscription to start', async () => (await activeSubscriptions()) > before, 50, 30_000);

    const latencies: number[] = [];
    let readErrors = 0;
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const started = performance.now();
        await gql(`query($id: ID!) { nodes(instanceId: $id, first: 10) { edges { node { id } } } }`, { id: instanceId }).catch(() => (readErrors += 1));
        latencies.push(performance.now() - started);
        await sleep(50);
      }
    })();

    await rss.part('restore');
    const { restoreSnapshot } = await gql(`mutation($s: ID!) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE") { id } }`, { s: createSnapshot.id });
    // Phases from restoreProgress: each lasts from its first event (the first from the operation's startedAt) to the
    // first event of the next. The subscription's end (its terminal state, or `complete`) says the restore is over;
    // nothing polls the server meanwhile but the reader.
    const phases: Record<string, number> = {};
    let lastPhase = '';
    let phaseStart = 0;
    const ended = new Promise<void>((resolve) => {
      ws!.subscribe(
        'p',
        `subscription($id: ID!) { restoreProgress(operationId: $id) { status phase startedAt } }`,
        { id: restoreSnapshot.id },
        (data) => {
          const now = Date.now();
          const { status, phase, startedAt } = data.restoreProgress;
          if (String(phase ?? '') !== lastPhase) {
            if (lastPhase) phases[lastPhase] = (phases[lastPhase] ?? 0) + (now - phaseStart) / 1000;
            phaseStart = !lastPhase && startedAt ? Math.min(now, Date.parse(startedAt)) : now;
            lastPhase = String(phase ?? '');
          }
          if (TERMINAL.includes(status)) resolve();
        },
        resolve,
      );
    });
    await ended;
    const row = await operationDone(restoreSnapshot.id);
    await rss.part('after restore');
    reading = false;
    await reader;
    await until('the instance\'s AVAILABLE event', async () => availableAgainAt !== null, 25, 60_000).catch(() => undefined);
    const seconds = serverSeconds(row);

    // The same data into a new instance: the pipeline without a safety snapshot of existing data.
    await rss.part('create from snapshot');
    const { createInstanceFromSnapshot } = await gql(
      `mutation($s: ID!) { createInstanceFromSnapshot(snapshotId: $s, input: { name: "copy", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`,
      { s: createSnapshot.id },
    );
    const copyOp = await operationDone(await operationOf(createInstanceFromSnapshot.id, 'CREATE_FROM_SNAPSHOT'));
    const copySeconds = serverSeconds(copyOp);
    const { peaks, delays } = await rss.stop();
    return {
      nodes,
      relationships,
      restoreSeconds: +seconds.toFixed(2),
      phaseSeconds: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +v.toFixed(2)])),
      recordsPerSecond: Math.round((nodes + relationships) / seconds),
      snapshotSeconds: +snapshotSeconds.toFixed(2),
      ratioToSnapshot: +(seconds / snapshotSeconds).toFixed(2),
      createFromSnapshotSeconds: +copySeconds.toFixed(2),
      createFromSnapshotRatioToSnapshot: +(copySeconds / snapshotSeconds).toFixed(2),
      peakRssMB: mb(peaks.get('restore') ?? 0),
      unavailableWindowMs: unavailableAt !== null && availableAgainAt !== null ? availableAgainAt - unavailableAt : null,
      readP99ms: +percentile(latencies, 99).toFixed(1),
      reads: latencies.length,
      readErrors,
      eventLoopDelayP99ms: +(delays.get('restore')?.p99 ?? NaN).toFixed(1),
    };
  } catch (error) {
    console.error(`--- last server output ---\n${server.output.join('').slice(-8000)}`);
    throw error;
  } finally {
    ws?.close();
    await rss.stop();
    await stopServer(server);
    rmSync(work, { recursive: true, force: true });
  }
}

async function main() {
  for (const nodes of sizes) console.log(JSON.stringify(await benchSize(nodes), null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
