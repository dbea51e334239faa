// Encryption at rest for any BlobStore: plaintext goes in and comes out, envelope-encrypted
// blobs are what the inner store holds.
import { pipeline, Readable, Transform } from 'node:stream';

import { createDecryptStream, createEncryptStream } from '../crypto/envelope';
import {
  DEFAULT_CHUNK_SIZE,
  ENVELOPE_HEADER_BYTES,
  parseEnvelopeHeader,
  planRangeRead,
  plaintextSize,
} from '../crypto/envelope-layout';
import { Keyring } from '../crypto/keyring';
import { BlobStore, moveByCopy } from './blob-store';
import { assertValidByteRange, ByteRange } from './byte-range';
import { BlobNotFoundError } from './errors';

export interface EncryptedBlobStoreOptions {
  /** Plaintext bytes per encrypted chunk: the granularity of range reads. Default 64 KiB. */
  chunkSize?: number;
  /**
   * Default true: new blobs are bound to their key (SNAPGRAPH_BIND_BLOB_NAMES). Releases before this one cannot read
   * such blobs, so replicas that share a store write unbound ones until every one of them runs this release. Both are
   * always read.
   */
  bindNames?: boolean;
}

export class EncryptedBlobStore {
  readonly #chunkSize: number;
  readonly #bindNames: boolean;

  constructor(
    readonly inner: BlobStore,
    readonly keyring: Keyring,
    { chunkSize = DEFAULT_CHUNK_SIZE, bindNames = true }: EncryptedBlobStoreOptions = {},
  ) {
    this.#chunkSize = chunkSize;
    this.#bindNames = bindNames;
  }

  async init(): Promise<void> {
    await this.inner.init?.();
  }

  /** Encrypts `plaintext` into `key`, atomically (see BlobStore.write). */
  async write(key: string, plaintext: Readable): Promise<{ storedBytes: number; plainBytes: number }> {
    // Bound to its key: the inner store's files can be moved, and a blob copied over another's must not read as it.
    const encrypt = createEncryptStream(this.keyring, { chunkSize: this.#chunkSize, name: this.#bindNames ? key : undefined });
    // Errors on either side reach inner.write through `encrypt`; destroying `encrypt` when
    // inner.write fails early releases `plaintext` too.
    try {
      const { sizeBytes } = await this.inner.write(key, pipeline(plaintext, encrypt, ignore));
      return { storedBytes: sizeBytes, plainBytes: encrypt.plainBytes };
    } catch (error) {
      encrypt.destroy();
      throw error;
    }
  }

  /** Whether new blobs are bound to their key (see EncryptedBlobStoreOptions.bindNames). */
  get bindsNames(): boolean {
    return this.#bindNames;
  }

  /** Whether the inner store takes local files itself (a rename on one file system); otherwise adopt() copies them to it. */
  get adoptsFiles(): boolean {
    return this.inner.adopt !== undefined;
  }

  /**
   * Takes a whole blob already encrypted in this format (a PartialBlobFile after complete(), made for `key`: bound to
   * it, unless bindsNames is off) as `key`, moving the file where the inner store can: a finished resumable upload is
   * not written again.
   */
  async adopt(key: string, path: string): Promise<void> {
    await (this.inner.adopt ? this.inner.adopt(key, path) : moveByCopy(this.inner, key, path));
  }

  /** Gives an adopted blob back to the file at `path`, as it is (still encrypted): adopt's inverse, where adoptsFiles. */
  async release(key: string, path: string): Promise<void> {
    if (!this.inner.release) throw new Error('this blob store cannot give blobs back as local files');
    await this.inner.release(key, path);
  }

  /**
   * The plaintext, or its bytes `[start, end)` (clamped to the blob's size). A range read
   * fetches only the chunks that hold it. Corruption and truncation are reported as a
   * BlobIntegrityError on the stream, never as wrong bytes.
   *
   * @throws BlobNotFoundError; RangeError for an invalid range.
   */
  async read(key: string, range: ByteRange = {}): Promise<Readable> {
    assertValidByteRange(range);
    if (!range.start && range.end === undefined) {
      return decrypting(await this.inner.read(key), createDecryptStream(this.keyring, { name: key }));
    }
    const storedBytes = await this.#storedSize(key);
    const header = await this.#readHeader(key);
    let plan;
    try {
      plan = planRangeRead(header, storedBytes, range);
    } catch (error) {
      return Readable.from(failWith(error), { objectMode: false });
    }
    const raw = await this.inner.read(key, { start: plan.rawStart, end: plan.rawEnd });
    return decrypting(raw, createDecryptStream(this.keyring, { header, name: key, start: plan.start, end: plan.decryptEnd }));
  }

  /**
   * Plaintext size, from the stored size and header (authenticated only when read).
   * Null when there is no such blob.
   * @throws BlobIntegrityError when the stored blob cannot be whole.
   */
  async plainSize(key: string): Promise<number | null> {
    const storedBytes = await this.inner.size(key);
    if (storedBytes === null) return null;
    const { chunkSize } = parseEnvelopeHeader(await this.#readHeader(key));
    return plaintextSize(storedBytes, chunkSize);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  exists(key: string): Promise<boolean> {
    return this.inner.exists(key);
  }

  async removeTemporaryFiles(options?: { olderThanMs?: number }): Promise<number> {
    return (await this.inner.removeTemporaryFiles?.(options)) ?? 0;
  }

  async destroy(): Promise<void> {
    await this.inner.destroy?.();
  }

  async #storedSize(key: string): Promise<number> {
    const storedBytes = await this.inner.size(key);
    if (storedBytes === null) throw new BlobNotFoundError(key);
    return storedBytes;
  }

  /** The blob's header bytes (fewer when the blob is shorter than a header). */
  async #readHeader(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.inner.read(key, { start: 0, end: ENVELOPE_HEADER_BYTES })) chunks.push(chunk);
    return Buffer.concat(chunks);
  }
}

/** Pipes raw stored bytes through a decrypt stream; errors on either end reach the reader. */
function decrypting(raw: Readable, decrypt: Transform): Readable {
  return pipeline(raw, decrypt, ignore);
}

function ignore(): void {}

async function* failWith(error: unknown): AsyncGenerator<Buffer> {
  throw error;
}
