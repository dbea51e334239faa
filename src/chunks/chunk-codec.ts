// The stored form of one chunk and of a pack trailer. Pure functions of keys and bytes, run in the worker pool or
// inline. A chunk is stored as AES-256-GCM(nonce, flags ‖ body, AAD = chunk id) where body is the plaintext compressed
// with Brotli (quality 1) when that shrinks it, else the plaintext itself; or with raw deflate (level 1), as releases
// before 2026-12 wrote them and as SNAPGRAPH_CHUNK_COMPRESSION=deflate still does. Both are always read.
//
// Why Brotli at quality 1: sealing is where a base's time goes (it is CPU work on every byte of the store). On 256 KiB
// chunks of SQLite stores (realistic properties; random text) it compressed 2 to 4 times faster than deflate level 1,
// into 0.322 of the bytes where deflate made 0.337 (0.579 against 0.582), and opened as fast or faster.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants as zlib, deflateRawSync, inflateRawSync } from 'node:zlib';

export const CHUNK_ID_BYTES = 32;
export const CHUNK_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Bytes a sealed message adds to its plaintext. */
export const SEAL_OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES;

const RAW = 0;
const DEFLATED = 1;
const BROTLI = 2;

/**
 * How new chunks are compressed (SNAPGRAPH_CHUNK_COMPRESSION). Both are read whatever the setting; releases before
 * 2026-12 read only deflate, so replicas that share a store write deflate until every one of them runs this release.
 */
export type ChunkCompression = 'brotli' | 'deflate';
export const CHUNK_COMPRESSIONS: readonly ChunkCompression[] = ['brotli', 'deflate'];
export const DEFAULT_CHUNK_COMPRESSION: ChunkCompression = 'brotli';
/** The flags byte of a chunk compressed with each. */
const COMPRESSED_FLAG: Record<ChunkCompression, number> = { brotli: BROTLI, deflate: DEFLATED };

/** The raw key material of one tenant's chunk store. */
export interface ChunkKeyMaterial {
  /** Encrypts chunks and pack trailers. */
  dataKey: Buffer;
  /** Keys the chunk ids (HMAC-SHA256), so that an id reveals nothing about the plaintext. */
  idKey: Buffer;
}

/** Stored bytes that do not open: the reason, for the caller to name the pack and chunk. */
export class ChunkDamage extends Error {
  override name = 'ChunkDamage';
}

export function chunkId(keys: ChunkKeyMaterial, plaintext: Uint8Array): string {
  return createHmac('sha256', keys.idKey).update(plaintext).digest('hex');
}

export function sealChunk(keys: ChunkKeyMaterial, id: string, plaintext: Uint8Array, compression: ChunkCompression): Buffer {
  const packed =
    compression === 'brotli'
      ? brotliCompressSync(plaintext, { params: { [zlib.BROTLI_PARAM_QUALITY]: 1, [zlib.BROTLI_PARAM_SIZE_HINT]: plaintext.length } })
      : deflateRawSync(plaintext, { level: 1 });
  const compressed = packed.length < plaintext.length;
  const flags = Buffer.of(compressed ? COMPRESSED_FLAG[compression] : RAW);
  return seal(keys.dataKey, [flags, compressed ? packed : plaintext], Buffer.from(id, 'hex'));
}

/**
 * The plaintext of a stored chunk.
 * @throws ChunkDamage when it does not authenticate, does not decompress to `plainLength` bytes, or (with `verifyId`)
 *   its content does not hash to `id`.
 */
export function openChunk(keys: ChunkKeyMaterial, id: string, stored: Uint8Array, plainLength: number, verifyId: boolean): Buffer {
  const body = open(keys.dataKey, stored, Buffer.from(id, 'hex'));
  if (body === null) throw new ChunkDamage('does not authenticate');
  let plaintext: Buffer;
  if (body[0] === RAW) plaintext = body.subarray(1);
  else if (body[0] === BROTLI || body[0] === DEFLATED) {
    const maxOutputLength = Math.max(plainLength, 1);
    try {
      plaintext =
        body[0] === BROTLI ? brotliDecompressSync(body.subarray(1), { maxOutputLength }) : inflateRawSync(body.subarray(1), { maxOutputLength });
    } catch (error) {
      throw new ChunkDamage(`does not decompress (${(error as Error).message})`);
    }
  } else throw new ChunkDamage(`unknown flags ${body[0]} (written by a newer release?)`);
  if (plaintext.length !== plainLength) {
    throw new ChunkDamage(`holds ${plaintext.length} bytes where the index says ${plainLength}`);
  }
  if (verifyId && chunkId(keys, plaintext) !== id) throw new ChunkDamage('content does not match its id');
  return plaintext;
}

/** nonce ‖ AES-256-GCM(parts) ‖ tag, with a fresh random nonce. */
export function seal(key: Buffer, parts: Uint8Array[], aad: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const encrypted = parts.map((part) => cipher.update(part));
  return Buffer.concat([nonce, ...encrypted, cipher.final(), cipher.getAuthTag()]);
}

/** Reverses `seal`; null when the bytes or the AAD do not authenticate. */
export function open(key: Buffer, sealed: Uint8Array, aad: Buffer): Buffer | null {
  if (sealed.length < SEAL_OVERHEAD_BYTES) return null;
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
  const plaintext = decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return plaintext;
}
