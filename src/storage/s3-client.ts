// The one way this server builds S3 clients. The AWS SDK is loaded only where S3 is used (it takes a second or
// more to load on a busy machine): import this module lazily (`await import`).
import { Transform, pipeline, type Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { publicOnlyLookup } from './public-addresses';

export interface S3Endpoint {
  /** An S3-compatible service's URL (path-style addressing is used then); undefined for AWS itself. */
  endpoint?: string;
  region?: string;
  /** Explicit keys; undefined = the SDK's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/**
 * An S3 client with retries (the SDK's standard strategy: exponential backoff with jitter on throttling, 5xx and
 * network errors) and checksums only where an operation requires them, which S3-compatible services such as
 * OpenStack Swift's s3api need (they reject the newer default CRC32 trailers). Integrity is checked with Content-MD5
 * and ETags instead (S3BlobStore).
 */
export function createS3Client(
  { endpoint, region, credentials }: S3Endpoint,
  {
    maxAttempts = 5,
    idleTimeoutMs = 120_000,
    publicOnly = false,
    maxAnswerBytes,
    settingsOnly = false,
  }: {
    maxAttempts?: number;
    /** A connection silent this long (no byte either way, before or during an answer's body) fails its request. */
    idleTimeoutMs?: number;
    /** Connections to a host name that resolves to a loopback, private or link-local address fail (public-addresses.ts). */
    publicOnly?: boolean;
    /**
     * An answer's body (but a GetObject's, which streams) longer than this fails its request, its connection dropped:
     * the SDK reads a whole body into memory before it parses it, so an endpoint someone else runs (a tenant's export
     * destination) could otherwise answer with gigabytes and fill this process's memory.
     */
    maxAnswerBytes?: number;
    /**
     * Where to connect comes from `endpoint` and `region` alone, never from this process's environment or AWS profile
     * (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, endpoint_url, AWS_REGION, AWS_USE_FIPS_ENDPOINT…), which are the
     * operator's: a tenant's export destination with neither sent its keys and archives to the operator's endpoint.
     * Without a region, us-east-1, following S3's redirect to the bucket's own region.
     */
    settingsOnly?: boolean;
  } = {},
): S3Client {
  const agent = publicOnly ? { lookup: publicOnlyLookup } : undefined;
  const ownSettings = settingsOnly
    ? { ignoreConfiguredEndpointUrls: true, followRegionRedirects: !endpoint && !region, useFipsEndpoint: false, useDualstackEndpoint: false }
    : {};
  const client = new S3Client({
    ...ownSettings,
    endpoint,
    region: region ?? (endpoint || settingsOnly ? 'us-east-1' : undefined),
    // A copy: the SDK annotates the object it is given.
    credentials: credentials && { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
    forcePathStyle: endpoint !== undefined,
    maxAttempts,
    retryMode: 'standard',
    // A silent connection is dropped (and its request retried, when no answer had begun) rather than hanging an
    // operation: socketTimeout, which also fails an answer's body that stops. The handler's requestTimeout would only
    // log a warning, and only until an answer begins.
    requestHandler: { connectionTimeout: 10_000, socketTimeout: idleTimeoutMs, httpAgent: agent, httpsAgent: agent },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  if (maxAnswerBytes !== undefined) {
    // In the deserialize step, after the deserializer (and S3's check of 200 answers for errors, which reads the body
    // too): the body is bounded before anything reads it, on every attempt.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        const response = result.response as { body?: unknown } | undefined;
        if (context.commandName !== 'GetObjectCommand' && isReadable(response?.body)) response.body = bounded(response.body, maxAnswerBytes);
        return result;
      },
      { step: 'deserialize', priority: 'low', name: 'snapgraphBoundedAnswers' },
    );
  }
  return client;
}

/** The service answered more than an S3 answer ever holds. */
export class AnswerTooLargeError extends Error {
  override readonly name = 'AnswerTooLarge';
  constructor(maxBytes: number) {
    super(`the S3 service's answer is longer than ${maxBytes} bytes, more than any answer to this request holds; it was not read`);
  }
}

function isReadable(body: unknown): body is Readable {
  return typeof (body as Readable | undefined)?.pipe === 'function' && typeof (body as Readable).destroy === 'function';
}

/** `body`, failing (and the connection under it dropped) once more than `maxBytes` came. */
function bounded(body: Readable, maxBytes: number): Readable {
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback(bytes > maxBytes ? new AnswerTooLargeError(maxBytes) : null, chunk);
    },
  });
  // pipeline: a failure of the limit destroys the body, and with it the socket.
  return pipeline(body, limit, () => undefined);
}
