// Byte layout of an encrypted blob, and the arithmetic that lets a reader seek into one.
//
//   offset  size  field
//   0       6     magic "SGBLOB"
//   6       1     format version: 2 when the blob is bound to its name, 1 (earlier releases; scratch files) when not
//   7       8     master key id (shown as 16 hex digits)
//   15      4     plaintext chunk size C, uint32 big-endian
//   19      60    data key sealed by the master key: nonce(12) ‖ AES-256-GCM(32) ‖ tag(16),
//                 with bytes 0..18 of this header as associated data, followed in version 2 by the blob's name (its
//                 key in the blob store, UTF-8): a blob copied or moved over another's name does not open there, so
//                 one tenant's, snapshot's or instance's data never reads as another's
//   79            chunk 0, chunk 1, … each = AES-256-GCM ciphertext ‖ tag(16)
//
// Chunk i encrypts plaintext bytes [i·C, (i+1)·C) under the blob's random data key, with
// nonce = 0x00000000 ‖ uint64be(i) and associated data = uint64be(i) ‖ final flag (1 byte).
// Every chunk but the last holds exactly C bytes; the last is flagged final and holds
// 0..C-1 bytes (an empty final chunk follows a blob whose size is a multiple of C). So chunk i
// always starts at raw offset 79 + i·(C + 16), and a reader knows a chunk is final by its
// length alone.
import { assertValidByteRange, ByteRange } from '../storage/byte-range';
import { BlobIntegrityError } from './errors';
import { KEY_ID_BYTES, MasterKey } from './master-key';

export const ENVELOPE_MAGIC = Buffer.from('SGBLOB', 'latin1');
/** Version of a blob whose data key is bound to no name (written by earlier releases, or as a scratch file). */
export const UNBOUND_ENVELOPE_VERSION = 1;
/** Version of a blob whose data key is bound to its name. */
export const NAMED_ENVELOPE_VERSION = 2;
export const DATA_KEY_BYTES = 32;
export const CHUNK_TAG_BYTES = 16;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 1;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

const VERSION_OFFSET = ENVELOPE_MAGIC.length;
const KEY_ID_OFFSET = VERSION_OFFSET + 1;
const CHUNK_SIZE_OFFSET = KEY_ID_OFFSET + KEY_ID_BYTES;
const SEALED_KEY_OFFSET = CHUNK_SIZE_OFFSET + 4;
const SEALED_KEY_BYTES = MasterKey.sealedSize(DATA_KEY_BYTES);

/** Bytes before chunk 0. */
export const ENVELOPE_HEADER_BYTES = SEALED_KEY_OFFSET + SEALED_KEY_BYTES;

export interface EnvelopeHeader {
  version: number;
  keyId: string;
  chunkSize: number;
  /** Header bytes that the sealed data key authenticates. */
  boundFields: Buffer;
  sealedDataKey: Buffer;
}

export function assertValidChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(`chunkSize must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`);
  }
}

/** Builds a header sealing `dataKey` under `masterKey`, bound to `name` when one is given (version 2). */
export function encodeEnvelopeHeader(masterKey: MasterKey, chunkSize: number, dataKey: Buffer, name?: string): Buffer {
  assertValidChunkSize(chunkSize);
  const header = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  ENVELOPE_MAGIC.copy(header, 0);
  header.writeUInt8(name === undefined ? UNBOUND_ENVELOPE_VERSION : NAMED_ENVELOPE_VERSION, VERSION_OFFSET);
  header.write(masterKey.keyId, KEY_ID_OFFSET, KEY_ID_BYTES, 'hex');
  header.writeUInt32BE(chunkSize, CHUNK_SIZE_OFFSET);
  const boundFields = header.subarray(0, SEALED_KEY_OFFSET);
  masterKey.seal(dataKey, sealedKeyAssociatedData({ version: header[VERSION_OFFSET], boundFields }, name)).copy(header, SEALED_KEY_OFFSET);
  return header;
}

/**
 * What the sealed data key of a header authenticates: its bound fields, and in version 2 the blob's name.
 * @throws BlobIntegrityError when a version-2 header is opened without a name
 */
export function sealedKeyAssociatedData(header: Pick<EnvelopeHeader, 'version' | 'boundFields'>, name: string | undefined): Buffer {
  if (header.version === UNBOUND_ENVELOPE_VERSION) return header.boundFields;
  if (name === undefined) throw new BlobIntegrityError('Blob is bound to a name, and was opened without one');
  return Buffer.concat([header.boundFields, Buffer.from(name, 'utf8')]);
}

/**
 * Reads the fields of a header. Nothing is authenticated yet: that happens when the data key
 * is unsealed (see `createDecryptStream`), which also covers the fields read here.
 *
 * @throws BlobIntegrityError when the bytes are not a version-1 or version-2 Snapgraph blob header.
 */
