// Fan-out benchmark: N graphql-ws clients subscribed to one restore's progress and its instance's availability,
// against the same restore with no subscribers. The server runs in its own process (server-process.ts), the clients
// in separate processes (fanout-clients.ts, raw graphql-transport-ws over `ws`), each with a VIEWER key as a
// dashboard would use. Pairs interleave the baseline (0 subscribers) and the product (N), the order alternating per
// pair. The N clients connect once per N and stay connected through its pairs (connecting 10,000 authenticated
// sockets takes minutes on a busy 2-core machine): in a baseline run they hold no subscription, in a product run each
// subscribes to the instance's availability before the restore starts and to its progress right after. Prints
// figures; asserts nothing. Not part of `npm test`. The server logs at its default level (info) into a file in the
// work directory, as a deployment pays for its log.
//
//   npm run bench:fanout -- [--subscribers 1000,10000] [--nodes 1000000] [--pairs 3] [--per-process 2500] [--keep]
//
// A million nodes (and two million relationships, filled through the API in about 90 s), as in the figures that asked
// for this benchmark: restores have become fast enough that 50,000 nodes restore in 0.1 s, less than 10,000 clients
// take to subscribe, and the ratio then says little about the restore.
//
// Per N: the restore's time (the operation's startedAt → finishedAt) with N subscribers / with none; delivery latency
// (client receive time − the event's server time: availability `at`, the final state's `finishedAt`) p50/p99 over
// every client and event; progress events per client; the server's peak RSS (VmRSS every 100 ms) and CPU seconds
// (utime + stime from the restore mutation to its end), the clients' too, and the shortest restore that CPU allows on
// this machine's cores; how long everything else waited meanwhile: the event loop's
// delay (p99 and max of prom-client's histogram, which restarts at every scrape of /metrics: scraped right before the
// restore and right after it) and a dashboard's cheap request (`{ viewer { role } }`, one every PROBE_MS). After each
// pair, the same clients' latencies from a bare `ws` server sending the same frames with the same writes and nothing
// else (bare-fanout-server.ts, its clients connected beside the product's): the floor this machine sets on them. 10,000
// sockets need an open-file limit above 10,000 on the clients' side, and about 13,000 on the server's (its connection
// cap, SNAPGRAPH_MAX_CONNECTIONS, keeps a fifth of the limit for its files; node raises the soft limit to the hard one).
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { activeSubscriptions, cpuSecondsOf, eventLoopDelay, fill, flag, gql, MAX_BATCH, median, MiB, percentile, rssSampler, secs, sleep, snapshot, spread, startServer, stopServer, until, untilQuiet } from './server-process';
import { rng } from './synthetic-graph';

const list = (name: string, fallback: string) =>
  (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback).split(',').map(Number);

const subscriberCounts = list('subscribers', '1000,10000');
const nodes = flag('nodes', 1_000_000);
const pairs = flag('pairs', 3);
const perProcess = flag('per-process', 2500);
const keep = process.argv.includes('--keep');
/** How long after the restore's end the clients may still be receiving its last events before they report anyway. */
const DELIVERY_GRACE_MS = 60_000;
/** The pause between a dashboard's requests while a restore runs (each is timed). */
const PROBE_MS = 25;

/**
 * The restore's start and end once it SUCCEEDED. A poll the server answers late or not at all (a busy server before
 * the fan-out work answered 408) is tried again: the figure is the server's own.
 */
async function restoreDone(id: string): Promise<{ startedAt: string; finishedAt: string }> {
  return until('the restore', async () => {
    const answer = await gql(`query($id: ID!) { operation(id: $id) { status startedAt finishedAt error { code message } } }`, { id }).catch(() => null);
    const operation = answer?.operation;
    if (operation?.status === 'FAILED' || operation?.status === 'CANCELLED') throw new Error(`restore ${id} ${operation.status}: ${operation.error?.code} ${operation.error?.message}`);
    return operation?.status === 'SUCCEEDED' ? operation : null;
  }, 100);
}

interface ClientFigures {
  clients: number;
  finished: number;
  closed: number;
  outOfOrder: number;
  progress: number[];
  availabilityLatencies: number[];
  /** The availability each of availabilityLatencies is for (READ_ONLY at the restore's start, UNAVAILABLE and AVAILABLE at its swap). */
  availabilities: string[];
  finalLatencies: number[];
}

