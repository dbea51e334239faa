// The strategy interface every blob backend implements, and the key rules they all enforce.
import { open, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';

import { ByteRange } from './byte-range';
import { InvalidBlobKeyError } from './errors';

export interface BlobStore {
  init?(): Promise<void>;
  /**
   * Streams `data` into `key` atomically: the blob appears whole or not at all. Overwrites an
   * existing blob. On any failure, including `data` erroring, nothing is left behind and the
   * promise rejects with that error; except a failure once the new blob is in place (S3: the check
   * after an upload completed could not be made), which leaves it, whole: it may have replaced the
   * previous blob, which removing it would lose too.
   */
  write(key: string, data: Readable): Promise<{ sizeBytes: number }>;
  /**
   * The stored bytes `[start, end)` (default: all).
   * @throws BlobNotFoundError when there is no such blob; RangeError for an invalid range.
   */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /**
   * Many ranged reads of one blob, opened once: where a store can keep a blob open (a file), instead of an open, a
   * stat and a close per read as `read` does. A restore reads hundreds of chunks of each pack.
   * @throws BlobNotFoundError when there is no such blob.
   */
  openRanges?(key: string): Promise<BlobRanges>;
  /**
   * Moves the whole local file at `path` in as `key`, atomically and durably, when the store can without copying it
   * (a rename on the same file system); otherwise copies it (moveByCopy). The file is gone once this resolves.
   */
  adopt?(key: string, path: string): Promise<{ sizeBytes: number }>;
  /**
   * The inverse of adopt, for a store that has it: moves the blob `key` out to the local file `path` (a rename; a copy
   * when they are on different file systems). The blob is gone once this resolves.
   */
  release?(key: string, path: string): Promise<void>;
  /** Stored size in bytes, or null when there is no such blob. */
  size(key: string): Promise<number | null>;
  /** Idempotent: deleting a missing blob succeeds. */
  delete(key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  /**
   * Keys of the blobs under the folder `prefix` (a valid key; its descendants at any depth), in no particular order.
   * Temp files of writes in progress are never listed, nor anything else whose name is no valid key (a .DS_Store, an
   * editor's backup). Used to rebuild indexes from the blobs alone.
   */
  list(prefix: string): AsyncIterable<string>;
  /**
   * Boot recovery: removes temp files that a crash left behind and returns how many. Writes
   * in flight in this process are spared, and so are temp files modified within `olderThanMs`
   * (another process sharing the store may still be writing them).
   */
  removeTemporaryFiles?(options?: { olderThanMs?: number }): Promise<number>;
  destroy?(): Promise<void>;
}

/** Ranged reads of one blob (BlobStore.openRanges); close() once done. */
export interface BlobRanges {
  /** The stored bytes `[start, end)`, fewer when the blob ends before `end`. @throws RangeError for an invalid range. */
  read(start: number, end: number): Promise<Buffer>;
  /** Waits for reads under way. */
  close(): Promise<void>;
}

/** Marks temp files (`<key>.tmp-<random>`); keys may not contain it, so no key looks like one. */
export const TEMP_FILE_MARKER = '.tmp-';

const MAX_KEY_LENGTH = 512;
// A segment starts with a letter, digit or underscore, so '.', '..' and hidden names are out.
const KEY_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/**
 * Checks a key such as `tenants/<tenantId>/snapshots/<snapshotId>.blob` before any file
 * operation: '/'-separated segments of [A-Za-z0-9._-], none empty, none starting with '.' or
 * '-', no absolute paths, no traversal, at most 512 characters.
 *
 * @throws InvalidBlobKeyError
 */
export function assertValidBlobKey(key: string): void {
  if (!isValidBlobKey(key)) {
    const shown = typeof key === 'string' ? JSON.stringify(key.slice(0, 100)) : typeof key;
    throw new InvalidBlobKeyError(
      `Invalid blob key ${shown}: expected '/'-separated names of letters, digits, '.', '_' and '-'`,
    );
  }
}

/** Whether `key` is a valid blob key (see assertValidBlobKey). */
export function isValidBlobKey(key: string): boolean {
  const segments = typeof key === 'string' && key.length <= MAX_KEY_LENGTH ? key.split('/') : null;
  return segments !== null && segments.every((segment) => KEY_SEGMENT.test(segment) && !segment.includes(TEMP_FILE_MARKER));
}

/** Adopts a local file by writing a copy of it as `key`, then removing it: for stores that cannot move files in. */
export async function moveByCopy(store: BlobStore, key: string, path: string): Promise<{ sizeBytes: number }> {
  // Opened here, not by the stream: a stream that opens its file reports a failure to (EMFILE, EACCES) as an 'error'
  // event, which came while the store was still making its directories, before anything listened, and ended the process.
  const file = (await open(path)).createReadStream({ highWaterMark: 1024 * 1024 });
  // Closed with the stream: at its end, or here should a store leave a stream it failed to write to as it was.
  const written = await store.write(key, file).finally(() => file.destroy());
  await rm(path, { force: true });
  return written;
}
