// Which request writes a resumable upload, across every replica that shares SNAPGRAPH_UPLOAD_DIR (docs/replicas.md).
// @tus/server serialises the requests of one upload within a process (its MemoryLocker), but a client that retries a
// PATCH whose connection timed out, through a load balancer, can reach another replica while the first one still
// reads the PATCH that broke off: both would write the upload's file, and what one acknowledged the other overwrote.
//
// A lock is a file, `<id>.lock` in the upload directory, created exclusively by the request that holds it (after the
// process's own lock), holding a token of its own, and touched every HEARTBEAT_MS while it is held. One not touched for
// STALE_MS belongs to a replica that died or froze, and is taken over (see withClaim: never a lock that was made anew
// meanwhile, which two waiters removing what they saw as stale did). Only the holder of a lock's claim replaces or
// removes it: a request taking over a stale one, the sweep, a holder letting go of its own; a claim held for STALE_MS
// is one whose process died holding it, and goes as soon as it is in the way. As within a process, the newest request
// wins: a request that waits for the lock asks its holder to let go by creating `<id>.release`, which the holder sees
// at its next heartbeat, and its request ends as when its client goes away (what it wrote is kept, and it answers with
// that offset); the waiting one then takes the lock and answers as tus says (409 when the offset moved meanwhile). A
// holder that finds its lock taken over ends its request the same way. One that cannot take the lock within the
// timeout is answered 423 (Locked), which tus clients retry.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { pathExists } from '../../storage/durable-fs';
import { CLAIM_SUFFIX, removeStaleClaim, withClaim } from '../../storage/file-claim';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lock, Locker, RequestRelease } from '@tus/server' with { 'resolution-mode': 'import' };
import { errorBody } from './error-body';

export const LOCK_HEARTBEAT_MS = 1_000;
export const LOCK_STALE_MS = 15_000;
const POLL_MS = 100;
/** How often a holder letting go tries again while another holds the claim (see unlock). */
const UNLOCK_TRIES = 20;
const LOCK_SUFFIX = '.lock';
const RELEASE_SUFFIX = '.release';
/** `<id>.<token>.pending`: a taker's own lock, written before it is renamed over a stale one. */
const PENDING_SUFFIX = '.pending';

/** What a request that could not take the lock hears: a tus answer (@tus/server sends it as it is). */
const locked = () => ({
  status_code: 423,
  body: errorBody('CONFLICT', 'another request is writing this upload (on this replica or another); try again shortly'),
});

export class UploadLocker implements Locker {
  /**
   * `inProcess`: @tus/server's MemoryLocker (requests of this process, handed over at once); `lockTimeout`: the error
   * it throws when its wait ends, answered as ours; `settled`: resolves once the upload's writes under way have ended
   * (a request can end before its write does), which a lock waits for before it lets go.
   */
  constructor(
    readonly directory: string,
    private readonly inProcess: Locker,
    private readonly timeoutMs: number,
    private readonly lockTimeout: unknown,
    readonly settled: (id: string) => Promise<void> = async () => undefined,
  ) {}

  newLock(id: string): Lock {
    return new UploadLock(this, id, this.inProcess.newLock(id), this.timeoutMs, this.lockTimeout);
  }

  /** Removes the locks, claims and requests to let go that processes left behind (a crash): untouched for long. */
  async sweep(now = Date.now()): Promise<number> {
    const names = await readdir(this.directory).catch(() => [] as string[]);
    let removed = 0;
    // The claims first: one left on a lock would otherwise go, uncounted, as the lock's claim is taken below.
    for (const name of names.filter((found) => found.endsWith(CLAIM_SUFFIX))) {
      if (await removeStaleClaim(join(this.directory, name), { staleMs: LOCK_STALE_MS, now })) removed += 1;
    }
    for (const name of names) {
      const path = join(this.directory, name);
      if (name.endsWith(LOCK_SUFFIX)) {
        // Under its claim (`<id>.lock.takeover`), as a takeover: between a look and a removal, a waiter may have taken
        // it over.
        const gone = await withClaim(path, { staleMs: LOCK_STALE_MS, now }, async (claimed) => {
          if (now - claimed.stats.mtimeMs <= LOCK_STALE_MS) return false;
          await rm(path, { force: true });
          return true;
        });
        if (gone) removed += 1;
      } else if (name.endsWith(RELEASE_SUFFIX) || name.endsWith(PENDING_SUFFIX)) {
        const found = await stat(path).catch(() => null);
        if (found && now - found.mtimeMs > LOCK_STALE_MS) {
          await rm(path, { force: true });
          removed += 1;
        }
      }
    }
    return removed;
  }
}

