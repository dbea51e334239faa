// Envelope encryption of blobs as streams: a random data key per blob, sealed by the master
// key, encrypting fixed-size chunks with AES-256-GCM. See envelope-layout.ts for the format.
import { createCipheriv, createDecipheriv, createSecretKey, KeyObject, randomBytes } from 'node:crypto';
import { Transform, TransformCallback } from 'node:stream';

import { assertValidByteRange } from '../storage/byte-range';
import { ByteQueue } from './byte-queue';
import {
  assertValidChunkSize,
  chunkAssociatedData,
  chunkNonce,
  CHUNK_TAG_BYTES,
  DATA_KEY_BYTES,
  DEFAULT_CHUNK_SIZE,
  encodeEnvelopeHeader,
  ENVELOPE_HEADER_BYTES,
  EnvelopeHeader,
  parseEnvelopeHeader,
  PlaintextRange,
  sealedKeyAssociatedData,
  tailAssociatedData,
} from './envelope-layout';
import { BlobIntegrityError } from './errors';
import { Keyring } from './keyring';

/** Room for several chunks on each side, so that large reads and writes pass through without stalls. */
const STREAM_BUFFERS = { readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 1024 * 1024 };

export interface EncryptStreamOptions {
  /** Plaintext bytes per chunk; default 64 KiB. */
  chunkSize?: number;
  /** The blob's key in its store: the blob then opens only under that name (see envelope-layout.ts). */
  name?: string;
}

/** Plaintext in, encrypted blob out; encrypts under the keyring's current key. */
export function createEncryptStream(keyring: Keyring, options: EncryptStreamOptions = {}): EncryptStream {
  return new EncryptStream(keyring, options);
}

export interface DecryptStreamOptions extends PlaintextRange {
  /**
   * For a range read that seeks: the blob's first ENVELOPE_HEADER_BYTES bytes. The input then
   * starts at the chunk holding `start` rather than at byte 0 (see `planRangeRead`, which
   * also gives the stored bytes to feed). Without it the input is the whole stored blob.
   */
  header?: Buffer;
  /** The name the blob is read under: a blob bound to another name (a copy moved over this one) does not open. */
  name?: string;
}

/**
 * Encrypted blob in, plaintext (or the plaintext range `[start, end)`) out. A chunk's
 * plaintext is emitted only after its tag verified. Corruption, truncation, reordering or
 * trailing bytes end the stream with a BlobIntegrityError; a blob under a key that is not in
 * the keyring, with an UnknownKeyError.
 *
 * @throws RangeError at once when `start`/`end` are not a valid range.
 */
export function createDecryptStream(keyring: Keyring, options: DecryptStreamOptions = {}): DecryptStream {
  return new DecryptStream(keyring, options);
}

/**
 * Re-seals a blob's data key under the keyring's current key: key rotation rewrites only
 * the fixed-size header, never the chunks.
 */
export function rewrapEnvelopeHeader(header: Buffer, keyring: Keyring, name?: string): Buffer {
  const parsed = parseEnvelopeHeader(header);
  const dataKey = unsealDataKey(parsed, keyring, name);
  try {
    return encodeEnvelopeHeader(keyring.current, parsed.chunkSize, dataKey, name);
  } finally {
    dataKey.fill(0);
  }
}

export interface ChunkSealerOptions {
  /** Index of the first chunk sealed (a blob written in pieces continues where it stopped). Default 0. */
  firstIndex?: number;
  /**
   * Default true: the input's end is the blob's end, and the bytes left are sealed as the final chunk. With false they
   * stay unsealed in `rest`, for the caller to keep (sealed with sealTail) until more bytes come.
   */
  final?: boolean;
}

/** Plaintext in, the blob's chunks out (envelope-layout.ts): every whole chunk, then the final one or `rest`. */
export class ChunkSealer extends Transform {
  readonly chunkSize: number;
  readonly #dataKey: KeyObject;
  readonly #final: boolean;
  readonly #queue = new ByteQueue();
  #chunkIndex: number;
  #plainBytes = 0;
  #storedBytes = 0;
  #rest: Buffer | null = null;

  constructor(dataKey: KeyObject, chunkSize: number, { firstIndex = 0, final = true }: ChunkSealerOptions = {}) {
    assertValidChunkSize(chunkSize);
    super(STREAM_BUFFERS);
    this.chunkSize = chunkSize;
    this.#dataKey = dataKey;
    this.#chunkIndex = firstIndex;
    this.#final = final;
  }

  /** Plaintext bytes consumed so far. */
  get plainBytes(): number {
    return this.#plainBytes;
  }

  /** Encrypted bytes produced so far. */
  get storedBytes(): number {
    return this.#storedBytes;
  }

  /** Index of the next chunk to seal. */
  get chunkIndex(): number {
    return this.#chunkIndex;
  }

