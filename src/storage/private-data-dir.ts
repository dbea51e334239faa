// The data dir holds plaintext graph data (instance stores), metadata with key hashes, and the master key: only the
// user running Snapgraph may read it. Directories are 0700, files 0600.
import { chmod, lstat, mkdir, open, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfigError } from '../config/app-config';

/** Where the first boot writes the generated ADMIN key of tenant `default`. */
export const initialAdminKeyPath = (dataDir: string) => join(dataDir, 'keys', 'initial-admin.key');

const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;

/**
 * Creates the data dir (0700), makes every file this process creates from now on private (umask 077: SQLite's stores,
 * their -wal and -shm files, blobs), and tightens what an earlier version left readable to others. Returns how many
 * entries were tightened.
 */
export async function makeDataDirPrivate(dataDir: string): Promise<number> {
  process.umask(0o077);
  await makePrivateDirectory(dataDir, 'SNAPGRAPH_DATA_DIR');
  return tighten(dataDir);
}

/**
 * Creates `dir` (0700) with its parents. A path that is, or lies under, a file is a wrong value of `variable`, the
 * one that named it, and is refused as such: mkdir's own EEXIST or ENOTDIR names no variable.
 */
export async function makePrivateDirectory(dir: string, variable: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new ConfigError([`${variable}: ${dir} is not a directory`]);
    throw error;
  }
}

async function tighten(path: string): Promise<number> {
  const stats = await lstat(path).catch(() => null);
  if (!stats || stats.isSymbolicLink()) return 0; // never follow a link out of the data dir
  let tightened = 0;
  const wanted = stats.isDirectory() ? PRIVATE_DIR : PRIVATE_FILE;
  if ((stats.mode & 0o777) !== wanted && (stats.mode & 0o077) !== 0) {
    await chmod(path, stats.mode & 0o700 & wanted);
    tightened += 1;
  }
  if (stats.isDirectory()) {
    for (const name of await readdir(path)) tightened += await tighten(join(path, name));
  }
  return tightened;
}

/** Writes a file only its owner can read (mode 0600 whatever the umask), replacing any earlier one. */
export async function writePrivateFile(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: PRIVATE_DIR });
  const handle = await open(path, 'w', PRIVATE_FILE);
  try {
    await handle.chmod(PRIVATE_FILE);
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
