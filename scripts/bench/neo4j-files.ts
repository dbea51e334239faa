// Restoring Neo4j files against restoring an archive of the same graph: `npm run bench:neo4j-files -- --nodes 200000
// --pairs 3`. A synthetic graph (random properties: not trivially compressible; 2 relationships per node) is
// snapshotted and exported as ARCHIVE, APOC_JSON, CYPHER, GRAPHML and NEO4J_ADMIN_CSV (the time each first link took
// to build its file is printed, once per format); each file is then restored
// with restoreFromFile into a new instance, the formats interleaved round by round. Per format: seconds from the
// first byte of the upload to the restore's SUCCEEDED (upload + check + load + base), MB/s of the file and records/s
// (median and range), and the server's peak RSS while it restored that format. The server runs in its own process.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fill, flag, gql, median, MiB, operationDone, rssSampler, secs, snapshot, spread, startServer, stopServer, until } from './server-process';

const nodes = flag('nodes', 200_000);
const pairs = flag('pairs', 3);
const FORMATS = ['ARCHIVE', 'APOC_JSON', 'CYPHER', 'GRAPHML', 'NEO4J_ADMIN_CSV'] as const;

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-neo4j-files-'));
  const server = await startServer(join(work, 'data'), { SNAPGRAPH_CONFIG: writeConfig(work) });
  try {
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "source", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    console.log(`filling ${nodes} nodes and ${2 * nodes} relationships…`);
    await fill(createInstance.id, nodes, 2 * nodes, 10_000, seeded(15));
    const { row } = await snapshot(createInstance.id);
    const files: Record<string, string> = {};
    for (const format of FORMATS) {
      // The first link of a format builds its file (read from the snapshot, written, hashed and stored encrypted).
      const building = performance.now();
      const { exportSnapshotAs } = await gql(`mutation($id: ID!, $f: ExportFormat!) { exportSnapshotAs(id: $id, format: $f) { url fileName } }`, { id: row.id, f: format });
      const built = performance.now() - building;
      const body = Buffer.from(await (await fetch(exportSnapshotAs.url)).arrayBuffer());
      files[format] = join(work, exportSnapshotAs.fileName);
      writeFileSync(files[format], body);
      console.log(`${format.padEnd(15)} ${exportSnapshotAs.fileName}: ${MiB(body.length)}, built in ${secs(built)}`);
    }
    const records = 3 * nodes;
    const times: Record<string, number[]> = Object.fromEntries(FORMATS.map((f) => [f, []]));
    const rss = rssSampler(server.child.pid!);
    for (let round = 0; round < pairs; round++) {
      for (const format of FORMATS) {
        const { createInstance: target } = await gql(`mutation { createInstance(input: { name: "target", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
        await until('the target instance to run', async () => {
          const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status } }`, { id: target.id });
          return instance.status === 'RUNNING' ? instance : null;
        });
        await rss.part(format);
        const started = performance.now();
        const operationId = await upload(server.url, target.id, files[format]);
        await operationDone(operationId);
        times[format].push(performance.now() - started);
        await rss.part('between');
        await gql(`mutation($id: ID!) { deleteInstance(id: $id) }`, { id: target.id }).catch(() => undefined);
      }
    }
    const { peaks } = await rss.stop();
    console.log(`\n${pairs} interleaved rounds, ${nodes} nodes + ${2 * nodes} relationships:`);
    const archive = median(times.ARCHIVE);
    for (const format of FORMATS) {
      const size = statSync(files[format]).size;
      const ms = median(times[format]);
      console.log(
        `${format.padEnd(15)} ${MiB(size).padStart(10)}  ${secs(ms)} (${spread(times[format], secs)})  ` +
          `${(size / 1024 / 1024 / (ms / 1000)).toFixed(1)} MiB/s  ${Math.round(records / (ms / 1000))} records/s  ` +
          `${(archive / ms).toFixed(2)}× the archive's throughput  server peak RSS ${MiB(peaks.get(format) ?? 0)}`,
      );
    }
  } finally {
    await stopServer(server);
    rmSync(work, { recursive: true, force: true });
  }
}

function writeConfig(dir: string): string {
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify({ maxUploadBytes: 64 * 1024 ** 3 }));
  return path;
}

/** restoreFromFile as a multipart request; returns the operation id. */
async function upload(url: string, instanceId: string, path: string): Promise<string> {
  const form = new FormData();
  const query = `mutation($i: ID!, $f: Upload!) { restoreFromFile(instanceId: $i, file: $f, confirm: "RESTORE") { id } }`;
  form.append('operations', JSON.stringify({ query, variables: { i: instanceId, f: null } }));
  form.append('map', JSON.stringify({ 0: ['variables.f'] }));
  form.append('0', new Blob([readFileSync(path)]), path.split('/').pop());
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { authorization: 'Bearer bench-admin-key-0123456789', 'apollo-require-preflight': 'true' },
    body: form,
  });
  const body = (await response.json()) as { data?: { restoreFromFile: { id: string } }; errors?: { message: string }[] };
  if (!body.data?.restoreFromFile) throw new Error(`restoreFromFile: ${JSON.stringify(body.errors)}`);
  return body.data.restoreFromFile.id;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
