// Several real server processes sharing one PostgreSQL database, Redis, one S3 bucket (the local Swift s3api
// endpoint) and one data dir, as docs/replicas.md describes a deployment; skipped with a message when PostgreSQL, Redis
// or the S3 endpoint is not there.
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { registerCleanup } from './cleanup';
import { createTestDatabase, postgresAvailability } from './postgres';
import { createTestBucket, type S3TestEndpoint, s3Availability } from './s3';
import { makeTempDir, randomToken, startServer, type TestServer } from './server';

export const TEST_REDIS_URL = process.env.SNAPGRAPH_TEST_REDIS_URL?.trim() || 'redis://127.0.0.1:6379';

/** Whether Redis answers PING at TEST_REDIS_URL: null when it does, else why not. */
export function redisUnavailable(url = TEST_REDIS_URL, timeoutMs = 2000): Promise<string | null> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname || '127.0.0.1', port: Number(port || 6379) });
    let answer = '';
    const finish = (reason: string | null) => {
      socket.destroy();
      resolve(reason);
    };
    socket.setTimeout(timeoutMs, () => finish(`no answer from ${hostname}:${port || 6379}`));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      answer += data.toString();
      if (answer.includes('\r\n')) finish(answer.startsWith('+PONG') ? null : `unexpected answer to PING: ${answer.trim()}`);
    });
    socket.once('error', (error) => finish(`${error.message}`));
  });
}

export interface ReplicaSet {
  /** The replicas, booted in order (the first alone: it creates the master key and the bootstrap tenant). */
  readonly servers: TestServer[];
  /** The data dir they share (instance stores, the master key, upload completions). */
  readonly dataDir: string;
  /** Where their partial tus uploads are (shared as well). */
  readonly uploadDir: string;
  readonly databaseUrl: string;
  readonly bucket: string;
  readonly adminKey: string;
}

export interface ReplicaOptions {
  count?: number;
  env?: Record<string, string | undefined>;
  config?: object;
}

/**
 * A describe block that runs only when PostgreSQL, Redis and the S3 endpoint all answer; otherwise every test is
 * skipped and the reason printed. `s3()` and `adminUrl()` are set by the time `before` hooks declared later run.
 */
export function describeReplicas(title: string, body: (backends: { s3(): S3TestEndpoint; adminUrl(): string }) => void): Mocha.Suite {
  return describe(title, function () {
    let found: { s3: S3TestEndpoint; adminUrl: string } | undefined;
    before(async function skipWithoutBackends() {
      this.timeout(20_000);
      const [postgres, s3, redis] = await Promise.all([postgresAvailability(), s3Availability(), redisUnavailable()]);
      const missing = [
        'reason' in postgres ? `PostgreSQL: ${postgres.reason}` : null,
        redis !== null ? `Redis (${TEST_REDIS_URL}): ${redis}` : null,
        'reason' in s3 ? `S3 (run scripts/s3/start-swift.sh): ${s3.reason}` : null,
      ].filter((reason) => reason !== null);
      if (missing.length > 0 || 'reason' in postgres || 'reason' in s3) {
        console.log(`      (skipped "${title}": replicas need PostgreSQL, Redis and S3; missing ${missing.join('; ')})`);
        this.skip();
      }
      found = { s3, adminUrl: postgres.url };
    });
    const get = () => {
      if (!found) throw new Error('the backends have not been checked yet (use them inside hooks or tests)');
      return found;
    };
    body({ s3: () => get().s3, adminUrl: () => get().adminUrl });
  });
}

/** Boots `count` replicas (default 3) on a fresh database, bucket and data dir; all are released after the run. */
export async function startReplicas(backends: { s3: S3TestEndpoint; adminUrl: string }, options: ReplicaOptions = {}): Promise<ReplicaSet> {
  const { s3, adminUrl } = backends;
  const database = await createTestDatabase(adminUrl);
  const bucket = await createTestBucket(s3, s3.blobs);
  const dataDir = makeTempDir('snapgraph-replicas-');
  // startServer puts partial uploads beside the data dir; it removes them only for data dirs it made itself.
  const uploadDir = `${dataDir}-uploads`;
  registerCleanup(async () => rmSync(uploadDir, { recursive: true, force: true }));
  const adminKey = randomToken();
  const env = {
    DATABASE_URL: database.url,
    REDIS_URL: TEST_REDIS_URL,
    SNAPGRAPH_BLOB_URL: `s3://${bucket}/snapgraph`,
    SNAPGRAPH_S3_ENDPOINT: s3.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: s3.blobs.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.blobs.secretAccessKey,
    ...options.env,
  };
  const boot = () => startServer({ dataDir, bootstrapToken: adminKey, env, config: options.config, bootTimeoutMs: 60_000 });
  const first = await boot();
  const others = await Promise.all(Array.from({ length: (options.count ?? 3) - 1 }, boot));
  return { servers: [first, ...others], dataDir, uploadDir, databaseUrl: database.url, bucket, adminKey };
}
