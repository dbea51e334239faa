// Full snapshot benchmark: N nodes + 2N relationships (default 200,000 nodes; `--nodes N`), written through the API
// into a fresh instance for each pair, then the instance's first (full) snapshot against sqlite3's online backup +
// `gzip -1` of a copy of the same store, in its own process. The server runs in its own process (server-process.ts);
// product and baseline alternate which goes first, pair after pair; median and range printed, ratios per pair.
// `--realistic` writes realistic, less compressible properties (synthetic-graph.ts). Prints figures; asserts nothing.
//
//   npm run bench:snapshot -- [--nodes 200000] [--pairs 3] [--batch 10000] [--realistic]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baselineSnapshot, copyStore, fill, flag, gql, MAX_BATCH, MiB, rssSampler, secs, snapshot, spread, startServer, stopServer } from './server-process';
import { propertyMaker, propertyStyleFromArgs, rng } from './synthetic-graph';

async function main(): Promise<void> {
  const nodes = Math.round(flag('nodes', 200_000));
  const relationships = 2 * nodes;
  const pairs = Math.round(flag('pairs', 3));
  const batch = Math.min(MAX_BATCH, Math.round(flag('batch', 10_000)));
  const style = propertyStyleFromArgs();

  const dir = mkdtempSync(join(tmpdir(), 'snapgraph-bench-snapshot-'));
  const server = await startServer(join(dir, 'data'), {});
  const rss = rssSampler(server.child.pid!);
  try {
    const rows: { productMs: number; baselineMs: number; archiveBytes: number; storeBytes: number; gzipBytes: number }[] = [];
    for (let pair = 0; pair < pairs; pair++) {
      await rss.part(`fill ${pair + 1}`);
      const { createInstance } = await gql(`mutation($name: String!) { createInstance(input: { name: $name, tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`, {
        name: `bench-${pair + 1}`,
      });
      // A seed of its own per pair: the chunk store deduplicates across a tenant's instances, and the same graph
      // again would cost the next snapshot nothing.
      const random = rng(42 + pair);
      await fill(createInstance.id, nodes, relationships, batch, random, propertyMaker(style, random));
      const copy = copyStore(createInstance.id, join(dir, 'baseline'));
      const productFirst = pair % 2 === 0;
      let baseline = productFirst ? null : await baselineSnapshot(copy, join(dir, 'baseline'));
      await rss.part(`snapshot ${pair + 1}`);
      const product = await snapshot(createInstance.id);
      await rss.part(`after ${pair + 1}`);
      baseline ??= await baselineSnapshot(copy, join(dir, 'baseline'));
      rows.push({
        productMs: product.ms,
        baselineMs: baseline.ms,
        archiveBytes: product.row.addedBytes ?? product.row.sizeBytes ?? 0,
        storeBytes: product.row.contents?.storeSizeBytes ?? 0,
        gzipBytes: baseline.gzipBytes,
      });
      process.stdout.write(
        `pair ${pair + 1} (${productFirst ? 'snapshot first' : 'baseline first'}): snapshot ${secs(product.ms)}, stored ${MiB(rows[pair].archiveBytes)}; ` +
          `baseline ${secs(baseline.ms)}, gzip -1 ${MiB(baseline.gzipBytes)}; ratio ${(product.ms / baseline.ms).toFixed(2)}×\n`,
      );
    }
    const { peaks, peak } = await rss.stop();
    const snapshotPeak = Math.max(...[...peaks].filter(([part]) => part.startsWith('snapshot')).map(([, bytes]) => bytes));
    process.stdout.write(
      `\nfull snapshot, ${nodes.toLocaleString('en')} nodes + ${relationships.toLocaleString('en')} relationships, ${style} properties, ` +
        `store ${MiB(rows[0].storeBytes)}\n` +
        `  snapshot            ${spread(rows.map((r) => r.productMs), secs)}\n` +
        `  backup + gzip -1    ${spread(rows.map((r) => r.baselineMs), secs)}\n` +
        `  ratio (per pair)    ${spread(rows.map((r) => r.productMs / r.baselineMs), (v) => `${v.toFixed(2)}×`)}\n` +
        `  stored bytes        ${spread(rows.map((r) => r.archiveBytes), MiB)}  (gzip -1 of the store: ${MiB(rows[0].gzipBytes)})\n` +
        `  records/s           ${spread(rows.map((r) => (nodes + relationships) / (r.productMs / 1000)), (v) => Math.round(v).toLocaleString('en'))}\n` +
        `  server peak RSS while snapshotting ${MiB(snapshotPeak)} (over the whole run, fills included: ${MiB(peak)})\n`,
    );
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
