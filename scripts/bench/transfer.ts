// bench:transfer — uploads and export downloads against minimal Node HTTP servers, side by side.
//
// An archive of --size MiB (default 1024) whose payload is random text (deflate gains little) is uploaded to a fresh
// instance, each time right after the same bytes went through the baseline. Each upload's archive is written anew
// (other random bytes): the same rows restored again would find their chunks already stored by the previous restore,
// and its new base would cost less than a first restore of new data does.
//   - multipart: curl -F into restoreFromFile (GraphQL multipart request spec, Apollo-Require-Preflight);
//   - tus: `snapgraph restore-file` (the CLI, its own process) through /uploads;
//   - baseline: `curl -T` into a minimal Node server that writes the body to a file and fsyncs it.
// "Accepted" is the answer to the upload (stored encrypted and verified); "restored" is the operation SUCCEEDED.
// Then an export link of a snapshot of the restored instance is downloaded with curl, interleaved with the same bytes
// from a minimal Node file server (fs.createReadStream). Every server runs in its own process; --pairs (default 3)
// pairs of each, each measurement after `sync`; median and range printed, with the ratios and the server's peak RSS
// per part, and where each restore's time went (its phases). Beside each baseline, the floor of a restore: the same
// number of such nodes inserted by a bare SQLite in a process of its own (sqlite-floor.ts); baseline + floor is the
// least that "accepted and restored" could take with any store built on SQLite.
//
//   npm run bench:transfer -- [--size 256] [--pairs 3] [--tus-chunk 64]
//
// --tus-chunk N: also upload with the CLI's `--chunk-size NM` (the bytes of one PATCH), in the same pairs, beside its
// default.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { ADMIN_KEY, flag, gql, median, MiB, operationDone, phaseTimes, rssSampler, secs, snapshot, spread, startServer, stopServer, type Server } from './server-process';
import { curl, curlRestoreFromFile, writeRandomTextArchive } from './uploaded-archives';

const run = promisify(execFile);
const REPO_ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

const sizeBytes = flag('size', 1024) * 1024 * 1024;
const pairs = flag('pairs', 3);
const tusChunkMiB = flag('tus-chunk', 0);

/** A baseline server (transfer-baselines.ts) in its own process; resolves with its URL once it listens. */
async function startBaseline(mode: 'upload' | 'serve', target: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(__dirname, 'transfer-baselines.js'), mode, target], { stdio: ['ignore', 'pipe', 'inherit'] });
  for await (const chunk of child.stdout!) {
    const port = /^(\d+)$/m.exec(String(chunk));
    if (port) return { url: `http://127.0.0.1:${port[1]}`, child };
  }
  throw new Error(`the ${mode} baseline did not start`);
}

