// Lock files of the CLI that name the process holding them (`<pid>\n`), so that one left by a crash is known and taken
// over: export's `<file>.part.lock`, restore-file's state file lock.
import { readFile, stat, writeFile } from 'node:fs/promises';

/**
 * Creates the lock file naming this process; false when it exists already. Other errors (its volume full) are thrown.
 */
export async function createPidLock(path: string): Promise<boolean> {
  try {
    await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Who holds the lock file: its process id; 'gone' when that process no longer runs (a crash), or when the lock names
 * none and is older than `unnamedStaleMs`; 'unnamed' while it is being made; 'released' when there is none any more
 * (removing it then would remove the next one's).
 */
export async function pidLockHolder(path: string, unnamedStaleMs: number): Promise<number | 'gone' | 'unnamed' | 'released'> {
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return 'released';
  const pid = Number(text.trim());
  if (text.endsWith('\n') && Number.isSafeInteger(pid) && pid > 0) return isRunning(pid) ? pid : 'gone';
  const made = await stat(path).then((stats) => stats.mtimeMs, () => null);
  if (made === null) return 'released';
  return Date.now() - made > unnamedStaleMs ? 'gone' : 'unnamed';
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only asks whether the process exists
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // it exists, under another user
  }
}
