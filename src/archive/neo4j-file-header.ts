// What a real Neo4j dump or backup says about itself in the bytes we can read without its store format.
// Layouts as neo4j-admin writes them (org.neo4j.dbms.archive: DumpFormatSelector, Dumper, Loader,
// backup.BackupFormatSelector, BackupMetadataV1/V2, StoreIdSerialization). All integers big-endian (Java).
//
//   dump   DZV1 | zstd( i32 version=1, i64 files, i64 bytes, tar of the store )
//          DGV1 | gzip( tar of the store )
//          legacy 4.x: zstd( same as DZV1 ) without a magic; 3.x: gzip( tar ) without a magic
//   backup BZV1 | zstd( metadata V1, tar )          BTV1 | metadata V1 | tar
//          BZV2 | zstd( u8 2, metadata V2, tar )    BTV2 | u8 2 | metadata V2 | tar
//          BZV3 | u8 2 | metadata V2 | zstd( tar )
//   metadata V1: store id | u8 16, uuid (database id) | u8 n, name | i64 backup time (epoch s, UTC)
//                | i64 lowest append index | i64 highest append index | u8 n, flags (bit 0 recovered,
//                bit 1 compressed, bit 2 full)
//   metadata V2: metadata V1 | i32 count, count × (i32 n, key, i32 n, value)
//   store id:    u8 1 | i64 creation time (epoch ms) | i64 random | u8 n, storage engine | u8 n, format
//                | i8 major | i8 minor
// Node has no zstd decoder, so what zstd compresses (BZV1/BZV2 metadata, dump size metadata) stays unread.
import type { EngineVersion } from '../graph/records';
import { gunzipPrefix, isNeo4jStorePath, isTarHeader, tarEntryNames } from './file-type';

export type Neo4jFileKind = 'NEO4J_DUMP' | 'NEO4J_BACKUP';

export interface Neo4jFileDescription {
  kind: Neo4jFileKind;
  /** The engine generation the format belongs to, where the format tells. */
  engineVersion: EngineVersion | null;
  /** When the backup was taken (backups with a readable header only). */
  capturedAt: string | null;
  details: Record<string, unknown>;
}

/** How many leading bytes describeNeo4jFile wants: a backup header with its metadata fields fits easily. */
export const NEO4J_HEADER_PEEK_LENGTH = 64 * 1024;

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

interface MagicFormat {
  kind: Neo4jFileKind;
  format: string;
  compression: 'zstd' | 'gzip' | 'none';
  /** Where the backup metadata is: after the magic uncompressed, inside the zstd stream, or absent (dumps). */
  metadata: 'v1' | 'v2' | 'compressed' | 'none';
}

const MAGIC_FORMATS: Record<string, MagicFormat> = {
  DZV1: { kind: 'NEO4J_DUMP', format: 'neo4j-admin database dump (zstd, format 1)', compression: 'zstd', metadata: 'none' },
  DGV1: { kind: 'NEO4J_DUMP', format: 'neo4j-admin database dump (gzip, format 1)', compression: 'gzip', metadata: 'none' },
  BZV1: { kind: 'NEO4J_BACKUP', format: 'neo4j-admin database backup (zstd, format 1)', compression: 'zstd', metadata: 'compressed' },
  BTV1: { kind: 'NEO4J_BACKUP', format: 'neo4j-admin database backup (uncompressed, format 1)', compression: 'none', metadata: 'v1' },
  BZV2: { kind: 'NEO4J_BACKUP', format: 'neo4j-admin database backup (zstd, format 2)', compression: 'zstd', metadata: 'compressed' },
  BTV2: { kind: 'NEO4J_BACKUP', format: 'neo4j-admin database backup (uncompressed, format 2)', compression: 'none', metadata: 'v2' },
  BZV3: { kind: 'NEO4J_BACKUP', format: 'neo4j-admin database backup (zstd, format 3)', compression: 'zstd', metadata: 'v2' },
};

