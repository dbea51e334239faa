import type { StreamByteReader } from './byte-reader';

/**
 * Why an archive could not be read or written. Reader codes describe the file a user handed
 * us; their messages are written for that user (they reach clients as INVALID_BACKUP_FILE).
 * Writer codes (INVALID_HEADER, INVALID_RECORD and COUNT_MISMATCH at end()) describe a bug or
 * inconsistency in the data being archived.
 */
export type ArchiveErrorCode =
  /** The file ends before the archive does. */
  | 'TRUNCATED'
  /** A checksum, length or structure check failed: the bytes were altered. */
  | 'CORRUPT'
  /** The file does not start with the Snapgraph archive magic bytes. */
  | 'BAD_MAGIC'
  /** The archive was written by a newer Snapgraph with a newer format version. */
  | 'UNSUPPORTED_VERSION'
  /** The file is a Neo4j dump, backup or store directory: recognised, but not readable here. */
  | 'NEO4J_DUMP'
  /** The file is empty, or a tar holds no Snapgraph archive. */
  | 'NOT_AN_ARCHIVE'
  /** The records in the archive do not match the counts (per kind, label or type) its header announces. */
  | 'COUNT_MISMATCH'
  /** The writer was given a header it cannot encode. */
  | 'INVALID_HEADER'
  /**
   * Reading: a record breaks the format's rules (shape, ids, labels, type, properties, order; the message names it).
   * Writing: the writer was given a record it cannot encode (wrong shape, order or size).
   */
  | 'INVALID_RECORD';

export class ArchiveError extends Error {
  readonly code: ArchiveErrorCode;

  constructor(code: ArchiveErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ArchiveError';
    this.code = code;
  }
}

export function isArchiveError(err: unknown): err is ArchiveError {
  return err instanceof ArchiveError;
}

/** Exactly `length` bytes of the archive's `part`, or a TRUNCATED error naming where the file ended. */
export async function readOrTruncated(bytes: StreamByteReader, length: number, part: string): Promise<Buffer> {
  const read = await bytes.read(length);
  if (!read) throw truncatedError(bytes.consumed, part);
  return read;
}

export function truncatedError(endOffset: number, part: string): ArchiveError {
  return new ArchiveError(
    'TRUNCATED',
    `The archive is incomplete: the file ends after ${endOffset} bytes, inside its ${part}. ` +
      'It was probably cut off during a transfer; upload the complete file.',
  );
}
