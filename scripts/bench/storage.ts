// Snapshot storage benchmark: deduplicated restore points against full copies and against plain file baselines.
// The server runs in its own process (`bin/snapgraph serve`, fresh data dir, LOG_LEVEL=warn) and is
// driven only through its GraphQL API; the baselines run in separate processes on copies of the instance's store file
// taken while the server is idle, interleaved with the product (order alternating per pair). Prints figures; asserts
// nothing. Not part of `npm test`.
//
//   npm run bench:storage -- [--nodes 1000000] [--snapshots 24] [--pairs 3] [--change 0.01] [--batch 10000] [--keep]
//
// 1. Stored bytes after --snapshots "hourly" snapshots of N nodes + 2N relationships, 1% of the nodes given new random
//    properties (updateNodes) before each snapshot after the first, against that many full copies (× the first
//    snapshot's stored bytes, × its export archive); addedBytes of each later snapshot as a share of the first's;
//    usage.storedBytes against the bytes really under <data>/blobs.
// 2. Full snapshot time / (sqlite3 online backup + `gzip -1` of the same store). Pair 1 is the instance's first
//    snapshot; before each later pair every snapshot of the instance is deleted and the server's collection (grace 0
//    for this run) is waited for until the stored bytes settle; that pair's addedBytes are printed as a share of the
//    first's, to show it stored everything again (a full snapshot) rather than deduplicating against leftovers.
// 3. Restore of the newest of those snapshots over the instance, its safety point included, with 1% of the nodes
//    changed before each restore (so the safety point has something to keep) / (`gzip -dc` of a `gzip -1` copy of the
//    store file + fsync of the output).
// 4. Peak RSS of the server process per part: its VmHWM (all threads), reset at the start of each part; the server's
//    event-loop delay per part (p99 and max over the whole part); its CPU time per part (user + system, all threads).
//    A verifySnapshot of the newest snapshot is a part; the API calls that fill and change the graph are parts of their
//    own ('fill', 'changes'), so that what they cost is not counted against the snapshots and restores around them.
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
  rssSampler,
  secs,
  snapshot,
  spread,
  startServer,
  stopServer,
  storage,
  storeFileOf,
  until,
  walk,
} from './server-process';
import { rng } from './synthetic-graph';

// ---------------------------------------------------------------------------------------------------------------
// The run

