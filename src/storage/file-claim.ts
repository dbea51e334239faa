// The claim of a file that several replicas sharing a directory may replace or remove (a stale upload lock, an
// abandoned completion marker): whoever acts on such a file holds its claim, so one process at a time decides from it.
import type { Stats } from 'node:fs';
import { link, readFile, rm, stat } from 'node:fs/promises';

/** `<file>.takeover`: the claim of whoever replaces or removes `<file>` (see withClaim). */
export const CLAIM_SUFFIX = '.takeover';

/**
 * Runs fn holding the claim of the file at path: a hard link to it, `<file>.takeover`, made exclusively, so one
 * process at a time; fn is told what the claimed file is (its stats, its text). When only a claim's holder replaces or
 * removes the file, the file at path is the claimed one until the claim goes: what fn decides from it holds as it acts.
 * (A process that removed a file it had seen stale, found by a look of its own, removed whatever was there by then:
 * another may have taken it over meanwhile, and both held it.) Null when there is no file, or another claim is held:
 * nothing was done.
 */
export async function withClaim<T>(path: string, fn: (claimed: { stats: Stats; text: string }) => Promise<T>): Promise<T | null> {
  const claimPath = `${path}${CLAIM_SUFFIX}`;
  try {
    await link(path, claimPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOENT') return null;
    throw error;
  }
  try {
    const [stats, text] = await Promise.all([stat(claimPath), readFile(claimPath, 'utf8')]);
    return await fn({ stats, text });
  } finally {
    await rm(claimPath, { force: true });
  }
}

/**
 * How long the claim at claimPath has been held, from its stats: a claim is held for a few file operations, so one
 * held for long is a claimer that died holding it. Its link made its ctime; its mtime is the claimed file's.
 */
export function claimAge(stats: Stats, now: number): number {
  return now - stats.ctimeMs;
}