/** A child process of this bench driven over IPC, one question at a time: each answer settles the question asked. */
class ChildOverIpc {
  protected readonly child: ChildProcess;
  private waiting: ((message: any) => void) | null = null;

  constructor(script: string) {
    this.child = fork(join(__dirname, script), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message) => {
      const waiting = this.waiting;
      this.waiting = null;
      waiting?.(message);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  protected ask<T>(message: object): Promise<T> {
    return new Promise((resolve, reject) => {
      this.waiting = (answer) => (answer.error ? reject(new Error(answer.error)) : resolve(answer));
      this.child.send(message);
    });
  }

  protected async exit(send: () => void): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    send();
    await exited;
  }
}

class ClientProcess extends ChildOverIpc {
  constructor() {
    super('fanout-clients.js');
  }

  connect(url: string, key: string, count: number) {
    return this.ask<{ ready: number }>({ cmd: 'connect', url, key, count });
  }

  subscribe(instanceId: string) {
    return this.ask<{ sent: number }>({ cmd: 'subscribe', instanceId });
  }

  watch(operationId: string) {
    return this.ask<{ done: ClientFigures }>({ cmd: 'watch', operationId });
  }

  /** Ends a watch that is still waiting for events: the clients report what they have. */
  stop() {
    this.child.send({ cmd: 'stop' });
  }

  close() {
    return this.exit(() => this.child.send({ cmd: 'close' }));
  }
}

/** The bare server of bare-fanout-server.ts: the floor of the clients' latencies on this machine. */
class BareServer extends ChildOverIpc {
  constructor() {
    super('bare-fanout-server.js');
  }

  async url(): Promise<string> {
    return `http://127.0.0.1:${(await this.ask<{ port: number }>({ cmd: 'listen' })).port}`;
  }

  async subscribed(): Promise<number> {
    return (await this.ask<{ count: number }>({ cmd: 'subscribed' })).count;
  }

  /** READ_ONLY to every availability subscriber now; the swap's frames once `expect` progress subscriptions came. */
  start(expect: number) {
    return this.ask<{ written: number }>({ cmd: 'start', expect });
  }

