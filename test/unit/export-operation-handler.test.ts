// The EXPORT handler's clean-up of an interrupted export, against a stand-in for the tenant's S3 endpoint.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DataSource } from 'typeorm';
import { Keyring, MasterKey } from '../../src/crypto';
import type { ExportDestinationEntity } from '../../src/entities/export-destination.entity';
import type { OperationEntity } from '../../src/entities/operation.entity';
import { createLogger } from '../../src/logging/logger';
import type { InstanceService } from '../../src/services/instance.service';
import { ExportDestinationService, ExportOperationHandler } from '../../src/services/export-destination.service';
import { createTestBucket, describeS3, testS3Client } from '../support/s3';
import type { SnapshotService } from '../../src/services/snapshot.service';
import type { Principal } from '../../src/services/principal';

const ACCESS_KEY_ID = 'AKIATENANTKEY0000001';
const SECRET_ACCESS_KEY = 'tenant-secret-0123456789abcdefghij';

/**
 * A destination at the stand-in endpoint `url`, its keys sealed, and a service that finds it by id without a database.
 * `n` tells the ids of one test's rows from another's.
 */
function destinationAt(
  url: string,
  n: number,
  { bucket = 'tenant-bucket', credentials = { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY } } = {},
): { destination: ExportDestinationEntity; destinations: ExportDestinationService } {
  const destination = {
    id: `00000000-0000-4000-8000-0000000000${n}1`,
    tenantId: `00000000-0000-4000-8000-0000000000${n}2`,
    name: 'offsite',
    url: `s3://${bucket}/backups`,
    endpoint: url,
    region: 'us-east-1',
    autoExportInstanceIds: [],
    masterKeyId: '',
    sealedCredentials: '',
    createdAt: 0,
    lastExportAt: null,
    lastError: null,
  } satisfies ExportDestinationEntity;
  const noRepositories = { getRepository: () => ({}) } as unknown as DataSource;
  const destinations = new ExportDestinationService(noRepositories, new Keyring(MasterKey.generate()), {} as InstanceService, {} as SnapshotService, () => undefined, {
    retryBaseMs: 1000,
    allowPrivateAddresses: true,
  });
  Object.assign(destination, (destinations as unknown as { seal: (...args: unknown[]) => object }).seal(destination, credentials));
  destinations.byId = async () => destination;
  return { destination, destinations };
}

/** The EXPORT of a stand-in COMPLETED snapshot (ids from `n`, taken at 03:04:`second`) to a destinationAt's destination. */
function exportOf(
  { destination, destinations }: ReturnType<typeof destinationAt>,
  n: number,
  { second, sizeBytes, sha256, openArchive, auto = false }: { second: number; sizeBytes: number; sha256: string; openArchive: () => Promise<Readable>; auto?: boolean },
) {
  const snapshot = {
    id: `00000000-0000-4000-8000-0000000000${n}3`,
    tenantId: destination.tenantId,
    instanceId: `00000000-0000-4000-8000-0000000000${n}4`,
    status: 'COMPLETED',
    createdAt: Date.UTC(2026, 0, 2, 3, 4, second),
    engineVersion: 'V5',
    sizeBytes,
    sha256,
  };
  const snapshots = {
    byId: async () => snapshot,
    prepareExport: async () => snapshot,
    openArchive,
    takenInSameSecond: async () => [],
  } as unknown as SnapshotService;
  const instances = { reload: async () => ({ name: 'prod' }) } as unknown as InstanceService;
  const handler = new ExportOperationHandler(destinations, snapshots, instances, createLogger('silent'));
  const operation = { id: `op-${n}`, tenantId: destination.tenantId, snapshotId: snapshot.id, params: { destinationId: destination.id, auto, retry: 0 } } as unknown as OperationEntity;
  return { snapshot, handler, operation };
}

