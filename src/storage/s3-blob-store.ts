// Blobs as objects in an S3 bucket (AWS or any S3-compatible service), written atomically with checked parts.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompleteMultipartUploadOutput,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

import { assertValidBlobKey, BlobStore, isValidBlobKey } from './blob-store';
import { assertValidByteRange, ByteRange } from './byte-range';
import { BlobNotFoundError, BlobStoreError } from './errors';
import { describeS3Error, s3ErrorCode, s3Status } from './s3-errors';
import { ResumingRead } from './resuming-read';
import { keyUnder, type S3Location } from './s3-location';

/** S3's smallest part (all but the last); also its default here is a multiple of it. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;

/** The longest wait for the abort of a failed write's multipart upload (a trickling service must not hold the write). */
const ABORT_UPLOAD_TIMEOUT_MS = 30_000;

export interface S3BlobStoreOptions {
  /** Bytes per multipart part (≥ 5 MiB); a blob smaller than one part is a single PUT. Default 8 MiB. */
  partBytes?: number;
  /** Parts uploaded at once. A write holds at most (partConcurrency + 2) parts in memory. Default 4. */
  partConcurrency?: number;
  /** Keys asked for per listing request (S3 answers at most 1000). */
  listPageSize?: number;
  /** Times one read resumes after its connection broke mid-body. Default 5. */
  readRetries?: number;
  /** Wait before a read's first resume, doubled for each next one. Default 500 ms. */
  readRetryDelayMs?: number;
}

export interface S3WriteOptions {
  metadata?: Record<string, string>;
  onMultipartStarted?(uploadId: string): Promise<void> | void;
  /**
   * Runs once every byte has been read (and, for a multipart upload, every part sent), just before the request that
   * makes the object visible (its PUT, or CompleteMultipartUpload): the last moment the write can still leave nothing.
   * The write fails, with nothing visible, if it throws.
   */
  beforeCommit?(): Promise<void> | void;
  /**
   * Stops the write: every request it makes (the PUT, the multipart upload's start, parts and completion) is aborted
   * at once, its multipart upload then aborted. Without it, a request ends only when the service answers or falls
   * silent (the client's idle timeout), and a service that trickles its answer holds it as long as it likes.
   */
  signal?: AbortSignal;
}

/**
 * Each blob is the object `<prefix>/<key>`. A write is a single PUT or a multipart upload, both of which S3 makes
 * visible whole or not at all; every part carries its Content-MD5 (the service refuses a part damaged on the way) and
 * its returned ETag is compared with it; after the write the object's size (and, for a multipart object, its composite
 * ETag) is checked. A failed multipart write is aborted, so its parts are not kept (and billed). Uploads a crash left
 * behind are what removeTemporaryFiles aborts. A read whose connection breaks mid-body resumes from the next byte,
 * held to the object's ETag (ResumingRead).
 */
export class S3BlobStore implements BlobStore {
  readonly #partBytes: number;
  readonly #partConcurrency: number;
  readonly #listPageSize: number;
  readonly #readRetries: number;
  readonly #readRetryDelayMs: number;
  /** Multipart uploads of writes in progress here, which removeTemporaryFiles must not abort. */
  readonly #inFlight = new Set<string>();

  constructor(
    readonly client: S3Client,
    readonly location: S3Location,
    { partBytes = 8 * 1024 * 1024, partConcurrency = 4, listPageSize = 1000, readRetries = 5, readRetryDelayMs = 500 }: S3BlobStoreOptions = {},
  ) {
    if (!Number.isSafeInteger(partBytes) || partBytes < MIN_PART_BYTES) throw new RangeError(`partBytes must be at least ${MIN_PART_BYTES}`);
    if (!Number.isSafeInteger(partConcurrency) || partConcurrency < 1) throw new RangeError('partConcurrency must be at least 1');
    this.#partBytes = partBytes;
    this.#partConcurrency = partConcurrency;
    this.#listPageSize = listPageSize;
    this.#readRetries = readRetries;
    this.#readRetryDelayMs = readRetryDelayMs;
  }

