// S3 benchmark: the same work with the blob store on the local Swift s3api endpoint (SNAPGRAPH_BLOB_URL) and on the
// filesystem (the baseline), each pair in fresh server processes driven only through the GraphQL API
// (server-process.ts), interleaved with the order alternating per pair. Prints median and range per measure and the
// S3/filesystem ratio of the medians; asserts nothing. Not part of `npm test`. Needs scripts/s3/start-swift.sh.
//
//   npm run bench:s3 -- [--nodes 100000] [--pairs 3] [--batch 10000]
//
// Per server: N nodes + 2N relationships written through the API (random, hardly compressible properties), then
//   snapshot   createSnapshot to COMPLETED as the client sees it (the change log shipped to the blob store first);
//   export     exportSnapshot (the archive produced from the restore point into the blob store) and the download of
//              every byte of it;
//   restore    restoreSnapshot over the instance (safety snapshot, the base and log read back from the blob store);
//   copy-out   exportSnapshotTo a destination bucket (a second Swift account, for both backends).
// Throughput is the export archive's bytes over the time (the same bytes for both backends: a deterministic archive).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/storage/s3-client';
import { fill, flag, gql, MAX_BATCH, median, MiB, operationDone, secs, snapshot, spread, startServer, stopServer } from './server-process';
import { rng } from './synthetic-graph';

const MEASURES = ['snapshot', 'export', 'restore', 'copy-out'] as const;
type Measure = (typeof MEASURES)[number];
type Backend = 'filesystem' | 's3';

interface SwiftEnv {
  endpoint: string;
  blobs: { accessKeyId: string; secretAccessKey: string };
  second: { accessKeyId: string; secretAccessKey: string };
}

/** SNAPGRAPH_TEST_S3_* from the environment, else from the file start-swift.sh writes. */
function swiftEnv(): SwiftEnv {
  const values: Record<string, string> = {};
  const file = join(process.env.SNAPGRAPH_SWIFT_DIR ?? '/srv/snapgraph-swift', 's3.env');
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const match = /^(SNAPGRAPH_TEST_S3_[A-Z_]+)=(.*)$/.exec(line.trim());
      if (match) values[match[1]] = match[2];
    }
  }
  for (const [name, value] of Object.entries(process.env)) if (name.startsWith('SNAPGRAPH_TEST_S3_') && value) values[name] = value;
  if (!values.SNAPGRAPH_TEST_S3_ENDPOINT) throw new Error('no S3 endpoint: run scripts/s3/start-swift.sh first (or set SNAPGRAPH_TEST_S3_*)');
  return {
    endpoint: values.SNAPGRAPH_TEST_S3_ENDPOINT,
    blobs: { accessKeyId: values.SNAPGRAPH_TEST_S3_ACCESS_KEY_ID, secretAccessKey: values.SNAPGRAPH_TEST_S3_SECRET_ACCESS_KEY },
    second: { accessKeyId: values.SNAPGRAPH_TEST_S3_SECOND_ACCESS_KEY_ID, secretAccessKey: values.SNAPGRAPH_TEST_S3_SECOND_SECRET_ACCESS_KEY },
  };
}

async function emptyAndDelete(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const { Contents = [] } = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    if (Contents.length === 0) break;
    // One by one: DeleteObjects needs a Content-MD5 that the SDK only sends as a CRC, which Swift refuses.
    for (const object of Contents) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key! }));
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}

/** The client's time from the request to SUCCEEDED. */
async function timedOperation(request: () => Promise<string>): Promise<number> {
  const started = performance.now();
  await operationDone(await request());
  return performance.now() - started;
}

