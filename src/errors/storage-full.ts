// A full disk, whichever layer met it, as the one client-facing error STORAGE_FULL: never raw driver text or paths.
import { AppError } from './app-error';
import { anyInChain } from './error-chain';

/**
 * The codes a full disk surfaces as: fs (ENOSPC, EDQUOT), sqlite3 and better-sqlite3 (SQLITE_FULL; SQLite's own
 * file-system layer turns ENOSPC into it), PostgreSQL (SQLSTATE 53100 disk_full).
 */
const DISK_FULL_CODES: ReadonlySet<unknown> = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']);

/** True when the error, or an error it wraps, is a full disk or an exhausted quota. */
export function isStorageFull(error: unknown): boolean {
  return anyInChain(
    error,
    // sqlite3 also puts the code at the start of the message, and some wrappers keep only the message.
    (e) => DISK_FULL_CODES.has(e.code) || (typeof e.message === 'string' && /^(SQLITE_FULL|ENOSPC|EDQUOT)\b/.test(e.message)),
  );
}

/** Where the server met the full disk, named by the variable that configures it (never by its path). */
export type StorageVolume = 'data' | 'uploads' | 'metadata';

const VOLUMES: Record<StorageVolume, string> = {
  data: 'the data volume (SNAPGRAPH_DATA_DIR)',
  uploads: 'the volume of partial uploads (SNAPGRAPH_UPLOAD_DIR)',
  metadata: "the metadata database's disk (DATABASE_URL)",
};

export function storageFull(volume: StorageVolume = 'data'): AppError {
  return new AppError(
    'STORAGE_FULL',
    `${VOLUMES[volume]} is full: nothing was changed, and reads go on. Free space on it (or ask the operator to), then try again.`,
  );
}

/**
 * STORAGE_FULL for a disk-full error (`volume` says where the caller was writing; a PostgreSQL disk_full is always
 * the metadata database's), or null for any other error.
 */
export function asStorageFull(error: unknown, volume: StorageVolume = 'data'): AppError | null {
  if (error instanceof AppError) return error.code === 'STORAGE_FULL' ? error : null;
  if (!isStorageFull(error)) return null;
  return storageFull(isPostgresDiskFull(error) ? 'metadata' : volume);
}

const isPostgresDiskFull = (error: unknown) => anyInChain(error, (e) => e.code === '53100');