  /** Checks that the bucket exists and the credentials reach it. */
  async init(): Promise<void> {
    await this.probe().catch((error) => {
      throw new BlobStoreError(`cannot reach the blob bucket ${this.location.bucket}: ${describeS3Error(error)}`, { cause: error });
    });
  }

  /**
   * Readiness: the bucket answers a listing (which the store needs: s3:ListBucket). Not HeadBucket: the answer to a
   * HEAD has no body, so a refusal could not say why (wrong keys, or keys that may not use the bucket).
   */
  async probe(): Promise<void> {
    const prefix = this.location.prefix ? `${this.location.prefix}/` : undefined;
    await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: prefix, MaxKeys: 1 }));
  }

  /**
   * BlobStore.write; `metadata` becomes the object's user metadata (x-amz-meta-*). `onMultipartStarted` hears the id of
   * a multipart upload before its first part is sent, so that a caller can abort it (abortWrite) should this process
   * die before it ends; the write fails if it throws.
   */
  async write(key: string, data: Readable, options: S3WriteOptions = {}): Promise<{ sizeBytes: number }> {
    try {
      return await this.#upload(this.#objectKey(key), data, options);
    } catch (error) {
      data.destroy();
      throw error;
    }
  }

  /** Aborts the multipart upload `uploadId` of `key` (a write a dead process left); one already ended is no error. */
  async abortWrite(key: string, uploadId: string): Promise<void> {
    await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.location.bucket, Key: this.#objectKey(key), UploadId: uploadId })).catch((error: unknown) => {
      if ((error as { name?: string }).name !== 'NoSuchUpload') throw error;
    });
  }

  async #upload(objectKey: string, data: Readable, { metadata, onMultipartStarted, beforeCommit, signal }: S3WriteOptions): Promise<{ sizeBytes: number }> {
    signal?.throwIfAborted();
    const parts = partsOf(data, this.#partBytes);
    const first = await parts.next();
    const firstPart = first.done ? Buffer.alloc(0) : first.value;
    const second = first.done ? first : await parts.next();
    if (second.done) {
      await beforeCommit?.();
      await this.#putWhole(objectKey, firstPart, metadata, signal);
      return { sizeBytes: firstPart.length };
    }
    const { UploadId: uploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.location.bucket, Key: objectKey, Metadata: metadata }), {
      abortSignal: signal,
    });
    if (!uploadId) throw new BlobStoreError(`the S3 service started no multipart upload for ${objectKey}`);
    this.#inFlight.add(uploadId);
    // Once the upload is given up (its input failed, a part failed), the parts still on their way are abandoned too,
    // rather than waited for through the SDK's retries and timeouts (minutes on a stalled service).
    const abandon = new AbortController();
    const stop = () => abandon.abort(signal?.reason);
    signal?.addEventListener('abort', stop, { once: true });
    // Also while every part slot waits on a part: a cancel destroys the input, and this is where it is heard then.
    // The write fails with the input's error, not with that of a part it abandoned (an AbortError, which said nothing
    // of why: a disk's EIO, a cancel).
    let inputFailure: { error: unknown } | undefined;
    const inputFailed = (error: unknown) => {
      inputFailure ??= { error };
      abandon.abort();
    };
    data.once('error', inputFailed);
    const uploads = new PartUploads(this.#partConcurrency, (number, body) => this.#uploadPart(objectKey, uploadId, number, body, abandon.signal));
    try {
      await onMultipartStarted?.(uploadId);
      await uploads.add(firstPart);
      for (let next: IteratorResult<Buffer> = second; !next.done; next = await parts.next()) await uploads.add(next.value);
      const { etags, digests, sizeBytes } = await uploads.finish();
      await beforeCommit?.();
      const expectedEtag = compositeEtag(digests);
      const completed = await this.client
        .send(
          new CompleteMultipartUploadCommand({
            Bucket: this.location.bucket,
            Key: objectKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          }),
          { abortSignal: abandon.signal },
        )
        .catch((error: unknown) => this.#completedAfterAll(error, objectKey, sizeBytes, expectedEtag, abandon.signal));
      await this.#verifyStored(objectKey, sizeBytes, expectedEtag, completed, abandon.signal);
      return { sizeBytes };
    } catch (error) {
      abandon.abort();
      await uploads.settle();
      // Not under the write's signal, which may be what stopped it; bounded, though: a service that trickles its answer
      // must not hold a stopped write. removeTemporaryFiles (or an export's compensation) aborts it later.
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.location.bucket, Key: objectKey, UploadId: uploadId }), {
          abortSignal: AbortSignal.timeout(ABORT_UPLOAD_TIMEOUT_MS),
        })
        .catch(() => undefined);
      throw inputFailure ? inputFailure.error : error;
    } finally {
      signal?.removeEventListener('abort', stop);
      data.off('error', inputFailed);
      this.#inFlight.delete(uploadId);
    }
  }

  async #putWhole(objectKey: string, body: Buffer, metadata: Record<string, string> | undefined, signal: AbortSignal | undefined): Promise<void> {
    const md5 = createHash('md5').update(body).digest();
    const stored = await this.client.send(
      new PutObjectCommand({ Bucket: this.location.bucket, Key: objectKey, Body: body, ContentLength: body.length, ContentMD5: md5.toString('base64'), Metadata: metadata }),
      { abortSignal: signal },
    );
    const { ETag } = stored;
    if (ETag !== undefined && etagsAreMd5(stored) && unquote(ETag) !== md5.toString('hex')) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: objectKey })).catch(() => undefined);
      throw new BlobStoreError(`the S3 service stored ${objectKey} with ETag ${ETag}, not the MD5 of the bytes sent`);
    }
  }

  async #uploadPart(objectKey: string, uploadId: string, partNumber: number, body: Buffer, signal: AbortSignal): Promise<{ etag: string; digest: Buffer }> {
    const digest = createHash('md5').update(body).digest();
    const sent = await this.client.send(
      new UploadPartCommand({
        Bucket: this.location.bucket,
        Key: objectKey,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.length,
        ContentMD5: digest.toString('base64'),
      }),
      { abortSignal: signal },
    );
    const { ETag } = sent;
    if (!ETag || (etagsAreMd5(sent) && unquote(ETag) !== digest.toString('hex'))) {
      throw new BlobStoreError(`part ${partNumber} of ${objectKey} came back with ETag ${ETag}, not the MD5 of the bytes sent`);
    }
    return { etag: ETag, digest };
  }

  /**
   * The completed object is the parts sent: its composite ETag, as CompleteMultipartUpload answers it, says so. Where
   * that answer has none (or an opaque one: KMS keys), the object's size and ETag are looked at, unless the keys may
   * not (403: no s3:GetObject, as docs/s3.md allows an export destination's keys): every part was checked on its way,
   * and the service assembled them by the ETags they were given.
   */
  /**
   * A completion that failed with NoSuchUpload: the SDK sent it again after its answer was lost (a reset connection,
   * a timeout), and the service had completed it the first time. The object is there, these parts' (its composite ETag
   * and size say so): the write succeeded, where it was reported failed (an export recorded FAILED, its copy in the
   * tenant's bucket). Any other failure stands.
   */
  async #completedAfterAll(
    error: unknown,
    objectKey: string,
    sizeBytes: number,
    expectedEtag: string,
    signal: AbortSignal,
  ): Promise<CompleteMultipartUploadOutput> {
    if (s3ErrorCode(error) !== 'NoSuchUpload') throw error;
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: objectKey }), { abortSignal: signal }).catch(() => null);
    if (!head || head.ContentLength !== sizeBytes || compositeEtagOf(head) !== expectedEtag) throw error;
    return { ETag: head.ETag };
  }

  async #verifyStored(objectKey: string, sizeBytes: number, expectedEtag: string, completed: CompleteMultipartUploadOutput, signal: AbortSignal): Promise<void> {
    let etag = compositeEtagOf(completed);
    let storedBytes: number | undefined;
    if (etag === undefined) {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: objectKey }), { abortSignal: signal }).catch((error: unknown) => {
        if (s3Status(error) === 403) return null;
        throw error;
      });
      if (head === null) return;
      etag = compositeEtagOf(head);
      storedBytes = head.ContentLength;
    }
    if ((storedBytes !== undefined && storedBytes !== sizeBytes) || (etag !== undefined && etag !== expectedEtag)) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: objectKey })).catch(() => undefined);
      throw new BlobStoreError(
        `the S3 service stored ${objectKey}${storedBytes === undefined ? '' : ` as ${storedBytes} bytes`} with ETag ${etag}; ${sizeBytes} bytes with ETag ${expectedEtag} were sent`,
      );
    }
  }

  async read(key: string, range: ByteRange = {}): Promise<Readable> {
    assertValidByteRange(range);
    const objectKey = this.#objectKey(key);
    const start = range.start ?? 0;
    if (range.end !== undefined && range.end <= start) {
      // Still a BlobNotFoundError for a missing blob, as for any other read.
      if ((await this.size(key)) === null) throw new BlobNotFoundError(key);
      return Readable.from([], { objectMode: false });
    }
    const header = start === 0 && range.end === undefined ? undefined : `bytes=${start}-${range.end === undefined ? '' : range.end - 1}`;
    try {
      const { Body, ETag, ContentLength } = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: objectKey, Range: header }));
      const body = (Body as Readable | undefined) ?? Readable.from([], { objectMode: false });
      // Without an ETag, a resumed read could not be held to the same version of the object.
      if (ETag === undefined || ContentLength === undefined) return body;
      const end = start + ContentLength;
      return new ResumingRead(body, {
        key,
        offset: start,
        // Broken after its last byte (before its end was seen): nothing is left to read.
        reopen: async (offset, signal) => (offset < end ? this.#resumeRead(key, ETag, { start: offset, end }, signal) : Readable.from([], { objectMode: false })),
        retries: this.#readRetries,
        retryDelayMs: this.#readRetryDelayMs,
      });
    } catch (error) {
      if (await this.#isMissingObject(error)) throw new BlobNotFoundError(key);
      // A range that starts at or past the end holds no bytes, as in a file.
      if (s3Status(error) === 416) return Readable.from([], { objectMode: false });
      throw error;
    }
  }

  /** The bytes `[start, end)` of the object `key` as long as its ETag is `etag`: a read cut short, resumed. */
  async #resumeRead(key: string, etag: string, { start, end }: Required<ByteRange>, signal: AbortSignal): Promise<Readable> {
    try {
      const { Body } = await this.client.send(
        new GetObjectCommand({ Bucket: this.location.bucket, Key: this.#objectKey(key), Range: `bytes=${start}-${end - 1}`, IfMatch: etag }),
        { abortSignal: signal },
      );
      return Body as Readable;
    } catch (error) {
      if (s3Status(error) === 412) {
        throw new BlobStoreError(`the blob ${key} changed while it was read (its ETag is no longer ${etag}): its bytes from ${start} on are not read`, { cause: error });
      }
      throw new BlobStoreError(`reading the blob ${key} failed at byte ${start}: ${describeS3Error(error)}`, { cause: error });
    }
  }

  async size(key: string): Promise<number | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.#objectKey(key) }));
      return head.ContentLength ?? 0;
    } catch (error) {
      if (await this.#isMissingObject(error)) return null;
      throw error;
    }
  }

  /**
   * The object's user metadata (x-amz-meta-*, names in lowercase), or null when there is no such object; `signal`
   * aborts its requests.
   */
  async metadata(key: string, { signal }: { signal?: AbortSignal } = {}): Promise<Record<string, string> | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.#objectKey(key) }), { abortSignal: signal });
      return head.Metadata ?? {};
    } catch (error) {
      if (await this.#isMissingObject(error, signal)) return null;
      throw error;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.size(key)) !== null;
  }

  /** S3 answers a delete of a missing object with success too. Stops when `signal` aborts. */
  async delete(key: string, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.#objectKey(key) }), { abortSignal: signal });
  }

  async *list(prefix: string): AsyncIterable<string> {
    const folder = `${this.#objectKey(prefix)}/`;
    const rootLength = this.location.prefix ? this.location.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: folder, ContinuationToken: token, MaxKeys: this.#listPageSize }),
      );
      for (const object of page.Contents ?? []) {
        // Not every object is a blob: the S3 console's folders ('tenants/'), or a file someone put there, have names no
        // blob can have, and a listing's users (a master key rotation, say) would stop at them.
        const key = object.Key?.slice(rootLength);
        if (key !== undefined && isValidBlobKey(key)) yield key;
      }
      // A service that does not speak ListObjectsV2 answers truncated pages without a token: the start of a listing
      // must not pass for all of it (a master key rotation would forget the keys of the blobs it never saw).
      if (page.IsTruncated && !page.NextContinuationToken) {
        throw new BlobStoreError(`the S3 service cut the listing of ${folder} short: its page is truncated but gives no continuation token`);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Aborts multipart uploads under the prefix that a crash left unfinished (their parts are invisible but kept and
   * billed), sparing this process's writes and, with `olderThanMs`, uploads started more recently (another replica may
   * be writing them).
   */
  async removeTemporaryFiles({ olderThanMs = 0 }: { olderThanMs?: number } = {}): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    const prefix = this.location.prefix ? `${this.location.prefix}/` : undefined;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.location.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: this.#listPageSize }),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.UploadId || !upload.Key || this.#inFlight.has(upload.UploadId)) continue;
        // Started recently, or written to recently (its parts listed only for those started long ago).
        if (olderThanMs > 0 && ((upload.Initiated?.getTime() ?? 0) > cutoff || (await this.#newestPartAt(upload.Key, upload.UploadId)) > cutoff)) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.location.bucket, Key: upload.Key, UploadId: upload.UploadId }));
        removed += 1;
      }
      const more = page.IsTruncated === true;
      keyMarker = more ? page.NextKeyMarker : undefined;
      uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return removed;
  }

  /**
   * When a multipart upload's newest part was written (0: none, or the keys may not list them, s3:ListMultipartUploadParts;
   * Infinity: it ended meanwhile). By its start alone, a write still going an hour after it began (a 4 GiB upload at a
   * client's pace, a large export) was aborted by any replica that booted then, and failed.
   */
  async #newestPartAt(key: string, uploadId: string): Promise<number> {
    let newest = 0;
    for (let marker: string | undefined, more = true; more; ) {
      let page;
      try {
        page = await this.client.send(new ListPartsCommand({ Bucket: this.location.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }));
      } catch (error) {
        if (s3ErrorCode(error) === 'NoSuchUpload') return Number.POSITIVE_INFINITY; // completed or aborted: nothing to abort
        if (s3Status(error) === 403) return newest;
        throw error;
      }
      for (const part of page.Parts ?? []) newest = Math.max(newest, part.LastModified?.getTime() ?? 0);
      marker = page.NextPartNumberMarker;
      more = page.IsTruncated === true && marker !== undefined;
    }
    return newest;
  }

  async destroy(): Promise<void> {
    this.client.destroy();
  }

  /**
   * Whether `error` (a 404) says that the object is missing, not the bucket: a missing bucket (removed or renamed under
   * a running server) is an outage, and must not read as blobs gone, which a change-log segment or a pack records as
   * damage. A GET's answer names which (NoSuchKey, NoSuchBucket); a HEAD's has no body, so the bucket is asked then.
   * @throws BlobStoreError when the bucket is missing
   */
  async #isMissingObject(error: unknown, signal?: AbortSignal): Promise<boolean> {
    if (!isNotFound(error)) return false;
    const bucketMissing = (cause: unknown) => new BlobStoreError(`the bucket ${this.location.bucket} does not exist (NoSuchBucket)`, { cause });
    if (s3ErrorCode(error) === 'NoSuchBucket') throw bucketMissing(error);
    if (s3ErrorCode(error) === 'NoSuchKey') return true;
    await this.client.send(new HeadBucketCommand({ Bucket: this.location.bucket }), { abortSignal: signal }).catch((bucketError: unknown) => {
      if (isNotFound(bucketError)) throw bucketMissing(bucketError);
      // Keys that may not list the bucket (an export destination's may only write): it is there as far as they can tell.
      if (s3Status(bucketError) !== 403) throw bucketError;
    });
    return true;
  }

  #objectKey(key: string): string {
    assertValidBlobKey(key);
    return keyUnder(this.location.prefix, key);
  }
}

