// The layout of a pack blob: the stored chunks back to back, then an encrypted trailer listing them, then a fixed-size
// footer locating the trailer. A pack describes itself, so the index can be rebuilt from the packs alone.
//
//   chunk 0 | chunk 1 | … | trailer = seal(count u32 ‖ count × (id 32 ‖ offset u64 ‖ length u32 ‖ plainLength u32))
//   | footer = "SGPACK01" ‖ trailer offset u64 ‖ trailer length u32 ‖ 4 zero bytes
import { CHUNK_ID_BYTES, open, seal } from './chunk-codec';

export const FOOTER_BYTES = 24;
const MAGIC = Buffer.from('SGPACK01', 'latin1');
const ENTRY_BYTES = CHUNK_ID_BYTES + 8 + 4 + 4;

/** One chunk's place in its pack. */
export interface PackEntry {
  id: string;
  offset: number;
  length: number;
  plainLength: number;
}

export const packsPrefix = (tenantId: string) => `tenants/${tenantId}/chunks/packs`;
export const packKey = (tenantId: string, packId: string) => `${packsPrefix(tenantId)}/${packId}`;
export const PACK_ID_PATTERN = /^[0-9a-f]{32}$/;

/** Binds a trailer to its tenant and pack, so that a trailer copied elsewhere does not authenticate. */
const trailerAad = (tenantId: string, packId: string) => Buffer.from(`snapgraph chunk pack\0${tenantId}\0${packId}`);

/** The trailer and footer that end a pack whose chunks take the first `dataBytes` bytes. */
export function packEnd(dataKey: Buffer, tenantId: string, packId: string, entries: PackEntry[], dataBytes: number): Buffer {
  const body = Buffer.alloc(4 + entries.length * ENTRY_BYTES);
  body.writeUInt32BE(entries.length, 0);
  entries.forEach((entry, index) => {
    const at = 4 + index * ENTRY_BYTES;
    Buffer.from(entry.id, 'hex').copy(body, at);
    body.writeBigUInt64BE(BigInt(entry.offset), at + CHUNK_ID_BYTES);
    body.writeUInt32BE(entry.length, at + CHUNK_ID_BYTES + 8);
    body.writeUInt32BE(entry.plainLength, at + CHUNK_ID_BYTES + 12);
  });
  const trailer = seal(dataKey, [body], trailerAad(tenantId, packId));
  const footer = Buffer.alloc(FOOTER_BYTES);
  MAGIC.copy(footer, 0);
  footer.writeBigUInt64BE(BigInt(dataBytes), 8);
  footer.writeUInt32BE(trailer.length, 16);
  return Buffer.concat([trailer, footer]);
}

/** Where the trailer is, from the footer of a pack of `packBytes` bytes; a reason string when it cannot be. */
export function parseFooter(footer: Buffer, packBytes: number): { trailerOffset: number; trailerLength: number } | string {
  if (footer.length !== FOOTER_BYTES || !footer.subarray(0, MAGIC.length).equals(MAGIC)) return 'no pack footer (truncated?)';
  const trailerOffset = Number(footer.readBigUInt64BE(8));
  const trailerLength = footer.readUInt32BE(16);
  if (trailerOffset + trailerLength + FOOTER_BYTES !== packBytes) return 'footer does not match the pack size (truncated?)';
  return { trailerOffset, trailerLength };
}

/**
 * The entries of a pack from its sealed trailer; a reason string when it does not authenticate or the entries do not
 * tile the chunk area `[0, trailerOffset)` exactly (so that every byte of a pack is accounted for).
 */
export function parseTrailer(dataKey: Buffer, tenantId: string, packId: string, trailer: Buffer, trailerOffset: number): PackEntry[] | string {
  const body = open(dataKey, trailer, trailerAad(tenantId, packId));
  if (body === null) return 'trailer does not authenticate';
  const count = body.length >= 4 ? body.readUInt32BE(0) : -1;
  if (count < 0 || body.length !== 4 + count * ENTRY_BYTES) return 'trailer is malformed';
  const entries: PackEntry[] = [];
  let expectedOffset = 0;
  for (let index = 0; index < count; index++) {
    const at = 4 + index * ENTRY_BYTES;
    const entry = {
      id: body.subarray(at, at + CHUNK_ID_BYTES).toString('hex'),
      offset: Number(body.readBigUInt64BE(at + CHUNK_ID_BYTES)),
      length: body.readUInt32BE(at + CHUNK_ID_BYTES + 8),
      plainLength: body.readUInt32BE(at + CHUNK_ID_BYTES + 12),
    };
    if (entry.offset !== expectedOffset) return 'trailer entries do not cover the pack';
    expectedOffset += entry.length;
    entries.push(entry);
  }
  if (expectedOffset !== trailerOffset) return 'trailer entries do not cover the pack';
  return entries;
}
