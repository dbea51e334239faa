// The plaintext of a change-log segment (stored encrypted by the blob store): a header line, then each entry as an
// entry line followed by its tuple lines, newline-terminated:
//
//   {"format":"snapgraph-log-segment","version":1,"instanceId":…,"epoch":…,"firstSeq":…,"lastSeq":…,
//    "firstAt":…,"lastAt":…,"entries":…,"lines":…,"prevSha256":…}
//   {"seq":12,"at":1767312000123,"lines":2}
//   ["N","5",["Person"],{"name":"Ada"}]
//   ["-R","9"]
//
// Entries are consecutive seqs with non-decreasing commit times; prevSha256 is the sha256 of the previous segment's
// plaintext (null for the first segment of an epoch), so an epoch's segments read in order prove an unbroken chain.
import { createHash } from 'node:crypto';
import type { LogEntry } from '../graph/graph-store';
import { decodeLines, encodeLines } from '../runtime/text-lines';

export const SEGMENT_FORMAT = 'snapgraph-log-segment';
export const SEGMENT_VERSION = 1;

export interface SegmentHeader {
  format: typeof SEGMENT_FORMAT;
  version: typeof SEGMENT_VERSION;
  instanceId: string;
  epoch: number;
  firstSeq: number;
  lastSeq: number;
  firstAt: number;
  lastAt: number;
  entries: number;
  lines: number;
  prevSha256: string | null;
}

export interface EncodedSegment {
  header: SegmentHeader;
  plaintext: Buffer;
  sha256: string;
}

/** A segment that cannot be what it claims: damaged, truncated, or out of its chain. */
export class SegmentFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SegmentFormatError';
  }
}

export const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Encodes consecutive entries (at least one) of one epoch. */
export function encodeSegment(
  at: { instanceId: string; epoch: number; prevSha256: string | null },
  entries: LogEntry[],
): EncodedSegment {
  if (entries.length === 0) throw new Error('a segment holds at least one entry');
  entries.forEach((entry, index) => {
    if (index > 0 && (entry.seq !== entries[index - 1].seq + 1 || entry.at < entries[index - 1].at)) {
      throw new Error(`log entries out of order at seq ${entry.seq}`);
    }
  });
  const first = entries[0];
  const last = entries[entries.length - 1];
  const header: SegmentHeader = {
    format: SEGMENT_FORMAT,
    version: SEGMENT_VERSION,
    instanceId: at.instanceId,
    epoch: at.epoch,
    firstSeq: first.seq,
    lastSeq: last.seq,
    firstAt: first.at,
    lastAt: last.at,
    entries: entries.length,
    lines: entries.reduce((sum, entry) => sum + entry.lines.length, 0),
    prevSha256: at.prevSha256,
  };
  const parts: string[] = [JSON.stringify(header)];
  for (const entry of entries) {
    parts.push(JSON.stringify({ seq: entry.seq, at: entry.at, lines: entry.lines.length }));
    for (const line of entry.lines) parts.push(line);
  }
  const plaintext = encodeLines(parts);
  return { header, plaintext, sha256: sha256Of(plaintext) };
}

/**
 * Decodes a segment and checks it against itself: the header's counts, seqs and times match its entries, and nothing
 * follows the last one. (Whether it is the segment its chain expects is the reader's check: see expectSegment.)
 */
export function decodeSegment(plaintext: Buffer): { header: SegmentHeader; entries: LogEntry[]; sha256: string } {
  if (plaintext[plaintext.length - 1] !== 0x0a) throw new SegmentFormatError('the segment is truncated');
  const rows = decodeLines(plaintext);
  const header = parseJson(rows[0], 'header') as SegmentHeader;
  if (header?.format !== SEGMENT_FORMAT || header.version !== SEGMENT_VERSION) {
    throw new SegmentFormatError('not a change-log segment of a known version');
  }
  const entries: LogEntry[] = [];
  let row = 1;
  while (row < rows.length) {
    const entry = parseJson(rows[row], `entry line ${row + 1}`) as { seq: number; at: number; lines: number };
    if (!Number.isSafeInteger(entry?.seq) || !Number.isSafeInteger(entry.at) || !Number.isSafeInteger(entry.lines) || entry.lines < 0) {
      throw new SegmentFormatError(`line ${row + 1} is not an entry`);
    }
    const lines = rows.slice(row + 1, row + 1 + entry.lines);
    if (lines.length !== entry.lines) throw new SegmentFormatError(`entry seq ${entry.seq} is truncated`);
    const previous = entries[entries.length - 1];
    const expectedSeq = previous ? previous.seq + 1 : header.firstSeq;
    if (entry.seq !== expectedSeq) throw new SegmentFormatError(`entry seq ${entry.seq} where seq ${expectedSeq} was expected`);
    if (previous && entry.at < previous.at) throw new SegmentFormatError(`entry seq ${entry.seq} goes back in time`);
    entries.push({ seq: entry.seq, at: entry.at, lines });
    row += 1 + entry.lines;
  }
  const last = entries[entries.length - 1];
  const lineCount = entries.reduce((sum, entry) => sum + entry.lines.length, 0);
  if (
    !last ||
    entries.length !== header.entries ||
    last.seq !== header.lastSeq ||
    entries[0].at !== header.firstAt ||
    last.at !== header.lastAt ||
    lineCount !== header.lines
  ) {
    throw new SegmentFormatError('the segment does not hold what its header says');
  }
  return { header, entries, sha256: sha256Of(plaintext) };
}

/** Checks a decoded segment is the one its chain expects at this position. */
export function expectSegment(
  decoded: { header: SegmentHeader; sha256: string },
  expected: { instanceId: string; epoch: number; firstSeq: number; lastSeq: number; sha256: string; prevSha256: string | null },
): void {
  const { header } = decoded;
  if (decoded.sha256 !== expected.sha256) throw new SegmentFormatError(`its sha256 is ${decoded.sha256}, recorded ${expected.sha256}`);
  if (header.instanceId !== expected.instanceId || header.epoch !== expected.epoch) {
    throw new SegmentFormatError('it belongs to another instance or epoch');
  }
  if (header.firstSeq !== expected.firstSeq || header.lastSeq !== expected.lastSeq) {
    throw new SegmentFormatError(`it holds seqs ${header.firstSeq}–${header.lastSeq}, recorded ${expected.firstSeq}–${expected.lastSeq}`);
  }
  if (header.prevSha256 !== expected.prevSha256) throw new SegmentFormatError('it does not follow the previous segment of its chain');
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new SegmentFormatError(`the ${what} is not JSON`);
  }
}
