// Cheap requests: an authenticated `{ viewer { role } }` and an instance list against a bare Apollo Server 5 + express
// hello world, and the instance list also against the same bare server answering the same list from memory (what
// graphql-js and Apollo cost for it before any work of ours). Also a dashboard's snapshot history (a page of
// --snapshots snapshots, with its total), which has no counterpart in the bare server: its figures are against the
// hello world only. Three processes besides this one: Snapgraph
// (`snapgraph serve`, default log level, its log written to a file), the baselines (apollo-hello-world.ts), and the
// load generator (load-generator.ts: keep-alive connections, fixed time after a warm-up). The five loads run
// interleaved, in alternating order, round after round; the figures are the median and range over the rounds, and
// each ratio is taken within its round. Prints figures; asserts nothing.
//
//   npm run bench:api -- [--rounds 3] [--seconds 10] [--warmup 2] [--connections 50] [--instances 20] [--snapshots 20]
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { LoadResult, LoadSpec } from './load-generator';
import { cpuSecondsOf, flag, gql, snapshot, spread, startServer, stopServer } from './server-process';

const run = promisify(execFile);

interface Load {
  name: string;
  spec: LoadSpec;
  pid: number;
}

async function startBaseline(instanceCount: number): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(__dirname, 'apollo-hello-world.js'), String(instanceCount)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = /listening (\d+)/.exec(text);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`the baseline exited during boot (code ${code})`)));
  });
  return { url: `http://127.0.0.1:${port}/graphql`, child };
}

interface Measured extends LoadResult {
  /** The server's CPU time per answer: unlike req/s, barely moved by other processes competing for the cores. */
  serverCpuMsPerRequest: number;
}

async function runLoad(spec: LoadSpec, serverPid: number): Promise<Measured> {
  const cpuBefore = cpuSecondsOf(serverPid) * 1000;
  const { stdout } = await run(process.execPath, [join(__dirname, 'load-generator.js'), JSON.stringify(spec)], { maxBuffer: 1024 * 1024 });
  const result = JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult;
  return { ...result, serverCpuMsPerRequest: (cpuSecondsOf(serverPid) * 1000 - cpuBefore) / result.answered };
}

