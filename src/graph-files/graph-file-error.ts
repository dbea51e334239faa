// Errors about a foreign graph file, written for the user who handed it to us.
import { ArchiveError } from '../archive/archive-error';
import { AppError } from '../errors/app-error';
import type { GraphFileKind } from './graph-file-format';

/** The file breaks its format's rules at `where` (GraphFileReader.describe): restores report INVALID_BACKUP_FILE. */
export function graphFileError(where: string, problem: string): ArchiveError {
  return new ArchiveError('INVALID_RECORD', `The file is invalid at ${where}: ${problem}`);
}

/** A snapshot value the export format cannot carry; names the record and property, and says what to do instead. */
export function unexportableValueError(kind: GraphFileKind, what: string, problem: string): AppError {
  return new AppError(
    'BAD_USER_INPUT',
    `this snapshot cannot be exported as ${kind}: ${what} ${problem}. Export it as ARCHIVE (or APOC_JSON, which carries every value) instead`,
  );
}
