// Transfer benchmark: a ~1 GB archive (--mb N to change) uploaded with restoreFromFile until the restore has
// finished, and downloaded through an export link; each beside a plain `cp` of the same file, with the server's
// peak RSS during each (the server runs as a separate process so the benchmark's own memory does not count).
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { createArchiveWriter } from '../../src/archive';
import { BENCH_KEY, flag, mb } from './support';

const targetBytes = flag('mb', 1024) * 1024 * 1024;
const PROPERTY_BYTES = 1024;

/** Nodes carrying random (incompressible) text, so the archive is about as large as the data. */
async function writeArchive(path: string): Promise<{ nodes: number }> {
  // ~1,036 archive bytes a node (1 KiB of random bytes as base64, deflated).
  const nodes = Math.ceil(targetBytes / 1_036);
  const writer = createArchiveWriter({
    engineVersion: 'V5',
    sourceInstanceId: 'bench',
    sourceInstanceName: 'bench',
    capturedAt: new Date().toISOString(),
    stats: { nodeCount: nodes, relationshipCount: 0, labels: [{ name: 'Blob', count: nodes }], relationshipTypes: [], storeSizeBytes: 0 },
  });
  const written = pipeline(writer.stream, createWriteStream(path));
  for (let start = 1; start <= nodes; start += 2_000) {
    const lines: string[] = [];
    for (let id = start; id < Math.min(start + 2_000, nodes + 1); id++) {
      lines.push(JSON.stringify(['N', String(id), ['Blob'], { payload: randomBytes(PROPERTY_BYTES).toString('base64') }]));
    }
    await writer.writeEncoded({ kind: 'node', lines });
  }
  await writer.end();
  await written;
  return { nodes };
}

function rssSampler(pid: number) {
  let peak = 0;
  const read = () => {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (match) peak = Math.max(peak, Number(match[1]) * 1024);
  };
  const timer = setInterval(read, 100);
  return () => {
    clearInterval(timer);
    read();
    return peak;
  };
}

async function startServer(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [join(__dirname, '../../src/cli/main.js'), 'serve'], {
    env: { ...process.env, PORT: '0', SNAPGRAPH_DATA_DIR: dataDir, SNAPGRAPH_BOOTSTRAP_TOKEN: BENCH_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buffered = '';
  for await (const chunk of child.stdout!) {
    buffered += chunk;
    const match = /"url":"(http:[^"]+)\/graphql".*snapgraph is serving/.exec(buffered);
    if (match) {
      child.stdout!.resume();
      return { child, url: match[1] };
    }
  }
  throw new Error(`server did not start: ${buffered}`);
}

async function gql(url: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${BENCH_KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as any;
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

async function waitForOperation(url: string, id: string) {
  for (;;) {
    const { operation } = await gql(url, `query($id: ID!) { operation(id: $id) { status error { code message } } }`, { id });
    if (operation.status === 'SUCCEEDED') return;
    if (operation.status === 'FAILED') throw new Error(`operation failed: ${JSON.stringify(operation.error)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function timeCp(from: string, to: string): number {
  execFileSync('sync');
  const started = performance.now();
  execFileSync('cp', [from, to]);
  const seconds = (performance.now() - started) / 1000;
  rmSync(to, { force: true });
  return seconds;
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-transfer-'));
  const dataDir = join(work, 'data');
  const archive = join(work, 'bench.backup');
  const server = await startServer(dataDir);
  try {
    let started = performance.now();
    const { nodes } = await writeArchive(archive);
    const size = statSync(archive).size;
    console.log(`wrote a ${mb(size)} MB archive of ${nodes} nodes in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const { createInstance } = await gql(server.url, `mutation { createInstance(input: { name: "bench", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const operations = JSON.stringify({
      query: `mutation($id: ID!, $file: Upload!) { restoreFromFile(instanceId: $id, file: $file, confirm: "RESTORE") { id } }`,
      variables: { id: createInstance.id, file: null },
    });
    const uploadCp = timeCp(archive, join(work, 'cp-upload.backup'));
    let peakRss = rssSampler(server.child.pid!);
    started = performance.now();
    // curl sends the multipart request (GraphQL multipart request spec), as it fetches the download below.
    const body = JSON.parse(
      await new Promise<string>((resolve, reject) =>
        execFile(
          'curl',
          ['-sS', '-H', `Authorization: Bearer ${BENCH_KEY}`, '-H', 'Apollo-Require-Preflight: true', '-F', `operations=${operations}`,
            '-F', 'map={"0":["variables.file"]}', '-F', `0=@${archive}`, `${server.url}/graphql`],
          { maxBuffer: 1024 * 1024 },
          (error, stdout) => (error ? reject(error) : resolve(stdout)),
        ),
      ),
    );
    if (body.errors) throw new Error(JSON.stringify(body.errors));
    const uploaded = (performance.now() - started) / 1000;
    const acceptRss = peakRss();
    peakRss = rssSampler(server.child.pid!);
    await waitForOperation(server.url, body.data.restoreFromFile.id);
    const restored = (performance.now() - started) / 1000;
    const uploadRss = peakRss();

    const { createSnapshot } = await gql(server.url, `mutation($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: createInstance.id });
    const { instance } = await gql(server.url, `query($id: ID!) { instance(id: $id) { currentOperation { id } } }`, { id: createInstance.id });
    await waitForOperation(server.url, instance.currentOperation.id);
    const { exportSnapshot } = await gql(server.url, `mutation($id: ID!) { exportSnapshot(id: $id) { url sizeBytes } }`, { id: createSnapshot.id });
    const downloadPath = join(work, 'download.backup');
    const downloadCp = timeCp(archive, join(work, 'cp-download.backup'));
    peakRss = rssSampler(server.child.pid!);
    started = performance.now();
    // curl, a separate process, is the client: a Node client on the same two cores would compete with the server.
    await new Promise<void>((resolve, reject) =>
      execFile('curl', ['-sSf', '-o', downloadPath, exportSnapshot.url], (error) => (error ? reject(error) : resolve())),
    );
    const downloaded = (performance.now() - started) / 1000;
    const downloadRss = peakRss();
    const downloadSize = statSync(downloadPath).size;

    console.log(JSON.stringify({
      archiveMB: +mb(size),
      upload: {
        secondsToAccepted: +uploaded.toFixed(1), secondsToRestored: +restored.toFixed(1),
        MBps: +(size / 1024 / 1024 / restored).toFixed(1), cpMBps: +(size / 1024 / 1024 / uploadCp).toFixed(1),
        ratioToCp: +((size / restored) / (size / uploadCp)).toFixed(3),
        serverPeakRssMB: { receivingAndVerifying: +mb(acceptRss), restoring: +mb(uploadRss) },
      },
      download: {
        seconds: +downloaded.toFixed(1), MB: +mb(downloadSize), MBps: +(downloadSize / 1024 / 1024 / downloaded).toFixed(1),
        cpMBps: +(size / 1024 / 1024 / downloadCp).toFixed(1), ratioToCp: +((downloadSize / downloaded) / (size / downloadCp)).toFixed(3),
        serverPeakRssMB: +mb(downloadRss),
      },
    }, null, 2));
  } finally {
    server.child.kill('SIGTERM');
    await once(server.child, 'exit');
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
