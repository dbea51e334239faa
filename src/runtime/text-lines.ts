// Text lines to UTF-8 bytes and back (archive frames, change-log segments, graph-file exports and imports, legacy
// deltas), around a cost of V8's:
// a string over its largest regular object (128 KiB) lives in the large-object space, where building, flattening and
// converting it ran 5-20× slower. Measured on lines of ~1 KiB (Node 20): a 130 KiB frame encoded as join + Buffer.from
// at 100 MB/s, line by line at 1.9 GB/s; decoded as toString + split at 220 MB/s, in pieces at 5 GB/s. So no string
// here ever holds more than a line, or a piece of whole lines under that size.
import { isAscii } from 'node:buffer';
import { StringDecoder } from 'node:string_decoder';

/**
 * Strings are decoded in pieces of whole lines at most this long (a longer line is a piece of its own). Under 64 KiB:
 * text with one character past U+00FF is stored two bytes a character, and 64 KiB of it would pass 128 KiB.
 */
const DECODE_PIECE_BYTES = 60 * 1024;

/** The lines as UTF-8, each followed by a newline, in one buffer of exactly their size. */
export function encodeLines(lines: readonly string[]): Buffer {
  return encode(lines, true);
}

/**
 * The strings as UTF-8, one after the other (text built in parts, such as an export's records, rather than one string
 * of megabytes). Each part is encoded on its own: a surrogate pair split between two parts would become two U+FFFD.
 */
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
 * The lines of the text, without their newlines; a last line without one is a line too ('a' and 'a\n' both give ['a']),
 * so callers that need the text to end with a newline check that first. ASCII (nearly all) is decoded as latin1, which
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

/** A line of streamLines longer than its maxLineChars; `line` is its number (from 1). */
export class LineTooLongError extends Error {
  constructor(
    readonly line: number,
    readonly maxLineChars: number,
  ) {
    super(`line ${line} is longer than ${maxLineChars} characters`);
    this.name = 'LineTooLongError';
  }
}

/**
 * The lines of a UTF-8 byte stream split across its pieces anywhere, without their newlines: for each piece, the lines
 * it completed (none, for a piece inside a long line); at the end, the last line when the stream does not end with a
 * newline. `skipByteOrderMark`: a U+FEFF that starts the text is not part of it. `maxLineChars`: a line longer than
 * that throws LineTooLongError as soon as it is, rather than when its newline comes: a stream from outside (an upload)
 * need hold no newline at all, and its one line would otherwise be held whole.
 */
export async function* streamLines(
  source: AsyncIterable<Buffer>,
  { skipByteOrderMark = false, maxLineChars = Infinity } = {},
): AsyncGenerator<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let atStart = skipByteOrderMark;
  /** Lines completed before this piece's. */
  let complete = 0;
  for await (const piece of source) {
    const lines: string[] = [];
    for (let text of decodePiece(decoder, piece)) {
      if (atStart && text.length > 0) {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        atStart = false;
      }
      // Only the new text is split: a line longer than many pieces is not scanned again at each.
      const split = text.split('\n');
      if (split.length === 1) {
        rest += text;
      } else {
        split[0] = rest + split[0];
        rest = split.pop()!;
        for (const line of split) {
          if (line.length > maxLineChars) throw new LineTooLongError(complete + lines.length + 1, maxLineChars);
          lines.push(line);
        }
      }
      if (rest.length > maxLineChars) throw new LineTooLongError(complete + lines.length + 1, maxLineChars);
    }
    complete += lines.length;
    yield lines;
  }
  rest += decoder.end();
  if (rest.length > maxLineChars) throw new LineTooLongError(complete + 1, maxLineChars);
  if (rest.length > 0) yield [rest];
}

/**
 * A piece of a UTF-8 byte stream as text, in strings of at most DECODE_PIECE_BYTES bytes each (a stream's pieces are
 * often a MiB or more); `decoder` keeps a character cut between pieces whole.
 */
function* decodePiece(decoder: StringDecoder, piece: Buffer): Generator<string> {
  for (let at = 0; at < piece.length; at += DECODE_PIECE_BYTES) yield decoder.write(piece.subarray(at, at + DECODE_PIECE_BYTES));
}