  close() {
    return this.exit(() => this.child.kill());
  }
}

/** A run of the bare server (the floor of the latencies): what its clients saw, and the CPU it and they spent. */
interface BareFigures {
  cpuSeconds: number;
  clientCpuSeconds: number;
  clients: ClientFigures;
}

interface RunFigures {
  restoreMs: number;
  /** The event loop's delay over the restore, from its start to its end. */
  loopDelay: { p99: number; max: number };
  /** Times of a dashboard's requests made while the restore ran. */
  requestLatencies: number[];
  cpuSeconds: number;
  /** CPU seconds the client processes used over the same span (they share the machine's cores with the server). */
  clientCpuSeconds: number;
  clients?: ClientFigures;
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-fanout-'));
  const relationships = 2 * nodes;
  console.log('bench:fanout');
  console.log(JSON.stringify({ subscribers: subscriberCounts, nodes, relationships, pairs, perProcess, work, cpus: cpus().length }));
  // The default log level, as deployed: every subscription that ends and every socket that closes is a log line.
  const server = await startServer(join(work, 'data'), { LOG_LEVEL: 'info' }, { logFile: join(work, 'server.log') });
  const rss = rssSampler(server.child.pid!);
  try {
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "bench-fanout", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    let started = performance.now();
    await fill(instanceId, nodes, relationships, MAX_BATCH, rng(13));
    console.log(`filled through the API: ${nodes} nodes + ${relationships} relationships in ${secs(performance.now() - started)}`);
    const { row: source } = await snapshot(instanceId);
    const { createApiKey } = await gql(`mutation { createApiKey(name: "dashboard", role: VIEWER) { secret } }`);
    const viewerKey: string = createApiKey.secret;

    /** A restore watched by every client of `processes`, or by none (the clients stay connected, idle). */
    const restore = async (processes: ClientProcess[], part: string, connected: ClientProcess[] = processes): Promise<RunFigures> => {
      // The previous run's subscriptions end on the server a slice at a time after their clients have all they wait
      // for: every run, a baseline too, starts once they have and the server is quiet (a baseline that started
      // meanwhile spent up to 0.4 s preparing, against 15-20 ms).
      await until("the previous run's subscriptions to end", async () => (await activeSubscriptions()) === 0, 200);
      await untilQuiet(server.child.pid!);
      await rss.part(part);
      if (processes.length > 0) {
        const sent = await Promise.all(processes.map((p) => p.subscribe(instanceId)));
        const count = sent.reduce((sum, answer) => sum + answer.sent, 0);
        await until('every availability subscription to start', async () => (await activeSubscriptions()) >= count, 200);
      }
      const clientCpu = () => connected.reduce((sum, p) => sum + cpuSecondsOf(p.pid), 0);
      const cpuBefore = cpuSecondsOf(server.child.pid!);
      const clientCpuBefore = clientCpu();
      const { restoreSnapshot } = await gql(`mutation($s: ID!) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE") { id } }`, { s: source.id });
      const watching = processes.map((p) => p.watch(restoreSnapshot.id));
      const ended = restoreDone(restoreSnapshot.id);
      const probing = requestLatencies(ended);
      const done = await ended;
      const cpu = cpuSecondsOf(server.child.pid!) - cpuBefore;
      const clientCpuSeconds = clientCpu() - clientCpuBefore;
      // The last scrape before this one was the one right before the restore (the wait for subscriptions, or rss.part).
      const loopDelay = await eventLoopDelay();
      const requests = await probing;
      const grace = setTimeout(() => processes.forEach((p) => p.stop()), DELIVERY_GRACE_MS);
      const answers = await Promise.all(watching);
      clearTimeout(grace);
      const clients = answers.length === 0 ? undefined : merge(answers.map((a) => a.done));
      return { restoreMs: Date.parse(done.finishedAt) - Date.parse(done.startedAt), loopDelay, requestLatencies: requests, cpuSeconds: cpu, clientCpuSeconds, clients };
    };
    /** A dashboard's cheap request, one every PROBE_MS until `end` settles: how long each took. */
    const requestLatencies = async (end: Promise<unknown>): Promise<number[]> => {
      let ended = false;
      end.finally(() => (ended = true)).catch(() => undefined);
      const latencies: number[] = [];
      while (!ended) {
        const sent = performance.now();
        await gql(`{ viewer { role } }`).catch(() => undefined);
        latencies.push(performance.now() - sent);
        await sleep(PROBE_MS);
      }
      return latencies;
    };

    /** The same frames to the same clients from the bare server, with no restore: the latencies' floor. */
    const bareRun = async (bare: BareServer, processes: ClientProcess[]): Promise<BareFigures> => {
      const sent = await Promise.all(processes.map((p) => p.subscribe('bare')));
      const count = sent.reduce((sum, answer) => sum + answer.sent, 0);
      await until('every availability subscription to the bare server', async () => (await bare.subscribed()) >= count, 50);
      const clientCpu = () => processes.reduce((sum, p) => sum + cpuSecondsOf(p.pid), 0);
      const cpuBefore = cpuSecondsOf(bare.pid);
      const clientCpuBefore = clientCpu();
      await bare.start(count);
      const grace = setTimeout(() => processes.forEach((p) => p.stop()), DELIVERY_GRACE_MS);
      const answers = await Promise.all(processes.map((p) => p.watch('bare')));
      clearTimeout(grace);
      return { cpuSeconds: cpuSecondsOf(bare.pid) - cpuBefore, clientCpuSeconds: clientCpu() - clientCpuBefore, clients: merge(answers.map((a) => a.done)) };
    };

    // A first restore warms the server (the first pre-restore snapshot stores the data; later ones deduplicate).
    console.log(`warm-up restore: ${secs((await restore([], 'warm-up')).restoreMs)}`);
    const results: { n: number; baseline: RunFigures[]; product: RunFigures[]; bareRuns: BareFigures[] }[] = [];
    for (const n of subscriberCounts) {
      console.log(`\n[${n} subscribers] restoreSnapshot of ${nodes} nodes + ${relationships} relationships; ${pairs} pairs, order alternating`);
      const baseline: RunFigures[] = [];
      const product: RunFigures[] = [];
      const bareRuns: BareFigures[] = [];
      await rss.part(`${n}:connecting`);
      const processes = Array.from({ length: Math.ceil(n / perProcess) }, () => new ClientProcess());
      started = performance.now();
      await Promise.all(processes.map((p, i) => p.connect(server.url, viewerKey, Math.min(perProcess, n - i * perProcess))));
      console.log(`  ${n} clients connected in ${secs(performance.now() - started)} (they stay connected, idle in the baseline runs)`);
      const bare = new BareServer();
      const bareUrl = await bare.url();
      const bareProcesses = Array.from({ length: Math.ceil(n / perProcess) }, () => new ClientProcess());
      await Promise.all(bareProcesses.map((p, i) => p.connect(bareUrl, 'none', Math.min(perProcess, n - i * perProcess))));
      for (let pair = 0; pair < pairs; pair++) {
        for (const subscribers of pair % 2 === 0 ? [0, n] : [n, 0]) {
          const run = await restore(subscribers === 0 ? [] : processes, subscribers === 0 ? `${n}:baseline` : `${n}:subscribed`, processes);
          (subscribers === 0 ? baseline : product).push(run);
          const c = run.clients;
          console.log(
            `  pair ${pair + 1}, ${subscribers} subscribers: restore ${secs(run.restoreMs)}, server CPU ${run.cpuSeconds.toFixed(1)} s, clients' CPU ${run.clientCpuSeconds.toFixed(1)} s` +
              (c
                ? `; ${c.finished}/${c.clients} got final + AVAILABLE, ${c.closed} closed, ${c.outOfOrder} out of order; ` +
                  `availability p50/p99 ${percentile(c.availabilityLatencies, 50)}/${percentile(c.availabilityLatencies, 99)} ms, ` +
                  `${byAvailability(c)}, ` +
                  `final p50/p99 ${percentile(c.finalLatencies, 50)}/${percentile(c.finalLatencies, 99)} ms, ` +
                  `progress events per client min/median/max ${Math.min(...c.progress)}/${median(c.progress)}/${Math.max(...c.progress)}`
                : ''),
          );
        }
        const run = await bareRun(bare, bareProcesses);
        bareRuns.push(run);
        const c = run.clients;
        console.log(
          `  pair ${pair + 1}, bare ws server, ${n} subscribers: server CPU ${run.cpuSeconds.toFixed(1)} s, clients' CPU ${run.clientCpuSeconds.toFixed(1)} s; ` +
            `${c.finished}/${c.clients} got final + AVAILABLE; availability p50/p99 ${percentile(c.availabilityLatencies, 50)}/${percentile(c.availabilityLatencies, 99)} ms, ` +
            `${byAvailability(c)}, final p50/p99 ${percentile(c.finalLatencies, 50)}/${percentile(c.finalLatencies, 99)} ms`,
        );
      }
      await Promise.all([...processes, ...bareProcesses].map((p) => p.close()));
      await bare.close();
      results.push({ n, baseline, product, bareRuns });
    }
    await rss.part('end');
    const { peaks } = await rss.stop();
    for (const { n, baseline, product, bareRuns } of results) report(n, baseline, product, bareRuns, peaks);
  } finally {
    await stopServer(server);
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

/** p50/p99 of the latency of each availability the clients saw. */
function byAvailability({ availabilities, availabilityLatencies }: ClientFigures): string {
  const kinds = [...new Set(availabilities)];
  return kinds
    .map((kind) => {
      const latencies = availabilityLatencies.filter((_, i) => availabilities[i] === kind);
      return `${kind} ${percentile(latencies, 50)}/${percentile(latencies, 99)} ms`;
    })
    .join(', ');
}

function merge(parts: ClientFigures[]): ClientFigures {
  return {
    clients: parts.reduce((sum, p) => sum + p.clients, 0),
    finished: parts.reduce((sum, p) => sum + p.finished, 0),
    closed: parts.reduce((sum, p) => sum + p.closed, 0),
    outOfOrder: parts.reduce((sum, p) => sum + p.outOfOrder, 0),
    progress: parts.flatMap((p) => p.progress),
    availabilityLatencies: parts.flatMap((p) => p.availabilityLatencies),
    availabilities: parts.flatMap((p) => p.availabilities),
    finalLatencies: parts.flatMap((p) => p.finalLatencies),
  };
}

function report(n: number, baseline: RunFigures[], product: RunFigures[], bareRuns: BareFigures[], peaks: Map<string, number>) {
  const ratios = product.map((run, i) => run.restoreMs / baseline[i].restoreMs);
  const ms = (value: number) => `${value.toFixed(0)} ms`;
  const x = (value: number) => `${value.toFixed(2)}×`;
  const clients = product.map((run) => run.clients!);
  // A run where some client never got an event has no latency for it: the count of clients that did is printed.
  const known = (values: number[]) => values.filter((value) => Number.isFinite(value));
  console.log(`\n  summary, ${n} subscribers:`);
  console.log(`    restore, no subscribers:   ${spread(baseline.map((r) => r.restoreMs), secs)}`);
  console.log(`    restore, ${n} subscribers: ${spread(product.map((r) => r.restoreMs), secs)}`);
  console.log(`    ratio (per pair):          ${spread(ratios, x)}`);
  console.log(`    availability latency p50:  ${spread(known(clients.map((c) => percentile(c.availabilityLatencies, 50))), ms)}`);
  console.log(`    availability latency p99:  ${spread(known(clients.map((c) => percentile(c.availabilityLatencies, 99))), ms)}`);
  console.log(`    final-event latency p50:   ${spread(known(clients.map((c) => percentile(c.finalLatencies, 50))), ms)}`);
  console.log(`    final-event latency p99:   ${spread(known(clients.map((c) => percentile(c.finalLatencies, 99))), ms)}`);
  // The floor: the same frames and writes from a bare ws server doing nothing else, run after each pair.
  const bareClients = bareRuns.map((run) => run.clients);
  console.log(`    bare ws server (the latency floor), availability p99: ${spread(known(bareClients.map((c) => percentile(c.availabilityLatencies, 99))), ms)}`);
  console.log(`    bare ws server (the latency floor), final p99:        ${spread(known(bareClients.map((c) => percentile(c.finalLatencies, 99))), ms)}`);
  console.log(`    bare ws server (the latency floor), its CPU: ${spread(bareRuns.map((r) => r.cpuSeconds), (v) => `${v.toFixed(2)} s`)}, clients' ${spread(bareRuns.map((r) => r.clientCpuSeconds), (v) => `${v.toFixed(2)} s`)}`);
  console.log(`    clients with final + AVAILABLE: ${clients.map((c) => `${c.finished}/${c.clients}`).join(', ')}; out of order: ${clients.map((c) => c.outOfOrder).join(', ')}`);
  console.log(`    progress events per client (min/median/max per run): ${clients.map((c) => `${Math.min(...c.progress)}/${median(c.progress)}/${Math.max(...c.progress)}`).join(', ')}`);
  console.log(`    server CPU, no subscribers: ${spread(baseline.map((r) => r.cpuSeconds), (v) => `${v.toFixed(1)} s`)}`);
  console.log(`    server CPU, ${n} subscribers: ${spread(product.map((r) => r.cpuSeconds), (v) => `${v.toFixed(1)} s`)}`);
  console.log(`    clients' CPU, idle: ${spread(baseline.map((r) => r.clientCpuSeconds), (v) => `${v.toFixed(1)} s`)}`);
  console.log(`    clients' CPU, ${n} subscribers: ${spread(product.map((r) => r.clientCpuSeconds), (v) => `${v.toFixed(1)} s`)}`);
  // The server and the clients share the machine's cores: a restore cannot end sooner than the CPU both spent, spread
  // evenly over every core. Counted from the mutation to the poll that saw its end (up to 100 ms after it), so this
  // floor is a little high; a ratio near it says the machine, not the server's waiting, sets the pace.
  const cores = cpus().length;
  const floors = product.map((run) => ((run.cpuSeconds + run.clientCpuSeconds) / cores) * 1000);
  console.log(`    CPU-bound floor, (server + clients' CPU) / ${cores} cores: ${spread(floors, secs)}; as a ratio ${spread(floors.map((floor, i) => floor / baseline[i].restoreMs), x)}`);
  const peak = (part: string) => peaks.get(`${n}:${part}`) ?? 0;
  console.log(`    server peak RSS: no subscribers (${n} clients connected, idle) ${MiB(peak('baseline'))}, ${n} subscribers ${MiB(peak('subscribed'))}`);
  // What everything else waited for while the restores ran: the event loop's delay per run, and a dashboard's requests
  // of every run of a kind together.
  const waited = (runs: RunFigures[]) => {
    const requests = runs.flatMap((r) => r.requestLatencies);
    return (
      `event-loop delay p99 ${spread(runs.map((r) => r.loopDelay.p99), ms)}, max ${spread(runs.map((r) => r.loopDelay.max), ms)}; ` +
      `a request p50/p99/max ${[50, 99, 100].map((p) => Math.round(percentile(requests, p))).join('/')} ms (${requests.length} requests)`
    );
  };
  console.log(`    while restoring, no subscribers: ${waited(baseline)}`);
  console.log(`    while restoring, ${n} subscribers: ${waited(product)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
