// Small file-system helpers: making changes survive a crash, and asking whether a path is there.
import { randomBytes } from 'node:crypto';
import { link, lstat, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Makes a directory's entries (a rename, a new file, a new sub-directory) durable.
 * Platforms that cannot open a directory for syncing (Windows) are skipped: there a rename
 * is made durable by the file system itself.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    if (!isUnsupportedDirectorySync(error)) throw error;
  } finally {
    await handle?.close();
  }
}

/**
 * After `mkdir(dir, { recursive: true })` returned `firstCreated`, makes every new directory
 * entry durable by syncing the parent of each directory that was created.
 */
export async function fsyncCreatedDirectories(dir: string, firstCreated: string | undefined): Promise<void> {
  if (firstCreated === undefined) return;
  const parents: string[] = [];
  for (let current = dir; ; current = dirname(current)) {
    parents.push(dirname(current));
    if (current === firstCreated || dirname(current) === current) break;
  }
  for (const parent of parents.reverse()) await fsyncDirectory(parent);
}

function isUnsupportedDirectorySync(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EISDIR' || code === 'EPERM' || code === 'EINVAL' || code === 'ENOTSUP';
}

/** Whether something is at `path` (a link counts as itself); any error but its absence is thrown. */
export async function pathExists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
}

/** The text of the file at `path`, or null when there is none (createFileOnce's counterpart: a winner's file). */
export async function readTextIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * Creates `path` holding `content` (mode 0600), whole or not at all, unless it exists: written to a private temp file
 * and synced, then hard-linked into place, which fails when another process got there first. False then: the file there
 * is theirs (read it).
 */
export async function createFileOnce(path: string, content: string): Promise<boolean> {
  return withSyncedTemp(path, content, async (temp) => {
    try {
      await link(temp, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    await fsyncDirectory(dirname(path));
    return true;
  });
}

/** Replaces `path` with `content` (mode 0600), whole or not at all: a private temp file, synced, renamed over it. */
export async function replaceFile(path: string, content: string): Promise<void> {
  await withSyncedTemp(path, content, (temp) => rename(temp, path));
  await fsyncDirectory(dirname(path));
}

/**
 * Removes the temp files of `path`'s replacements (replaceFile) that a process killed while writing one left beside it
 * (kill -9, a power loss): for a caller that knows no replacement is under way (it holds the lock they are made under).
 * One that cannot be removed now is left for the next call.
 */
export async function removeLeftTemps(path: string): Promise<void> {
  const prefix = `${basename(path)}${TEMP_INFIX}`;
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  await Promise.all(names.filter((name) => name.startsWith(prefix)).map((name) => rm(join(dirname(path), name), { force: true }).catch(() => undefined)));
}

/** Between a path and the random part of its temp files' names. */
const TEMP_INFIX = '.tmp-';

/** Writes `content` to a private temp file beside `path` and syncs it, for `place` to put it there; then removes it. */
async function withSyncedTemp<T>(path: string, content: string, place: (temp: string) => Promise<T>): Promise<T> {
  const temp = `${path}${TEMP_INFIX}${randomBytes(6).toString('hex')}`;
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.chmod(0o600); // exact, whatever the umask
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return await place(temp);
  } finally {
    await rm(temp, { force: true });
  }
}
