// Point-in-time benchmark: snapshots as positions on the change log, what hourly snapshots store, and a restore to a
// moment against a restore of a snapshot. The server runs in its own process and is driven only through its GraphQL
// API (server-process.ts); the file baselines run in separate processes on copies of the instance's store file taken
// while the server is idle, interleaved with the product (order alternating per pair). Prints figures; asserts
// nothing. Not part of `npm test`. Write throughput with the change log on and off is bench:write's.
//
//   npm run bench:pitr -- [--nodes 1000000] [--snapshots 24] [--pairs 3] [--change 0.01] [--batch 10000] [--keep]
//
// 1. On-demand snapshot latency at N nodes + 2N relationships (random, hardly compressible properties): createSnapshot
//    to COMPLETED as the client sees it, --change of the nodes given new properties before each, against a full copy
//    (sqlite3 online backup + `gzip -1` of the same store), for the first --pairs snapshots.
// 2. Stored bytes after --snapshots "hourly" snapshots, --change of the nodes changed before each after the first:
//    usage.storedBytes (log, bases and all) against that many full copies (`gzip -1` of the store, from 1.); the
//    addedBytes of each later snapshot as a share of one full copy.
// 3. restoreToPointInTime to restoreWindow.latest (after one more change, so the moment is no snapshot's) against
//    restoreSnapshot of the newest snapshot, both over the same scratch instance, order alternating per pair; and
//    against `gzip -dc` of the full copy + fsync, for scale.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  baselineRestore,
  baselineSnapshot,
  changeNodes,
  copyStore,
  fill,
  flag,
  gql,
  MAX_BATCH,
  median,
  MiB,
  operationDone,
  pct,
  secs,
  snapshot,
  type SnapshotRow,
  spread,
  startServer,
  stopServer,
  storage,
  storeFileOf,
  until,
} from './server-process';
import { rng } from './synthetic-graph';

const BIG = 'tier: BUSINESS_CRITICAL, memoryGB: 64';

/** restoreWindow.latest once it has passed `moment` (every write acknowledged before it is restorable). */
async function restorableThrough(instanceId: string, moment: number): Promise<number> {
  return until('the restore window to reach the last write', async () => {
    const { instance } = await gql(`query($id: ID!) { instance(id: $id) { restoreWindow { latest } } }`, { id: instanceId });
    const latest = instance.restoreWindow ? Date.parse(instance.restoreWindow.latest) : 0;
    return latest >= moment ? latest : null;
  }, 100);
}

/** Waits until the stored bytes have not changed for 2 s (the base policy works in the background). */
async function settledStorage(instanceId: string): Promise<number> {
  let last = -1;
  let steadySince = performance.now();
  return until('backup storage to settle', async () => {
    const now = (await storage(instanceId)).usage.storedBytes;
    if (now !== last) steadySince = performance.now();
    last = now;
    return performance.now() - steadySince > 2_000 ? now : null;
  }, 250);
}

/** The client's time from the request to SUCCEEDED, and the operation's own startedAt → finishedAt. */
async function timed(request: () => Promise<string>): Promise<{ ms: number; serverMs: number }> {
  const started = performance.now();
  const operation = await operationDone(await request());
  return { ms: performance.now() - started, serverMs: Date.parse(operation.finishedAt) - Date.parse(operation.startedAt) };
}