/**
 * What the Neo4j dump or backup starting with `head` is and what its readable header holds, or undefined when
 * `head` is not the start of one. A header cut short or damaged still names the format, with `headerProblem`.
 */
export function describeNeo4jFile(head: Buffer): Neo4jFileDescription | undefined {
  const magic = head.subarray(0, 4).toString('latin1');
  const known = MAGIC_FORMATS[magic];
  if (known) return describeMagicFormat(magic, known, head.subarray(4));
  if (/^[DB][ZGT]V[0-9]$/.test(magic)) {
    return {
      kind: magic.startsWith('D') ? 'NEO4J_DUMP' : 'NEO4J_BACKUP',
      engineVersion: null,
      capturedAt: null,
      details: { format: `neo4j-admin ${magic.startsWith('D') ? 'dump' : 'backup'} of a format this Snapgraph does not know`, magic },
    };
  }
  if (startsWith(head, ZSTD_MAGIC)) {
    return {
      kind: 'NEO4J_DUMP',
      engineVersion: 'V4',
      capturedAt: null,
      details: { format: 'neo4j-admin dump (Neo4j 4.x, zstd, no format magic)', compression: 'zstd' },
    };
  }
  if (startsWith(head, GZIP_MAGIC)) {
    const files = storeFilesIn(gunzipPrefix(head));
    if (files.length === 0) return undefined;
    return {
      kind: 'NEO4J_DUMP',
      engineVersion: null,
      capturedAt: null,
      details: { format: 'neo4j-admin dump (Neo4j 3.x or 4.x, gzip\'d tar, no format magic)', compression: 'gzip', storeFiles: files },
    };
  }
  if (isTarHeader(head)) {
    const files = storeFilesIn(head);
    if (files.length === 0) return undefined;
    return {
      kind: 'NEO4J_DUMP',
      engineVersion: null,
      capturedAt: null,
      details: { format: 'tar of a Neo4j store directory', compression: 'none', storeFiles: files },
    };
  }
  return undefined;
}

function describeMagicFormat(magic: string, format: MagicFormat, rest: Buffer): Neo4jFileDescription {
  const details: Record<string, unknown> = { format: format.format, magic, compression: format.compression };
  // Backup artifacts (B…) only exist since Neo4j 5; the dump magics were added late in 4.4 too.
  const engineVersion: EngineVersion | null = format.kind === 'NEO4J_BACKUP' ? 'V5' : null;
  let capturedAt: string | null = null;
  if (format.metadata === 'compressed') {
    details.headerProblem = 'the backup metadata is zstd-compressed and is not read here';
  } else if (format.metadata === 'none' && format.compression === 'gzip') {
    const files = storeFilesIn(gunzipPrefix(rest));
    if (files.length > 0) details.storeFiles = files;
  } else if (format.metadata === 'v1' || format.metadata === 'v2') {
    try {
      const metadata = readBackupMetadata(new HeaderCursor(rest), format.metadata);
      Object.assign(details, metadata);
      capturedAt = metadata.backupTime;
    } catch (error) {
      details.headerProblem = error instanceof Error ? error.message : String(error);
    }
  }
  return { kind: format.kind, engineVersion, capturedAt, details };
}

interface BackupMetadata {
  databaseName: string;
  databaseId: string;
  backupTime: string;
  /** "full" or "differential" (neo4j-admin's own words for a backup that needs an earlier one). */
  backupType: 'full' | 'differential';
  transactionRange: { from: string; to: string };
  recovered: boolean;
  compressed: boolean;
  storeId: Record<string, unknown>;
  metadataFields?: string[];
}