async function runOnce(
  backend: Backend,
  swift: SwiftEnv,
  buckets: { blobs: string; destination: string },
  nodes: number,
  batch: number,
  seed: number,
): Promise<{ times: Record<Measure, number>; archiveBytes: number; fillMs: number }> {
  const dataDir = mkdtempSync(join(tmpdir(), `snapgraph-bench-s3-${backend}-`));
  const env: Record<string, string> =
    backend === 's3'
      ? {
          SNAPGRAPH_BLOB_URL: `s3://${buckets.blobs}/run-${randomBytes(4).toString('hex')}`,
          SNAPGRAPH_S3_ENDPOINT: swift.endpoint,
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: swift.blobs.accessKeyId,
          AWS_SECRET_ACCESS_KEY: swift.blobs.secretAccessKey,
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        }
      : {};
  // The destination bucket is the local Swift's, on loopback.
  const server = await startServer(dataDir, { ...env, SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS: 'true' });
  try {
    const { createInstance } = await gql(`mutation { createInstance(input: { name: "bench-s3", tier: BUSINESS_CRITICAL, memoryGB: 64 }) { id } }`);
    const instanceId: string = createInstance.id;
    const filling = performance.now();
    await fill(instanceId, nodes, 2 * nodes, batch, rng(seed));
    const fillMs = performance.now() - filling;
    const { createExportDestination } = await gql(`mutation($input: ExportDestinationInput!) { createExportDestination(input: $input) { id } }`, {
      input: { name: 'bench', url: `s3://${buckets.destination}/${backend}`, endpoint: swift.endpoint, region: 'us-east-1', ...swift.second },
    });

    const { row, ms: snapshotMs } = await snapshot(instanceId);
    const exporting = performance.now();
    const { exportSnapshot } = await gql(`mutation($id: ID!) { exportSnapshot(id: $id) { url sizeBytes } }`, { id: row.id });
    const response = await fetch(exportSnapshot.url);
    let downloaded = 0;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) downloaded += chunk.length;
    const exportMs = performance.now() - exporting;
    if (downloaded !== exportSnapshot.sizeBytes) throw new Error(`downloaded ${downloaded} of ${exportSnapshot.sizeBytes} bytes`);

    const restoreMs = await timedOperation(async () =>
      (await gql(`mutation($s: ID!) { restoreSnapshot(snapshotId: $s, confirm: "RESTORE") { id } }`, { s: row.id })).restoreSnapshot.id,
    );
    const copyOutMs = await timedOperation(async () =>
      (await gql(`mutation($s: ID!, $d: ID!) { exportSnapshotTo(snapshotId: $s, destinationId: $d) { id } }`, { s: row.id, d: createExportDestination.id }))
        .exportSnapshotTo.id,
    );
    return { times: { snapshot: snapshotMs, export: exportMs, restore: restoreMs, 'copy-out': copyOutMs }, archiveBytes: exportSnapshot.sizeBytes, fillMs };
  } finally {
    await stopServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const nodes = Math.round(flag('nodes', 100_000));
  const pairs = Math.max(3, Math.round(flag('pairs', 3)));
  const batch = Math.min(MAX_BATCH, Math.round(flag('batch', 10_000)));
  const swift = swiftEnv();
  const client = createS3Client({ endpoint: swift.endpoint, credentials: swift.blobs });
  const destinationClient = createS3Client({ endpoint: swift.endpoint, credentials: swift.second });
  const buckets = { blobs: `snapgraph-bench-${randomBytes(4).toString('hex')}`, destination: `snapgraph-bench-dest-${randomBytes(4).toString('hex')}` };
  await client.send(new CreateBucketCommand({ Bucket: buckets.blobs }));
  await destinationClient.send(new CreateBucketCommand({ Bucket: buckets.destination }));
  console.log(`S3 benchmark: ${nodes} nodes + ${2 * nodes} relationships, ${pairs} interleaved pairs; S3 = Swift s3api at ${swift.endpoint}`);
  const results: Record<Backend, { times: Record<Measure, number>; archiveBytes: number; fillMs: number }[]> = { filesystem: [], s3: [] };
  try {
    for (let pair = 0; pair < pairs; pair++) {
      const order: Backend[] = pair % 2 === 0 ? ['filesystem', 's3'] : ['s3', 'filesystem'];
      for (const backend of order) {
        const result = await runOnce(backend, swift, buckets, nodes, batch, 1000 + pair);
        results[backend].push(result);
        const line = MEASURES.map((m) => `${m} ${secs(result.times[m])}`).join(', ');
        console.log(`  pair ${pair + 1} ${backend.padEnd(10)} fill ${secs(result.fillMs)}; ${line}; archive ${MiB(result.archiveBytes)}`);
      }
    }
  } finally {
    await emptyAndDelete(client, buckets.blobs).catch((error) => console.error(`could not remove ${buckets.blobs}: ${error}`));
    await emptyAndDelete(destinationClient, buckets.destination).catch((error) => console.error(`could not remove ${buckets.destination}: ${error}`));
    client.destroy();
    destinationClient.destroy();
  }

  console.log('\nmedian (range) per measure; throughput = export archive bytes / time');
  for (const measure of MEASURES) {
    const line = (backend: Backend) => {
      const times = results[backend].map((r) => r.times[measure]);
      const rates = results[backend].map((r) => r.archiveBytes / 1024 / 1024 / (r.times[measure] / 1000));
      return `${spread(times, secs)}; ${spread(rates, (v) => `${v.toFixed(1)} MiB/s`)}`;
    };
    const ratio = median(results.s3.map((r) => r.times[measure])) / median(results.filesystem.map((r) => r.times[measure]));
    console.log(`${measure.padEnd(9)} filesystem ${line('filesystem')}\n${''.padEnd(9)} s3         ${line('s3')}\n${''.padEnd(9)} S3 takes ${ratio.toFixed(2)}× the filesystem's time`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
