// The local S3 endpoint (OpenStack Swift's s3api, started by scripts/s3/start-swift.sh) for suites that store blobs in
// S3 or export to a bucket; skipped with a message when it is not there.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListBucketsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/storage/s3-client';
import { registerCleanup } from './cleanup';

export interface S3Account {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3TestEndpoint {
  endpoint: string;
  /** The account the server's blob bucket belongs to. */
  blobs: S3Account;
  /** Another account, with other credentials: a tenant's own export destination. */
  second: S3Account;
}

export type S3Availability = S3TestEndpoint | { reason: string };

let availability: Promise<S3Availability> | undefined;

/**
 * SNAPGRAPH_TEST_S3_* from the environment or, when unset, from the file start-swift.sh writes
 * (`$SNAPGRAPH_SWIFT_DIR/s3.env`, default /srv/snapgraph-swift); checked once per run with a signed request.
 */
export function s3Availability(): Promise<S3Availability> {
  return (availability ??= probe());
}

function readSettings(): Record<string, string> {
  const settings: Record<string, string> = {};
  const file = join(process.env.SNAPGRAPH_SWIFT_DIR ?? '/srv/snapgraph-swift', 's3.env');
  if (!process.env.SNAPGRAPH_TEST_S3_ENDPOINT && existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const match = /^(SNAPGRAPH_TEST_S3_[A-Z_]+)=(.*)$/.exec(line.trim());
      if (match) settings[match[1]] = match[2];
    }
  }
  for (const [name, value] of Object.entries(process.env)) if (name.startsWith('SNAPGRAPH_TEST_S3_') && value) settings[name] = value;
  return settings;
}

async function probe(): Promise<S3Availability> {
  const s = readSettings();
  if (!s.SNAPGRAPH_TEST_S3_ENDPOINT) return { reason: 'SNAPGRAPH_TEST_S3_ENDPOINT is not set and scripts/s3/start-swift.sh has not run' };
  const found: S3TestEndpoint = {
    endpoint: s.SNAPGRAPH_TEST_S3_ENDPOINT,
    blobs: { accessKeyId: s.SNAPGRAPH_TEST_S3_ACCESS_KEY_ID ?? '', secretAccessKey: s.SNAPGRAPH_TEST_S3_SECRET_ACCESS_KEY ?? '' },
    second: { accessKeyId: s.SNAPGRAPH_TEST_S3_SECOND_ACCESS_KEY_ID ?? '', secretAccessKey: s.SNAPGRAPH_TEST_S3_SECOND_SECRET_ACCESS_KEY ?? '' },
  };
  const client = createS3Client({ endpoint: found.endpoint, credentials: found.blobs }, { maxAttempts: 1 });
  try {
    await client.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(5_000) });
    return found;
  } catch (error) {
    return { reason: `the S3 endpoint ${found.endpoint} does not answer: ${(error as Error).name}: ${(error as Error).message}` };
  } finally {
    client.destroy();
  }
}

/**
 * A describe block that runs only when the S3 endpoint answers; otherwise every test is skipped and the reason
 * printed. Inside, `s3()` is the endpoint (set by the time `before` hooks declared later run).
 */
export function describeS3(title: string, body: (s3: { s3(): S3TestEndpoint }) => void): Mocha.Suite {
  return describe(title, function () {
    let found: S3TestEndpoint | undefined;
    before(async function skipWithoutS3() {
      this.timeout(15_000);
      const result = await s3Availability();
      if ('reason' in result) {
        console.log(`      (skipped "${title}": no S3 endpoint for the tests (run scripts/s3/start-swift.sh): ${result.reason})`);
        this.skip();
      }
      found = result;
    });
    body({
      s3: () => {
        if (!found) throw new Error('S3 availability has not been checked yet (use it inside hooks or tests)');
        return found;
      },
    });
  });
}

export function testS3Client(endpoint: S3TestEndpoint, account: S3Account): S3Client {
  return createS3Client({ endpoint: endpoint.endpoint, credentials: account });
}

/** Creates a fresh bucket in `account` (so runs never collide); emptied and removed after the test or the run. */
export async function createTestBucket(endpoint: S3TestEndpoint, account: S3Account): Promise<string> {
  const bucket = `snapgraph-test-${randomBytes(6).toString('hex')}`;
  const client = testS3Client(endpoint, account);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  registerCleanup(async () => {
    await emptyBucket(client, bucket).catch(() => undefined);
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    client.destroy();
  });
  return bucket;
}

/** Deletes every object in the bucket. */
export async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    if (!page.Contents?.length) return;
    // One by one: DeleteObjects needs a Content-MD5 that the SDK only sends as a CRC, which Swift refuses.
    for (const object of page.Contents) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key! }));
  }
}

export interface HoldingS3Proxy {
  /** The proxy's endpoint: give it to a client (or a destination) in place of the real one. */
  endpoint: string;
  /** Requests held so far (forwarded once released). */
  held(): number;
  /** Forwards the requests held, and every later one at once. */
  release(): void;
}

/**
 * In front of the S3 endpoint: passes every request on, except those `hold` picks, which wait (unanswered, their body
 * unread) until release(): a request caught in the middle, as on a slow service. Closed after the test or the run.
 */
export async function holdingS3Proxy(endpoint: S3TestEndpoint, hold: (request: IncomingMessage) => boolean): Promise<HoldingS3Proxy> {
  const waiting: (() => void)[] = [];
  let released = false;
  let held = 0;
  const proxy = createServer((incoming, response) => {
    const forward = () => {
      const forwarded = request(new URL(incoming.url ?? '/', endpoint.endpoint), { method: incoming.method, headers: incoming.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      });
      forwarded.on('error', () => response.destroy());
      incoming.pipe(forwarded);
    };
    if (released || !hold(incoming)) return forward();
    held += 1;
    waiting.push(forward);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  registerCleanup(async () => {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  });
  return {
    endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    held: () => held,
    release: () => {
      released = true;
      for (const forward of waiting.splice(0)) forward();
    },
  };
}
