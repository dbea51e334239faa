// Lock files of the CLI that name the process holding them (`<pid>\n`), so that one left by a crash is known and taken
// over: export's `<file>.part.lock`, restore-file's state file lock.
import { open, readFile, rm, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withClaim } from '../storage/file-claim';

/**
 * How long the claim of a lock being taken over may be held before another process takes it for one left by a process
 * that died holding it: a claim is held for a few file operations.
 */
const TAKEOVER_CLAIM_STALE_MS = 5_000;
/** How long to wait for another process that is taking the same lock over. */
const TAKEOVER_RETRY_MS = 10;
/** A lock that names no process (being made, or left so by a process that died making it) is gone after this. */
const UNNAMED_LOCK_STALE_MS = 10_000;

/**
 * Takes the lock file at path: true once this process holds it, else who does (a process id, or 'unnamed' while the
 * lock is being made). A lock whose holder is gone (see pidLockHolder) is removed and made anew. That removal is decided
 * under the lock's claim (storage/file-claim), from the lock as claimed: two processes that found it gone at once each
 * removed it by its path, the second removing the lock that the first had made meanwhile, and both went on holding it
 * (two exports appending to one .part, two restore-file runs editing one state file). Errors making it (its volume
 * full) are thrown.
 */
export async function takePidLock(path: string): Promise<true | number | 'unnamed'> {
  for (;;) {
    if (await createPidLock(path)) {
      held.add(resolve(path));
      return true;
    }
    const holder = await pidLockHolder(path);
    if (holder === 'released') continue;
    if (holder !== 'gone') return holder;
    const decided = await withClaim(path, { staleMs: TAKEOVER_CLAIM_STALE_MS }, async ({ text, stats }) => {
      if (holderNamedBy(path, text, stats.mtimeMs) === 'gone') await rm(path, { force: true });
    });
    // Null: the lock went meanwhile, or another process is taking it over (it holds the claim for a moment).
    if (decided === null) await sleep(TAKEOVER_RETRY_MS);
  }
}

/** Removes a lock takePidLock gave this process. */
export async function releasePidLock(path: string): Promise<void> {
  held.delete(resolve(path));
  await rm(path, { force: true }).catch(() => undefined);
}

/**
 * The locks this process holds now. One that names this process's id but is not among them was left by an earlier
 * process that had the same id and died holding it: in a container, every run of the CLI is often the same pid (1).
 */
const held = new Set<string>();

/**
 * Creates the lock file naming this process; false when it exists already. Other errors are thrown, and a lock this
 * process made but could not write (its volume full) is removed: naming no process, it would hold off later runs.
 */
async function createPidLock(path: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(`${process.pid}\n`);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(path, { force: true }).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return true;
}

/**
 * Who holds the lock file: its process id; 'gone' when that process no longer runs (a crash), or when the lock names
 * none and is older than UNNAMED_LOCK_STALE_MS; 'unnamed' while it is being made; 'released' when there is none any
 * more (removing it then would remove the next one's).
 */
async function pidLockHolder(path: string): Promise<number | 'gone' | 'unnamed' | 'released'> {
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return 'released';
  const made = await stat(path).then((stats) => stats.mtimeMs, () => null);
  if (made === null) return 'released';
  return holderNamedBy(path, text, made);
}

/** The holder that the text of the lock at `path` names, given when the lock was last written (its mtime). */
function holderNamedBy(path: string, text: string, writtenAt: number): number | 'gone' | 'unnamed' {
  const pid = Number(text.trim());
  if (text.endsWith('\n') && Number.isSafeInteger(pid) && pid > 0) {
    if (pid === process.pid) return held.has(resolve(path)) ? pid : 'gone';
    return isRunning(pid) ? pid : 'gone';
  }
  return Date.now() - writtenAt > UNNAMED_LOCK_STALE_MS ? 'gone' : 'unnamed';
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only asks whether the process exists
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // it exists, under another user
  }
}
