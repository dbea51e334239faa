// Child process of the benchmarks: writes a synthetic graph into a new SQLite store file with the bulk loader,
// so that the memory of generating test data never counts against the server being measured.
// Usage: node fill-store.js <store-path> <nodes> <relationships> [simple|realistic]   (prints the store's GraphStats as JSON)
import { SqliteGraphLoader } from '../../src/graph/sqlite-graph-store';
import { type PropertyStyle, syntheticGraph } from './synthetic-graph';

async function main() {
  const [path, nodes, relationships, style = 'simple'] = process.argv.slice(2);
  // Benchmark data has no instance limits to respect.
  const unlimited = { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER };
  const loader = await SqliteGraphLoader.create(path, unlimited, async () => undefined);
  for await (const batch of syntheticGraph(Number(nodes), Number(relationships), 5_000, style as PropertyStyle)) await loader.insert(batch);
  process.stdout.write(JSON.stringify(await loader.finish()));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