function readBackupMetadata(cursor: HeaderCursor, version: 'v1' | 'v2'): BackupMetadata {
  if (version === 'v2') {
    const metadataVersion = cursor.u8('the metadata version');
    if (metadataVersion !== 2) throw new Error(`the backup metadata version is ${metadataVersion}, not 2`);
  }
  const storeId = readStoreId(cursor);
  const uuidLength = cursor.u8('the database id length');
  const uuid = cursor.bytes(uuidLength, 'the database id');
  const databaseName = cursor.bytes(cursor.u8('the database name length'), 'the database name').toString('utf8');
  const backupSeconds = cursor.i64('the backup time');
  const lowest = cursor.i64('the lowest transaction');
  const highest = cursor.i64('the highest transaction');
  const flags = cursor.bytes(cursor.u8('the flags length'), 'the flags');
  const flag = (bit: number) => flags.length > 0 && (flags[0] & (1 << bit)) !== 0;
  const metadata: BackupMetadata = {
    databaseName,
    databaseId: uuidLength === 16 ? formatUuid(uuid) : uuid.toString('hex'),
    backupTime: new Date(Number(backupSeconds) * 1000).toISOString(),
    backupType: flag(2) ? 'full' : 'differential',
    transactionRange: { from: lowest.toString(), to: highest.toString() },
    recovered: flag(0),
    compressed: flag(1),
    storeId,
  };
  if (version === 'v2') metadata.metadataFields = readFieldNames(cursor);
  return metadata;
}

function readStoreId(cursor: HeaderCursor): Record<string, unknown> {
  const version = cursor.u8('the store id version');
  if (version !== 1) throw new Error(`the store id serialisation version is ${version}, not 1`);
  const creationTime = cursor.i64('the store creation time');
  const random = cursor.i64('the store id');
  const storageEngine = cursor.bytes(cursor.u8('the storage engine name length'), 'the storage engine name').toString('utf8');
  const format = cursor.bytes(cursor.u8('the store format name length'), 'the store format name').toString('utf8');
  const major = cursor.i8('the store format version');
  const minor = cursor.i8('the store format version');
  return {
    creationTime: new Date(Number(creationTime)).toISOString(),
    random: random.toString(),
    storageEngine,
    format,
    formatVersion: `${major}.${minor}`,
  };
}

/** The keys of the V2 metadata map (e.g. metadataScript); values can be a megabyte and are skipped. */
function readFieldNames(cursor: HeaderCursor): string[] {
  const count = cursor.i32('the metadata field count');
  if (count < 0 || count > 1000) throw new Error(`the metadata field count ${count} is not plausible`);
  const names: string[] = [];
  for (let i = 0; i < count && !cursor.exhausted; i++) {
    names.push(cursor.bytes(cursor.i32('a metadata field name length'), 'a metadata field name').toString('utf8'));
    const valueLength = cursor.i32('a metadata field length');
    if (!cursor.skip(valueLength)) break; // a long value (the metadata script) may go past what was read
  }
  return names;
}

/** Reads fields from a header prefix, naming the field that is cut off. */
class HeaderCursor {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  get exhausted(): boolean {
    return this.offset >= this.buffer.length;
  }

  u8(what: string): number {
    return this.buffer.readUInt8(this.need(1, what));
  }

  i8(what: string): number {
    return this.buffer.readInt8(this.need(1, what));
  }

  i32(what: string): number {
    return this.buffer.readInt32BE(this.need(4, what));
  }

  i64(what: string): bigint {
    return this.buffer.readBigInt64BE(this.need(8, what));
  }

  bytes(length: number, what: string): Buffer {
    if (length < 0) throw new Error(`${what} has a negative length`);
    const start = this.need(length, what);
    return this.buffer.subarray(start, start + length);
  }

  /** False when fewer than `length` bytes are left (the cursor then stands at the end). */
  skip(length: number): boolean {
    if (length < 0 || this.offset + length > this.buffer.length) {
      this.offset = this.buffer.length;
      return false;
    }
    this.offset += length;
    return true;
  }

  private need(length: number, what: string): number {
    if (this.offset + length > this.buffer.length) throw new Error(`the header ends inside ${what}`);
    const start = this.offset;
    this.offset += length;
    return start;
  }
}

function formatUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Up to 10 store file names among the tar headers `bytes` starts with. */
function storeFilesIn(bytes: Buffer): string[] {
  return tarEntryNames(bytes).filter(isNeo4jStorePath).slice(0, 10);
}

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && bytes.subarray(0, prefix.length).equals(prefix);
}
