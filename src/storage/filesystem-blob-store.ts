// Blobs as files under one root directory, written atomically and durably.
import { randomBytes } from 'node:crypto';
import { createWriteStream, type Dir } from 'node:fs';
import { FileHandle, mkdir, open, opendir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { assertValidBlobKey, BlobRanges, BlobStore, isValidBlobKey, moveByCopy, TEMP_FILE_MARKER } from './blob-store';
import { assertValidByteRange, ByteRange } from './byte-range';
import { fsyncCreatedDirectories, fsyncDirectory } from './durable-fs';
import { BlobNotFoundError } from './errors';

const TEMP_FILE_NAME = /\.tmp-[0-9a-f]{16}$/;
const WRITE_BUFFER_BYTES = 1024 * 1024;
const READ_BUFFER_BYTES = 1024 * 1024;

export class FilesystemBlobStore implements BlobStore {
  /** Temp files of writes in progress here, which removeTemporaryFiles must not touch. */
  readonly #inFlight = new Set<string>();

  constructor(readonly rootDir: string) {}

  async init(): Promise<void> {
    await mkdir(this.rootDir, { recursive: true });
  }

  /**
   * Writes `<path>.tmp-<random>`, fsyncs it, renames it over `<path>`, fsyncs the directory.
   * On failure `data` is destroyed, so that its producer (an upload, say) is released.
   */
  async write(key: string, data: Readable): Promise<{ sizeBytes: number }> {
    try {
      return await this.#writeAtomically(this.#pathOf(key), data);
    } catch (error) {
      data.destroy();
      throw error;
    }
  }

  async #writeAtomically(path: string, data: Readable): Promise<{ sizeBytes: number }> {
    const dir = dirname(path);
    await fsyncCreatedDirectories(dir, await mkdir(dir, { recursive: true }));
    const temp = `${path}${TEMP_FILE_MARKER}${randomBytes(8).toString('hex')}`;
    this.#inFlight.add(temp);
    let renamed = false;
    try {
      const sizeBytes = await writeFileDurably(temp, data);
      await rename(temp, path);
      renamed = true;
      await fsyncDirectory(dir);
      return { sizeBytes };
    } catch (error) {
      await rm(renamed ? path : temp, { force: true });
      throw error;
    } finally {
      this.#inFlight.delete(temp);
    }
  }

  /** A rename into place (the file must be synced already); a copy when it is on another file system. */
  async adopt(key: string, path: string): Promise<{ sizeBytes: number }> {
    const target = this.#pathOf(key);
    const dir = dirname(target);
    await fsyncCreatedDirectories(dir, await mkdir(dir, { recursive: true }));
    try {
      await rename(path, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EXDEV') return moveByCopy(this, key, path);
      throw error;
    }
    await fsyncDirectory(dir);
    return { sizeBytes: (await stat(target)).size };
  }

  /** Moves the blob out to `path` (an adopted upload given back); a copy when `path` is on another file system. */
  async release(key: string, path: string): Promise<void> {
    const source = this.#pathOf(key);
    try {
      await rename(source, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      await pipeline(await this.read(key), createWriteStream(path, { flags: 'wx', mode: 0o600, flush: true }));
      await unlink(source);
    }
    await fsyncDirectory(dirname(path));
  }

  async read(key: string, range: ByteRange = {}): Promise<Readable> {
    assertValidByteRange(range);
    const handle = await openRegularFile(this.#pathOf(key), key);
    const start = range.start ?? 0;
    if (range.end !== undefined && range.end <= start) {
      await handle.close();
      return Readable.from([], { objectMode: false });
    }
    // fs ranges include `end`; ours do not.
    const end = range.end === undefined ? undefined : range.end - 1;
    return handle.createReadStream({ start, end, highWaterMark: READ_BUFFER_BYTES });
  }

  async openRanges(key: string): Promise<BlobRanges> {
    const handle = await openRegularFile(this.#pathOf(key), key);
    return {
      read: async (start, end) => {
        assertValidByteRange({ start, end });
        const bytes = Buffer.allocUnsafe(end - start);
        let filled = 0;
        while (filled < bytes.length) {
          const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, start + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        return filled === bytes.length ? bytes : bytes.subarray(0, filled);
      },
      close: () => handle.close(),
    };
  }

  async size(key: string): Promise<number | null> {
    const path = this.#pathOf(key);
    try {
      const stats = await stat(path);
      return stats.isFile() ? stats.size : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.size(key)) !== null;
  }

  async delete(key: string): Promise<void> {
    const path = this.#pathOf(key);
    try {
      await unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const root = this.#pathOf(prefix);
    for await (const path of walkFiles(root)) {
      // Only blobs: not temp files (their names hold TEMP_FILE_MARKER), nor what else is in the folder (a .DS_Store, an
      // editor's backup, a file with a space), at which a listing's users (a master key rotation, say) would stop.
      const key = [prefix, ...relative(root, path).split(sep)].join('/');
      if (isValidBlobKey(key)) yield key;
    }
  }

  async removeTemporaryFiles({ olderThanMs = 0 }: { olderThanMs?: number } = {}): Promise<number> {
    let removed = 0;
    const cutoff = Date.now() - olderThanMs;
    for await (const path of walkFiles(this.rootDir)) {
      if (!TEMP_FILE_NAME.test(path) || this.#inFlight.has(path)) continue;
      if (olderThanMs > 0 && (await stat(path).catch(() => null))?.mtimeMs! > cutoff) continue;
      await rm(path, { force: true });
      removed += 1;
    }
    return removed;
  }

  #pathOf(key: string): string {
    assertValidBlobKey(key);
    return join(this.rootDir, ...key.split('/'));
  }
}

/**
 * Streams `data` into a new file (never an existing one) and fsyncs it before resolving.
 * On failure the file is closed, but not removed, before the error is rethrown.
 */
async function writeFileDurably(path: string, data: Readable): Promise<number> {
  const file = createWriteStream(path, { flags: 'wx', mode: 0o600, flush: true, highWaterMark: WRITE_BUFFER_BYTES });
  try {
    // Resolves on 'close', which `flush` makes wait for fsync.
    await pipeline(data, file);
  } catch (error) {
    if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()));
    throw error;
  }
  return file.bytesWritten;
}

/** @throws BlobNotFoundError when `path` is missing or not a regular file. */
async function openRegularFile(path: string, key: string): Promise<FileHandle> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
    if ((await handle.stat()).isFile()) return handle;
  } catch (error) {
    await handle?.close();
    const code = (error as NodeJS.ErrnoException).code;
    throw code === 'ENOENT' || code === 'EISDIR' ? new BlobNotFoundError(key) : error;
  }
  await handle.close();
  throw new BlobNotFoundError(key);
}

/**
 * The files under `dir`, read a few entries at a time: a folder of a history's change-log segments holds one per
 * second of writes, millions in a month, and its whole listing (readdir) was in the heap at once, 100-150 B an entry.
 */
async function* walkFiles(dir: string): AsyncGenerator<string> {
  let entries: Dir;
  try {
    entries = await opendir(dir, { bufferSize: 256 });
  } catch (error) {
    // A missing folder, or a blob where a folder was asked for, holds no files.
    if (['ENOENT', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code!)) return;
    throw error;
  }
  // Closed by the loop however it ends. A file removed while the walk goes on (a collection's) moves no other.
  for await (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walkFiles(path);
    else if (entry.isFile()) yield path;
  }
}
