// Where an S3 client connects: a tenant's export destination goes where its own settings say, never where this process's
// environment (the operator's) points the SDK.
import assert from 'node:assert/strict';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/storage/s3-client';

/** The host a request of `client` would go to, and the region it would be signed for; nothing is sent. */
async function destinationOf(client: S3Client): Promise<{ host: string; region: string }> {
  let seen: { host: string; region: string } | undefined;
  client.middlewareStack.add(
    (_next, context) => async (args) => {
      const request = args.request as { hostname: string; headers: Record<string, string> };
      const credential = /Credential=[^/]+\/\d+\/([^/]+)\//.exec(request.headers.authorization ?? '')?.[1];
      seen = { host: request.hostname, region: credential ?? String((context as { signing_region?: string }).signing_region) };
      throw new Error('not sent');
    },
    { step: 'finalizeRequest', priority: 'low', name: 'testCapture' },
  );
  await assert.rejects(client.send(new HeadObjectCommand({ Bucket: 'tenant-bucket', Key: 'k' })), /not sent/);
  client.destroy();
  return seen!;
}

describe('S3 clients and the environment', () => {
  const saved = { ...process.env };
  const credentials = { accessKeyId: 'AKIDTENANT', secretAccessKey: 'tenant-secret' };

  beforeEach(() => {
    process.env.AWS_ENDPOINT_URL_S3 = 'http://127.0.0.1:9';
    process.env.AWS_ENDPOINT_URL = 'http://127.0.0.1:10';
    process.env.AWS_REGION = 'eu-central-1';
  });

  afterEach(() => {
    for (const name of ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_REGION']) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  it("the server's own bucket follows the operator's environment, as the SDK documents", async () => {
    const { host, region } = await destinationOf(createS3Client({ credentials }, { maxAttempts: 1 }));
    assert.equal(host, '127.0.0.1');
    assert.equal(region, 'eu-central-1');
  });

  it("a tenant's destination without endpoint or region goes to AWS in us-east-1, not to the operator's endpoint", async () => {
    const { host, region } = await destinationOf(createS3Client({ credentials }, { maxAttempts: 1, settingsOnly: true }));
    assert.match(host, /\.amazonaws\.com$/);
    assert.equal(region, 'us-east-1');
  });

  it("a tenant's destination goes to its own endpoint and region", async () => {
    const own = createS3Client({ endpoint: 'https://s3.example.net', region: 'ap-south-1', credentials }, { maxAttempts: 1, settingsOnly: true });
    assert.deepEqual(await destinationOf(own), { host: 's3.example.net', region: 'ap-south-1' });
  });
});