/** sqlite-floor.ts in its own process: the milliseconds a bare SQLite takes to insert `nodes` such rows. */
async function sqliteFloor(file: string, nodes: number): Promise<number> {
  const { stdout } = await run(process.execPath, [join(__dirname, 'sqlite-floor.js'), file, String(nodes)], { maxBuffer: 1024 * 1024 });
  return Number(stdout.trim());
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/**
 * Waits until the data written so far is on disk. A restore leaves gigabytes of dirty pages that the kernel flushes
 * for many seconds after; whichever measurement ran then was slowed (export downloads measured 350 to 850 MiB/s in
 * a row). Each measurement starts from a settled disk instead.
 */
const settleDisk = () => run('sync', []);

async function newInstance(name: string): Promise<string> {
  const { createInstance } = await gql(`mutation($name: String!) { createInstance(input: { name: $name, tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`, { name });
  return createInstance.id;
}

/** restoreFromFile through curl -F; the times to the answer (accepted) and to SUCCEEDED (restored). */
async function multipartUpload(server: Server, archive: string, instanceId: string, rss: ReturnType<typeof rssSampler>) {
  await rss.part('multipart: receiving and verifying');
  const started = performance.now();
  const operationId = await curlRestoreFromFile(server, archive, instanceId);
  const accepted = performance.now() - started;
  await rss.part('multipart: restoring');
  const { phases } = await operationDone(operationId);
  return { accepted, restored: performance.now() - started, phases };
}

/** `snapgraph restore-file` in its own process: accepted when it says the server verified the file, restored at its exit. */
async function tusUpload(server: Server, archive: string, instanceId: string, stateDir: string, rss: ReturnType<typeof rssSampler>, chunkMiB = 0) {
  await rss.part('tus: receiving and verifying');
  const started = performance.now();
  const chunkSize = chunkMiB > 0 ? ['--chunk-size', `${chunkMiB}M`] : [];
  const child = spawn(process.execPath, [CLI, 'restore-file', instanceId, archive, '--confirm', 'RESTORE', ...chunkSize], {
    env: { ...process.env, SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: ADMIN_KEY, XDG_STATE_HOME: stateDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let accepted = 0;
  let errors = '';
  let restoring: ReturnType<typeof operationDone> | null = null;
  child.stderr!.on('data', (chunk: Buffer) => {
    errors += chunk;
    const queued = /the server verified the file; restore queued as operation (\S+)/.exec(errors);
    if (!accepted && queued) {
      accepted = performance.now() - started;
      void rss.part('tus: restoring');
      restoring = operationDone(queued[1]);
      restoring.catch(() => undefined);
    }
  });
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  if (code !== 0 || !accepted || !restoring) throw new Error(`restore-file exited with ${code}: ${errors.slice(-2000)}`);
  const restored = performance.now() - started;
  const { phases } = await (restoring as ReturnType<typeof operationDone>);
  return { accepted, restored, phases };
}

interface UploadFigures {
  baseline: number[];
  /** A bare SQLite inserting the archive's rows (sqlite-floor.ts), measured beside the baseline. */
  sqliteFloor: number[];
  accepted: number[];
  restored: number[];
}

function report(name: string, bytes: number, figures: UploadFigures): void {
  const rate = (ms: number) => `${(bytes / 1024 / 1024 / (ms / 1000)).toFixed(0)} MiB/s`;
  const ratios = (times: number[]) => times.map((ms, i) => ms / figures.baseline[i]);
  console.log(`\n${name}`);
  console.log(`  baseline curl -T + fsync: ${spread(figures.baseline, secs)}  ${rate(median(figures.baseline))}`);
  console.log(`  accepted:                 ${spread(figures.accepted, secs)}  ${rate(median(figures.accepted))}`);
  console.log(`  accepted and restored:    ${spread(figures.restored, secs)}`);
  console.log(`  accept / baseline:        ${spread(ratios(figures.accepted), (r) => `${r.toFixed(2)}×`)}   (target ≤ 2×)`);
  console.log(`  restored / baseline:      ${spread(ratios(figures.restored), (r) => `${r.toFixed(2)}×`)}   (target ≤ 4×)`);
  console.log(`  bare SQLite insert:       ${spread(figures.sqliteFloor, secs)}`);
  const floors = figures.sqliteFloor.map((ms, i) => ms + figures.baseline[i]);
  console.log(`  (baseline + insert) / baseline: ${spread(ratios(floors), (r) => `${r.toFixed(2)}×`)}   (the floor of restored / baseline)`);
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-transfer-'));
  const archive = join(work, 'bench.backup');
  const stateDir = join(work, 'cli-state');
  const received = join(work, 'baseline-uploads');
  mkdirSync(received);
  const children: ChildProcess[] = [];
  let server: Server | undefined;
  try {
    const nodes = await writeRandomTextArchive(archive, sizeBytes);
    const bytes = statSync(archive).size;
    console.log(`archive: ${MiB(bytes)}, ${nodes} nodes of random text, new for each upload; ${pairs} pairs of each measurement`);

    const uploadBaseline = await startBaseline('upload', received);
    children.push(uploadBaseline.child);
    server = await startServer(join(work, 'data'), {});
    const rss = rssSampler(server.child.pid!);
    const baselineUpload = () => timed(() => curl(['-T', archive, `${uploadBaseline.url}/upload`]));

    const multipart: UploadFigures = { baseline: [], sqliteFloor: [], accepted: [], restored: [] };
    const tus: UploadFigures = { baseline: [], sqliteFloor: [], accepted: [], restored: [] };
    const tusChunked: UploadFigures = { baseline: [], sqliteFloor: [], accepted: [], restored: [] };
    const paths = [['multipart', multipart], ['tus', tus], ...(tusChunkMiB > 0 ? [['tus-chunked', tusChunked] as const] : [])] as const;
    let restoredInstance = '';
    let uploads = 0;
    for (let pair = 0; pair < pairs; pair++) {
      for (const [path, figures] of paths) {
        if (restoredInstance) await gql(`mutation($id: ID!) { deleteInstance(id: $id) }`, { id: restoredInstance });
        const instanceId = await newInstance(`bench-${path}-${pair}`);
        if (uploads++ > 0) await writeRandomTextArchive(archive, sizeBytes); // the first upload's was written above
        await rss.part('idle');
        await settleDisk();
        figures.baseline.push(await baselineUpload());
        await settleDisk();
        figures.sqliteFloor.push(await sqliteFloor(join(work, 'floor.sqlite'), nodes));
        await settleDisk();
        const { accepted, restored, phases } =
          path === 'multipart'
            ? await multipartUpload(server, archive, instanceId, rss)
            : await tusUpload(server, archive, instanceId, stateDir, rss, path === 'tus-chunked' ? tusChunkMiB : 0);
        figures.accepted.push(accepted);
        figures.restored.push(restored);
        restoredInstance = instanceId;
        console.log(`  ${path} ${pair + 1}: baseline ${secs(figures.baseline.at(-1)!)}, bare SQLite insert ${secs(figures.sqliteFloor.at(-1)!)}, accepted ${secs(accepted)}, restored ${secs(restored)} (${phaseTimes(phases)})`);
      }
    }

    await rss.part('idle');
    const { row } = await snapshot(restoredInstance);
    await settleDisk();
    const building = performance.now();
    const { exportSnapshot } = await gql(`mutation($id: ID!) { exportSnapshot(id: $id) { url sizeBytes } }`, { id: row.id });
    const built = performance.now() - building;
    const exported = join(work, 'exported.backup');
    await curl(['-o', exported, exportSnapshot.url]);
    const exportBytes = statSync(exported).size;
    const fileServer = await startBaseline('serve', exported);
    children.push(fileServer.child);
    const download = { baseline: [] as number[], product: [] as number[] };
    await rss.part('export downloads');
    for (let pair = 0; pair < pairs; pair++) {
      await settleDisk();
      download.baseline.push(await timed(() => curl(['-o', '/dev/null', `${fileServer.url}/file`])));
      await settleDisk();
      download.product.push(await timed(() => curl(['-o', '/dev/null', exportSnapshot.url])));
    }
    const { peaks } = await rss.stop();

    report('multipart upload (restoreFromFile, curl -F)', bytes, multipart);
    report('tus upload (snapgraph restore-file)', bytes, tus);
    if (tusChunkMiB > 0) report(`tus upload (snapgraph restore-file --chunk-size ${tusChunkMiB}M)`, bytes, tusChunked);
    const rate = (ms: number) => exportBytes / 1024 / 1024 / (ms / 1000);
    console.log(`\nexport download (${MiB(exportBytes)}, curl -o /dev/null)`);
    console.log(`  first link of the snapshot:   ${secs(built)} (its archive built, hashed and stored; ${rate(built).toFixed(0)} MiB/s)`);
    console.log(`  baseline fs.createReadStream: ${spread(download.baseline.map(rate), (r) => `${r.toFixed(0)} MiB/s`)}`);
    console.log(`  export link:                  ${spread(download.product.map(rate), (r) => `${r.toFixed(0)} MiB/s`)}`);
    console.log(`  export / baseline:            ${spread(download.product.map((ms, i) => download.baseline[i] / ms), (r) => `${r.toFixed(2)}×`)}   (target ≥ 0.8×)`);
    console.log('\nserver peak RSS');
    for (const [part, peak] of peaks) if (part !== 'boot') console.log(`  ${part.padEnd(36)} ${MiB(peak)}`);
  } finally {
    if (server) await stopServer(server);
    for (const child of children) child.kill();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
