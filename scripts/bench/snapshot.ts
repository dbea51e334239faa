// Snapshot benchmark: 1,000,000 nodes + 2,000,000 relationships by default (--nodes N scales it; relationships = 2N).
// Prints time, records/s, archive size, peak RSS, event-loop delay p99 during the snapshot, and the ratio to
// `sqlite3 .backup` + `gzip -1` of the same store.
import { execFileSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { eventLoopMonitor, fillInstance, flag, gql, mb, rssSampler, startBenchServer, waitFor } from './support';

async function main() {
  const nodes = flag('nodes', 1_000_000);
  const relationships = 2 * nodes;
  const server = await startBenchServer();
  try {
    const { createInstance } = await gql(server, `mutation { createInstance(input: { name: "bench", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    let started = Date.now();
    const { storePath } = await fillInstance(server, instanceId, nodes, relationships);
    console.log(`built ${nodes} nodes + ${relationships} relationships in ${((Date.now() - started) / 1000).toFixed(1)} s; store ${mb(statSync(storePath).size)} MB`);

    const baseRss = process.memoryUsage().rss;
    const rss = rssSampler();
    const loop = eventLoopMonitor();
    rss.start();
    loop.start();
    started = Date.now();
    const { createSnapshot } = await gql(server, `mutation($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: instanceId });
    const snapshot = await waitFor(async () => {
      const s = await server.app.services.snapshots.byId(createSnapshot.id);
      if (s?.status === 'FAILED') throw new Error(`snapshot failed: ${s.error}`);
      return s?.status === 'COMPLETED' ? s : null;
    });
    const seconds = (Date.now() - started) / 1000;
    const delay = loop.stop();
    const peak = rss.stop();

    const copy = join(server.dataDir, 'baseline-copy.sqlite');
    const baselineStart = Date.now();
    execFileSync('sqlite3', [storePath, `.backup '${copy}'`]);
    execFileSync('gzip', ['-1', '-f', copy]);
    const baseline = (Date.now() - baselineStart) / 1000;
    const gzipped = statSync(`${copy}.gz`).size;
    rmSync(`${copy}.gz`, { force: true });

    const records = nodes + relationships;
    console.log(JSON.stringify({
      nodes, relationships, seconds: +seconds.toFixed(2), recordsPerSecond: Math.round(records / seconds),
      archiveMB: +mb(snapshot.sizeBytes ?? 0), peakRssMB: +mb(peak), rssGrowthMB: +mb(peak - baseRss),
      eventLoopDelayP99ms: +delay.p99ms.toFixed(1), eventLoopDelayMaxMs: +delay.maxMs.toFixed(1),
      baselineSeconds: +baseline.toFixed(2), baselineGzipMB: +mb(gzipped), ratioToBaseline: +(seconds / baseline).toFixed(2),
    }, null, 2));
  } finally {
    await server.cleanup();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
