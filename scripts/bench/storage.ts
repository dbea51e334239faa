// Snapshot storage benchmark: deduplicated restore points against full copies and against plain file baselines.
// The server runs in its own process (`node dist/src/cli/main.js serve`, fresh data dir, LOG_LEVEL=warn) and is
// driven only through its GraphQL API; the baselines run in separate processes on copies of the instance's store file
// taken while the server is idle, interleaved with the product (order alternating per pair). Prints figures; asserts
// nothing. Not part of `npm test`.
//
//   npm run bench:storage -- [--nodes 1000000] [--snapshots 24] [--pairs 3] [--change 0.01] [--batch 10000] [--keep]
//
// 1. Stored bytes after --snapshots "hourly" snapshots of N nodes + 2N relationships, 1% of the nodes given new random
//    properties (updateNodes) before each snapshot after the first, against that many full copies (× the first
//    snapshot's stored bytes, × its export archive); addedBytes of each later snapshot as a share of the first's;
//    usage.storedBytes against the bytes really under <data>/blobs.
// 2. Full snapshot time / (sqlite3 online backup + `gzip -1` of the same store). Pair 1 is the instance's first
//    snapshot; before each later pair every snapshot of the instance is deleted and the server's collection (grace 0
//    for this run) is waited for until the stored bytes settle; that pair's addedBytes are printed as a share of the
//    first's, to show it stored everything again (a full snapshot) rather than deduplicating against leftovers.
// 3. Restore of the newest of those snapshots over the instance, its safety point included, with 1% of the nodes
//    changed before each restore (so the safety point has something to keep) / (`gzip -dc` of a `gzip -1` copy of the
//    store file + fsync of the output).
// 4. Peak RSS of the server process: VmRSS sampled every 100 ms (peak per part) and VmHWM at the end; the server's
//    event-loop delay per part. The API calls that fill and change the graph are parts of their own ('fill',
//    'changes'), so that what they cost is not counted against the snapshots and restores around them.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LABELS, rng, TYPES } from './synthetic-graph';

const REPO_ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const ADMIN_KEY = 'bench-storage-admin-key-0123456789';
const MAX_BATCH = 10_000;

// ---------------------------------------------------------------------------------------------------------------
// Arguments and small helpers

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`);
  return value;
}

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const pct = (share: number) => `${(share * 100).toFixed(2)}%`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** "median (min–max)" of a list, formatted by `format`. */
function spread(values: number[], format: (value: number) => string): string {
  return `${format(median(values))} (range ${format(Math.min(...values))} – ${format(Math.max(...values))}, n=${values.length})`;
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

async function until<T>(what: string, poll: () => Promise<T | null | undefined>, intervalMs = 25, timeoutMs = 3_600_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await poll();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Every file under a directory: count, apparent bytes and allocated bytes. */
function walk(dir: string): { files: number; bytes: number; allocated: number } {
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

interface Server {
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
  return { ...env, ...overrides };
}

async function startServer(dataDir: string, env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const output: string[] = [];
  const child = spawn(process.execPath, [CLI, 'serve'], {
    cwd: REPO_ROOT,
    env: serverEnv({ PORT: String(port), HOST: '127.0.0.1', SNAPGRAPH_DATA_DIR: dataDir, SNAPGRAPH_BOOTSTRAP_TOKEN: ADMIN_KEY, LOG_LEVEL: 'warn', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 400) output.splice(0, output.length - 400);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  await until('the server to serve /healthz', async () => {
    if (child.exitCode !== null) throw new Error(`the server exited during boot (code ${child.exitCode}):\n${output.join('')}`);
    return fetch(`${url}/healthz`).then((response) => response.ok, () => false);
  }, 100, 60_000);
  return { url, dataDir, child, output };
}

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((done) => server.child.once('exit', done));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

/** VmRSS every 100 ms, the peak kept per part of the run; VmHWM (the kernel's own peak) read at the end. */
function rssSampler(pid: number) {
  const read = (field: 'VmRSS' | 'VmHWM'): number => {
    try {
      const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return match ? Number(match[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  };
  const peaks = new Map<string, number>();
  const delays = new Map<string, { p99: number; max: number }>();
  let part = 'boot';
  const sample = () => peaks.set(part, Math.max(peaks.get(part) ?? 0, read('VmRSS')));
  const timer = setInterval(sample, 100);
  // prom-client's event-loop histogram restarts at every scrape, and nothing else scrapes this server.
  const scrapeDelay = async () => {
    const text = await fetch(`${server.url}/metrics`).then((r) => r.text(), () => '');
    const value = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN) * 1000;
    const seen = delays.get(part) ?? { p99: 0, max: 0 };
    const p99 = value('nodejs_eventloop_lag_p99_seconds');
    const max = value('nodejs_eventloop_lag_max_seconds');
    if (Number.isFinite(p99)) delays.set(part, { p99: Math.max(seen.p99, p99), max: Math.max(seen.max, max) });
  };
  return {
    /** Starts a new part of the run (peaks and event-loop delay are kept per part). */
    async part(name: string) {
      sample();
      await scrapeDelay();
      part = name;
    },
    async stop() {
      sample();
      clearInterval(timer);
      await scrapeDelay();
      return { peaks, delays, hwm: read('VmHWM') };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// GraphQL

let server: Server;

async function gql<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body: { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${response.status}: ${text.slice(0, 500)}`);
  }
  if (body.errors?.length) throw new Error(body.errors.map((e) => `${e.extensions?.code ?? '?'}: ${e.message}`).join('; '));
  return body.data as T;
}