async function main(): Promise<void> {
  const nodes = Math.round(flag('nodes', 1_000_000));
  const relationships = 2 * nodes;
  const snapshots = Math.round(flag('snapshots', 24));
  const pairs = Math.round(flag('pairs', 3));
  const change = flag('change', 0.01);
  const batch = Math.min(MAX_BATCH, Math.round(flag('batch', MAX_BATCH)));
  const keep = process.argv.includes('--keep');

  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-storage-'));
  const dataDir = join(work, 'data');
  const baselineDir = join(work, 'baseline');
  const serverSettings = { SNAPGRAPH_COLLECT_GRACE_MS: '0' };
  console.log('bench:storage');
  console.log(JSON.stringify({ nodes, relationships, snapshots, pairs, changePerSnapshot: change, batch, work, serverEnv: serverSettings, cpus: cpus().length }));

  const server = await startServer(dataDir, serverSettings);
  const rss = rssSampler(server.child.pid!);
  const random = rng(7);
  const snapshotPairs: { product: number; baseline: number; order: string; storedBytes: number; gzipBytes: number }[] = [];
  const restorePairs: { product: number; server: number; baseline: number; order: string }[] = [];
  const summary: Record<string, unknown> = { nodes, relationships, snapshots, pairs, change };
  try {
    // --- data
    await rss.part('fill');
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "bench-storage", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    let started = performance.now();
    const ids = await fill(instanceId, nodes, relationships, batch, random);
    const storeBytes = statSync(storeFileOf(instanceId)).size;
    console.log(`\nfilled through the API: ${nodes} nodes + ${relationships} relationships in ${secs(performance.now() - started)}; store file ${MiB(storeBytes)}`);

    // --- a full snapshot against its baseline (one pair now; the others after the restores)
    const fullPair = async (pair: number) => {
      const copy = copyStore(instanceId, baselineDir);
      const productFirst = pair % 2 === 1;
      let product!: Awaited<ReturnType<typeof snapshot>>;
      let baseline!: Awaited<ReturnType<typeof baselineSnapshot>>;
      await rss.part('full snapshots');
      if (productFirst) product = await snapshot(instanceId);
      baseline = await baselineSnapshot(copy, baselineDir);
      if (!productFirst) product = await snapshot(instanceId);
      snapshotPairs.push({ product: product.ms, baseline: baseline.ms, order: productFirst ? 'product first' : 'baseline first', storedBytes: product.row.addedBytes ?? 0, gzipBytes: baseline.gzipBytes });
      console.log(
        `  pair ${pair} (${productFirst ? 'product first' : 'baseline first'}): snapshot ${secs(product.ms)}, stored ${MiB(product.row.addedBytes ?? 0)}; ` +
          `baseline .backup + gzip -1 ${secs(baseline.ms)} (${MiB(baseline.backupBytes)} → ${MiB(baseline.gzipBytes)}); ratio ${(product.ms / baseline.ms).toFixed(2)}`,
      );
      return product;
    };

    console.log(`\n[2] full snapshot / (sqlite3 online backup + gzip -1 of a copy of the same store), pair 1 = the instance's first snapshot`);
    const first = await fullPair(1);

    // --- 1. hourly snapshots with 1% change
    console.log(`\n[1] ${snapshots} snapshots, ${pct(change)} of the nodes changed (updateNodes, new random properties) before each after the first`);
    const later: { ms: number; added: number }[] = [];
    let latest = first.row;
    for (let i = 2; i <= snapshots; i++) {
      await rss.part('changes');
      await changeNodes(instanceId, ids, change, batch, random);
      await rss.part('hourly snapshots');
      const taken = await snapshot(instanceId);
      latest = taken.row;
      later.push({ ms: taken.ms, added: taken.row.addedBytes ?? 0 });
      console.log(`  snapshot ${i}: ${secs(taken.ms)}, added ${MiB(taken.row.addedBytes ?? 0)} (${pct((taken.row.addedBytes ?? 0) / (first.row.addedBytes ?? 1))} of the first)`);
    }
    const used = await storage(instanceId);
    const onDisk = walk(join(dataDir, 'blobs'));
    const firstStored = first.row.addedBytes ?? 0;
    await rss.part('export');
    started = performance.now();
    const exported = await gql(`mutation($id: ID!) { exportSnapshot(id: $id) { url sizeBytes sha256 } }`, { id: first.row.id });
    const exportMs = performance.now() - started;
    const download = await fetch(exported.exportSnapshot.url);
    const archiveBytes = (await download.arrayBuffer()).byteLength;
    console.log(`  export of the first snapshot: exportSnapshot answered after ${secs(exportMs)}, download ${secs(performance.now() - started - exportMs)}`);
    const shares = later.map((s) => s.added / firstStored);
    const fullCopies = snapshots * firstStored;
    const fullArchives = snapshots * exported.exportSnapshot.sizeBytes;
    console.log(`  first snapshot: stored ${MiB(firstStored)}, export archive ${MiB(exported.exportSnapshot.sizeBytes)} (downloaded ${archiveBytes} bytes), store ${MiB(first.row.contents?.storeSizeBytes ?? 0)}`);
    console.log(`  stored after ${snapshots} snapshots: usage.storedBytes ${MiB(used.usage.storedBytes)} (instance.backupStorage ${MiB(used.instance.backupStorage.storedBytes)}, logicalBytes ${MiB(used.usage.logicalBytes)}, snapshotCount ${used.usage.snapshotCount})`);
    console.log(`  vs ${snapshots} full copies of the first snapshot's stored bytes: ${MiB(fullCopies)} → ${pct(used.usage.storedBytes / fullCopies)} (${(fullCopies / used.usage.storedBytes).toFixed(1)}× less)`);
    console.log(`  vs ${snapshots} export archives: ${MiB(fullArchives)} → ${pct(used.usage.storedBytes / fullArchives)} (${(fullArchives / used.usage.storedBytes).toFixed(1)}× less)`);
    if (shares.length > 0) {
      console.log(`  addedBytes of snapshots 2..${snapshots} as a share of the first's: max ${pct(Math.max(...shares))}, median ${pct(median(shares))}, min ${pct(Math.min(...shares))}`);
      console.log(`  time of snapshots 2..${snapshots}: ${spread(later.map((s) => s.ms), secs)}; the first took ${secs(first.ms)}`);
    }
    console.log(
      `  usage.storedBytes ${used.usage.storedBytes} vs bytes under <data>/blobs ${onDisk.bytes} (${onDisk.files} files, ${onDisk.allocated} allocated): ` +
        `difference ${pct((used.usage.storedBytes - onDisk.bytes) / onDisk.bytes)} (measured before the export)`,
    );
    const afterExport = walk(join(dataDir, 'blobs'));
    console.log(`  after the export: ${afterExport.bytes} bytes under <data>/blobs (+${MiB(afterExport.bytes - onDisk.bytes)} held for the export), usage.storedBytes ${(await storage(instanceId)).usage.storedBytes}`);
    Object.assign(summary, {
      firstStoredBytes: firstStored,
      exportArchiveBytes: exported.exportSnapshot.sizeBytes,
      storedBytesAfterAll: used.usage.storedBytes,
      instanceStoredBytes: used.instance.backupStorage.storedBytes,
      logicalBytes: used.usage.logicalBytes,
      fullCopiesBytes: fullCopies,
      fullArchivesBytes: fullArchives,
      storedVsFullCopies: +(used.usage.storedBytes / fullCopies).toFixed(4),
      storedVsFullArchives: +(used.usage.storedBytes / fullArchives).toFixed(4),
      addedShareMax: shares.length ? +Math.max(...shares).toFixed(4) : null,
      addedShareMedian: shares.length ? +median(shares).toFixed(4) : null,
      blobBytesOnDisk: onDisk.bytes,
      storedVsDisk: +((used.usage.storedBytes - onDisk.bytes) / onDisk.bytes).toFixed(4),
    });

    // --- verification of the newest snapshot (its base and log read back, materialised into a scratch store)
    await rss.part('verify');
    started = performance.now();
    const { verifySnapshot } = await gql(`mutation($s: ID!) { verifySnapshot(id: $s) { id } }`, { s: latest.id });
    await operationDone(verifySnapshot.id);
    console.log(`  verifySnapshot of snapshot ${snapshots}: ${secs(performance.now() - started)}`);

    // --- 3. restores
    console.log(`\n[3] restore of snapshot ${snapshots} over the instance (safety point included; ${pct(change)} of the nodes changed before each) / (gzip -dc of a gzip -1 copy of the store + fsync)`);
    await rss.part('restore baseline prep');
    const prepared = await baselineSnapshot(copyStore(instanceId, baselineDir), baselineDir);
    const gz = join(baselineDir, 'backup.sqlite.gz');
    console.log(`  baseline input: ${MiB(prepared.backupBytes)} store file, ${MiB(prepared.gzipBytes)} gzip -1`);
    for (let pair = 1; pair <= pairs; pair++) {
      await rss.part('changes');
      await changeNodes(instanceId, ids, change, batch, random);
      const productFirst = pair % 2 === 1;
      let baselineMs = 0;
      await rss.part('restores');
      if (!productFirst) baselineMs = await baselineRestore(gz, join(baselineDir, 'restored.sqlite'));
      const restoreStarted = performance.now();
      const { restoreSnapshot } = await gql(`mutation($s: ID!) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE") { id } }`, { s: latest.id });
      const op = await operationDone(restoreSnapshot.id);
      const productMs = performance.now() - restoreStarted;
      await until('the instance to take writes again', async () => {
        const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status availability } }`, { id: instanceId });
        return instance.status === 'RUNNING' && instance.availability === 'AVAILABLE';
      });
      if (productFirst) baselineMs = await baselineRestore(gz, join(baselineDir, 'restored.sqlite'));
      const serverMs = Date.parse(op.finishedAt) - Date.parse(op.startedAt);
      restorePairs.push({ product: productMs, server: serverMs, baseline: baselineMs, order: productFirst ? 'product first' : 'baseline first' });
      console.log(`  pair ${pair} (${productFirst ? 'product first' : 'baseline first'}): restore ${secs(productMs)} (operation startedAt→finishedAt ${secs(serverMs)}); baseline ${secs(baselineMs)}; ratio ${(productMs / baselineMs).toFixed(2)}`);
    }
    await rss.part('create from snapshot');
    started = performance.now();
    const { createInstanceFromSnapshot } = await gql(
      `mutation($s: ID!) { createInstanceFromSnapshot(snapshotId: $s, input: { name: "bench-copy", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`,
      { s: latest.id },
    );
    await until('the new instance', async () => {
      const { instance } = await gql(`query($id: ID!) { instance(id: $id) { status } }`, { id: createInstanceFromSnapshot.id });
      if (instance.status === 'FAILED') throw new Error('createInstanceFromSnapshot FAILED');
      return instance.status === 'RUNNING';
    });
    const copyMs = performance.now() - started;
    const restoreBaselineMedian = median(restorePairs.map((p) => p.baseline));
    console.log(`  createInstanceFromSnapshot (one run, not paired): ${secs(copyMs)} = ${(copyMs / restoreBaselineMedian).toFixed(2)}× the median restore baseline`);
    await gql(`mutation($id: ID!) { deleteInstance(id: $id) }`, { id: createInstanceFromSnapshot.id });

    // --- 2. (continued) full snapshots again: every snapshot deleted and collected first
    console.log(`\n[2] (continued) before each further pair: every snapshot of the instance deleted and collection waited for, so that the next snapshot stores everything again`);
    for (let pair = 2; pair <= pairs; pair++) {
      await rss.part('delete and collect');
      for (;;) {
        const { snapshots: page } = await gql(`query($id: ID!) { snapshots(instanceId: $id, first: 100) { edges { node { id } } } }`, { id: instanceId });
        if (page.edges.length === 0) break;
        for (const edge of page.edges) await gql(`mutation($id: ID!) { deleteSnapshot(id: $id) }`, { id: edge.node.id });
      }
      // Collection runs after the deletes; it is waited for until the stored bytes are 0 or stop falling for 2 s.
      started = performance.now();
      const before = (await storage(instanceId)).usage.storedBytes;
      let last = before;
      let steadySince = performance.now();
      await until('collection', async () => {
        const now = (await storage(instanceId)).usage.storedBytes;
        if (now !== last) steadySince = performance.now();
        last = now;
        return now === 0 || (now < before && performance.now() - steadySince > 2_000) ? true : null;
      }, 250, 30_000).catch(() => undefined);
      console.log(`  collection: usage.storedBytes ${MiB(before)} → ${MiB(last)} after ${secs(performance.now() - started)}; ${MiB(walk(join(dataDir, 'blobs')).bytes)} under <data>/blobs`);
      const full = await fullPair(pair);
      const added = (full.row.addedBytes ?? 0) / firstStored;
      console.log(`    its addedBytes are ${pct(added)} of the first snapshot's${added < 0.9 ? ': it deduplicated against what collection left, so it is NOT a full snapshot' : ' (a full snapshot again)'}`);
    }

    const snapshotRatios = snapshotPairs.map((p) => p.product / p.baseline);
    const restoreRatios = restorePairs.map((p) => p.product / p.baseline);
    const { peaks, delays, cpu, hwmPerPart, peak, started: partsStarted } = await rss.stop();
    console.log(`\n[4] server peak RSS and event-loop delay per part (${hwmPerPart ? 'VmHWM of the server process, reset at the start of each part' : 'VmRSS sampled every 100 ms'}; delay from its /metrics):`);
    for (const [part, bytes] of peaks) {
      const delay = delays.get(part);
      const delayText = delay ? `${delay.p99.toFixed(0)} ms, max ${delay.max.toFixed(0)} ms` : '?';
      console.log(`    ${part.padEnd(22)} peak RSS ${MiB(bytes).padStart(10)} (${(bytes / 1e6).toFixed(0)} MB)   event-loop delay p99 ${delayText.padEnd(18)} server CPU ${(cpu.get(part) ?? 0).toFixed(1)} s`);
    }
    console.log('\nsummary');
    console.log(`  stored after ${snapshots} snapshots: ${MiB(used.usage.storedBytes)} vs ${MiB(fullCopies)} for ${snapshots} full copies (${pct(used.usage.storedBytes / fullCopies)}) and ${MiB(fullArchives)} for ${snapshots} export archives (${pct(used.usage.storedBytes / fullArchives)})`);
    if (shares.length > 0) console.log(`  addedBytes after the first: max ${pct(Math.max(...shares))}, median ${pct(median(shares))} of the first snapshot's`);
    console.log(`  usage.storedBytes vs bytes on disk: ${pct((used.usage.storedBytes - onDisk.bytes) / onDisk.bytes)}`);
    console.log(`  full snapshot: ${spread(snapshotPairs.map((p) => p.product), secs)}; baseline ${spread(snapshotPairs.map((p) => p.baseline), secs)}`);
    console.log(`  snapshot / (.backup + gzip -1) ratio: ${spread(snapshotRatios, (r) => r.toFixed(2))}`);
    console.log(`  restore: ${spread(restorePairs.map((p) => p.product), secs)}; baseline ${spread(restorePairs.map((p) => p.baseline), secs)}`);
    console.log(`  restore / (gzip -d + fsync) ratio: ${spread(restoreRatios, (r) => r.toFixed(2))}`);
    console.log(`  server peak RSS over every part: ${MiB(peak)} (${(peak / 1e6).toFixed(0)} MB); worst event-loop delay p99 of a part after boot: ${Math.max(...[...delays].filter(([part]) => part !== 'boot').map(([, d]) => d.p99)).toFixed(0)} ms`);
    Object.assign(summary, {
      snapshotPairs: snapshotPairs.map((p) => ({ ...p, ratio: +(p.product / p.baseline).toFixed(3) })),
      snapshotRatioMedian: +median(snapshotRatios).toFixed(3),
      restorePairs: restorePairs.map((p) => ({ ...p, ratio: +(p.product / p.baseline).toFixed(3) })),
      restoreRatioMedian: +median(restoreRatios).toFixed(3),
      createFromSnapshotMs: Math.round(copyMs),
      peakRssBytes: peak,
      peakRssByPart: Object.fromEntries(peaks),
      eventLoopDelayMsByPart: Object.fromEntries(delays),
      serverCpuSecondsByPart: Object.fromEntries(cpu),
      partsStartedAt: partsStarted,
    });
    console.log(JSON.stringify(summary));
  } catch (error) {
    console.error(`--- last server output ---\n${server.output.join('').slice(-8000)}`);
    throw error;
  } finally {
    await rss.stop();
    await stopServer(server);
    if (keep) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