/**
 * Parts uploading at once, at most `limit`: add() waits for a free slot. The first failure is rethrown by the next
 * add() or by finish(); the others are settled quietly, so that none becomes an unhandled rejection.
 */
class PartUploads {
  readonly #running = new Set<Promise<void>>();
  readonly #etags: string[] = [];
  readonly #digests: Buffer[] = [];
  #count = 0;
  #sizeBytes = 0;
  #failure: { error: unknown } | null = null;

  constructor(
    private readonly limit: number,
    private readonly uploadPart: (partNumber: number, body: Buffer) => Promise<{ etag: string; digest: Buffer }>,
  ) {}

  async add(body: Buffer): Promise<void> {
    while (this.#running.size >= this.limit && !this.#failure) await Promise.race(this.#running);
    this.#throwIfFailed();
    const index = this.#count++;
    this.#sizeBytes += body.length;
    const upload: Promise<void> = this.uploadPart(index + 1, body).then(
      ({ etag, digest }) => {
        this.#etags[index] = etag;
        this.#digests[index] = digest;
      },
      (error) => {
        this.#failure ??= { error };
      },
    );
    this.#running.add(upload);
    void upload.finally(() => this.#running.delete(upload));
  }

  async finish(): Promise<{ etags: string[]; digests: Buffer[]; sizeBytes: number }> {
    await this.settle();
    this.#throwIfFailed();
    return { etags: this.#etags, digests: this.#digests, sizeBytes: this.#sizeBytes };
  }

  /** Waits until no part is uploading. */
  async settle(): Promise<void> {
    await Promise.all(this.#running);
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }
}

/** `data` cut into parts of exactly `partBytes` (the last one shorter); one empty part for empty data. */
async function* partsOf(data: Readable, partBytes: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let yielded = false;
  for await (const chunk of data) {
    let bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    while (pendingBytes + bytes.length >= partBytes) {
      const take = partBytes - pendingBytes;
      pending.push(bytes.subarray(0, take));
      yield Buffer.concat(pending);
      yielded = true;
      pending = [];
      pendingBytes = 0;
      bytes = bytes.subarray(take);
    }
    if (bytes.length > 0) {
      pending.push(bytes);
      pendingBytes += bytes.length;
    }
  }
  if (pendingBytes > 0 || !yielded) yield Buffer.concat(pending);
}

/** S3's ETag of a multipart object: the MD5 of its parts' MD5s, then '-' and the number of parts. */
function compositeEtag(digests: Buffer[]): string {
  return `${createHash('md5').update(Buffer.concat(digests)).digest('hex')}-${digests.length}`;
}

/**
 * Whether the service's ETags of an object are MD5s of its bytes (of its parts' MD5s, for a multipart one): not under
 * KMS keys (AWS SSE-KMS, often a bucket's default encryption), where they are opaque, and a check against them would
 * refuse every write. The service still checks each request's Content-MD5 then.
 */
function etagsAreMd5({ ServerSideEncryption }: { ServerSideEncryption?: string }): boolean {
  return ServerSideEncryption === undefined || ServerSideEncryption === 'AES256';
}

/** A multipart object's ETag that can be compared with compositeEtag: undefined when the answer has none such. */
function compositeEtagOf(answer: { ETag?: string; ServerSideEncryption?: string }): string | undefined {
  const etag = answer.ETag === undefined ? undefined : unquote(answer.ETag);
  return etag !== undefined && /-\d+$/.test(etag) && etagsAreMd5(answer) ? etag : undefined;
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

function isNotFound(error: unknown): boolean {
  return s3Status(error) === 404 || ['NoSuchKey', 'NotFound'].includes(s3ErrorCode(error));
}