  /** With `final: false`, once the input has ended: the bytes after the last whole chunk (fewer than a chunk). */
  get rest(): Buffer | null {
    return this.#rest;
  }

  override _transform(plain: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#plainBytes += plain.length;
    this.#queue.append(plain);
    settle(callback, () => {
      while (this.#queue.length >= this.chunkSize) this.#sealChunk(this.#queue.take(this.chunkSize), false);
    });
  }

  override _flush(callback: TransformCallback): void {
    settle(callback, () => {
      const rest = this.#queue.take(this.#queue.length);
      if (this.#final) this.#sealChunk(rest, true);
      else this.#rest = Buffer.from(rest);
    });
  }

  #sealChunk(plain: Buffer, final: boolean): void {
    for (const part of sealChunk(this.#dataKey, this.#chunkIndex++, plain, final)) this.emitStored(part);
  }

  protected emitStored(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.#storedBytes += bytes.length;
    this.push(bytes);
  }
}

/** A whole blob: its header (a new data key, sealed under the keyring's current key), then its chunks. */
export class EncryptStream extends ChunkSealer {
  /** Id of the master key the data key is sealed under. */
  readonly keyId: string;

  constructor(keyring: Keyring, { chunkSize = DEFAULT_CHUNK_SIZE, name }: EncryptStreamOptions = {}) {
    const { header, dataKey } = newDataKey(keyring, chunkSize, name);
    super(dataKey, chunkSize);
    this.keyId = keyring.current.keyId;
    this.emitStored(header);
  }
}

export class DecryptStream extends Transform {
  readonly #keyring: Keyring;
  readonly #start: number;
  readonly #end: number;
  readonly #seekHeader: Buffer | undefined;
  readonly #name: string | undefined;
  readonly #queue = new ByteQueue();
  #dataKey: KeyObject | undefined;
  #chunkSize = 0;
  #chunkIndex = 0;
  #done = false;
  #keyId: string | undefined;

  constructor(keyring: Keyring, options: DecryptStreamOptions = {}) {
    assertValidByteRange(options);
    super(STREAM_BUFFERS);
    this.#keyring = keyring;
    this.#start = options.start ?? 0;
    this.#end = options.end ?? Number.POSITIVE_INFINITY;
    this.#seekHeader = options.header;
    this.#name = options.name;
  }

  /** Id of the master key the blob is under, once its header has been read. */
  get keyId(): string | undefined {
    return this.#keyId;
  }

  override _transform(stored: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // Past the requested range the rest of the input is not needed.
    if (this.#done) return callback();
    this.#queue.append(stored);
    settle(callback, () => this.#openAvailableChunks());
  }

  override _flush(callback: TransformCallback): void {
    settle(callback, () => {
      this.#openAvailableChunks();
      if (!this.#done) this.#openFinalChunk();
    });
  }

  /** Opens every complete full-size chunk; a full-size chunk is never the final one. */
  #openAvailableChunks(): void {
    if (!this.#dataKey && !this.#openHeader()) return;
    const recordBytes = this.#chunkSize + CHUNK_TAG_BYTES;
    while (!this.#done && this.#queue.length >= recordBytes) this.#openChunk(this.#queue.take(recordBytes), false);
  }

  /** At the end of the input, what is left must be one short chunk flagged final. */
  #openFinalChunk(): void {
    if (!this.#dataKey) this.#useHeader(this.#queue.take(this.#queue.length));
    const rest = this.#queue.length;
    if (rest < CHUNK_TAG_BYTES) throw new BlobIntegrityError('Blob is truncated: it ends without its final chunk');
    this.#openChunk(this.#queue.take(rest), true);
  }

  #openHeader(): boolean {
    if (this.#seekHeader) {
      this.#useHeader(this.#seekHeader);
      this.#chunkIndex = Math.floor(this.#start / this.#chunkSize);
      return true;
    }
    if (this.#queue.length < ENVELOPE_HEADER_BYTES) return false;
    this.#useHeader(this.#queue.take(ENVELOPE_HEADER_BYTES));
    return true;
  }

  #useHeader(bytes: Buffer): void {
    const header = parseEnvelopeHeader(bytes);
    this.#keyId = header.keyId;
    this.#dataKey = openDataKey(header, this.#keyring, this.#name);
    this.#chunkSize = header.chunkSize;
  }

  #openChunk(record: Buffer, final: boolean): void {
    const index = this.#chunkIndex++;
    const tagOffset = record.length - CHUNK_TAG_BYTES;
    const decipher = createDecipheriv('aes-256-gcm', this.#dataKey!, chunkNonce(index), {
      authTagLength: CHUNK_TAG_BYTES,
    });
    decipher.setAAD(chunkAssociatedData(index, final));
    decipher.setAuthTag(record.subarray(tagOffset));
    const plain = decipher.update(record.subarray(0, tagOffset));
    try {
      decipher.final();
    } catch {
      throw new BlobIntegrityError(
        final
          ? `Blob is corrupted or truncated: its last chunk (${index}) does not authenticate`
          : `Blob is corrupted: chunk ${index} does not authenticate`,
      );
    }
    const position = index * this.#chunkSize;
    this.#emitWithinRange(plain, position);
    if (final || position + plain.length >= this.#end) this.#done = true;
  }

  #emitWithinRange(plain: Buffer, position: number): void {
    const from = Math.max(0, this.#start - position);
    const to = Math.min(plain.length, this.#end - position);
    if (to <= from) return;
    this.push(from === 0 && to === plain.length ? plain : plain.subarray(from, to));
  }
}

/** Chunk `index` of a blob: its ciphertext and its tag (see envelope-layout.ts). */
export function sealChunk(dataKey: KeyObject, index: number, plain: Buffer, final: boolean): [Buffer, Buffer] {
  const cipher = createCipheriv('aes-256-gcm', dataKey, chunkNonce(index), { authTagLength: CHUNK_TAG_BYTES });
  cipher.setAAD(chunkAssociatedData(index, final));
  const ciphertext = cipher.update(plain);
  cipher.final();
  return [ciphertext, cipher.getAuthTag()];
}

const TAIL_NONCE_BYTES = 12;
/** Bytes a sealed tail adds to its plaintext. */
export const SEALED_TAIL_OVERHEAD = TAIL_NONCE_BYTES + CHUNK_TAG_BYTES;

/**
 * The bytes of a blob's unfinished chunk `index`, while the blob is written in pieces (storage/partial-blob-file.ts):
 * nonce(12) ‖ ciphertext ‖ tag(16). The nonce is random, as a tail is sealed again after every piece; the associated
 * data binds the index and marks it a tail, so it never passes for a chunk (nor a chunk for it).
 */
export function sealTail(dataKey: KeyObject, index: number, plain: Buffer): Buffer {
  const nonce = randomBytes(TAIL_NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce, { authTagLength: CHUNK_TAG_BYTES });
  cipher.setAAD(tailAssociatedData(index));
  return Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/** Reverses sealTail. @throws BlobIntegrityError when the tail is not chunk `index`'s, or was altered. */
export function openTail(dataKey: KeyObject, index: number, sealed: Buffer): Buffer {
  if (sealed.length < TAIL_NONCE_BYTES + CHUNK_TAG_BYTES) throw new BlobIntegrityError('Blob tail is truncated');
  const decipher = createDecipheriv('aes-256-gcm', dataKey, sealed.subarray(0, TAIL_NONCE_BYTES), { authTagLength: CHUNK_TAG_BYTES });
  decipher.setAAD(tailAssociatedData(index));
  decipher.setAuthTag(sealed.subarray(sealed.length - CHUNK_TAG_BYTES));
  const plain = decipher.update(sealed.subarray(TAIL_NONCE_BYTES, sealed.length - CHUNK_TAG_BYTES));
  try {
    decipher.final();
  } catch {
    throw new BlobIntegrityError(`Blob tail of chunk ${index} does not authenticate`);
  }
  return plain;
}


/**
 * The data key of a blob's header, ready to use; `name` is the blob's, for a header bound to one.
 * @throws UnknownKeyError or BlobIntegrityError
 */
export function openDataKey(header: EnvelopeHeader, keyring: Keyring, name?: string): KeyObject {
  const dataKey = unsealDataKey(header, keyring, name);
  try {
    return createSecretKey(dataKey);
  } finally {
    dataKey.fill(0);
  }
}

/** A new random data key and the header that seals it under the keyring's current key (bound to `name`, if given). */
export function newDataKey(keyring: Keyring, chunkSize: number, name?: string): { header: Buffer; dataKey: KeyObject } {
  assertValidChunkSize(chunkSize);
  const dataKey = randomBytes(DATA_KEY_BYTES);
  try {
    return { header: encodeEnvelopeHeader(keyring.current, chunkSize, dataKey, name), dataKey: createSecretKey(dataKey) };
  } finally {
    dataKey.fill(0);
  }
}

/** @throws UnknownKeyError or BlobIntegrityError; the caller zeroes the returned key. */
function unsealDataKey(header: EnvelopeHeader, keyring: Keyring, name: string | undefined): Buffer {
  const dataKey = keyring.get(header.keyId).unseal(header.sealedDataKey, sealedKeyAssociatedData(header, name));
  if (dataKey?.length !== DATA_KEY_BYTES) {
    throw new BlobIntegrityError('Blob header is corrupted: its data key does not authenticate');
  }
  return dataKey;
}

function settle(callback: TransformCallback, work: () => void): void {
  try {
    work();
  } catch (error) {
    callback(error as Error);
    return;
  }
  callback();
}
