// S3 locations (`s3://bucket/optional/prefix`) and the one way this server builds S3 clients.
import { S3Client } from '@aws-sdk/client-s3';

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing '/', '' for the bucket's root. */
  prefix: string;
}

export interface S3Endpoint {
  /** An S3-compatible service's URL (path-style addressing is used then); undefined for AWS itself. */
  endpoint?: string;
  region?: string;
  /** Explicit keys; undefined = the SDK's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

// DNS-compatible bucket names, as S3 requires of new buckets (3-63 characters).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/**
 * Parses `s3://bucket/optional/prefix`.
 * @throws Error with a message that names what is wrong (never anything but the URL's shape)
 */
export function parseS3Url(text: string): S3Location {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(text.trim());
  if (!match) throw new Error('must look like s3://bucket or s3://bucket/prefix');
  const [, bucket, rawPrefix = ''] = match;
  if (!BUCKET.test(bucket)) throw new Error(`"${bucket}" is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')`);
  const prefix = rawPrefix.replace(/\/+$/, '');
  if (prefix !== '' && !prefix.split('/').every((segment) => PREFIX_SEGMENT.test(segment))) {
    throw new Error(`the prefix "${prefix.slice(0, 100)}" must be '/'-separated names of letters, digits, '.', '_' and '-'`);
  }
  return { bucket, prefix };
}

export function formatS3Url({ bucket, prefix }: S3Location): string {
  return prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}`;
}

/** `prefix/name`, or `name` at the bucket's root. */
export function keyUnder(prefix: string, name: string): string {
  return prefix ? `${prefix}/${name}` : name;
}

/**
 * An S3 client with retries (the SDK's standard strategy: exponential backoff with jitter on throttling, 5xx and
 * network errors) and checksums only where an operation requires them, which S3-compatible services such as
 * OpenStack Swift's s3api need (they reject the newer default CRC32 trailers). Integrity is checked with Content-MD5
 * and ETags instead (S3BlobStore).
 */
export function createS3Client(
  { endpoint, region, credentials }: S3Endpoint,
  { maxAttempts = 5, requestTimeoutMs = 120_000 }: { maxAttempts?: number; requestTimeoutMs?: number } = {},
): S3Client {
  return new S3Client({
    endpoint,
    region: region ?? (endpoint ? 'us-east-1' : undefined),
    // A copy: the SDK annotates the object it is given.
    credentials: credentials && { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
    forcePathStyle: endpoint !== undefined,
    maxAttempts,
    retryMode: 'standard',
    // A silent connection is dropped and retried rather than hanging an operation.
    requestHandler: { connectionTimeout: 10_000, requestTimeout: requestTimeoutMs },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** The HTTP status of an SDK error, when it has one. */
export function s3Status(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** The S3 error code (NoSuchKey, AccessDenied, …) or the error's name. */
export function s3ErrorCode(error: unknown): string {
  const e = error as { Code?: string; name?: string; code?: string };
  return e?.Code ?? e?.name ?? e?.code ?? 'Error';
}
