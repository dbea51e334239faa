// Exits 0 when a signed S3 request (ListBuckets) succeeds at SNAPGRAPH_S3_PROBE_ENDPOINT; used by start-swift.sh.
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';

const client = new S3Client({
  endpoint: process.env.SNAPGRAPH_S3_PROBE_ENDPOINT,
  region: 'us-east-1',
  forcePathStyle: true,
  maxAttempts: 1,
  credentials: { accessKeyId: process.env.SNAPGRAPH_S3_PROBE_KEY, secretAccessKey: process.env.SNAPGRAPH_S3_PROBE_SECRET },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
try {
  await client.send(new ListBucketsCommand({}));
} catch (error) {
  console.error(`S3 probe failed: ${error.name}: ${error.message}`);
  process.exit(1);
}