async function main(): Promise<void> {
  const nodes = Math.round(flag('nodes', 1_000_000));
  const relationships = 2 * nodes;
  const snapshots = Math.round(flag('snapshots', 24));
  const pairs = Math.min(Math.round(flag('pairs', 3)), snapshots);
  const change = flag('change', 0.01);
  const batch = Math.min(MAX_BATCH, Math.round(flag('batch', MAX_BATCH)));
  const keep = process.argv.includes('--keep');

  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-pitr-'));
  const dataDir = join(work, 'data');
  const baselineDir = join(work, 'baseline');
  console.log('bench:pitr');
  console.log(JSON.stringify({ nodes, relationships, snapshots, pairs, changePerSnapshot: change, batch, work, cpus: cpus().length }));

  const server = await startServer(dataDir, {});
  const random = rng(11);
  const summary: Record<string, unknown> = { nodes, relationships, snapshots, pairs, change };
  try {
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "bench-pitr", ${BIG} }) { id } }`);
    const instanceId: string = createInstance.id;
    let started = performance.now();
    const ids = await fill(instanceId, nodes, relationships, batch, random);
    console.log(`\nfilled through the API: ${nodes} nodes + ${relationships} relationships in ${secs(performance.now() - started)}; store file ${MiB(statSync(storeFileOf(instanceId)).size)}`);
    started = performance.now();
    const afterFill = await settledStorage(instanceId);
    console.log(`backup storage settled at ${MiB(afterFill)} (change log and bases) ${secs(performance.now() - started)} after the fill`);

    // --- 1. and 2.: hourly snapshots, the first --pairs of them paired with a full copy
    console.log(`\n[1] on-demand snapshot (${pct(change)} of the nodes changed before each after the first) / full copy (sqlite3 online backup + gzip -1 of the store)`);
    const snapshotPairs: { product: number; baseline: number; order: string }[] = [];
    const taken: { row: SnapshotRow; ms: number }[] = [];
    let fullCopyBytes = 0;
    for (let i = 1; i <= snapshots; i++) {
      if (i > 1) await changeNodes(instanceId, ids, change, batch, random);
      if (i > pairs) {
        taken.push(await snapshot(instanceId));
        continue;
      }
      const copy = copyStore(instanceId, baselineDir);
      const productFirst = i % 2 === 1;
      let baseline = productFirst ? null : await baselineSnapshot(copy, baselineDir);
      const product = await snapshot(instanceId);
      baseline ??= await baselineSnapshot(copy, baselineDir);
      taken.push(product);
      fullCopyBytes = baseline.gzipBytes;
      snapshotPairs.push({ product: product.ms, baseline: baseline.ms, order: productFirst ? 'product first' : 'baseline first' });
      console.log(
        `  pair ${i} (${productFirst ? 'product first' : 'baseline first'}): snapshot ${secs(product.ms)} (added ${MiB(product.row.addedBytes ?? 0)}); ` +
          `full copy ${secs(baseline.ms)} (${MiB(baseline.backupBytes)} → ${MiB(baseline.gzipBytes)}); ratio ${(product.ms / baseline.ms).toFixed(3)}`,
      );
    }
    const snapshotRatios = snapshotPairs.map((p) => p.product / p.baseline);
    console.log(`  snapshot latency, all ${snapshots}: ${spread(taken.map((t) => t.ms), secs)}`);
    console.log(`  snapshot / full copy: ${spread(snapshotRatios, (r) => r.toFixed(3))}`);

    console.log(`\n[2] stored bytes after ${snapshots} snapshots, ${pct(change)} of the nodes changed before each after the first`);
    const stored = await settledStorage(instanceId);
    const fullCopies = snapshots * fullCopyBytes;
    const shares = taken.slice(1).map((t) => (t.row.addedBytes ?? 0) / fullCopyBytes);
    console.log(`  usage.storedBytes ${MiB(stored)} (${MiB(afterFill)} before the first snapshot) vs ${snapshots} full copies ${MiB(fullCopies)} (${MiB(fullCopyBytes)} each): ${pct(stored / fullCopies)}, ${(fullCopies / stored).toFixed(1)}× less`);
    if (shares.length > 0) console.log(`  addedBytes of snapshots 2..${snapshots} as a share of a full copy: max ${pct(Math.max(...shares))}, median ${pct(median(shares))}, min ${pct(Math.min(...shares))}`);

    // --- 3. a moment against a snapshot, over the same scratch instance
    console.log(`\n[3] restoreToPointInTime (latest, ${pct(change)} changed after the newest snapshot) / restoreSnapshot (the newest), over a scratch instance; gzip -dc of the full copy + fsync for scale`);
    const { createInstance: scratch } = await gql(`mutation { createInstance(input: { name: "bench-pitr-target", ${BIG} }) { id } }`);
    const newest = taken.at(-1)!.row;
    const gz = join(baselineDir, 'backup.sqlite.gz');
    const restorePairs: { pointInTime: number; snapshot: number; pointInTimeServer: number; snapshotServer: number; gunzip: number; order: string }[] = [];
    for (let pair = 1; pair <= pairs; pair++) {
      await changeNodes(instanceId, ids, change, batch, random);
      const at = await restorableThrough(instanceId, Date.now());
      const toPoint = () =>
        timed(async () => (await gql(`mutation($id: ID!, $at: DateTime!, $t: ID) { restoreToPointInTime(instanceId: $id, at: $at, confirm: "RESTORE", targetInstanceId: $t) { id } }`, { id: instanceId, at: new Date(at).toISOString(), t: scratch.id })).restoreToPointInTime.id);
      const toSnapshot = () =>
        timed(async () => (await gql(`mutation($s: ID!, $t: ID) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE", instanceId: $t) { id } }`, { s: newest.id, t: scratch.id })).restoreSnapshot.id);
      const pointFirst = pair % 2 === 1;
      const first = await (pointFirst ? toPoint() : toSnapshot());
      const second = await (pointFirst ? toSnapshot() : toPoint());
      const [point, snap] = pointFirst ? [first, second] : [second, first];
      const gunzip = await baselineRestore(gz, join(baselineDir, 'restored.sqlite'));
      restorePairs.push({ pointInTime: point.ms, snapshot: snap.ms, pointInTimeServer: point.serverMs, snapshotServer: snap.serverMs, gunzip, order: pointFirst ? 'point in time first' : 'snapshot first' });
      console.log(
        `  pair ${pair} (${pointFirst ? 'point in time first' : 'snapshot first'}): point in time ${secs(point.ms)} (operation ${secs(point.serverMs)}); ` +
          `snapshot ${secs(snap.ms)} (operation ${secs(snap.serverMs)}); ratio ${(point.ms / snap.ms).toFixed(2)}; gunzip + fsync ${secs(gunzip)}`,
      );
    }
    const restoreRatios = restorePairs.map((p) => p.pointInTime / p.snapshot);

    console.log('\nsummary');
    console.log(`  on-demand snapshot at ${nodes} nodes + ${relationships} relationships: ${spread(taken.map((t) => t.ms), secs)}; / full copy ${spread(snapshotRatios, (r) => r.toFixed(3))}`);
    console.log(`  stored after ${snapshots} hourly snapshots (${pct(change)} change each): ${MiB(stored)} vs ${MiB(fullCopies)} for ${snapshots} full copies (${pct(stored / fullCopies)}); addedBytes per snapshot max ${pct(Math.max(...shares, 0))} of a full copy`);
    console.log(`  point-in-time restore ${spread(restorePairs.map((p) => p.pointInTime), secs)} vs snapshot restore ${spread(restorePairs.map((p) => p.snapshot), secs)}: ratio ${spread(restoreRatios, (r) => r.toFixed(2))}; gunzip + fsync ${spread(restorePairs.map((p) => p.gunzip), secs)}`);
    Object.assign(summary, {
      snapshotMs: taken.map((t) => Math.round(t.ms)),
      snapshotPairs: snapshotPairs.map((p) => ({ ...p, ratio: +(p.product / p.baseline).toFixed(3) })),
      storedBytesBeforeSnapshots: afterFill,
      storedBytesAfterSnapshots: stored,
      fullCopyBytes,
      storedVsFullCopies: +(stored / fullCopies).toFixed(4),
      addedShareMax: shares.length ? +Math.max(...shares).toFixed(4) : null,
      addedShareMedian: shares.length ? +median(shares).toFixed(4) : null,
      restorePairs: restorePairs.map((p) => ({ ...p, ratio: +(p.pointInTime / p.snapshot).toFixed(3) })),
      restoreRatioMedian: +median(restoreRatios).toFixed(3),
    });
    console.log(JSON.stringify(summary));
  } catch (error) {
    console.error(`--- last server output ---\n${server.output.join('').slice(-8000)}`);
    throw error;
  } finally {
    await stopServer(server);
    if (keep) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
