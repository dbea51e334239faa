// Shared pieces of the benchmarks that drive the server in its own process (`bin/snapgraph serve`, as operators start
// it, fresh data dir, LOG_LEVEL=warn) only through its GraphQL API: the process, API helpers, data through the API,
// and file baselines run in separate processes on copies of an instance's store.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LABELS, type PropertyMaker, TYPES } from './synthetic-graph';

const REPO_ROOT = resolve(__dirname, '..', '..', '..');
/** The launcher operators run (package.json "bin"): node on dist/src/cli/main.js, with MALLOC_ARENA_MAX=2 unless set. */
const LAUNCHER = join(REPO_ROOT, 'bin', 'snapgraph');
/** The bootstrap ADMIN key of every bench server's tenant `default`. */
export const ADMIN_KEY = 'bench-admin-key-0123456789';
export const MAX_BATCH = 10_000;

// ---------------------------------------------------------------------------------------------------------------
// Arguments and small helpers

export function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`);
  return value;
}

export const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
export const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const pct = (share: number) => `${(share * 100).toFixed(2)}%`;

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The p-th percentile (nearest rank) of a list; NaN for an empty one. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** "median (min–max)" of a list, formatted by `format`. */
export function spread(values: number[], format: (value: number) => string): string {
  return `${format(median(values))} (range ${format(Math.min(...values))} – ${format(Math.max(...values))}, n=${values.length})`;
}

export const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

export async function until<T>(what: string, poll: () => Promise<T | null | undefined>, intervalMs = 25, timeoutMs = 3_600_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await poll();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Every file under a directory: count, apparent bytes and allocated bytes. */
export function walk(dir: string): { files: number; bytes: number; allocated: number } {
  const total = { files: 0, bytes: 0, allocated: 0 };
  if (!existsSync(dir)) return total;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const sub = walk(path);
      total.files += sub.files;
      total.bytes += sub.bytes;
      total.allocated += sub.allocated;
    } else if (entry.isFile()) {
      const stat = statSync(path);
      total.files += 1;
      total.bytes += stat.size;
      total.allocated += stat.blocks * 512;
    }
  }
  return total;
}

/** Random-ish, not trivially compressible text. */
function token(random: () => number, length: number): string {
  let text = '';
  while (text.length < length) text += Math.floor(random() * 2 ** 32).toString(36);
  return text.slice(0, length);
}

function nodeProperties(random: () => number, n: number) {
  return {
    name: `node-${n}-${token(random, 6)}`,
    age: Math.floor(random() * 100),
    score: Math.round(random() * 1e6) / 1e3,
    active: random() < 0.5,
    code: token(random, 12),
    tags: [LABELS[Math.floor(random() * LABELS.length)].toLowerCase(), token(random, 4)],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The server process

export interface Server {
  url: string;
  dataDir: string;
  child: ChildProcess;
  output: string[];
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => done(port));
    });
  });
}

/** The environment of this shell minus everything Snapgraph reads, plus the bench's own settings. */
function serverEnv(overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('SNAPGRAPH_') && !['PORT', 'HOST', 'LOG_LEVEL', 'DATABASE_URL', 'REDIS_URL', 'NODE_ENV'].includes(name)) env[name] = value;
  }
  return { ...env, ...overrides, ...benchServerSettings() };
}

/** BENCH_SERVER_ENV: settings to try on the measured server, as JSON (`{"SNAPGRAPH_HEAP_GROWTH_PERCENT":"100"}`). */
function benchServerSettings(): Record<string, string> {
  const settings = process.env.BENCH_SERVER_ENV;
  return settings ? (JSON.parse(settings) as Record<string, string>) : {};
}

/**
 * The server's command: bin/snapgraph, as operators run it; or, with BENCH_SERVER_NODE_ARGS (Node's own flags such as
 * `--cpu-prof --cpu-prof-dir=/tmp/prof`, which NODE_OPTIONS refuses), node itself with those flags and the launcher's
 * malloc setting.
 */
function serverCommand(): { command: string; args: string[]; env: Record<string, string> } {
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== '');
  if (nodeArgs.length === 0) return { command: LAUNCHER, args: ['serve'], env: {} };
  const cli = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  return { command: process.execPath, args: [...nodeArgs, cli, 'serve'], env: { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' } };
}

/**
 * Boots `snapgraph serve` on a free port (see serverCommand). Its log goes to this process (the last lines kept for
 * error messages), or with `logFile` straight into that file, so that a bench that logs every request (LOG_LEVEL=info,
 * as a server runs by default) pays for writing its log as a deployment does, without this process reading it.
 */
export async function startServer(dataDir: string, env: Record<string, string>, { logFile }: { logFile?: string } = {}): Promise<Server> {
  const port = await freePort();
  const output: string[] = [];
  const logFd = logFile === undefined ? null : openSync(logFile, 'a');
  const launch = serverCommand();
  const child = spawn(launch.command, launch.args, {
    cwd: REPO_ROOT,
    env: serverEnv({ ...launch.env, PORT: String(port), HOST: '127.0.0.1', SNAPGRAPH_DATA_DIR: dataDir, SNAPGRAPH_BOOTSTRAP_TOKEN: ADMIN_KEY, LOG_LEVEL: 'warn', ...env }),
    stdio: ['ignore', logFd ?? 'pipe', 'pipe'],
  });
  if (logFd !== null) closeSync(logFd);
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 400) output.splice(0, output.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  await until('the server to serve /healthz', async () => {
    if (child.exitCode !== null) throw new Error(`the server exited during boot (code ${child.exitCode}):\n${output.join('')}`);
    return fetch(`${url}/healthz`).then((response) => response.ok, () => false);
  }, 100, 60_000);
  server = { url, dataDir, child, output };
  return server;
}

export async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((done) => server.child.once('exit', done));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

/** A field of /proc/<pid>/status: VmRSS and VmHWM in bytes, Threads as a count; 0 once the process is gone. */
export function procStatus(pid: number, field: 'VmRSS' | 'VmHWM' | 'Threads'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!match) return 0;
    return field === 'Threads' ? Number(match[1]) : Number(match[1]) * 1024;
  } catch {
    return 0;
  }
}

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU seconds (user + system, every thread) a process has used so far; 0 once it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    // utime and stime: fields 14 and 15 of the stat line, after the command name in parentheses.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return 0;
  }
}

/**
 * Resolves once the process has used at most `share` of one core over a whole `windowMs` (the work of a previous
 * run, such as thousands of subscriptions ending a slice at a time, is over), or after `timeoutMs` regardless.
 */
export async function untilQuiet(pid: number, { windowMs = 500, share = 0.05, timeoutMs = 60_000 } = {}): Promise<void> {
  const giveUp = performance.now() + timeoutMs;
  let before = cpuSecondsOf(pid);
  while (performance.now() < giveUp) {
    await sleep(windowMs);
    const now = cpuSecondsOf(pid);
    if (now - before <= (share * windowMs) / 1000) return;
    before = now;
  }
  console.log(`  (the server did not go quiet within ${timeoutMs / 1000} s: this run starts on a busy server)`);
}

/** The server's /metrics (empty when it does not answer). */
export const scrapeMetrics = (): Promise<string> => fetch(`${server.url}/metrics`).then((r) => r.text(), () => '');

/** A series of a /metrics text (NaN when absent). */
export const metricValue = (text: string, name: string): number => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);

/** Subscriptions the server holds open now. */
export const activeSubscriptions = async (): Promise<number> => metricValue(await scrapeMetrics(), 'snapgraph_subscriptions_active') || 0;

/**
 * The server's event-loop delay, p99 and max in ms, since the previous scrape of its /metrics (prom-client's histogram
 * restarts at every scrape, by anyone).
 */
export async function eventLoopDelay(): Promise<{ p99: number; max: number }> {
  const text = await scrapeMetrics();
  return { p99: metricValue(text, 'nodejs_eventloop_lag_p99_seconds') * 1000, max: metricValue(text, 'nodejs_eventloop_lag_max_seconds') * 1000 };
}

/**
 * The server's peak RSS per part of the run: the kernel's own high-water mark (VmHWM, every thread of the process),
 * reset at the start of each part (`echo 5 > /proc/<pid>/clear_refs`) and read at its end; without that reset (an
 * older kernel) VmRSS sampled every 100 ms. And the server's event-loop delay per part: p99 and max of prom-client's
 * histogram on its /metrics, which restarts at every scrape (nothing else scrapes this server), scraped once at each
 * part's start and end, so that p99 is over the whole part. And the server's CPU time per part (/proc/<pid>/stat).
 */
export function rssSampler(pid: number) {
  const read = (field: 'VmRSS' | 'VmHWM'): number => procStatus(pid, field);
  const resetPeak = (): boolean => {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  };
  const peaks = new Map<string, number>();
  const delays = new Map<string, { p99: number; max: number }>();
  // CPU seconds (user + system, every thread) the server spent per part: unlike wall time, about the same on a machine
  // busy with other work, so that settings can be compared by what they cost.
  const cpuNow = (): number => cpuSecondsOf(pid);
  const cpu = new Map<string, number>();
  let cpuAtStart = cpuNow();
  const keep = (name: string, bytes: number) => peaks.set(name, Math.max(peaks.get(name) ?? 0, bytes));
  let part = 'boot';
  const started: [string, number][] = [];
  let hwmPerPart = false; // boot's peak is the process's own VmHWM since it started
  const sample = () => keep(part, read('VmRSS'));
  const timer = setInterval(sample, 100);
  const scrapeDelay = async () => {
    const seen = delays.get(part) ?? { p99: 0, max: 0 };
    const { p99, max } = await eventLoopDelay();
    if (Number.isFinite(p99)) delays.set(part, { p99: Math.max(seen.p99, p99), max: Math.max(seen.max, max) });
  };
  const endPart = async () => {
    sample();
    keep(part, read('VmHWM'));
    const cpuAtEnd = cpuNow();
    cpu.set(part, (cpu.get(part) ?? 0) + cpuAtEnd - cpuAtStart);
    cpuAtStart = cpuAtEnd;
    await scrapeDelay();
  };
  return {
    /** Starts a new part of the run (peaks and event-loop delay are kept per part; a part may come back). */
    async part(name: string) {
      await endPart();
      part = name;
      started.push([name, Date.now()]);
      hwmPerPart = resetPeak();
      sample();
    },
    async stop() {
      await endPart();
      clearInterval(timer);
      return { peaks, delays, cpu, hwmPerPart, peak: Math.max(...peaks.values()), started };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// GraphQL

/** The server process the benchmark drives (the one startServer started last). */
let server: Server;

/**
 * An HTTP POST with no client-side time limit. fetch (undici) gives up on a response whose headers take over 300 s,
 * and a mutation that builds a large file before answering (exportSnapshotAs of a million nodes) takes longer.
 */
function post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolvePost, reject) => {
    const sent = httpRequest(url, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => resolvePost({ status: response.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
      response.on('error', reject);
    });
    sent.on('error', reject);
    sent.end(body);
  });
}

export async function gql<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await post(`${server.url}/graphql`, JSON.stringify({ query, variables }), {
    'content-type': 'application/json',
    authorization: `Bearer ${ADMIN_KEY}`,
  });
  const text = response.body;
  let body: { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${response.status}: ${text.slice(0, 500)}`);
  }
  if (body.errors?.length) throw new Error(body.errors.map((e) => `${e.extensions?.code ?? '?'}: ${e.message}`).join('; '));
  return body.data as T;
}

