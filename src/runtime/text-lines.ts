// Newline-terminated text lines to UTF-8 bytes and back (archive frames, change-log segments), around a cost of V8's:
// a string over its largest regular object (128 KiB) lives in the large-object space, where building, flattening and
// converting it ran 5-20× slower. Measured on lines of ~1 KiB (Node 20): a 130 KiB frame encoded as join + Buffer.from
// at 100 MB/s, line by line at 1.9 GB/s; decoded as toString + split at 220 MB/s, in pieces at 5 GB/s. So no string
// here ever holds more than a line, or a piece of whole lines under that size.
import { isAscii } from 'node:buffer';
import type { StringDecoder } from 'node:string_decoder';

/** Strings are decoded in pieces of whole lines at most this long (a longer line is a piece of its own). */
const DECODE_PIECE_BYTES = 64 * 1024;

/** The lines as UTF-8, each followed by a newline, in one buffer of exactly their size. */
export function encodeLines(lines: readonly string[]): Buffer {
  return encode(lines, true);
}

/** The strings as UTF-8, one after the other (text built in parts, such as an export's records). */
export function encodeStrings(parts: readonly string[]): Buffer {
  return encode(parts, false);
}

function encode(parts: readonly string[], newlines: boolean): Buffer {
  let size = newlines ? parts.length : 0;
  for (const part of parts) size += Buffer.byteLength(part, 'utf8');
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  for (const part of parts) {
    at += bytes.write(part, at, 'utf8');
    if (newlines) bytes[at++] = 0x0a;
  }
  return bytes;
}

/**
 * The lines of text that ends with a newline, without their newlines. ASCII (nearly all) is decoded as latin1, which
 * copies bytes instead of decoding them: the same text, faster. Bytes that are not UTF-8 decode to U+FFFD, as
 * Buffer.toString does: callers that must refuse them check first (isUtf8).
 */
export function decodeLines(raw: Buffer, encoding: 'latin1' | 'utf8' = isAscii(raw) ? 'latin1' : 'utf8'): string[] {
  const lines: string[] = [];
  for (let start = 0; start < raw.length; ) {
    let end = raw.length;
    if (end - start > DECODE_PIECE_BYTES) {
      // Cut after the last newline within the piece (newline bytes never occur inside a UTF-8 sequence); a longer line is one piece.
      const newline = raw.lastIndexOf(0x0a, start + DECODE_PIECE_BYTES - 1);
      end = (newline >= start ? newline : raw.indexOf(0x0a, start + DECODE_PIECE_BYTES)) + 1;
      if (end === 0) end = raw.length;
    }
    for (const line of raw.toString(encoding, start, raw[end - 1] === 0x0a ? end - 1 : end).split('\n')) lines.push(line);
    start = end;
  }
  return lines;
}

/**
 * A piece of a UTF-8 byte stream as text, in strings of at most DECODE_PIECE_BYTES bytes each (a stream's pieces are
 * often a MiB or more); `decoder` keeps a character cut between pieces whole.
 */
export function* decodePiece(decoder: StringDecoder, piece: Buffer): Generator<string> {
  for (let at = 0; at < piece.length; at += DECODE_PIECE_BYTES) yield decoder.write(piece.subarray(at, at + DECODE_PIECE_BYTES));
}