describe('EXPORT clean-up', () => {
  let endpoint: Server;
  let url = '';
  before(async () => {
    // What S3 answers keys it no longer knows (the tenant rotated them): the body repeats the access key id.
    endpoint = createServer((request, response) => {
      request.resume();
      response.writeHead(403, { 'content-type': 'application/xml' }).end(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidAccessKeyId</Code>' +
          '<Message>The AWS Access Key Id you provided does not exist in our records.</Message>' +
          `<AWSAccessKeyId>${ACCESS_KEY_ID}</AWSAccessKeyId><RequestId>r-1</RequestId><HostId>h-1</HostId></Error>`,
      );
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => endpoint.close(() => resolve())));

  it("logs a failed abort of an interrupted export's upload without the tenant's keys", async () => {
    const lines: string[] = [];
    const log = createLogger(
      'info',
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }) as never,
    );
    const { destination, destinations } = destinationAt(url, 1);
    const handler = new ExportOperationHandler(destinations, {} as SnapshotService, {} as InstanceService, log);
    const operation = { id: 'op-1', params: { destinationId: destination.id, auto: false, retry: 0, write: { fileName: 'g.backup', uploadId: 'u-1' } } } as unknown as OperationEntity;

    await handler.compensate(operation, { code: 'INTERNAL_SERVER_ERROR', message: 'the process died', retry: true });
    for (let waited = 0; !lines.some((line) => line.includes('could not abort')) && waited < 10_000; waited += 20) await sleep(20);
    const line = lines.find((candidate) => candidate.includes('could not abort'));
    assert.ok(line, 'the failed abort was not logged');
    assert.match(line, /InvalidAccessKeyId/, 'the log says why the abort failed');
    assert.ok(!line.includes(ACCESS_KEY_ID), `the log holds the access key id: ${line}`);
    assert.ok(!line.includes(SECRET_ACCESS_KEY), 'the log holds the secret');
  });
});

