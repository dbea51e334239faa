// bench:uploads-at-once — what uploads under way at the same time cost the server: N restoreFromFile uploads of the
// same archive sent at once (curl -F, each to its own instance, their restores running as they are accepted, as by
// default), against one alone, each run on a server of its own (a process keeps the memory it peaked at: a run after
// another would start from its peak). Pairs interleave the two, the order alternating. Per run: the time until all are
// accepted and until all are restored, and the server's peak RSS and most threads while accepting and while restoring
// (the kernel's high-water mark per part). Memory should grow with the uploads' size little and with their number
// less than their bytes in flight; prints figures, asserts nothing.
//
//   npm run bench:uploads-at-once -- [--uploads 16] [--size 64] [--pairs 2]
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { flag, gql, median, MiB, operationDone, procStatus, rssSampler, secs, spread, startServer, stopServer, type Server } from './server-process';
import { curlRestoreFromFile, writeRandomTextArchive } from './uploaded-archives';

const uploads = flag('uploads', 16);
const sizeMiB = flag('size', 64);
const pairs = flag('pairs', 2);

interface Run {
  accepted: number;
  restored: number;
  acceptPeak: number;
  restorePeak: number;
  acceptThreads: number;
  restoreThreads: number;
}


async function uploadAtOnce(dataDir: string, archive: string, count: number): Promise<Run> {
  const server = await startServer(dataDir, {});
  try {
    return await measure(server, archive, count);
  } finally {
    await stopServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function measure(server: Server, archive: string, count: number): Promise<Run> {
  const instances: string[] = [];
  for (let i = 0; i < count; i++) {
    const { createInstance } = await gql(`mutation($name: String!) { createInstance(input: { name: $name, tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`, {
      name: `at-once-${Date.now()}-${i}`,
    });
    instances.push(createInstance.id);
  }
  const pid = server.child.pid!;
  const rss = rssSampler(pid);
  let mostThreads = 0;
  const watchThreads = setInterval(() => (mostThreads = Math.max(mostThreads, procStatus(pid, 'Threads'))), 50);
  try {
    await rss.part('accepting');
    const started = performance.now();
    const operations = await Promise.all(instances.map((instanceId) => curlRestoreFromFile(server, archive, instanceId)));
    const accepted = performance.now() - started;
    const acceptThreads = mostThreads;
    mostThreads = 0;
    await rss.part('restoring');
    await Promise.all(operations.map((id) => operationDone(id)));
    const restored = performance.now() - started;
    const { peaks } = await rss.stop();
    return { accepted, restored, acceptPeak: peaks.get('accepting')!, restorePeak: peaks.get('restoring')!, acceptThreads, restoreThreads: mostThreads };
  } finally {
    clearInterval(watchThreads);
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-uploads-at-once-'));
  try {
    const archive = join(work, 'bench.backup');
    const nodes = await writeRandomTextArchive(archive, sizeMiB * 1024 * 1024);
    console.log(`archive: ${MiB(statSync(archive).size)}, ${nodes} nodes of random text; ${uploads} uploads at once against 1, ${pairs} pairs`);
    const runs = new Map<number, Run[]>([[1, []], [uploads, []]]);
    for (let pair = 0; pair < pairs; pair++) {
      for (const count of pair % 2 === 0 ? [1, uploads] : [uploads, 1]) {
        const run = await uploadAtOnce(join(work, `data-${pair}-${count}`), archive, count);
        runs.get(count)!.push(run);
        console.log(
          `  pair ${pair + 1}, ${count} at once: accepted ${secs(run.accepted)}, restored ${secs(run.restored)}; ` +
            `peak RSS accepting ${MiB(run.acceptPeak)} (${run.acceptThreads} threads), restoring ${MiB(run.restorePeak)} (${run.restoreThreads} threads)`,
        );
      }
    }
    for (const [count, rows] of runs) {
      console.log(`\n${count} at once`);
      console.log(`  all accepted:            ${spread(rows.map((r) => r.accepted), secs)}`);
      console.log(`  all restored:            ${spread(rows.map((r) => r.restored), secs)}`);
      console.log(`  peak RSS, accepting:     ${spread(rows.map((r) => r.acceptPeak), MiB)}`);
      console.log(`  peak RSS, restoring:     ${spread(rows.map((r) => r.restorePeak), MiB)}`);
      console.log(`  most threads:            ${median(rows.map((r) => r.acceptThreads))} accepting, ${median(rows.map((r) => r.restoreThreads))} restoring`);
    }
    const alone = runs.get(1)!;
    const together = runs.get(uploads)!;
    console.log(`\nper upload added to the peak RSS (accepting): ${MiB((median(together.map((r) => r.acceptPeak)) - median(alone.map((r) => r.acceptPeak))) / (uploads - 1))}`);
    console.log(`per upload added to the peak RSS (restoring): ${MiB((median(together.map((r) => r.restorePeak)) - median(alone.map((r) => r.restorePeak))) / (uploads - 1))}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
