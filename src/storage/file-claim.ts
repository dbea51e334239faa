// The claim of a file that several replicas sharing a directory may replace or remove (a stale upload lock, an
// abandoned completion marker): whoever acts on such a file holds its claim, so one process at a time decides from it.
import type { Stats } from 'node:fs';
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';

/** `<file>.takeover`: the claim of whoever replaces or removes `<file>` (see withClaim). */
export const CLAIM_SUFFIX = '.takeover';

export interface ClaimOptions {
  /**
   * How long a claim may be held before it is taken for one its holder left behind, dying while it held it (kill -9,
   * power loss): the caller's stale period, far longer than the few file operations a holder holds one for. Such a
   * claim is removed by the first process it blocks (see removeStaleClaim): left in place, it refused every claim of
   * its file until the hourly sweep (a resumable upload's final PATCH waited that long).
   */
  staleMs: number;
  /** The moment claims' ages are judged at: the present unless told (a sweep judges all its files at its start). */
  now?: number;
}

/**
 * Runs fn holding the claim of the file at path: a hard link to it, `<file>.takeover`, made exclusively, so one
 * process at a time; fn is told what the claimed file is (its stats, its text). When only a claim's holder replaces or
 * removes the file, the file at path is the claimed one until the claim goes: what fn decides from it holds as it acts.
 * (A process that removed a file it had seen stale, found by a look of its own, removed whatever was there by then:
 * another may have taken it over meanwhile, and both held it.) Null when there is no file, or another claim is held
 * (one held past options.staleMs is removed first): nothing was done.
 */
export async function withClaim<T>(
  path: string,
  options: ClaimOptions,
  fn: (claimed: { stats: Stats; text: string }) => Promise<T>,
): Promise<T | null> {
  const claimPath = `${path}${CLAIM_SUFFIX}`;
  if (!(await claim(claimPath, () => link(path, claimPath), options))) return null;
  try {
    const [stats, text] = await Promise.all([stat(claimPath), readFile(claimPath, 'utf8')]);
    return await fn({ stats, text });
  } finally {
    await rm(claimPath, { force: true });
  }
}

/**
 * Removes the claim at claimPath if it is stale (held for longer than options.staleMs): whether it did. What a process
 * the claim blocks does, and the sweeps.
 *
 * A claim goes by its path, whatever file is there by then: two processes that found the same stale claim and each
 * removed it both held the claim, as the first made one anew and the second removed that. So a stale claim is
 * removed under the claim of the claim, `<claim>.takeover`, by its holder only, after a look made while holding it.
 * A claim found stale then was made longer than staleMs ago (making one, a link or a new file, sets its ctime to that
 * moment, and nothing sets it back), so it is no claim made since; and it is still there when removed, for only its
 * holder (dead: no holder holds one for that long) and the holder of the claim of the claim (this process) remove it.
 * The claim of the claim is a file of its own: a link to the claim would give the claim (and the claimed file: one
 * inode) a new ctime, and it would look fresh. One left behind in turn (a process that died within these few file
 * operations) is stale the same way after staleMs, and removed the same way, a level up.
 */
export async function removeStaleClaim(claimPath: string, options: ClaimOptions): Promise<boolean> {
  if (!(await isStale(claimPath, options))) return false;
  const claimOfClaim = `${claimPath}${CLAIM_SUFFIX}`;
  if (!(await claim(claimOfClaim, () => writeFile(claimOfClaim, '', { flag: 'wx', mode: 0o600 }), options))) return false;
  try {
    if (!(await isStale(claimPath, options))) return false;
    await rm(claimPath, { force: true });
    return true;
  } finally {
    await rm(claimOfClaim, { force: true });
  }
}

/** Makes the claim at claimPath by `make`, which fails with EEXIST while one is held: whether this process holds it. */
async function claim(claimPath: string, make: () => Promise<unknown>, options: ClaimOptions): Promise<boolean> {
  const made = await madeExclusively(make);
  if (made !== 'held by another') return made === 'made';
  // Another process may make it as soon as the stale one goes: once is enough, the loser is told another holds it.
  return (await removeStaleClaim(claimPath, options)) && (await madeExclusively(make)) === 'made';
}

async function madeExclusively(make: () => Promise<unknown>): Promise<'made' | 'held by another' | 'nothing to claim'> {
  try {
    await make();
    return 'made';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return 'held by another';
    if (code === 'ENOENT') return 'nothing to claim';
    throw error;
  }
}

/**
 * Whether the claim at claimPath has been held for longer than options.staleMs: a claim is held for a few file
 * operations, so one held for long is a claimer that died holding it. Its making set its ctime (a link's mtime is the
 * claimed file's).
 */
async function isStale(claimPath: string, { staleMs, now = Date.now() }: ClaimOptions): Promise<boolean> {
  const found = await stat(claimPath).catch(() => null);
  return found !== null && now - found.ctimeMs > staleMs;
}
