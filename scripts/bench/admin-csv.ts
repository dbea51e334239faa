// Reading a large neo4j-admin import CSV bundle: `npm run build && node dist/scripts/bench/admin-csv.js --nodes 1000000
// --relationships 1000000`. A generated bundle (a node file with string, long, double and string[] columns; a
// relationship file, listed FIRST in the .tar so that it is spooled; ids in an ID space) is
//  1. inspected by `snapgraph inspect --json` in its own process under /usr/bin/time -v (wall time, peak RSS);
//  2. restored with `snapgraph restore-file` (tus upload, check, load) into a new instance of a server running in its
//     own process: seconds from the start of the upload to SUCCEEDED, MiB/s and records/s, the server's peak RSS.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pack as createTarPack } from 'tar-stream';
import { ADMIN_KEY, flag, gql, MiB, rssSampler, secs, startServer, stopServer, until } from './server-process';

const nodes = flag('nodes', 1_000_000);
const relationships = flag('relationships', 1_000_000);
const CLI = join(__dirname, '../../src/cli/main.js');

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

async function writeLines(path: string, header: string, count: number, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(path);
  out.write(header);
  let text = '';
  for (let i = 0; i < count; i++) {
    text += line(i);
    if (text.length > 1 << 20) {
      if (!out.write(text)) await once(out, 'drain');
      text = '';
    }
  }
  out.end(text);
  await once(out, 'finish');
}

async function bundle(dir: string): Promise<string> {
  const random = seeded(15);
  const word = () => Math.floor(random() * 2 ** 32).toString(36);
  const nodesCsv = join(dir, 'people.csv');
  const relsCsv = join(dir, 'knows.csv');
  await writeLines(nodesCsv, 'personId:ID(Person),name,age:long,score:double,tags:string[],:LABEL\n', nodes, (i) => `p${i},"${word()} ${word()}",${Math.floor(random() * 100)},${random().toFixed(6)},${word()};${word()},Person${i % 3 === 0 ? ';Admin' : ''}\n`);
  await writeLines(relsCsv, ':START_ID(Person),:END_ID(Person),:TYPE,weight:double\n', relationships, () => `p${Math.floor(random() * nodes)},p${Math.floor(random() * nodes)},KNOWS,${random().toFixed(4)}\n`);
  const tarPath = join(dir, 'bundle.tar');
  const pack = createTarPack();
  const out = createWriteStream(tarPath);
  const done = (async () => {
    for await (const chunk of pack as AsyncIterable<Buffer>) if (!out.write(chunk)) await once(out, 'drain');
    out.end();
    await once(out, 'finish');
  })();
  // The relationship file first: the reader must spool it until every node is known.
  for (const [name, path] of [['import/knows.csv', relsCsv], ['import/people.csv', nodesCsv]]) {
    const entry = pack.entry({ name, size: statSync(path).size, mtime: new Date(0) });
    for await (const chunk of createReadStream(path)) if (!entry.write(chunk as Buffer)) await new Promise<void>((r) => entry.once('drain', () => r()));
    (entry as unknown as { end(): void }).end();
    await new Promise<void>((r) => entry.once('finish', () => r()));
  }
  pack.finalize();
  await done;
  rmSync(nodesCsv);
  rmSync(relsCsv);
  return tarPath;
}

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

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-admin-csv-'));
  try {
    console.log(`generating ${nodes} nodes and ${relationships} relationships…`);
    const tar = await bundle(work);
    const size = statSync(tar).size;
    const records = nodes + relationships;
    console.log(`bundle: ${MiB(size)}`);

    const started = performance.now();
    const inspected = await run('/usr/bin/time', ['-v', process.execPath, CLI, 'inspect', tar, '--json']);
    const inspectMs = performance.now() - started;
    if (inspected.code !== 0) throw new Error(`inspect failed: ${inspected.stderr}`);
    const inspection = JSON.parse(inspected.stdout);
    const peakKb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(inspected.stderr)?.[1] ?? NaN);
    console.log(
      `inspect        ${secs(inspectMs)}  ${(size / 1024 / 1024 / (inspectMs / 1000)).toFixed(1)} MiB/s  ${Math.round(records / (inspectMs / 1000))} records/s  ` +
        `peak RSS ${MiB(peakKb * 1024)}  (${inspection.kind}, ${inspection.contents?.nodeCount} nodes, ${inspection.contents?.relationshipCount} relationships)`,
    );

    const server = await startServer(join(work, 'data'), {});
    try {
      const { createInstance } = await gql(`mutation { createInstance(input: { name: "target", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
      await until('the target instance to run', async () => {
        const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status } }`, { id: createInstance.id });
        return instance.status === 'RUNNING' ? instance : null;
      });
      const rss = rssSampler(server.child.pid!);
      await rss.part('restore');
      const restoreStarted = performance.now();
      const env = { ...process.env, SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: ADMIN_KEY, XDG_STATE_HOME: join(work, 'state') };
      const restored = await run(process.execPath, [CLI, 'restore-file', createInstance.id, tar, '--confirm', 'RESTORE', '--chunk-size', '64M'], env);
      const restoreMs = performance.now() - restoreStarted;
      const { peaks } = await rss.stop();
      if (restored.code !== 0 || !/restore SUCCEEDED/.test(restored.stdout)) throw new Error(`restore-file failed: ${restored.stdout}\n${restored.stderr}`);
      const { instance } = await gql(`query($id: ID!) { instance(id: $id) { stats { nodeCount relationshipCount } } }`, { id: createInstance.id });
      console.log(
        `restore-file   ${secs(restoreMs)}  ${(size / 1024 / 1024 / (restoreMs / 1000)).toFixed(1)} MiB/s  ${Math.round(records / (restoreMs / 1000))} records/s  ` +
          `server peak RSS ${MiB(peaks.get('restore') ?? 0)}  (${instance.stats.nodeCount} nodes, ${instance.stats.relationshipCount} relationships restored)`,
      );
    } finally {
      await stopServer(server);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
