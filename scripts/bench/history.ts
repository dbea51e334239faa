// Snapshot history for dashboards: 10,000 snapshots on one instance (--snapshots N), then the time of a page of 50
// through the API (first page, a deep cursor, a filtered page), as p50/p99 over repeated queries. Prints figures;
// asserts nothing beyond the history being all there. Not part of `npm test`.
//
//   npm run bench:history -- [--snapshots 10000]
//
// The server runs in its own process (`bin/snapgraph serve`, fresh data dir, LOG_LEVEL=warn; server-process.ts) and
// is measured only through its GraphQL API. Taking 10,000 snapshots through the API would take hours, so the history
// is prepared while no server runs: a first server process creates the instance and one real snapshot (createSnapshot),
// and stops; the bench then copies that snapshot's row in the metadata database (<data>/metadata.sqlite, with
// better-sqlite3) into N − 1 hourly snapshots before it (every 10th ON_DEMAND, the rest SCHEDULED; same restore point,
// contents with varying counts); a second server process on the same data dir answers the pages. The tier's retention
// (30 days for BUSINESS_CRITICAL) is switched off in this run's SNAPGRAPH_CONFIG: the server sweeps retention every
// second, and would otherwise delete all but the newest 720 hourly snapshots before or while they are measured.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { flag, gql, percentile, snapshot, type Server, startServer, stopServer } from './server-process';

const HOUR = 3_600_000;
const SAMPLES = 200;

const PAGE = `query($id: ID!, $after: String, $filter: SnapshotFilter) {
  snapshots(instanceId: $id, first: 50, after: $after, filter: $filter) {
    totalCount edges { cursor node { id createdAt status profile sizeBytes contents { nodeCount relationshipCount } } }
    pageInfo { hasNextPage endCursor } } }`;

/** The snapshot's row as the server wrote it, copied `count - 1` times into the hours before it, in one transaction. */
function prepareHistory(dataDir: string, snapshotId: string, count: number): { oldest: number } {
  const db = new Database(join(dataDir, 'metadata.sqlite'));
  try {
    const template = db.prepare('SELECT * FROM snapshots WHERE id = ?').get(snapshotId) as Record<string, unknown> | undefined;
    if (!template) throw new Error(`snapshot ${snapshotId} is not in the metadata database`);
    const columns = Object.keys(template);
    const insert = db.prepare(`INSERT INTO snapshots (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`);
    const newest = Number(template.createdAt);
    const took = template.completedAt === null ? 5_000 : Number(template.completedAt) - newest;
    const contents = template.contents === null ? null : JSON.parse(String(template.contents));
    const oldest = newest - (count - 1) * HOUR;
    db.transaction(() => {
      for (let i = 0; i < count - 1; i++) {
        const createdAt = oldest + i * HOUR;
        insert.run({
          ...template,
          id: randomUUID(),
          profile: i % 10 === 0 ? 'ON_DEMAND' : 'SCHEDULED',
          createdAt,
          completedAt: createdAt + took,
          expiresAt: null,
          contents: contents === null ? null : JSON.stringify({ ...contents, nodeCount: i, relationshipCount: 2 * i }),
        });
      }
    })();
    return { oldest };
  } finally {
    db.close();
  }
}

async function main() {
  const count = Math.round(flag('snapshots', 10_000));
  const work = mkdtempSync(join(tmpdir(), 'snapgraph-bench-history-'));
  const dataDir = join(work, 'data');
  const configFile = join(work, 'snapgraph.json');
  writeFileSync(configFile, JSON.stringify({ tiers: { BUSINESS_CRITICAL: { retention: null } } }));
  const env = { SNAPGRAPH_CONFIG: configFile };
  let server: Server | null = null;
  try {
    // 1. The instance and one real snapshot, through the API of a first server process.
    server = await startServer(dataDir, env);
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "history", tier: BUSINESS_CRITICAL }) { id } }`);
    const instanceId: string = createInstance.id;
    const { row: real } = await snapshot(instanceId);
    await stopServer(server);
    server = null;

    // 2. The rest of the history, written into the metadata database while no server runs.
    let started = performance.now();
    const { oldest } = prepareHistory(dataDir, real.id, count);
    console.error(`${count - 1} snapshot rows copied from snapshot ${real.id} in ${((performance.now() - started) / 1000).toFixed(2)} s`);

    // 3. A second server process on the same data, measured through its API.
    server = await startServer(dataDir, env);
    const first = await gql(PAGE, { id: instanceId });
    if (first.snapshots.totalCount !== count) throw new Error(`the instance has ${first.snapshots.totalCount} snapshots, expected ${count}`);

    const time = async (label: string, variables: Record<string, unknown>) => {
      const samples: number[] = [];
      let rows = 0;
      for (let i = 0; i < SAMPLES; i++) {
        started = performance.now();
        const result = await gql(PAGE, { id: instanceId, ...variables });
        samples.push(performance.now() - started);
        rows = result.snapshots.edges.length;
      }
      return { page: label, rows, p50ms: +percentile(samples, 50).toFixed(2), p99ms: +percentile(samples, 99).toFixed(2) };
    };
    // Page 101 with the default 10,000 (fewer when there are not that many pages).
    const deep = Math.max(1, Math.min(100, Math.ceil(count / 50) - 1));
    let after: string | null = null;
    for (let page = 0; page < deep; page++) {
      const result: any = await gql(PAGE, { id: instanceId, after });
      after = result.snapshots.pageInfo.endCursor;
    }
    // 30 days from 2,000 hours after the oldest snapshot with the default 10,000 (a fifth of the history in).
    const from = oldest + Math.round(count / 5) * HOUR;
    console.log(JSON.stringify({
      snapshots: count,
      results: [
        await time('first page', {}),
        await time(`page ${deep + 1} (deep cursor)`, { after }),
        await time('filtered: ON_DEMAND in a 30-day window', {
          filter: { profile: 'ON_DEMAND', from: new Date(from).toISOString(), to: new Date(from + 720 * HOUR).toISOString() },
        }),
      ],
    }, null, 2));
  } catch (error) {
    if (server) console.error(`--- last server output ---\n${server.output.join('').slice(-8000)}`);
    throw error;
  } finally {
    if (server) await stopServer(server);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
