// Write throughput through the public API: a real server process, batched createNodes and createRelationships
// over HTTP, then the server's peak RSS. Prints figures; asserts nothing. Not part of `npm test`.
//
//   npm run bench:write -- [--nodes 100000] [--relationships 2×nodes] [--batch 1000] [--concurrency 1] [--realistic]
//
// --realistic: realistic, less compressible properties (synthetic-graph.ts) instead of short repetitive ones.
import { readFileSync } from 'node:fs';
import { expectData, gql, releaseAll, startServer, type TestServer } from '../../test/support';
import { LABELS, propertyMaker, propertyStyleFromArgs, rng, TYPES } from './synthetic-graph';

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer`);
  return value;
}


/** VmHWM (peak resident set) of a process, in MiB; null where /proc is not available. */
function peakRssMiB(pid: number): number | null {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Runs `count` items through `write` in batches, `concurrency` batches in flight; returns items per second. */
async function timeBatches(
  count: number,
  batchSize: number,
  concurrency: number,
  write: (start: number, size: number) => Promise<void>,
): Promise<{ perSecond: number; seconds: number }> {
  const started = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const start = next;
      const size = Math.min(batchSize, count - start);
      next += size;
      await write(start, size);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSecond: count / seconds, seconds };
}

async function main(): Promise<void> {
  const nodeCount = flag('nodes', 100_000);
  const relationshipCount = flag('relationships', 2 * nodeCount);
  const batchSize = flag('batch', 1_000);
  const concurrency = flag('concurrency', 1);
  const random = rng();
  const style = propertyStyleFromArgs();
  const properties = propertyMaker(style, random);

  const server: TestServer = await startServer();
  try {
    const { createInstance: instance } = expectData(
      await gql(server, `mutation { createInstance(input: { name: "bench", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`),
    );
    const nodeIds: string[] = new Array(nodeCount);

    const nodes = await timeBatches(nodeCount, batchSize, concurrency, async (start, size) => {
      const batch = Array.from({ length: size }, (_, i) => {
        const n = start + i;
        return {
          labels: [LABELS[n % LABELS.length]],
          properties: properties.node(n),
        };
      });
      const { createNodes } = expectData(
        await gql(server, `mutation ($id: ID!, $nodes: [NodeInput!]!) { createNodes(instanceId: $id, nodes: $nodes) { id } }`, {
          id: instance.id,
          nodes: batch,
        }),
      );
      createNodes.forEach((node: { id: string }, i: number) => (nodeIds[start + i] = node.id));
    });

    const relationships = await timeBatches(relationshipCount, batchSize, concurrency, async (start, size) => {
      const batch = Array.from({ length: size }, (_, i) => ({
        type: TYPES[(start + i) % TYPES.length],
        startNodeId: nodeIds[Math.floor(random() * nodeCount)],
        endNodeId: nodeIds[Math.floor(random() * nodeCount)],
        properties: properties.relationship(start + i),
      }));
      expectData(
        await gql(
          server,
          `mutation ($id: ID!, $relationships: [RelationshipInput!]!) { createRelationships(instanceId: $id, relationships: $relationships) { id } }`,
          { id: instance.id, relationships: batch },
        ),
      );
    });

    const { instance: written } = expectData(
      await gql(server, `query ($id: ID!) { instance(id: $id) { stats { nodeCount relationshipCount storeSizeBytes } } }`, { id: instance.id }),
    );
    const peak = peakRssMiB(server.process.pid!);

    const figures = {
      nodes: nodeCount,
      relationships: relationshipCount,
      properties: style,
      batch: batchSize,
      concurrency,
      nodesPerSecond: Math.round(nodes.perSecond),
      nodeSeconds: Number(nodes.seconds.toFixed(2)),
      relationshipsPerSecond: Math.round(relationships.perSecond),
      relationshipSeconds: Number(relationships.seconds.toFixed(2)),
      storeMiB: Number((written.stats.storeSizeBytes / 2 ** 20).toFixed(1)),
      serverPeakRssMiB: peak === null ? null : Number(peak.toFixed(1)),
    };
    if (written.stats.nodeCount !== nodeCount || written.stats.relationshipCount !== relationshipCount) {
      throw new Error(`the instance holds ${JSON.stringify(written.stats)}, not what was written`);
    }
    process.stdout.write(
      `write benchmark (${nodeCount} nodes, ${relationshipCount} relationships, ${style} properties, batches of ${batchSize}, ${concurrency} in flight)\n` +
        `  nodes:         ${figures.nodesPerSecond.toLocaleString('en')} /s  (${figures.nodeSeconds} s)\n` +
        `  relationships: ${figures.relationshipsPerSecond.toLocaleString('en')} /s  (${figures.relationshipSeconds} s)\n` +
        `  store size:    ${figures.storeMiB} MiB\n` +
        `  server peak RSS (VmHWM): ${figures.serverPeakRssMiB ?? 'n/a'} MiB\n` +
        `${JSON.stringify(figures)}\n`,
    );
  } finally {
    await server.stop();
    await releaseAll();
  }
}

main().catch((error) => {
  process.stderr.write(`bench:write failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
