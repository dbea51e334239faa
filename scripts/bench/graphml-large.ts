// A large GraphML file, inspected and restored as a stream: `npm run bench:graphml-large -- --nodes 600000` writes
// an APOC-shaped GraphML file (useTypes keys; each node with six typed properties, two edges per node), then times
// `snapgraph inspect` on it (its peak RSS from /usr/bin/time -v) and `snapgraph restore-file` into a server in its own
// process (the tus upload, the check while stored, and the load; the server's peak RSS). Memory must stay flat
// whatever the file's size.
import { execFile, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { ADMIN_KEY, flag, gql, MiB, rssSampler, secs, startServer, stopServer } from './server-process';

const nodes = flag('nodes', 600_000);
const CLI = resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
const run = promisify(execFile);

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const token = (random: () => number, length: number) => Array.from({ length }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[Math.floor(random() * 36)]).join('');

async function writeFile(path: string): Promise<void> {
  const random = seeded(15);
  const out = createWriteStream(path);
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, 'drain');
  };
  await write(
    '<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
      'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n' +
      '<key id="labels" for="node" attr.name="labels" attr.type="string"/>\n<key id="name" for="node" attr.name="name" attr.type="string"/>\n' +
      '<key id="age" for="node" attr.name="age" attr.type="long"/>\n<key id="score" for="node" attr.name="score" attr.type="double"/>\n' +
      '<key id="active" for="node" attr.name="active" attr.type="boolean"/>\n<key id="code" for="node" attr.name="code" attr.type="string"/>\n' +
      '<key id="tags" for="node" attr.name="tags" attr.type="string" attr.list="string"/>\n<key id="label" for="edge" attr.name="label" attr.type="string"/>\n' +
      '<key id="since" for="edge" attr.name="since" attr.type="long"/>\n<key id="weight" for="edge" attr.name="weight" attr.type="double"/>\n' +
      '<key id="ref" for="edge" attr.name="ref" attr.type="string"/>\n<graph id="G" edgedefault="directed">\n',
  );
  const labels = ['Person', 'Movie', 'Place', 'Company'];
  let text = '';
  for (let n = 0; n < nodes; n++) {
    const label = labels[n % labels.length];
    text +=
      `<node id="n${n}" labels=":${label}"><data key="labels">:${label}</data><data key="name">node-${n}-${token(random, 6)}</data>` +
      `<data key="age">${Math.floor(random() * 100)}</data><data key="score">${(random() * 1e3).toFixed(3)}</data>` +
      `<data key="active">${random() < 0.5}</data><data key="code">${token(random, 12)}</data>` +
      `<data key="tags">["${label.toLowerCase()}","${token(random, 4)}"]</data></node>\n`;
    if (text.length > 1 << 20) {
      await write(text);
      text = '';
    }
  }
  const types = ['KNOWS', 'ACTED_IN', 'LIVES_IN', 'WORKS_AT'];
  for (let r = 0; r < 2 * nodes; r++) {
    const type = types[r % types.length];
    text +=
      `<edge id="e${r}" source="n${Math.floor(random() * nodes)}" target="n${Math.floor(random() * nodes)}" label="${type}"><data key="label">${type}</data>` +
      `<data key="since">${1990 + Math.floor(random() * 35)}</data><data key="weight">${(random() * 10).toFixed(4)}</data><data key="ref">${token(random, 8)}</data></edge>\n`;
    if (text.length > 1 << 20) {
      await write(text);
      text = '';
    }
  }
  await write(`${text}</graph>\n</graphml>\n`);
  out.end();
  await once(out, 'close');
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-graphml-'));
  try {
    const file = join(work, 'large.graphml');
    let started = performance.now();
    await writeFile(file);
    const size = statSync(file).size;
    console.log(`wrote ${file}: ${MiB(size)}, ${nodes} nodes, ${2 * nodes} edges in ${secs(performance.now() - started)}`);
    const records = 3 * nodes;

    started = performance.now();
    const inspect = spawnSync('/usr/bin/time', ['-v', process.execPath, CLI, 'inspect', file, '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const inspectMs = performance.now() - started;
    const inspection = JSON.parse(inspect.stdout);
    const inspectRss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(inspect.stderr)?.[1] ?? 0) * 1024;
    console.log(
      `inspect:  ${secs(inspectMs)}  ${(size / 1024 / 1024 / (inspectMs / 1000)).toFixed(1)} MiB/s  ${Math.round(records / (inspectMs / 1000))} records/s  ` +
        `peak RSS ${MiB(inspectRss)}  (${inspection.kind}, ${inspection.contents?.nodeCount} nodes, ${inspection.contents?.relationshipCount} relationships)`,
    );

    const server = await startServer(join(work, 'data'), {});
    try {
      const { createInstance } = await gql(`mutation { createInstance(input: { name: "target", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
      const rss = rssSampler(server.child.pid!);
      await rss.part('restore');
      started = performance.now();
      const env = { ...process.env, SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: ADMIN_KEY, XDG_STATE_HOME: work };
      const { stdout } = await run(process.execPath, [CLI, 'restore-file', createInstance.id, file, '--confirm', 'RESTORE'], { env, maxBuffer: 1 << 26 });
      const restoreMs = performance.now() - started;
      const { peaks } = await rss.stop();
      const { instance } = await gql(`query($id: ID!) { instance(id: $id) { stats { nodeCount relationshipCount } } }`, { id: createInstance.id }).catch(() => ({ instance: null }));
      console.log(
        `restore-file: ${secs(restoreMs)}  ${(size / 1024 / 1024 / (restoreMs / 1000)).toFixed(1)} MiB/s  ${Math.round(records / (restoreMs / 1000))} records/s  ` +
          `server peak RSS ${MiB(peaks.get('restore') ?? 0)} (boot ${MiB(peaks.get('boot') ?? 0)})  ${stdout.trim().split('\n').pop()}  ${JSON.stringify(instance?.stats ?? null)}`,
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
