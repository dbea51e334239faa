// Restore benchmark at 10,000 and 1,000,000 nodes (+ 2× relationships); `--sizes 10000,100000` to choose.
// For each size: seconds (and per phase), records/s, peak RSS, the UNAVAILABLE window, and the p99 latency of a
// read query issued every 50 ms during the restore; beside it, the time of a plain snapshot of the same data.
// `--realistic` fills the stores with realistic, less compressible properties (synthetic-graph.ts).
import { OperationEntity } from '../../src/entities/operation.entity';
import type { AvailabilityEventPayload } from '../../src/events/event-bus';
import { eventLoopMonitor, fillInstance, gql, mb, rssSampler, startBenchServer, waitFor } from './support';
import { propertyStyleFromArgs } from './synthetic-graph';

const sizes = (process.argv.includes('--sizes') ? process.argv[process.argv.indexOf('--sizes') + 1] : '10000,1000000')
  .split(',')
  .map(Number);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function benchSize(nodes: number) {
  const relationships = 2 * nodes;
  const server = await startBenchServer();
  try {
    const { createInstance } = await gql(server, `mutation { createInstance(input: { name: "bench", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    await fillInstance(server, instanceId, nodes, relationships, propertyStyleFromArgs());
    const operationDone = async (id: string) =>
      waitFor(async () => {
        const row = await server.app.db.getRepository(OperationEntity).findOne({ where: { id } });
        if (row?.status === 'FAILED') throw new Error(`operation failed: ${row.errorMessage}`);
        return row?.status === 'SUCCEEDED' ? row : null;
      }, 20);

    const { createSnapshot } = await gql(server, `mutation($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: instanceId });
    const snapshotOp = await operationDone((await server.app.services.operations.current(instanceId))!.id);
    const snapshotSeconds = (Number(snapshotOp.finishedAt) - Number(snapshotOp.startedAt)) / 1000;

    const phases: Record<string, number> = {};
    let unavailableAt = 0;
    let unavailableMs = 0;
    const availability = server.app.events.pubSub.subscribe('instance.availability', (await server.app.services.instances.reload(instanceId))!.tenantId);
    void (async () => {
      for await (const event of availability as AsyncIterable<AvailabilityEventPayload>) {
        if (event.availability === 'UNAVAILABLE') unavailableAt = performance.now();
        if (event.availability === 'AVAILABLE' && unavailableAt) unavailableMs = performance.now() - unavailableAt;
      }
    })();

    const latencies: number[] = [];
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const started = performance.now();
        await gql(server, `query($id: ID!) { nodes(instanceId: $id, first: 10) { edges { node { id } } } }`, { id: instanceId }).catch(() => undefined);
        latencies.push(performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    const rss = rssSampler();
    const loop = eventLoopMonitor();
    rss.start();
    loop.start();
    const { restoreSnapshot } = await gql(server, `mutation($s: ID!) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE") { id } }`, { s: createSnapshot.id });
    let lastPhase = '';
    let phaseStart = performance.now();
    const progress = server.app.events.pubSub.subscribe('operation.updated', restoreSnapshot.id);
    void (async () => {
      for await (const event of progress) {
        const phase = String(event.operation.phase ?? '');
        if (phase === lastPhase) continue;
        if (lastPhase) phases[lastPhase] = (phases[lastPhase] ?? 0) + (performance.now() - phaseStart) / 1000;
        lastPhase = phase;
        phaseStart = performance.now();
      }
    })();
    const row = await operationDone(restoreSnapshot.id);
    await progress.return();
    const delay = loop.stop();
    const peak = rss.stop();
    reading = false;
    await reader;
    await availability.return();
    const seconds = (Number(row.finishedAt) - Number(row.startedAt)) / 1000;

    // The same data into a new instance: the pipeline without a safety snapshot of existing data.
    const { createInstanceFromSnapshot } = await gql(
      server,
      `mutation($s: ID!) { createInstanceFromSnapshot(snapshotId: $s, input: { name: "copy", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`,
      { s: createSnapshot.id },
    );
    const copyOp = await operationDone((await server.app.services.operations.current(createInstanceFromSnapshot.id))!.id);
    const copySeconds = (Number(copyOp.finishedAt) - Number(copyOp.startedAt)) / 1000;
    return {
      nodes,
      relationships,
      restoreSeconds: +seconds.toFixed(2),
      phaseSeconds: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +v.toFixed(2)])),
      recordsPerSecond: Math.round((nodes + relationships) / seconds),
      snapshotSeconds: +snapshotSeconds.toFixed(2),
      ratioToSnapshot: +(seconds / snapshotSeconds).toFixed(2),
      createFromSnapshotSeconds: +copySeconds.toFixed(2),
      createFromSnapshotRatioToSnapshot: +(copySeconds / snapshotSeconds).toFixed(2),
      peakRssMB: +mb(peak),
      unavailableWindowMs: +unavailableMs.toFixed(1),
      readP99ms: +percentile(latencies, 99).toFixed(1),
      reads: latencies.length,
      eventLoopDelayP99ms: +delay.p99ms.toFixed(1),
    };
  } finally {
    await server.cleanup();
  }
}

async function main() {
  for (const nodes of sizes) console.log(JSON.stringify(await benchSize(nodes), null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
