// Snapshot history for dashboards: 10,000 snapshots on one instance (--snapshots N), then the time of a page of 50
// through the API (first page, a deep cursor, a filtered page), as p50/p99 over repeated queries.
import { randomUUID } from 'node:crypto';
import { SnapshotEntity } from '../../src/entities/snapshot.entity';
import { flag, gql, startBenchServer } from './support';

const PAGE = `query($id: ID!, $after: String, $filter: SnapshotFilter) {
  snapshots(instanceId: $id, first: 50, after: $after, filter: $filter) {
    totalCount edges { cursor node { id createdAt status profile sizeBytes contents { nodeCount relationshipCount } } }
    pageInfo { hasNextPage endCursor } } }`;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main() {
  const count = flag('snapshots', 10_000);
  const server = await startBenchServer();
  try {
    const { createInstance } = await gql(server, `mutation { createInstance(input: { name: "history", tier: BUSINESS_CRITICAL }) { id tenantId: id } }`);
    const instance = (await server.app.services.instances.reload(createInstance.id))!;
    const start = Date.now() - count * 3_600_000;
    const rows: SnapshotEntity[] = [];
    for (let i = 0; i < count; i++) {
      rows.push(Object.assign(new SnapshotEntity(), {
        id: randomUUID(), tenantId: instance.tenantId, instanceId: instance.id, profile: i % 10 === 0 ? 'ON_DEMAND' : 'SCHEDULED',
        status: 'COMPLETED', createdAt: start + i * 3_600_000, completedAt: start + i * 3_600_000 + 5_000, expiresAt: null,
        description: null, sizeBytes: 1_000_000 + i, sha256: 'a'.repeat(64), engineVersion: 'V5',
        contents: { nodeCount: i, relationshipCount: 2 * i, labels: [], relationshipTypes: [], storeSizeBytes: 4096 }, error: null,
        blobKey: null,
      }));
    }
    await server.app.db.getRepository(SnapshotEntity).save(rows, { chunk: 500, reload: false });

    const time = async (label: string, variables: Record<string, unknown>) => {
      const samples: number[] = [];
      for (let i = 0; i < 200; i++) {
        const started = performance.now();
        await gql(server, PAGE, { id: instance.id, ...variables });
        samples.push(performance.now() - started);
      }
      return { page: label, p50ms: +percentile(samples, 50).toFixed(2), p99ms: +percentile(samples, 99).toFixed(2) };
    };
    let after: string | null = null;
    for (let page = 0; page < 100; page++) {
      const result: any = await gql(server, PAGE, { id: instance.id, after });
      after = result.snapshots.pageInfo.endCursor;
    }
    console.log(JSON.stringify({
      snapshots: count,
      results: [
        await time('first page', {}),
        await time('page 101 (deep cursor)', { after }),
        await time('filtered: ON_DEMAND in a 30-day window', {
          filter: { profile: 'ON_DEMAND', from: new Date(start + 2_000 * 3_600_000).toISOString(), to: new Date(start + 2_720 * 3_600_000).toISOString() },
        }),
      ],
    }, null, 2));
  } finally {
    await server.cleanup();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
