// Recognising what a user uploaded from its first bytes: our archive, a tar that may hold one,
// or a Neo4j dump we recognise and refuse with a message that says so.
import { constants as zlibConstants, gunzipSync } from 'node:zlib';
import type { EngineVersion } from '../graph/records';
import { ArchiveError } from './archive-error';

/** PNG-style: a high-bit byte, "SGA", CR LF, ^Z, LF. Text-mode transfers mangle it visibly. */
export const ARCHIVE_MAGIC = Buffer.from([0x89, 0x53, 0x47, 0x41, 0x0d, 0x0a, 0x1a, 0x0a]);

/** How many leading bytes sniffFileType looks at; passing fewer works, with less certainty. */
export const SNIFF_LENGTH = 4096;

export type FileType = 'snapgraph-archive' | 'tar' | 'neo4j-dump' | 'gzip' | 'unknown';

/** The file extension, with its dot, for an archive of an instance running `engine`. */
export function archiveExtension(engine: EngineVersion): '.backup' | '.dump' {
  return engine === 'V5' ? '.backup' : '.dump';
}

/**
 * What the file starting with `firstBytes` is. Neo4j files recognised as 'neo4j-dump':
 * - `neo4j-admin database dump` / `backup` (5.x, late 4.4): a 4-byte magic, D = dump or
 *   B = backup, then Z = zstd, G = gzip or T = tar, then a version: DZV1, DGV1, BZV1, BTV1, ...
 * - older `neo4j-admin dump` (4.x): a bare zstd stream (magic 28 B5 2F FD);
 * - 3.x dumps (and 4.x without zstd): a gzip'd tar of store files (neostore*);
 * - a plain tar of a Neo4j store directory.
 */
export function sniffFileType(firstBytes: Buffer): FileType {
  const bytes = firstBytes.subarray(0, SNIFF_LENGTH);
  if (startsWith(bytes, ARCHIVE_MAGIC)) return 'snapgraph-archive';
  if (NEO4J_ARCHIVE_MAGIC.test(bytes.subarray(0, 4).toString('latin1'))) return 'neo4j-dump';
  if (startsWith(bytes, ZSTD_MAGIC)) return 'neo4j-dump';
  if (startsWith(bytes, GZIP_MAGIC)) return holdsNeo4jStore(gunzipPrefix(bytes)) ? 'neo4j-dump' : 'gzip';
  if (isTarHeader(bytes)) return holdsNeo4jStore(bytes) ? 'neo4j-dump' : 'tar';
  return 'unknown';
}

/** True for the path of a Neo4j store file (any version), e.g. `data/databases/neo4j/neostore.nodestore.db`. */
export function isNeo4jStorePath(path: string): boolean {
  const name = path.replace(/\/+$/, '').split('/').pop() ?? '';
  return /^neostore/.test(name) || /^block\.[a-z_.]+\.db$/.test(name);
}

/** The error for a file that does not start with the archive magic, naming what it is instead. */
export function foreignFileError(firstBytes: Buffer): ArchiveError {
  switch (sniffFileType(firstBytes)) {
    case 'neo4j-dump':
      return new ArchiveError('NEO4J_DUMP', NEO4J_DUMP_MESSAGE);
    case 'tar':
      return new ArchiveError('BAD_MAGIC', `This file is a tar file, not a Snapgraph archive. ${WHAT_TO_UPLOAD}`);
    case 'gzip':
      return new ArchiveError(
        'BAD_MAGIC',
        `This file is gzip-compressed, not a Snapgraph archive (archives are already compressed). ${WHAT_TO_UPLOAD}`,
      );
    default:
      return new ArchiveError(
        'BAD_MAGIC',
        `This file is not a Snapgraph archive: it does not start with the archive signature. ${WHAT_TO_UPLOAD}`,
      );
  }
}

export const WHAT_TO_UPLOAD =
  'Upload a .backup or .dump file exported from Snapgraph, an APOC export (apoc.export.json.all, apoc.export.cypher.all or apoc.export.graphml.all), ' +
  'a .tar of neo4j-admin import CSV files, or a .tar holding one.';
export const NEO4J_DUMP_MESSAGE =
  'This file is a Neo4j database dump or backup (made by neo4j-admin), not a Snapgraph archive. ' +
  'Snapgraph cannot read Neo4j store files. Export the database from Neo4j with APOC ' +
  '(apoc.export.json.all, apoc.export.cypher.all or apoc.export.graphml.all) or as neo4j-admin import CSV files ' +
  '(a .tar of them) and upload that file instead.';