export function parseEnvelopeHeader(bytes: Buffer): EnvelopeHeader {
  if (bytes.length < ENVELOPE_HEADER_BYTES) {
    throw new BlobIntegrityError('Blob is truncated: its header is incomplete');
  }
  if (!bytes.subarray(0, VERSION_OFFSET).equals(ENVELOPE_MAGIC)) {
    throw new BlobIntegrityError('Not a Snapgraph encrypted blob (bad magic bytes)');
  }
  const version = bytes.readUInt8(VERSION_OFFSET);
  if (version !== UNBOUND_ENVELOPE_VERSION && version !== NAMED_ENVELOPE_VERSION) {
    throw new BlobIntegrityError(`Unsupported encrypted blob version ${version}`);
  }
  const chunkSize = bytes.readUInt32BE(CHUNK_SIZE_OFFSET);
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new BlobIntegrityError('Blob header is corrupted (impossible chunk size)');
  }
  return {
    version,
    keyId: bytes.toString('hex', KEY_ID_OFFSET, KEY_ID_OFFSET + KEY_ID_BYTES),
    chunkSize,
    boundFields: bytes.subarray(0, SEALED_KEY_OFFSET),
    sealedDataKey: bytes.subarray(SEALED_KEY_OFFSET, ENVELOPE_HEADER_BYTES),
  };
}

/** Stored size of a blob holding `plainBytes` bytes. */
export function encryptedSize(plainBytes: number, chunkSize = DEFAULT_CHUNK_SIZE): number {
  const chunks = Math.floor(plainBytes / chunkSize) + 1;
  return ENVELOPE_HEADER_BYTES + plainBytes + chunks * CHUNK_TAG_BYTES;
}

/**
 * Plaintext size of a stored blob, from its length alone (unauthenticated until read).
 * @throws BlobIntegrityError when no well-formed blob has that length (a truncation).
 */
export function plaintextSize(storedBytes: number, chunkSize: number): number {
  const body = storedBytes - ENVELOPE_HEADER_BYTES;
  const record = chunkSize + CHUNK_TAG_BYTES;
  const fullChunks = Math.floor(body / record);
  const finalRecord = body - fullChunks * record;
  if (body < 0 || finalRecord < CHUNK_TAG_BYTES) {
    throw new BlobIntegrityError('Blob is truncated: it ends without its final chunk');
  }
  return fullChunks * chunkSize + finalRecord - CHUNK_TAG_BYTES;
}

/** Raw offset of the first byte of chunk `index`. */
export function chunkOffset(index: number, chunkSize: number): number {
  return ENVELOPE_HEADER_BYTES + index * (chunkSize + CHUNK_TAG_BYTES);
}

/** A plaintext byte range `[start, end)`: `end` is exclusive, like `Buffer.subarray`. */
export type PlaintextRange = ByteRange;

export interface RangeReadPlan {
  /** The requested range clamped to the plaintext size. */
  start: number;
  end: number;
  /**
   * Stored bytes to read, `[rawStart, rawEnd)`: from the chunk holding `start` through the one holding `end - 1`, or
   * through the final chunk when the range reaches the end of the blob (see `decryptEnd`).
   */
  rawStart: number;
  rawEnd: number;
  /**
   * The `end` to give `createDecryptStream`: `end`, or none when the range reaches the end of the blob. The size that
   * clamped the range comes from the stored size alone, and a blob cut 16 bytes into a chunk has the size of a whole
   * shorter one: only its final chunk, authenticated, tells it is not, so such a range reads through it.
   */
  decryptEnd: number | undefined;
}

/**
 * Which stored bytes a range read needs. Pass the header, `plan.start` and `plan.decryptEnd` to
 * `createDecryptStream`, and feed it the stored bytes `[plan.rawStart, plan.rawEnd)`.
 *
 * @param header the blob's first ENVELOPE_HEADER_BYTES bytes
 * @param storedBytes the blob's stored size
 */
export function planRangeRead(header: Buffer, storedBytes: number, range: PlaintextRange): RangeReadPlan {
  assertValidByteRange(range);
  const { chunkSize } = parseEnvelopeHeader(header);
  const size = plaintextSize(storedBytes, chunkSize);
  const start = Math.min(range.start ?? 0, size);
  const end = Math.max(start, Math.min(range.end ?? size, size));
  const firstChunk = Math.floor(start / chunkSize);
  const lastChunk = end > start ? Math.floor((end - 1) / chunkSize) : firstChunk;
  const toTheEnd = end === size;
  return {
    start,
    end,
    rawStart: chunkOffset(firstChunk, chunkSize),
    rawEnd: toTheEnd ? storedBytes : Math.min(storedBytes, chunkOffset(lastChunk + 1, chunkSize)),
    decryptEnd: toTheEnd ? undefined : end,
  };
}

/** Per-chunk nonce: unique for every chunk under one (random, per-blob) data key. */
export function chunkNonce(index: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(index), 4);
  return nonce;
}

/** Per-chunk associated data: binds position and finality, so reordering and truncation fail. */
export function chunkAssociatedData(index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(9);
  aad.writeBigUInt64BE(BigInt(index), 0);
  aad.writeUInt8(final ? 1 : 0, 8);
  return aad;
}

/** Associated data of a blob's unfinished chunk `index` while it is written in pieces (see sealTail): flag 2. */
export function tailAssociatedData(index: number): Buffer {
  const aad = chunkAssociatedData(index, false);
  aad.writeUInt8(2, 8);
  return aad;
}