class UploadLock implements Lock {
  readonly #path: string;
  readonly #releasePath: string;
  readonly #token = randomBytes(12).toString('hex');
  #heartbeat: NodeJS.Timeout | null = null;
  #beating: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly locker: UploadLocker,
    private readonly id: string,
    private readonly inProcess: Lock,
    private readonly timeoutMs: number,
    private readonly lockTimeout: unknown,
  ) {
    this.#path = join(locker.directory, `${id}${LOCK_SUFFIX}`);
    this.#releasePath = join(locker.directory, `${id}${RELEASE_SUFFIX}`);
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    await this.inProcess.lock(signal, requestRelease).catch((error: unknown) => {
      throw error === this.lockTimeout ? locked() : error;
    });
    try {
      await this.#take(signal, deadline);
    } catch (error) {
      await this.inProcess.unlock();
      throw error;
    }
    // Meanwhile the holder looks whether it still holds it, and whether another request wants it.
    let asked = false;
    const letGo = () => {
      if (asked) return;
      asked = true;
      Promise.resolve(requestRelease()).catch(() => undefined);
    };
    this.#heartbeat = setInterval(() => {
      this.#beating = this.#beating
        .then(async () => {
          if ((await readFile(this.#path, 'utf8').catch(() => null)) !== this.#token) return letGo(); // taken over
          const now = new Date();
          await utimes(this.#path, now, now).catch(() => undefined);
          if (await pathExists(this.#releasePath)) letGo();
        })
        .catch(() => undefined);
    }, LOCK_HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  async unlock(): Promise<void> {
    // Held (and touched) until this request's write has ended, not only its request.
    await this.locker.settled(this.id);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    await this.#beating.catch(() => undefined);
    try {
      // Under the claim: removed only while it is still this request's. Another's claim is held for a moment: the
      // sweep looking at it, or a request taking it over (this process stalled past the stale period), which then
      // holds it under its own token.
      for (let tries = 0; tries < UNLOCK_TRIES; tries += 1) {
        const done = await withClaim(this.#path, { staleMs: LOCK_STALE_MS }, async ({ text }) => {
          if (text === this.#token) await rm(this.#path, { force: true });
        });
        if (done !== null || (await readFile(this.#path, 'utf8').catch(() => null)) !== this.#token) break;
        await sleep(POLL_MS);
      }
    } finally {
      await this.inProcess.unlock();
    }
  }

  /** Creates the lock file, waiting (and asking its holder to let go) while another request holds it. */
  async #take(signal: AbortSignal, deadline: number): Promise<void> {
    for (;;) {
      if (await this.#create()) {
        // Any request to let go is for the holder before this one.
        await rm(this.#releasePath, { force: true });
        return;
      }
      const found = await stat(this.#path).catch(() => null);
      if (found && Date.now() - found.mtimeMs > LOCK_STALE_MS) {
        // Its process died or froze: taken over under the claim, by one request only.
        if (await this.#takeOver()) {
          await rm(this.#releasePath, { force: true });
          return;
        }
      } else if (found) await open(this.#releasePath, 'w', 0o600).then((handle) => handle.close(), () => undefined);
      if (signal.aborted || Date.now() >= deadline) throw locked();
      await sleep(POLL_MS);
    }
  }

  /**
   * Replaces a stale lock with this request's own (renamed over it: the path is never empty meanwhile, so no waiter
   * creates one in between). False when the lock is no longer stale (taken over by another, or touched), or another
   * request holds the claim (one held for LOCK_STALE_MS, by a process that died holding it, is removed first).
   */
  async #takeOver(): Promise<boolean> {
    const taken = await withClaim(this.#path, { staleMs: LOCK_STALE_MS }, async ({ stats }) => {
      if (Date.now() - stats.mtimeMs <= LOCK_STALE_MS) return false;
      const pending = join(this.locker.directory, `${basename(this.#path, LOCK_SUFFIX)}.${this.#token}${PENDING_SUFFIX}`);
      await writeFile(pending, this.#token, { mode: 0o600, flag: 'wx' });
      try {
        await rename(pending, this.#path);
      } catch (error) {
        await rm(pending, { force: true });
        throw error;
      }
      return true;
    });
    return taken === true;
  }

  /** Whether this request created the lock file (with its token): false when another holds it. */
  async #create(): Promise<boolean> {
    const handle = await open(this.#path, 'wx', 0o600).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') return null;
      if (error.code !== 'ENOENT') throw error;
      // Another replica sharing the directory may have just removed it (an empty one, at its boot's sweep).
      await mkdir(this.locker.directory, { recursive: true, mode: 0o700 });
      return open(this.#path, 'wx', 0o600).catch(() => null);
    });
    if (!handle) return false;
    try {
      await handle.writeFile(this.#token);
    } finally {
      await handle.close();
    }
    return true;
  }
}