interface SnapshotRow {
  id: string;
  status: string;
  addedBytes: number | null;
  sizeBytes: number | null;
  error: string | null;
  contents: { storeSizeBytes: number; nodeCount: number; relationshipCount: number } | null;
}

/** createSnapshot, then poll until COMPLETED; the wall-clock time is the client's, queueing included. */
async function snapshot(instanceId: string): Promise<{ row: SnapshotRow; ms: number }> {
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

async function operationDone(id: string): Promise<{ startedAt: string; finishedAt: string }> {
  return until('an operation', async () => {
    const { operation } = await gql(`query($id: ID!) { operation(id: $id) { status phase startedAt finishedAt error { code message } } }`, { id });
    if (operation.status === 'FAILED' || operation.status === 'CANCELLED') {
      throw new Error(`operation ${id} ${operation.status}: ${operation.error?.code} ${operation.error?.message}`);
    }
    return operation.status === 'SUCCEEDED' ? operation : null;
  });
}

async function storage(instanceId: string) {
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

async function fill(instanceId: string, nodes: number, relationships: number, batch: number, random: () => number): Promise<string[]> {
  const ids: string[] = new Array(nodes);
  const indexes = Array.from({ length: nodes }, (_, i) => i);
  await inBatches(indexes, batch, 2, async (slice, start) => {
    const input = slice.map((n) => ({ labels: [LABELS[n % LABELS.length]], properties: nodeProperties(random, n) }));
    const { createNodes } = await gql(`mutation($id: ID!, $nodes: [NodeInput!]!) { createNodes(instanceId: $id, nodes: $nodes) { id } }`, { id: instanceId, nodes: input });
    createNodes.forEach((node: { id: string }, i: number) => (ids[start + i] = node.id));
  });
  const relIndexes = Array.from({ length: relationships }, (_, i) => i);
  await inBatches(relIndexes, batch, 2, async (slice) => {
    const input = slice.map((r) => ({
      type: TYPES[r % TYPES.length],
      startNodeId: ids[Math.floor(random() * nodes)],
      endNodeId: ids[Math.floor(random() * nodes)],
      properties: { since: 1990 + Math.floor(random() * 35), weight: Math.round(random() * 1e4) / 1e4, ref: token(random, 8) },
    }));
    await gql(`mutation($id: ID!, $r: [RelationshipInput!]!) { createRelationships(instanceId: $id, relationships: $r) { id } }`, { id: instanceId, r: input });
  });
  return ids;
}

/** New random properties for `share` of the nodes, scattered over the whole id range. */
async function changeNodes(instanceId: string, ids: string[], share: number, batch: number, random: () => number): Promise<number> {
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
function storeFileOf(instanceId: string): string {
  const dir = join(server.dataDir, 'instances', instanceId);
  const generations = readdirSync(dir)
    .map((name) => /^graph-(\d+)\.sqlite$/.exec(name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => Number(match[1]));
  if (generations.length === 0) throw new Error(`no store file in ${dir}`);
  return join(dir, `graph-${Math.max(...generations)}.sqlite`);
}

/** Copies the store (with its WAL, if any) while the server is idle, so the baselines never touch the live file. */
function copyStore(instanceId: string, into: string): string {
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

async function baselineSnapshot(copy: string, dir: string): Promise<{ ms: number; backupBytes: number; gzipBytes: number }> {
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
async function baselineRestore(gz: string, out: string): Promise<number> {
  rmSync(out, { force: true });
  const started = performance.now();
  await run('sh', ['-c', 'gzip -dc "$1" > "$2" && sync "$2"', 'sh', gz, out]);
  const ms = performance.now() - started;
  rmSync(out, { force: true });
  return ms;
}

// ---------------------------------------------------------------------------------------------------------------
// The run

async function main(): Promise<void> {
  const nodes = Math.round(flag('nodes', 1_000_000));
  const relationships = 2 * nodes;
  const snapshots = Math.round(flag('snapshots', 24));
  const pairs = Math.round(flag('pairs', 3));
  const change = flag('change', 0.01);
  const batch = Math.min(MAX_BATCH, Math.round(flag('batch', MAX_BATCH)));
  const keep = process.argv.includes('--keep');

  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-storage-'));
  const dataDir = join(work, 'data');
  const baselineDir = join(work, 'baseline');
  const serverSettings = { SNAPGRAPH_COLLECT_GRACE_MS: '0' };
  console.log('bench:storage');
  console.log(JSON.stringify({ nodes, relationships, snapshots, pairs, changePerSnapshot: change, batch, work, serverEnv: serverSettings, cpus: cpus().length }));

  server = await startServer(dataDir, serverSettings);
  const rss = rssSampler(server.child.pid!);
  const random = rng(7);
  const snapshotPairs: { product: number; baseline: number; order: string; storedBytes: number; gzipBytes: number }[] = [];
  const restorePairs: { product: number; server: number; baseline: number; order: string }[] = [];
  const summary: Record<string, unknown> = { nodes, relationships, snapshots, pairs, change };
  try {
    // --- data
    await rss.part('fill');
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "bench-storage", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    let started = performance.now();
    const ids = await fill(instanceId, nodes, relationships, batch, random);
    const storeBytes = statSync(storeFileOf(instanceId)).size;
    console.log(`\nfilled through the API: ${nodes} nodes + ${relationships} relationships in ${secs(performance.now() - started)}; store file ${MiB(storeBytes)}`);

    // --- a full snapshot against its baseline (one pair now; the others after the restores)
    const fullPair = async (pair: number) => {
      const copy = copyStore(instanceId, baselineDir);
      const productFirst = pair % 2 === 1;
      let product!: Awaited<ReturnType<typeof snapshot>>;
      let baseline!: Awaited<ReturnType<typeof baselineSnapshot>>;
      await rss.part('full snapshots');
      if (productFirst) product = await snapshot(instanceId);
      baseline = await baselineSnapshot(copy, baselineDir);
      if (!productFirst) product = await snapshot(instanceId);
      snapshotPairs.push({ product: product.ms, baseline: baseline.ms, order: productFirst ? 'product first' : 'baseline first', storedBytes: product.row.addedBytes ?? 0, gzipBytes: baseline.gzipBytes });
      console.log(
        `  pair ${pair} (${productFirst ? 'product first' : 'baseline first'}): snapshot ${secs(product.ms)}, stored ${MiB(product.row.addedBytes ?? 0)}; ` +
          `baseline .backup + gzip -1 ${secs(baseline.ms)} (${MiB(baseline.backupBytes)} → ${MiB(baseline.gzipBytes)}); ratio ${(product.ms / baseline.ms).toFixed(2)}`,
      );
      return product;
    };

    console.log(`\n[2] full snapshot / (sqlite3 online backup + gzip -1 of a copy of the same store), pair 1 = the instance's first snapshot`);
    const first = await fullPair(1);

    // --- 1. hourly snapshots with 1% change
    console.log(`\n[1] ${snapshots} snapshots, ${pct(change)} of the nodes changed (updateNodes, new random properties) before each after the first`);
    const later: { ms: number; added: number }[] = [];
    let latest = first.row;
    for (let i = 2; i <= snapshots; i++) {
      await rss.part('changes');
      await changeNodes(instanceId, ids, change, batch, random);
      await rss.part('hourly snapshots');
      const taken = await snapshot(instanceId);
      latest = taken.row;
      later.push({ ms: taken.ms, added: taken.row.addedBytes ?? 0 });
      console.log(`  snapshot ${i}: ${secs(taken.ms)}, added ${MiB(taken.row.addedBytes ?? 0)} (${pct((taken.row.addedBytes ?? 0) / (first.row.addedBytes ?? 1))} of the first)`);
    }
    const used = await storage(instanceId);
    const onDisk = walk(join(dataDir, 'blobs'));
    const firstStored = first.row.addedBytes ?? 0;
    await rss.part('export');
    const exported = await gql(`mutation($id: ID!) { exportSnapshot(id: $id) { url sizeBytes sha256 } }`, { id: first.row.id });
    const download = await fetch(exported.exportSnapshot.url);
    const archiveBytes = (await download.arrayBuffer()).byteLength;
    const shares = later.map((s) => s.added / firstStored);
    const fullCopies = snapshots * firstStored;
    const fullArchives = snapshots * exported.exportSnapshot.sizeBytes;
    console.log(`  first snapshot: stored ${MiB(firstStored)}, export archive ${MiB(exported.exportSnapshot.sizeBytes)} (downloaded ${archiveBytes} bytes), store ${MiB(first.row.contents?.storeSizeBytes ?? 0)}`);
    console.log(`  stored after ${snapshots} snapshots: usage.storedBytes ${MiB(used.usage.storedBytes)} (instance.backupStorage ${MiB(used.instance.backupStorage.storedBytes)}, logicalBytes ${MiB(used.usage.logicalBytes)}, snapshotCount ${used.usage.snapshotCount})`);
    console.log(`  vs ${snapshots} full copies of the first snapshot's stored bytes: ${MiB(fullCopies)} → ${pct(used.usage.storedBytes / fullCopies)} (${(fullCopies / used.usage.storedBytes).toFixed(1)}× less)`);
    console.log(`  vs ${snapshots} export archives: ${MiB(fullArchives)} → ${pct(used.usage.storedBytes / fullArchives)} (${(fullArchives / used.usage.storedBytes).toFixed(1)}× less)`);
    if (shares.length > 0) {
      console.log(`  addedBytes of snapshots 2..${snapshots} as a share of the first's: max ${pct(Math.max(...shares))}, median ${pct(median(shares))}, min ${pct(Math.min(...shares))}`);
      console.log(`  time of snapshots 2..${snapshots}: ${spread(later.map((s) => s.ms), secs)}; the first took ${secs(first.ms)}`);
    }
    console.log(
      `  usage.storedBytes ${used.usage.storedBytes} vs bytes under <data>/blobs ${onDisk.bytes} (${onDisk.files} files, ${onDisk.allocated} allocated): ` +
        `difference ${pct((used.usage.storedBytes - onDisk.bytes) / onDisk.bytes)} (measured before the export)`,
    );
    const afterExport = walk(join(dataDir, 'blobs'));
    console.log(`  after the export: ${afterExport.bytes} bytes under <data>/blobs (+${MiB(afterExport.bytes - onDisk.bytes)} held for the export), usage.storedBytes ${(await storage(instanceId)).usage.storedBytes}`);
    Object.assign(summary, {
      firstStoredBytes: firstStored,
      exportArchiveBytes: exported.exportSnapshot.sizeBytes,
      storedBytesAfterAll: used.usage.storedBytes,
      instanceStoredBytes: used.instance.backupStorage.storedBytes,
      logicalBytes: used.usage.logicalBytes,
      fullCopiesBytes: fullCopies,
      fullArchivesBytes: fullArchives,
      storedVsFullCopies: +(used.usage.storedBytes / fullCopies).toFixed(4),
      storedVsFullArchives: +(used.usage.storedBytes / fullArchives).toFixed(4),
      addedShareMax: shares.length ? +Math.max(...shares).toFixed(4) : null,
      addedShareMedian: shares.length ? +median(shares).toFixed(4) : null,
      blobBytesOnDisk: onDisk.bytes,
      storedVsDisk: +((used.usage.storedBytes - onDisk.bytes) / onDisk.bytes).toFixed(4),
    });

    // --- 3. restores
    console.log(`\n[3] restore of snapshot ${snapshots} over the instance (safety point included; ${pct(change)} of the nodes changed before each) / (gzip -dc of a gzip -1 copy of the store + fsync)`);
    await rss.part('restore baseline prep');
    const prepared = await baselineSnapshot(copyStore(instanceId, baselineDir), baselineDir);
    const gz = join(baselineDir, 'backup.sqlite.gz');
    console.log(`  baseline input: ${MiB(prepared.backupBytes)} store file, ${MiB(prepared.gzipBytes)} gzip -1`);
    for (let pair = 1; pair <= pairs; pair++) {
      await rss.part('changes');
      await changeNodes(instanceId, ids, change, batch, random);
      const productFirst = pair % 2 === 1;
      let baselineMs = 0;
      await rss.part('restores');
      if (!productFirst) baselineMs = await baselineRestore(gz, join(baselineDir, 'restored.sqlite'));
      const restoreStarted = performance.now();
      const { restoreSnapshot } = await gql(`mutation($s: ID!) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE") { id } }`, { s: latest.id });
      const op = await operationDone(restoreSnapshot.id);
      const productMs = performance.now() - restoreStarted;
      await until('the instance to take writes again', async () => {
        const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status availability } }`, { id: instanceId });
        return instance.status === 'RUNNING' && instance.availability === 'AVAILABLE';
      });
      if (productFirst) baselineMs = await baselineRestore(gz, join(baselineDir, 'restored.sqlite'));
      const serverMs = Date.parse(op.finishedAt) - Date.parse(op.startedAt);
      restorePairs.push({ product: productMs, server: serverMs, baseline: baselineMs, order: productFirst ? 'product first' : 'baseline first' });
      console.log(`  pair ${pair} (${productFirst ? 'product first' : 'baseline first'}): restore ${secs(productMs)} (operation startedAt→finishedAt ${secs(serverMs)}); baseline ${secs(baselineMs)}; ratio ${(productMs / baselineMs).toFixed(2)}`);
    }
    await rss.part('create from snapshot');
    started = performance.now();
    const { createInstanceFromSnapshot } = await gql(
      `mutation($s: ID!) { createInstanceFromSnapshot(snapshotId: $s, input: { name: "bench-copy", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`,
      { s: latest.id },
    );
    await until('the new instance', async () => {
      const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status } }`, { id: createInstanceFromSnapshot.id });
      if (instance.status === 'FAILED') throw new Error('createInstanceFromSnapshot FAILED');
      return instance.status === 'RUNNING';
    });
    const copyMs = performance.now() - started;
    const restoreBaselineMedian = median(restorePairs.map((p) => p.baseline));
    console.log(`  createInstanceFromSnapshot (one run, not paired): ${secs(copyMs)} = ${(copyMs / restoreBaselineMedian).toFixed(2)}× the median restore baseline`);
    await gql(`mutation($id: ID!) { deleteInstance(id: $id) }`, { id: createInstanceFromSnapshot.id });

    // --- 2. (continued) full snapshots again: every snapshot deleted and collected first
    console.log(`\n[2] (continued) before each further pair: every snapshot of the instance deleted and collection waited for, so that the next snapshot stores everything again`);
    for (let pair = 2; pair <= pairs; pair++) {
      await rss.part('delete and collect');
      for (;;) {
        const { snapshots: page } = await gql(`query($id: ID!) { snapshots(instanceId: $id, first: 100) { edges { node { id } } } }`, { id: instanceId });
        if (page.edges.length === 0) break;
        for (const edge of page.edges) await gql(`mutation($id: ID!) { deleteSnapshot(id: $id) }`, { id: edge.node.id });
      }
      // Collection runs after the deletes; it is waited for until the stored bytes are 0 or stop falling for 2 s.
      started = performance.now();
      const before = (await storage(instanceId)).usage.storedBytes;
      let last = before;
      let steadySince = performance.now();
      await until('collection', async () => {
        const now = (await storage(instanceId)).usage.storedBytes;
        if (now !== last) steadySince = performance.now();
        last = now;
        return now === 0 || (now < before && performance.now() - steadySince > 2_000) ? true : null;
      }, 250, 30_000).catch(() => undefined);
      console.log(`  collection: usage.storedBytes ${MiB(before)} → ${MiB(last)} after ${secs(performance.now() - started)}; ${MiB(walk(join(dataDir, 'blobs')).bytes)} under <data>/blobs`);
      const full = await fullPair(pair);
      const added = (full.row.addedBytes ?? 0) / firstStored;
      console.log(`    its addedBytes are ${pct(added)} of the first snapshot's${added < 0.9 ? ': it deduplicated against what collection left, so it is NOT a full snapshot' : ' (a full snapshot again)'}`);
    }

    const snapshotRatios = snapshotPairs.map((p) => p.product / p.baseline);
    const restoreRatios = restorePairs.map((p) => p.product / p.baseline);
    const { peaks, delays, hwm } = await rss.stop();
    console.log(`\n[4] server peak RSS: VmHWM ${MiB(hwm)}; VmRSS sampled every 100 ms, peak per part: ${[...peaks].map(([part, bytes]) => `${part} ${MiB(bytes)}`).join(', ')}`);
    console.log(`    event-loop delay of the server (its /metrics, per part; p99 is the worst scrape interval): ${[...delays].map(([part, d]) => `${part} p99 ${d.p99.toFixed(0)} ms / max ${d.max.toFixed(0)} ms`).join(', ')}`);

    console.log('\nsummary');
    console.log(`  stored after ${snapshots} snapshots: ${MiB(used.usage.storedBytes)} vs ${MiB(fullCopies)} for ${snapshots} full copies (${pct(used.usage.storedBytes / fullCopies)}) and ${MiB(fullArchives)} for ${snapshots} export archives (${pct(used.usage.storedBytes / fullArchives)})`);
    if (shares.length > 0) console.log(`  addedBytes after the first: max ${pct(Math.max(...shares))}, median ${pct(median(shares))} of the first snapshot's`);
    console.log(`  usage.storedBytes vs bytes on disk: ${pct((used.usage.storedBytes - onDisk.bytes) / onDisk.bytes)}`);
    console.log(`  full snapshot: ${spread(snapshotPairs.map((p) => p.product), secs)}; baseline ${spread(snapshotPairs.map((p) => p.baseline), secs)}`);
    console.log(`  snapshot / (.backup + gzip -1) ratio: ${spread(snapshotRatios, (r) => r.toFixed(2))}`);
    console.log(`  restore: ${spread(restorePairs.map((p) => p.product), secs)}; baseline ${spread(restorePairs.map((p) => p.baseline), secs)}`);
    console.log(`  restore / (gzip -d + fsync) ratio: ${spread(restoreRatios, (r) => r.toFixed(2))}`);
    console.log(`  server peak RSS (VmHWM): ${MiB(hwm)}`);
    Object.assign(summary, {
      snapshotPairs: snapshotPairs.map((p) => ({ ...p, ratio: +(p.product / p.baseline).toFixed(3) })),
      snapshotRatioMedian: +median(snapshotRatios).toFixed(3),
      restorePairs: restorePairs.map((p) => ({ ...p, ratio: +(p.product / p.baseline).toFixed(3) })),
      restoreRatioMedian: +median(restoreRatios).toFixed(3),
      createFromSnapshotMs: Math.round(copyMs),
      peakRssBytes: hwm,
      peakRssByPart: Object.fromEntries(peaks),
      eventLoopDelayMsByPart: Object.fromEntries(delays),
    });
    console.log(JSON.stringify(summary));
  } catch (error) {
    console.error(`--- last server output ---\n${server.output.join('').slice(-8000)}`);
    throw error;
  } finally {
    await rss.stop();
    await stopServer(server);
    if (keep) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--baseline-snapshot') {
  baselineSnapshotChild(process.argv[3], process.argv[4]).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
