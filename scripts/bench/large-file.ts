// A large backup file, inspected and restored as a stream: `npm run bench:large-file -- --format APOC_JSON --nodes N`
// (--format: APOC_JSON, GRAPHML, NEO4J_ADMIN_CSV, CYPHER or ARCHIVE, or several separated by commas, e.g.
// `--format APOC_JSON,ARCHIVE`; all of them if absent). One synthetic graph of N nodes and 2N relationships (seeded
// random properties of several types: strings, longs, doubles, booleans, string lists; not trivially compressible) is
// written through the API into a server in its own process, snapshotted, and exported in each format by the project's
// own writers (`exportSnapshotAs`), each export downloaded as a stream to a file: every format holds the same graph,
// ARCHIVE included, so their figures compare. That server is then stopped. Each file is
//  1. inspected by `snapgraph inspect --json` in its own process under /usr/bin/time -v (wall time, peak RSS);
//  2. restored with `snapgraph restore-file` (tus upload, check, load) into a new instance of a FRESH server in its
//     own process (a new data directory per format): seconds from the start of the upload to SUCCEEDED, MiB/s of the
//     file, records/s, the server's RSS after boot and its peak RSS during the restore.
// Memory must stay flat whatever the file's size; compare two sizes (--nodes) to see it.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ADMIN_KEY, fill, flag, gql, MiB, procStatus, rssSampler, secs, snapshot, startServer, stopServer, until } from './server-process';

const FORMATS = ['APOC_JSON', 'GRAPHML', 'NEO4J_ADMIN_CSV', 'CYPHER', 'ARCHIVE'] as const;
type Format = (typeof FORMATS)[number];

const nodes = flag('nodes', 200_000);
const formats = formatsFromArgs(process.argv);
const CLI = join(__dirname, '../../src/cli/main.js');

function formatsFromArgs(argv: readonly string[]): Format[] {
  const at = argv.indexOf('--format');
  if (at < 0) return [...FORMATS];
  const chosen = (argv[at + 1] ?? '').split(',').filter((f) => f !== '');
  const unknown = chosen.filter((f) => !(FORMATS as readonly string[]).includes(f));
  if (chosen.length === 0 || unknown.length > 0) throw new Error(`--format takes ${FORMATS.join('|')} (comma-separated for several), not "${argv[at + 1] ?? ''}"`);
  return chosen as Format[];
}

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const load = () => `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
const rate = (amount: number, ms: number) => amount / (ms / 1000);

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Fills a server with the graph, snapshots it and downloads one export per format, each streamed to a file. */
async function exportFiles(work: string): Promise<Map<Format, string>> {
  const server = await startServer(join(work, 'source'), {});
  const files = new Map<Format, string>();
  try {
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "source", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    let started = performance.now();
    await fill(createInstance.id, nodes, 2 * nodes, 10_000, seeded(15));
    console.log(`filled ${nodes} nodes + ${2 * nodes} relationships through the API in ${secs(performance.now() - started)}`);
    const { row } = await snapshot(createInstance.id);
    for (const format of formats) {
      started = performance.now();
      const { exportSnapshotAs } = await gql(`mutation($id: ID!, $f: ExportFormat!) { exportSnapshotAs(id: $id, format: $f) { url fileName } }`, { id: row.id, f: format });
      const response = await fetch(exportSnapshotAs.url);
      if (!response.ok || !response.body) throw new Error(`downloading the ${format} export: HTTP ${response.status}`);
      const path = join(work, exportSnapshotAs.fileName);
      await pipeline(Readable.fromWeb(response.body as WebReadableStream), createWriteStream(path));
      files.set(format, path);
      console.log(`${format.padEnd(15)} ${exportSnapshotAs.fileName}: ${MiB(statSync(path).size)} (${(statSync(path).size / nodes).toFixed(0)} bytes per node) exported in ${secs(performance.now() - started)}`);
    }
  } finally {
    await stopServer(server);
    rmSync(join(work, 'source'), { recursive: true, force: true });
  }
  return files;
}

/** `snapgraph inspect --json` under /usr/bin/time -v: wall time and peak RSS. */
async function inspect(format: Format, file: string, size: number, records: number): Promise<void> {
  const started = performance.now();
  const inspected = await run('/usr/bin/time', ['-v', process.execPath, CLI, 'inspect', file, '--json']);
  const ms = performance.now() - started;
  if (inspected.code !== 0) throw new Error(`inspect ${format} failed: ${inspected.stderr}`);
  const inspection = JSON.parse(inspected.stdout);
  const peak = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(inspected.stderr)?.[1] ?? NaN) * 1024;
  console.log(
    `${format.padEnd(15)} inspect       ${secs(ms)}  ${rate(size / 1024 / 1024, ms).toFixed(1)} MiB/s  ${Math.round(rate(records, ms))} records/s  ` +
      `peak RSS ${MiB(peak)}  (${inspection.kind}, ${inspection.contents?.nodeCount} nodes, ${inspection.contents?.relationshipCount} relationships; ${load()})`,
  );
}

/** `snapgraph restore-file` into a new instance of a fresh server: seconds, throughput, the server's RSS. */
async function restoreFile(work: string, format: Format, file: string, size: number, records: number): Promise<void> {
  const dir = mkdtempSync(join(work, `restore-${format}-`));
  const server = await startServer(join(dir, 'data'), {});
  try {
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "target", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    await until('the target instance to run', async () => {
      const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status } }`, { id: createInstance.id });
      return instance.status === 'RUNNING' ? instance : null;
    });
    const afterBoot = procStatus(server.child.pid!, 'VmRSS');
    const rss = rssSampler(server.child.pid!);
    await rss.part('restore');
    const started = performance.now();
    const env = { ...process.env, SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: ADMIN_KEY, XDG_STATE_HOME: join(dir, 'state') };
    const restored = await run(process.execPath, [CLI, 'restore-file', createInstance.id, file, '--confirm', 'RESTORE', '--chunk-size', '64M'], env);
    const ms = performance.now() - started;
    const { peaks } = await rss.stop();
    if (restored.code !== 0 || !/restore SUCCEEDED/.test(restored.stdout)) throw new Error(`restore-file ${format} failed: ${restored.stdout}\n${restored.stderr}`);
    const { instance } = await gql(`query($id: ID!) { instance(id: $id) { stats { nodeCount relationshipCount } } }`, { id: createInstance.id });
    console.log(
      `${format.padEnd(15)} restore-file  ${secs(ms)}  ${rate(size / 1024 / 1024, ms).toFixed(1)} MiB/s  ${Math.round(rate(records, ms))} records/s  ` +
        `server RSS after boot ${MiB(afterBoot)}, peak ${MiB(peaks.get('restore') ?? 0)}  ` +
        `(${instance.stats.nodeCount} nodes, ${instance.stats.relationshipCount} relationships restored; ${load()})`,
    );
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-large-file-'));
  try {
    console.log(`${nodes} nodes + ${2 * nodes} relationships, formats ${formats.join(', ')} (${load()})`);
    const files = await exportFiles(work);
    const records = 3 * nodes;
    for (const format of formats) {
      const file = files.get(format)!;
      const size = statSync(file).size;
      console.log(`\n${format}: ${MiB(size)}`);
      await inspect(format, file, size, records);
      await restoreFile(work, format, file, size, records);
      rmSync(file);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