export interface SnapshotRow {
  id: string;
  status: string;
  addedBytes: number | null;
  sizeBytes: number | null;
  error: string | null;
  contents: { storeSizeBytes: number; nodeCount: number; relationshipCount: number } | null;
}

/** createSnapshot, then poll until COMPLETED; the wall-clock time is the client's, queueing included. */
export async function snapshot(instanceId: string): Promise<{ row: SnapshotRow; ms: number }> {
  const started = performance.now();
  const { createSnapshot } = await gql(`mutation($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: instanceId });
  const row = await until('a snapshot', async () => {
    const { snapshot: s } = await gql<{ snapshot: SnapshotRow }>(
      `query($id: ID!) { snapshot(id: $id) { id status addedBytes sizeBytes error contents { storeSizeBytes nodeCount relationshipCount } } }`,
      { id: createSnapshot.id },
    );
    if (s.status === 'FAILED') throw new Error(`snapshot ${s.id} FAILED: ${s.error}`);
    return s.status === 'COMPLETED' ? s : null;
  });
  return { row, ms: performance.now() - started };
}

/**
 * Polls the operation until SUCCEEDED. `phases`: the time spent in each phase it was seen in (polled every 25 ms, so a
 * phase shorter than that may be missed), in the order they came.
 */
export async function operationDone(id: string): Promise<{ startedAt: string; finishedAt: string; phases: [string, number][] }> {
  const phases: [string, number][] = [];
  let current: { phase: string; since: number } | null = null;
  const operation = await until('an operation', async () => {
    const { operation } = await gql(`query($id: ID!) { operation(id: $id) { status phase startedAt finishedAt error { code message } } }`, { id });
    if (operation.status === 'FAILED' || operation.status === 'CANCELLED') {
      throw new Error(`operation ${id} ${operation.status}: ${operation.error?.code} ${operation.error?.message}`);
    }
    const now = performance.now();
    const phase = operation.status === 'RUNNING' ? operation.phase ?? 'running' : operation.status.toLowerCase();
    if (current?.phase !== phase) {
      if (current) phases.push([current.phase, now - current.since]);
      current = { phase, since: now };
    }
    return operation.status === 'SUCCEEDED' ? operation : null;
  });
  return { ...operation, phases };
}

/** "loading 12.3 s, capturing 4.5 s, …": where an operation's time went (see operationDone). */
export const phaseTimes = (phases: [string, number][]) => phases.map(([phase, ms]) => `${phase} ${secs(ms)}`).join(', ');

export async function storage(instanceId: string) {
  return gql<{ usage: { snapshotCount: number; logicalBytes: number; storedBytes: number }; instance: { backupStorage: { snapshotCount: number; logicalBytes: number; storedBytes: number } } }>(
    `query($id: ID!) { usage { snapshotCount logicalBytes storedBytes } instance(id: $id) { backupStorage { snapshotCount logicalBytes storedBytes } } }`,
    { id: instanceId },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Data

async function inBatches<T>(items: T[], batch: number, inFlight: number, send: (slice: T[], start: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const start = next;
      next += batch;
      await send(items.slice(start, start + batch), start);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** Writes a graph through the API; `properties` (synthetic-graph's, e.g. realistic ones) replaces the default tokens. */
export async function fill(instanceId: string, nodes: number, relationships: number, batch: number, random: () => number, properties?: PropertyMaker): Promise<string[]> {
  const ids: string[] = new Array(nodes);
  const indexes = Array.from({ length: nodes }, (_, i) => i);
  await inBatches(indexes, batch, 2, async (slice, start) => {
    const input = slice.map((n) => ({ labels: [LABELS[n % LABELS.length]], properties: properties?.node(n) ?? nodeProperties(random, n) }));
    const { createNodes } = await gql(`mutation($id: ID!, $nodes: [NodeInput!]!) { createNodes(instanceId: $id, nodes: $nodes) { id } }`, { id: instanceId, nodes: input });
    createNodes.forEach((node: { id: string }, i: number) => (ids[start + i] = node.id));
  });
  const relIndexes = Array.from({ length: relationships }, (_, i) => i);
  await inBatches(relIndexes, batch, 2, async (slice) => {
    const input = slice.map((r) => ({
      type: TYPES[r % TYPES.length],
      startNodeId: ids[Math.floor(random() * nodes)],
      endNodeId: ids[Math.floor(random() * nodes)],
      properties: properties?.relationship(r) ?? { since: 1990 + Math.floor(random() * 35), weight: Math.round(random() * 1e4) / 1e4, ref: token(random, 8) },
    }));
    await gql(`mutation($id: ID!, $r: [RelationshipInput!]!) { createRelationships(instanceId: $id, relationships: $r) { id } }`, { id: instanceId, r: input });
  });
  return ids;
}

/** New random properties for `share` of the nodes, scattered over the whole id range. */
export async function changeNodes(instanceId: string, ids: string[], share: number, batch: number, random: () => number): Promise<number> {
  const count = Math.max(1, Math.round(ids.length * share));
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(random() * ids.length));
  await inBatches([...chosen], batch, 1, async (slice) => {
    const nodes = slice.map((n) => ({ id: ids[n], properties: nodeProperties(random, n) }));
    await gql(`mutation($id: ID!, $nodes: [NodeUpdateInput!]!) { updateNodes(instanceId: $id, nodes: $nodes) { id } }`, { id: instanceId, nodes });
  });
  return count;
}

// ---------------------------------------------------------------------------------------------------------------
// Baselines (separate processes)

/** The instance's current store file: the highest generation under <data>/instances/<id>/. */
export function storeFileOf(instanceId: string): string {
  const dir = join(server.dataDir, 'instances', instanceId);
  const generations = readdirSync(dir)
    .map((name) => /^graph-(\d+)\.sqlite$/.exec(name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => Number(match[1]));
  if (generations.length === 0) throw new Error(`no store file in ${dir}`);
  return join(dir, `graph-${Math.max(...generations)}.sqlite`);
}

/** Copies the store (with its WAL, if any) while the server is idle, so the baselines never touch the live file. */
export function copyStore(instanceId: string, into: string): string {
  const source = storeFileOf(instanceId);
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  const copy = join(into, 'store.sqlite');
  copyFileSync(source, copy);
  if (existsSync(`${source}-wal`)) copyFileSync(`${source}-wal`, `${copy}-wal`);
  return copy;
}

/**
 * The snapshot baseline in its own process: sqlite3's online backup of the copy to a new file in one step, then
 * `gzip -1 -k` of it; the child times itself (node start-up excluded). Leaves <dir>/backup.sqlite and .gz.
 */
// Asynchronous, so this process keeps serving its sockets meanwhile (a blocked client misses the server closing an
// idle keep-alive connection and then writes into it: EPIPE).
const run = promisify(execFile);

export async function baselineSnapshot(copy: string, dir: string): Promise<{ ms: number; backupBytes: number; gzipBytes: number }> {
  const { stdout: output } = await run(process.execPath, [__filename, '--baseline-snapshot', copy, dir], { encoding: 'utf8' });
  return JSON.parse(output.trim().split('\n').pop()!);
}

async function baselineSnapshotChild(copy: string, dir: string): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sqlite3 = require('sqlite3') as typeof import('sqlite3');
  const dest = join(dir, 'backup.sqlite');
  rmSync(dest, { force: true });
  rmSync(`${dest}.gz`, { force: true });
  const started = performance.now();
  const db = await new Promise<import('sqlite3').Database>((done, fail) => {
    const opened = new sqlite3.Database(copy, sqlite3.OPEN_READONLY, (error) => (error ? fail(error) : done(opened)));
  });
  // sqlite3's Backup is not in its typings: backup(file) → step(pages, cb), finish(cb).
  const backup = (db as unknown as { backup(file: string): { step(pages: number, cb: (e: Error | null) => void): void; finish(cb?: () => void): void; completed: boolean } }).backup(dest);
  await new Promise<void>((done, fail) => backup.step(-1, (error) => (error ? fail(error) : done())));
  if (!backup.completed) throw new Error('backup did not complete in one step');
  await new Promise<void>((done) => backup.finish(() => done()));
  await new Promise<void>((done, fail) => db.close((error) => (error ? fail(error) : done())));
  execFileSync('gzip', ['-1', '-k', '-f', dest]);
  const ms = performance.now() - started;
  process.stdout.write(`${JSON.stringify({ ms, backupBytes: statSync(dest).size, gzipBytes: statSync(`${dest}.gz`).size })}\n`);
}

/** The restore baseline: decompress a `gzip -1` copy of the store file and fsync the result (`sync FILE`). */
export async function baselineRestore(gz: string, out: string): Promise<number> {
  rmSync(out, { force: true });
  const started = performance.now();
  await run('sh', ['-c', 'gzip -dc "$1" > "$2" && sync "$2"', 'sh', gz, out]);
  const ms = performance.now() - started;
  rmSync(out, { force: true });
  return ms;
}


if (require.main === module && process.argv[2] === '--baseline-snapshot') {
  baselineSnapshotChild(process.argv[3], process.argv[4]).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
