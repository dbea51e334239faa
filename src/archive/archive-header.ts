// The archive's fixed-layout start: magic, format version and a checksummed JSON header that
// can be read without touching the body (docs/archive-format.md, "Byte layout" and "Header").
import { crc32 } from 'node:zlib';
import type { EngineVersion, GraphStats, NameCount } from '../graph/records';
import { ArchiveError, readOrTruncated, truncatedError } from './archive-error';
import type { StreamByteReader } from './byte-reader';
import { ARCHIVE_MAGIC, foreignFileError, SNIFF_LENGTH } from './file-type';

/** The format version this code writes, and the newest it reads. */
export const ARCHIVE_FORMAT_VERSION = 1;

/** magic (8) + format version (u16 BE) + header JSON length (u32 BE). Frozen across versions. */
export const PREAMBLE_LENGTH = ARCHIVE_MAGIC.length + 2 + 4;
const HEADER_CRC_LENGTH = 4;
/** A header is a few hundred bytes; a bigger length field is damage, not a real header. */
export const MAX_HEADER_JSON_BYTES = 4 * 1024 * 1024;

export interface ArchiveHeader {
  formatVersion: number;
  engineVersion: EngineVersion;
  sourceInstanceId: string;
  sourceInstanceName: string;
  /** ISO-8601 timestamp of the snapshot's read transaction. */
  capturedAt: string;
  stats: GraphStats;
}

export type ArchiveHeaderInput = Omit<ArchiveHeader, 'formatVersion'>;

/** Preamble + header JSON + CRC-32, ready to be the first bytes of an archive. */
export function encodeArchiveHeader(header: ArchiveHeaderInput, formatVersion = ARCHIVE_FORMAT_VERSION): Buffer {
  const problem = describeHeaderProblem(header);
  if (problem) throw new ArchiveError('INVALID_HEADER', `Cannot write the archive header: ${problem}.`);
  const json = Buffer.from(JSON.stringify(knownFields(header)), 'utf8');
  if (json.length > MAX_HEADER_JSON_BYTES) {
    throw new ArchiveError('INVALID_HEADER', 'Cannot write the archive header: it is larger than 4 MiB.');
  }
  const bytes = Buffer.alloc(PREAMBLE_LENGTH + json.length + HEADER_CRC_LENGTH);
  ARCHIVE_MAGIC.copy(bytes, 0);
  bytes.writeUInt16BE(formatVersion, ARCHIVE_MAGIC.length);
  bytes.writeUInt32BE(json.length, ARCHIVE_MAGIC.length + 2);
  json.copy(bytes, PREAMBLE_LENGTH);
  const headerEnd = PREAMBLE_LENGTH + json.length;
  bytes.writeUInt32BE(crc32(bytes.subarray(0, headerEnd)), headerEnd);
  return bytes;
}

/**
 * Reads the preamble and header, leaving `bytes` positioned at the first frame. The checks
 * run in an order that gives the most useful message: foreign file types first, then damage
 * (the CRC covers the version field too), then the version, then the header's content.
 */
export async function decodeArchiveHeader(bytes: StreamByteReader): Promise<ArchiveHeader> {
  await checkMagic(bytes);
  const preamble = await readOrTruncated(bytes, PREAMBLE_LENGTH, 'header');
  const formatVersion = preamble.readUInt16BE(ARCHIVE_MAGIC.length);
  const jsonLength = preamble.readUInt32BE(ARCHIVE_MAGIC.length + 2);
  if (jsonLength > MAX_HEADER_JSON_BYTES) {
    throw new ArchiveError('CORRUPT', `The archive is damaged: its header length (${jsonLength} bytes) is not plausible.`);
  }
  const json = await readOrTruncated(bytes, jsonLength, 'header');
  const storedCrc = (await readOrTruncated(bytes, HEADER_CRC_LENGTH, 'header')).readUInt32BE(0);
  if (crc32(json, crc32(preamble)) !== storedCrc) {
    throw new ArchiveError('CORRUPT', 'The archive is damaged: its header checksum does not match.');
  }
  checkFormatVersion(formatVersion);
  return { formatVersion, ...parseHeaderJson(json) };
}