const NEO4J_ARCHIVE_MAGIC = /^[DB][ZGT]V[0-9]$/;
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const TAR_BLOCK = 512;

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && bytes.subarray(0, prefix.length).equals(prefix);
}

/** As much of the gzip'd content as the prefix holds (a prefix is an incomplete stream). */
export function gunzipPrefix(bytes: Buffer): Buffer {
  try {
    return gunzipSync(bytes, { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: 8 * 1024 * 1024 });
  } catch {
    return Buffer.alloc(0);
  }
}

/** True when `bytes` starts with tar headers naming a Neo4j store file. */
function holdsNeo4jStore(bytes: Buffer): boolean {
  return tarEntryNames(bytes).some(isNeo4jStorePath);
}

/** The names in the tar headers that `bytes` (the start of a tar) holds whole. */
export function tarEntryNames(bytes: Buffer): string[] {
  return tarEntriesIn(bytes).map((entry) => entry.name);
}

/**
 * The entries whose headers `bytes` (the start of a tar) holds whole: name, where the content starts, its size. The
 * headers that only describe the entry after them, or the whole tar (pax extended headers, GNU long names), are not
 * entries: GNU tar --format=posix writes one before every file, named ./PaxHeaders/<file>, and macOS tar one before
 * every file with extended attributes, PaxHeader/<file>, which a name's extension would take for the file itself. The
 * whole name they give (a path over 100 bytes: GNU tar's ././@LongLink, pax's path) is the entry's.
 */
export function tarEntriesIn(bytes: Buffer): Array<{ name: string; contentOffset: number; size: number }> {
  const entries: Array<{ name: string; contentOffset: number; size: number }> = [];
  let offset = 0;
  /** The next entry's whole name, when a header before it gave one: its own holds 100 bytes of it. */
  let longName: string | undefined;
  while (offset + TAR_BLOCK <= bytes.length) {
    const block = bytes.subarray(offset, offset + TAR_BLOCK);
    if (!isTarHeader(block)) break;
    const size = parseTarNumber(block.subarray(124, 136));
    const content = size === undefined ? Buffer.alloc(0) : bytes.subarray(offset + TAR_BLOCK, offset + TAR_BLOCK + size);
    if (block[156] === GNU_LONG_NAME) {
      longName = cString(content, 0, content.length);
    } else if (block[156] === PAX_HEADER) {
      longName = paxPath(content) ?? longName;
    } else if (!METADATA_TYPES.has(block[156])) {
      const name = cString(block, 0, 100);
      const prefix = block.subarray(257, 262).toString('latin1') === 'ustar' ? cString(block, 345, 155) : '';
      entries.push({ name: longName ?? (prefix ? `${prefix}/${name}` : name), contentOffset: offset + TAR_BLOCK, size: size ?? 0 });
      longName = undefined;
    }
    if (size === undefined) break;
    offset += TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
  }
  return entries;
}

/** Typeflags of headers about other entries: pax extended (x) and global (g) headers, GNU long names and links (L, K). */
const METADATA_TYPES = new Set(['x', 'g', 'L', 'K'].map((flag) => flag.charCodeAt(0)));
const PAX_HEADER = 'x'.charCodeAt(0);
const GNU_LONG_NAME = 'L'.charCodeAt(0);

/** The `path` record of a pax extended header ("<length> path=<name>\n" records), if it holds one whole. */
function paxPath(content: Buffer): string | undefined {
  const match = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(content.toString('utf8'));
  return match?.[1];
}

/** A tar header block: its checksum field matches its bytes (the ustar magic is optional). */
export function isTarHeader(bytes: Buffer): boolean {
  if (bytes.length < TAR_BLOCK || bytes[0] === 0) return false;
  const stored = parseTarNumber(bytes.subarray(148, 156));
  if (stored === undefined) return false;
  let sum = 8 * 0x20; // the checksum field itself counts as spaces
  for (let i = 0; i < TAR_BLOCK; i++) if (i < 148 || i >= 156) sum += bytes[i];
  return sum === stored;
}

/** An octal tar number (NUL/space padded), or undefined when the field is not one. */
function parseTarNumber(field: Buffer): number | undefined {
  if (field[0] & 0x80) return undefined; // GNU base-256: only for sizes > 8 GiB, not worth decoding here
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]+$/.test(text)) return undefined;
  return parseInt(text, 8);
}

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString('utf8');
}
