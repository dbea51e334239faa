// The body's framing: every frame carries its own lengths and a CRC-32 of its stored bytes,
// so damage is caught at the frame it hits, before any record from that frame is handed out.
import { crc32, inflateRaw, inflateRawSync } from 'node:zlib';
import { ArchiveError, readOrTruncated, truncatedError } from './archive-error';
import type { StreamByteReader } from './byte-reader';

/** A batch of records: newline-terminated JSON tuples, raw-deflate compressed. */
export const DATA_FRAME = 0x44; // 'D'
/** The last frame: the record counts, stored uncompressed. Followed only by the digest. */
export const END_FRAME = 0x45; // 'E'

/** type (u8) + raw length (u32 BE) + stored length (u32 BE) + CRC-32 of the stored bytes (u32 BE). */
export const FRAME_HEADER_LENGTH = 13;
/** Upper bound for both lengths of one frame; bounds the reader's memory on hostile input. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** nodeCount (u64 BE) + relationshipCount (u64 BE). */
export const END_PAYLOAD_LENGTH = 16;
/** SHA-256 of every byte before it. */
export const DIGEST_LENGTH = 32;

export interface Frame {
  type: number;
  /** Length of the payload once decompressed. */
  rawLength: number;
  /** The payload as stored (compressed for data frames); its CRC has been verified. */
  stored: Buffer;
}

export interface RecordCounts {
  nodeCount: number;
  relationshipCount: number;
}

export function encodeFrame(type: number, rawLength: number, stored: Buffer): Buffer[] {
  const header = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(rawLength, 1);
  header.writeUInt32BE(stored.length, 5);
  header.writeUInt32BE(crc32(stored), 9);
  return [header, stored];
}

export function encodeEndFrame(counts: RecordCounts): Buffer {
  const payload = Buffer.alloc(END_PAYLOAD_LENGTH);
  payload.writeBigUInt64BE(BigInt(counts.nodeCount), 0);
  payload.writeBigUInt64BE(BigInt(counts.relationshipCount), 8);
  return Buffer.concat(encodeFrame(END_FRAME, END_PAYLOAD_LENGTH, payload));
}

export function decodeEndFrame(frame: Frame): RecordCounts {
  if (frame.rawLength !== END_PAYLOAD_LENGTH || frame.stored.length !== END_PAYLOAD_LENGTH) {
    throw new ArchiveError('CORRUPT', 'The archive is damaged: its end frame has the wrong size.');
  }
  const nodeCount = frame.stored.readBigUInt64BE(0);
  const relationshipCount = frame.stored.readBigUInt64BE(8);
  if (nodeCount > BigInt(Number.MAX_SAFE_INTEGER) || relationshipCount > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ArchiveError('CORRUPT', 'The archive is damaged: its end frame holds impossible record counts.');
  }
  return { nodeCount: Number(nodeCount), relationshipCount: Number(relationshipCount) };
}

/** The next frame, with its CRC verified. Throws TRUNCATED when the file ends before it does. */
export async function readFrame(bytes: StreamByteReader): Promise<Frame> {
  const offset = bytes.consumed;
  const header = await bytes.read(FRAME_HEADER_LENGTH);
  if (!header) {
    throw bytes.consumed === offset
      ? new ArchiveError(
          'TRUNCATED',
          `The archive is incomplete: the file ends after ${offset} bytes, before the archive's end marker. ` +
            'It was probably cut off during a transfer; upload the complete file.',
        )
      : truncatedError(bytes.consumed, 'frame header');
  }
  const type = header.readUInt8(0);
  const rawLength = header.readUInt32BE(1);
  const storedLength = header.readUInt32BE(5);
  if (type !== DATA_FRAME && type !== END_FRAME) {
    throw new ArchiveError('CORRUPT', `The archive is damaged: unknown frame type 0x${hex(type)} at byte ${offset}.`);
  }
  if (rawLength > MAX_FRAME_BYTES || storedLength > MAX_FRAME_BYTES) {
    throw new ArchiveError('CORRUPT', `The archive is damaged: the frame at byte ${offset} has an impossible length.`);
  }
  const stored = await readOrTruncated(bytes, storedLength, 'data');
  if (crc32(stored) !== header.readUInt32BE(9)) {
    throw new ArchiveError('CORRUPT', `The archive is damaged: the checksum of the frame at byte ${offset} does not match.`);
  }
  return { type, rawLength, stored };
}

/**
 * A data frame's records as raw bytes. Synchronous: inflating a 128 KiB frame takes well under a millisecond, less than
 * a round trip through libuv's thread pool (measured: async was 30% slower overall). Readers that need the speed of
 * several cores inflate on worker threads instead (FramePool).
 */
export function inflateDataFrame(frame: Frame): Buffer {
  let raw: Buffer;
  try {
    raw = inflateRawSync(frame.stored, { maxOutputLength: Math.max(1, frame.rawLength) });
  } catch (err) {
    throw undecompressable(err);
  }
  return checkedLength(frame, raw);
}

/**
 * inflateDataFrame() on libuv's thread pool, for a reader on the event loop (inspectFile): a frame may inflate to
 * 64 MiB, a few hundred milliseconds of the loop's time.
 */
export function inflateDataFrameOffThread(frame: Frame): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    inflateRaw(frame.stored, { maxOutputLength: Math.max(1, frame.rawLength) }, (err, raw) => {
      if (err) reject(undecompressable(err));
      else {
        try {
          resolve(checkedLength(frame, raw));
        } catch (error) {
          reject(error);
        }
      }
    });
  });
}

function undecompressable(cause: unknown): ArchiveError {
  return new ArchiveError('CORRUPT', 'The archive is damaged: a data frame cannot be decompressed.', { cause });
}

function checkedLength(frame: Frame, raw: Buffer): Buffer {
  if (raw.length !== frame.rawLength) {
    throw new ArchiveError('CORRUPT', 'The archive is damaged: a data frame decompresses to the wrong size.');
  }
  return raw;
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}