async function checkMagic(bytes: StreamByteReader): Promise<void> {
  if ((await bytes.peek(ARCHIVE_MAGIC.length)).equals(ARCHIVE_MAGIC)) return;
  // Not an archive: look further to say what it is instead.
  const start = await bytes.peek(SNIFF_LENGTH);
  if (start.length === 0) throw new ArchiveError('NOT_AN_ARCHIVE', 'The file is empty: it is not a Snapgraph archive.');
  if (start.length < ARCHIVE_MAGIC.length && ARCHIVE_MAGIC.subarray(0, start.length).equals(start)) {
    throw truncatedError(start.length, 'header');
  }
  throw foreignFileError(start);
}

function checkFormatVersion(formatVersion: number): void {
  if (formatVersion > ARCHIVE_FORMAT_VERSION) {
    throw new ArchiveError(
      'UNSUPPORTED_VERSION',
      `archive format version ${formatVersion} is newer than this server supports (${ARCHIVE_FORMAT_VERSION}): ` +
        'upgrade Snapgraph to restore it.',
    );
  }
  if (formatVersion < 1) {
    throw new ArchiveError('CORRUPT', `The archive is damaged: format version ${formatVersion} does not exist.`);
  }
}

function parseHeaderJson(json: Buffer): ArchiveHeaderInput {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    throw new ArchiveError('CORRUPT', 'The archive is damaged: its header is not valid JSON.');
  }
  const problem = describeHeaderProblem(value);
  if (problem) throw new ArchiveError('CORRUPT', `The archive header is invalid: ${problem}.`);
  return knownFields(value as ArchiveHeaderInput);
}

/**
 * The header's fields and nothing else: extra properties of the writer's object stay out of
 * the file, and fields a later minor revision may add are not passed on by the reader.
 */
function knownFields(header: ArchiveHeaderInput): ArchiveHeaderInput {
  const { stats } = header;
  return {
    engineVersion: header.engineVersion,
    sourceInstanceId: header.sourceInstanceId,
    sourceInstanceName: header.sourceInstanceName,
    capturedAt: header.capturedAt,
    stats: {
      nodeCount: stats.nodeCount,
      relationshipCount: stats.relationshipCount,
      labels: stats.labels.map(({ name, count }) => ({ name, count })),
      relationshipTypes: stats.relationshipTypes.map(({ name, count }) => ({ name, count })),
      storeSizeBytes: stats.storeSizeBytes,
    },
  };
}

/** Why `value` is not a valid header (for messages), or undefined when it is one. */
function describeHeaderProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'it is not an object';
  if (value.engineVersion !== 'V4' && value.engineVersion !== 'V5') return 'engineVersion must be V4 or V5';
  if (typeof value.sourceInstanceId !== 'string') return 'sourceInstanceId must be a string';
  if (typeof value.sourceInstanceName !== 'string') return 'sourceInstanceName must be a string';
  if (typeof value.capturedAt !== 'string' || Number.isNaN(Date.parse(value.capturedAt))) {
    return 'capturedAt must be an ISO-8601 timestamp';
  }
  const stats = value.stats;
  if (!isObject(stats)) return 'stats must be an object';
  for (const field of ['nodeCount', 'relationshipCount', 'storeSizeBytes'] as const) {
    if (!isCount(stats[field])) return `stats.${field} must be a non-negative integer`;
  }
  for (const field of ['labels', 'relationshipTypes'] as const) {
    if (!isNameCountList(stats[field])) return `stats.${field} must be a list of { name, count }`;
  }
  return undefined;
}

function isNameCountList(value: unknown): value is NameCount[] {
  return Array.isArray(value) && value.every((item) => isObject(item) && typeof item.name === 'string' && isCount(item.count));
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