async function main(): Promise<void> {
  const rounds = flag('rounds', 3);
  const seconds = flag('seconds', 10);
  const warmupSeconds = flag('warmup', 2);
  const connections = flag('connections', 50);
  const instanceCount = flag('instances', 20);
  const snapshotCount = flag('snapshots', 20);

  const dataDir = mkdtempSync(join(tmpdir(), 'snapgraph-bench-api-'));
  const server = await startServer(join(dataDir, 'data'), { LOG_LEVEL: 'info' }, { logFile: join(dataDir, 'server.log') });
  const baseline = await startBaseline(instanceCount);
  try {
    // A VIEWER key, as a dashboard would hold: not the bootstrap ADMIN key.
    const { createApiKey } = await gql(`mutation { createApiKey(name: "dashboard", role: VIEWER) { secret } }`);
    const regions = ['eu-west', 'us-east', 'ap-south', 'sa-east'];
    const instanceIds: string[] = [];
    for (let i = 0; i < instanceCount; i++) {
      const { createInstance } = await gql(`mutation($name: String!) { createInstance(input: { name: $name, tier: PROFESSIONAL }) { id } }`, {
        name: `${regions[i % regions.length]}-graph-${i}`,
      });
      instanceIds.push(createInstance.id);
    }
    for (let i = 0; i < snapshotCount; i++) await snapshot(instanceIds[0]);
    const json = { 'content-type': 'application/json' };
    const authorized = { ...json, authorization: `Bearer ${createApiKey.secret}` };
    /** One load: a GraphQL request sent over and over to Snapgraph (with the dashboard's key) or to the baselines. */
    const load = (name: string, to: 'snapgraph' | 'baseline', request: { query: string; variables?: object }, expect: string): Load => ({
      name,
      pid: to === 'snapgraph' ? server.child.pid! : baseline.child.pid!,
      spec: {
        method: 'POST',
        connections,
        warmupSeconds,
        seconds,
        url: to === 'snapgraph' ? `${server.url}/graphql` : baseline.url,
        headers: to === 'snapgraph' ? authorized : json,
        body: JSON.stringify(request),
        expect,
      },
    });
    const list = { query: '{ instances { id name tier status availability createdAt } }' };
    const history = {
      query: `query($id: ID!, $first: Int) { snapshots(instanceId: $id, first: $first) { totalCount edges { cursor node { id status createdAt completedAt addedBytes } } } }`,
      variables: { id: instanceIds[0], first: snapshotCount },
    };
    const loads: Load[] = [
      load('baseline { hello }', 'baseline', { query: '{ hello }' }, '"world"'),
      load('snapgraph { viewer { role } }', 'snapgraph', { query: '{ viewer { role } }' }, '"VIEWER"'),
      load(`snapgraph instance list (${instanceCount})`, 'snapgraph', list, '"availability"'),
      load(`baseline instance list (${instanceCount})`, 'baseline', list, '"availability"'),
      load(`snapgraph snapshot history (${snapshotCount})`, 'snapgraph', history, '"totalCount"'),
    ];

    const results = new Map<string, Measured[]>(loads.map((load) => [load.name, []]));
    process.stdout.write(`bench:api: ${connections} connections, ${warmupSeconds} s warm-up + ${seconds} s per load, ${rounds} rounds\n`);
    for (let round = 0; round < rounds; round++) {
      // Alternating order, so that a drift of the machine over time does not always favour the same side.
      const order = round % 2 === 0 ? loads : [...loads].reverse();
      for (const load of order) {
        const result = await runLoad(load.spec, load.pid);
        if (result.errors > 0) throw new Error(`${load.name}: ${result.errors} failed requests, the first: ${result.firstError}`);
        results.get(load.name)!.push(result);
        process.stdout.write(
          `  round ${round + 1}  ${load.name.padEnd(36)} ${Math.round(result.requestsPerSecond).toString().padStart(6)} req/s` +
            `  p50 ${result.p50ms.toFixed(2)} ms  p99 ${result.p99ms.toFixed(2)} ms  server CPU ${result.serverCpuMsPerRequest.toFixed(3)} ms/req\n`,
        );
      }
    }

    const rps = (value: number) => `${Math.round(value)} req/s`;
    const ms = (value: number) => `${value.toFixed(2)} ms`;
    const ratio = (value: number) => `${value.toFixed(2)}×`;
    const base = results.get(loads[0].name)!;
    const bareList = results.get(loads[3].name)!;
    process.stdout.write('\nmedian (range) over the rounds\n');
    for (const load of loads) {
      const rows = results.get(load.name)!;
      process.stdout.write(`  ${load.name}\n`);
      process.stdout.write(`    throughput ${spread(rows.map((r) => r.requestsPerSecond), rps)}\n`);
      process.stdout.write(`    p50        ${spread(rows.map((r) => r.p50ms), ms)}\n`);
      process.stdout.write(`    p99        ${spread(rows.map((r) => r.p99ms), ms)}\n`);
      process.stdout.write(`    server CPU ${spread(rows.map((r) => r.serverCpuMsPerRequest), (v) => `${v.toFixed(3)} ms/req`)}\n`);
      if (load !== loads[0]) {
        process.stdout.write(`    throughput vs baseline { hello } (same round) ${spread(rows.map((r, i) => r.requestsPerSecond / base[i].requestsPerSecond), ratio)}\n`);
        process.stdout.write(
          `    CPU per request, baseline's / this (same round) ${spread(rows.map((r, i) => base[i].serverCpuMsPerRequest / r.serverCpuMsPerRequest), ratio)}\n`,
        );
      }
      if (load === loads[2]) {
        process.stdout.write(`    throughput vs baseline instance list (same round) ${spread(rows.map((r, i) => r.requestsPerSecond / bareList[i].requestsPerSecond), ratio)}\n`);
      }
    }
  } finally {
    baseline.child.kill('SIGTERM');
    await stopServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