describe('EXPORT with keys that may only write', () => {
  // The keys docs/s3.md asks for (s3:PutObject, s3:DeleteObject, the multipart actions): no s3:GetObject, so S3
  // answers a HEAD of any object, there or not, 403 AccessDenied.
  let endpoint: Server;
  let url = '';
  const put: string[] = [];
  before(async () => {
    endpoint = createServer((request, response) => {
      if (request.method !== 'PUT') request.resume();
      if (request.method === 'HEAD' || request.method === 'GET') {
        response.writeHead(403, { 'content-type': 'application/xml' }).end();
      } else if (request.method === 'PUT') {
        const md5 = createHash('md5');
        request.on('data', (chunk: Buffer) => md5.update(chunk));
        request.on('end', () => {
          put.push((request.url ?? '').split('?')[0]);
          response.writeHead(200, { etag: `"${md5.digest('hex')}"` }).end();
        });
      } else {
        response.writeHead(200).end();
      }
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => endpoint.close(() => resolve())));

  it('copies a snapshot, under a name no other copy has', async () => {
    const bytes = Buffer.from('an archive');
    const { snapshot, handler, operation } = exportOf(destinationAt(url, 2), 2, {
      second: 5,
      sizeBytes: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      openArchive: async () => Readable.from([bytes]),
    });
    const context = {
      progress: () => undefined,
      signal: new AbortController().signal,
      saveParams: async () => undefined,
      enterPointOfNoReturn: async () => undefined, underLease: () => assert.fail('not run under a lease'),
    };

    await handler.run(operation, context);
    // Whether an object is there cannot be told: the copy takes the name that is its own alone.
    assert.deepEqual(put, [`/tenant-bucket/backups/prod-2026-01-02T03-04-05Z-${snapshot.id}.backup`]);
  });

  it("fails with the server's own error, not the destination's, when the archive cannot be read", async () => {
    const at = destinationAt(url, 4);
    const bytes = Buffer.from('an archive');
    // The server's storage failing: its disk (EIO) while the archive is read, or its own bucket before it opens.
    const diskFailure = Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    const bucketFailure = Object.assign(new Error('reading the blob tenants/x/exports/y.archive failed at byte 0: ServiceUnavailable (HTTP 503)'), { name: 'BlobStoreError' });
    for (const [what, openArchive, failure] of [
      ['read', async () => Readable.from((async function* () { yield bytes; throw diskFailure; })()), diskFailure],
      ['opened', async () => Promise.reject(bucketFailure), bucketFailure],
    ] as const) {
      const { handler, operation } = exportOf(at, 4, {
        second: 6,
        sizeBytes: bytes.length * 2,
        sha256: createHash('sha256').update(Buffer.concat([bytes, bytes])).digest('hex'),
        openArchive,
        auto: true,
      });
      const context = { progress: () => undefined, signal: new AbortController().signal, saveParams: async () => undefined, enterPointOfNoReturn: async () => undefined, underLease: () => assert.fail('not run under a lease') };
      put.length = 0;
      // Not DESTINATION_UNAVAILABLE ("copying to s3://… failed"), which the tenant reads in lastError as its bucket's fault.
      await assert.rejects(handler.run(operation, context), (error: Error) => {
        assert.equal(error, failure, `the archive that could not be ${what} failed the export as ${error.message}`);
        return true;
      });
      assert.deepEqual(put, [], 'something was copied');
    }
  });
});

describe("a destination's endpoint that answers with a body without end", () => {
  // A tenant's ADMIN chooses the endpoint: what it answers is the tenant's, not the operator's. The AWS SDK reads an
  // answer's whole body into memory before it parses it (an error's XML, or a success it looks for an error in), so an
  // endpoint answering any request (the probe of createExportDestination, a part) with gigabytes grew the server's
  // memory until it died, for every tenant.
  const BODY_BYTES = 48 * 1024 * 1024;
  let endpoint: Server;
  let url = '';
  let status = 200;
  /** Bytes each answer handed to its socket before the connection closed. */
  const flushed: Promise<number>[] = [];
  before(async () => {
    endpoint = createServer((request, response) => {
      request.resume();
      flushed.push(
        new Promise((resolve) => {
          let bytes = 0;
          let ended = false;
          response.on('close', () => resolve(bytes));
          request.on('end', () => {
            response.writeHead(status, { 'content-type': 'application/xml', 'content-length': String(BODY_BYTES) });
            const piece = Buffer.alloc(1024 * 1024, 'x');
            let written = 0;
            const pump = () => {
              while (written < BODY_BYTES && !ended) {
                written += piece.length;
                const more = response.write(piece, (error) => {
                  if (!error) bytes += piece.length;
                });
                if (!more) return void response.once('drain', pump);
              }
              if (!ended) response.end();
            };
            response.on('close', () => (ended = true));
            pump();
          });
        }),
      );
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => endpoint.close(() => resolve())));

  for (const answer of [403, 200]) {
    it(`stops reading an answer (HTTP ${answer}) once it is far larger than any S3 answer, and fails the request`, async () => {
      status = answer;
      flushed.length = 0;
      const { destination, destinations } = destinationAt(url, 3);
      const { bucket } = await destinations.openBucket(destination);
      try {
        await assert.rejects(bucket.write('probe', Readable.from([Buffer.from('a probe')])), (error: Error) => {
          assert.match(error.message, /answer is longer than 1048576 bytes/);
          return true;
        }, 'a write whose answer is 48 MiB succeeded');
      } finally {
        await bucket.destroy();
      }
      const sent = await Promise.all(flushed);
      assert.ok(sent.length > 0);
      for (const bytes of sent) assert.ok(bytes < 16 * 1024 * 1024, `an answer of ${bytes} bytes was read`);
    });
  }
});

describe("registering a destination whose keys may write but not delete", () => {
  let endpoint: Server;
  let url = '';
  const requests: string[] = [];
  before(async () => {
    endpoint = createServer((request, response) => {
      const md5 = createHash('md5');
      request.on('data', (chunk: Buffer) => md5.update(chunk));
      request.on('end', () => {
        requests.push(`${request.method} ${request.url}`);
        if (request.method === 'PUT') return void response.writeHead(200, { etag: `"${md5.digest('hex')}"` }).end();
        response.writeHead(403, { 'content-type': 'application/xml' }).end('<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
      });
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => endpoint.close(() => resolve())));

  it('is refused, naming the probe object it could not delete', async () => {
    const { destinations } = destinationAt(url, 6);
    const admin = { tenantId: '00000000-0000-4000-8000-000000000062', role: 'ADMIN' } as Principal;
    const input = { name: 'offsite', url: 's3://tenant-bucket/backups', endpoint: url, region: 'us-east-1', accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY };
    await assert.rejects(destinations.create(admin, input), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'BAD_USER_INPUT');
      const probe = /^PUT \/tenant-bucket\/backups\/(snapgraph-probe-[0-9a-f-]+)/.exec(requests[0])?.[1];
      assert.ok(probe, requests.join(', '));
      assert.match(error.message, new RegExp(`did not let it be deleted \\(the keys need s3:DeleteObject\\): .*AccessDenied.*; the object ${probe} is left`));
      assert.ok(!error.message.includes(SECRET_ACCESS_KEY) && !error.message.includes(ACCESS_KEY_ID));
      return true;
    });
  });
});

describeS3('EXPORT whose archive fails to read in the middle of a multipart upload', ({ s3 }) => {
  it("fails with the server's own error, and leaves nothing in the bucket", async function () {
    this.timeout(60_000);
    const bucket = await createTestBucket(s3(), s3().second);
    const at = destinationAt(s3().endpoint, 5, { bucket, credentials: s3().second });
    // Four parts of 8 MiB on their way (the most at once) when the disk fails: they are abandoned as the write stops.
    const piece = Buffer.alloc(1024 * 1024, 7);
    const diskFailure = Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    const { handler, operation } = exportOf(at, 5, {
      second: 7,
      sizeBytes: 64 * piece.length,
      sha256: 'a'.repeat(64),
      openArchive: async () =>
        Readable.from(
          (async function* () {
            for (let i = 0; i < 40; i++) yield piece;
            throw diskFailure;
          })(),
        ),
      auto: true,
    });
    const context = { progress: () => undefined, signal: new AbortController().signal, saveParams: async () => undefined, enterPointOfNoReturn: async () => undefined, underLease: () => assert.fail('not run under a lease') };

    await assert.rejects(handler.run(operation, context), (error: Error) => {
      assert.equal(error, diskFailure, `the archive that could not be read failed the export as ${error.message}`);
      return true;
    });
    const client = testS3Client(s3(), s3().second);
    try {
      assert.deepEqual((await client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? [], []);
      assert.deepEqual((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], []);
    } finally {
      client.destroy();
    }
  });
});

describe("an EXPORT stopped while the destination's endpoint trickles its answer", () => {
  // The only timeout on a destination's requests is on silence: an endpoint (the tenant's to choose) that sends a byte
  // every moment keeps a request going for as long as it likes. A cancel, a shutdown or a lost lease aborts the
  // operation's signal, and every request of the export must stop with it: the operation stayed RUNNING, and a
  // graceful shutdown waited on it, for as long as the endpoint trickled.
  type Step = 'HEAD' | 'CreateMultipartUpload' | 'PUT' | 'CompleteMultipartUpload';
  let endpoint: Server;
  let url = '';
  let trickled: Step | undefined;
  let trickling: (() => void) | undefined;
  /** Multipart uploads the endpoint was asked to abort. */
  const aborted: string[] = [];
  const stepOf = (method: string, path: string, query: URLSearchParams): Step | 'other' => {
    if (method === 'HEAD' && path.includes('/backups/')) return 'HEAD';
    if (method === 'POST' && query.has('uploads')) return 'CreateMultipartUpload';
    if (method === 'PUT' && !query.has('uploadId')) return 'PUT';
    if (method === 'POST' && query.has('uploadId')) return 'CompleteMultipartUpload';
    return 'other';
  };
  before(async () => {
    endpoint = createServer((request, response) => {
      const [path, search] = (request.url ?? '').split('?');
      const query = new URLSearchParams(search ?? '');
      const md5 = createHash('md5');
      request.on('data', (chunk: Buffer) => md5.update(chunk));
      request.on('end', () => {
        if (stepOf(request.method!, path, query) === trickled) {
          // A header a byte at a time, without end: the answer never begins, and the connection is never silent.
          const socket = response.socket!;
          socket.write('HTTP/1.1 200 OK\r\nx-amz-trickle: ');
          const timer = setInterval(() => socket.write('a'), 50);
          socket.once('close', () => clearInterval(timer));
          trickling?.();
          return;
        }
        if (request.method === 'HEAD') {
          // No object of that name; the bucket is there.
          response.writeHead(path.includes('/backups/') ? 404 : 200).end();
        } else if (request.method === 'POST' && query.has('uploads')) {
          response.writeHead(200, { 'content-type': 'application/xml' }).end(
            `<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult><Bucket>tenant-bucket</Bucket><Key>k</Key><UploadId>upload-1</UploadId></InitiateMultipartUploadResult>`,
          );
        } else if (request.method === 'PUT') {
          response.writeHead(200, { etag: `"${md5.digest('hex')}"` }).end();
        } else if (request.method === 'DELETE') {
          if (query.has('uploadId')) aborted.push(query.get('uploadId')!);
          response.writeHead(204).end();
        } else {
          response.writeHead(200).end();
        }
      });
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  });
  after(() => {
    endpoint.closeAllConnections();
    return new Promise<void>((resolve) => endpoint.close(() => resolve()));
  });

  const cases: { step: Step; bytes: Buffer; abortsUpload: boolean }[] = [
    { step: 'HEAD', bytes: Buffer.from('an archive'), abortsUpload: false },
    { step: 'PUT', bytes: Buffer.from('an archive'), abortsUpload: false },
    // More than one part of 8 MiB: a multipart upload.
    { step: 'CreateMultipartUpload', bytes: Buffer.alloc(9 * 1024 * 1024, 3), abortsUpload: false },
    { step: 'CompleteMultipartUpload', bytes: Buffer.alloc(9 * 1024 * 1024, 5), abortsUpload: true },
  ];
  for (const [n, { step, bytes, abortsUpload }] of cases.entries()) {
    it(`stops its ${step} at once when it is cancelled${abortsUpload ? ', and aborts its multipart upload' : ''}`, async () => {
      trickled = step;
      aborted.length = 0;
      const started = new Promise<void>((resolve) => (trickling = resolve));
      const { handler, operation } = exportOf(destinationAt(url, 6 + n), 6 + n, {
        second: 8 + n,
        sizeBytes: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        openArchive: async () => Readable.from([bytes]),
      });
      const abort = new AbortController();
      const context = { progress: () => undefined, signal: abort.signal, saveParams: async () => undefined, enterPointOfNoReturn: async () => undefined, underLease: () => assert.fail('not run under a lease') };
      const cancelled = new Error('cancelled on request');

      const run = handler.run(operation, context);
      await started;
      abort.abort(cancelled);
      // Before the fix, the request went on (and the run with it) for as long as the endpoint trickled: without end here.
      await assert.rejects(run, (error: Error) => {
        assert.equal(error, cancelled, `the cancelled export failed with ${error.message}`);
        return true;
      });
      assert.deepEqual(aborted, abortsUpload ? ['upload-1'] : [], 'the multipart uploads aborted');
    });
  }
});
