// Uploads whose last byte arrived, shared by every replica through files in the data dir (<data dir>/upload-completions,
// which replicas share: docs/replicas.md). A client that lost the final response (Ctrl-C while the server verified the
// file, or a replica that stopped) and resumes, on any replica, gets the same operation id instead of uploading the
// file again, and a repeated final PATCH never starts a second restore.
//
// One marker file per upload, `<id>.json`: created exclusively by the replica that verifies the file, which rewrites
// it every HEARTBEAT_MS while it works and then records the operation id in it. A marker whose heartbeat stopped for
// ABANDONED_MS (its replica died) is taken over by one replica, which holds the marker's claim (`<id>.json.takeover`,
// storage/file-claim.ts) while it renames a marker of its own over it; the sweep removes expired markers under the claim
// as well. A claim held for ABANDONED_MS is one a replica died holding: it goes as soon as it is in a takeover's way. A
// refused file's marker is removed at once; the others expire with the uploads (UPLOAD_EXPIRY_MS).
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../../errors/app-error';
import { CLAIM_SUFFIX, removeStaleClaim, withClaim } from '../../storage/file-claim';

export const HEARTBEAT_MS = 2_000;
export const ABANDONED_MS = 15_000;
const POLL_MS = 200;

export interface Completion {
  tenantId: string;
  sizeBytes: number;
  operationId: Promise<string>;
}

interface Marker {
  tenantId: string;
  sizeBytes: number;
  at: number;
  heartbeatAt: number;
  operationId: string | null;
}

const refused = () => new AppError('NOT_FOUND', 'the upload was refused or abandoned while it was verified; upload the file again');

function parseMarker(text: string): Marker | null {
  try {
    return JSON.parse(text) as Marker;
  } catch {
    return null;
  }
}

/**
 * A marker created, not yet written: a claim as fresh as the file. One that stays unwritten (its replica stopped
 * between the two) is abandoned like any other once that long has passed, and swept with the expired: taken as fresh
 * at every look, it held its upload for good, and every request on it waited without end.
 */
function unwritten(modifiedMs: number): Marker {
  return { tenantId: '', sizeBytes: 0, at: modifiedMs, heartbeatAt: modifiedMs, operationId: null };
}

export class UploadCompletions {
  /** The completions this process runs or waits for (so that its own callers share one promise and its error). */
  private readonly local = new Map<string, Completion>();

  private constructor(
    private readonly dir: string,
    private readonly expiryMs: number,
  ) {}

  static async open(dataDir: string, expiryMs: number): Promise<UploadCompletions> {
    const dir = join(dataDir, 'upload-completions');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new UploadCompletions(dir, expiryMs);
  }

  /** Runs `restore` for the upload unless some replica already has (or is doing it): its operation id either way. */
  run(id: string, tenantId: string, sizeBytes: number, restore: () => Promise<string>): Promise<string> {
    const existing = this.local.get(id);
    if (existing) return existing.operationId;
    const operationId = this.claimAndRun(id, { tenantId, sizeBytes }, restore);
    this.local.set(id, { tenantId, sizeBytes, operationId });
    operationId.then(
      () => this.local.delete(id),
      () => this.local.delete(id),
    );
    return operationId;
  }

  /** The upload's completion, when some replica has completed it (or is verifying it) for this tenant. */
  async find(id: string, tenantId: string): Promise<Completion | undefined> {
    const local = this.local.get(id);
    if (local) return local.tenantId === tenantId ? local : undefined;
    const marker = await this.read(id);
    if (!marker || marker.tenantId !== tenantId || this.abandoned(marker)) return undefined;
    const operationId = marker.operationId !== null ? Promise.resolve(marker.operationId) : this.awaitOther(id);
    operationId.catch(() => undefined);
    return { tenantId, sizeBytes: marker.sizeBytes, operationId };
  }

  /** Whether a replica is verifying the upload now (its file must stay). */
  async inProgress(id: string): Promise<boolean> {
    const marker = await this.read(id);
    return marker !== null && marker.operationId === null && !this.abandoned(marker);
  }

  /** Removes the markers of expired uploads, and what replicas that died left behind (claims, temporary files). */
  async sweep(now = Date.now()): Promise<number> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    let removed = 0;
    // The claims first: one left on a marker would otherwise go, uncounted, as the marker's claim is taken below.
    for (const name of names.filter((found) => found.endsWith(CLAIM_SUFFIX))) {
      if (await removeStaleClaim(join(this.dir, name), { staleMs: ABANDONED_MS, now })) removed += 1;
    }
    for (const name of names) {
      const path = join(this.dir, name);
      if (name.endsWith('.json')) {
        // Under its claim, as a takeover: between a look and a removal, another replica may have taken it over.
        const gone = await withClaim(path, { staleMs: ABANDONED_MS, now }, async (claimed) => {
          const marker = parseMarker(claimed.text) ?? unwritten(claimed.stats.mtimeMs);
          if (now - marker.at <= this.expiryMs) return false;
          await rm(path, { force: true });
          return true;
        });
        if (gone) removed += 1;
      } else if (/\.tmp-/.test(name) && (await stat(path).then((found) => now - found.mtimeMs > ABANDONED_MS, () => false))) {
        // Written and renamed within a few file operations: one this old is a write its replica died in. A younger one
        // is a live replica's marker on its way (removed, its rename failed: a heartbeat lost, or the outcome's record).
        await rm(path, { force: true });
        removed += 1;
      }
    }
    return removed;
  }

  private async claimAndRun(id: string, owner: Pick<Marker, 'tenantId' | 'sizeBytes'>, restore: () => Promise<string>): Promise<string> {
    for (;;) {
      const now = Date.now();
      const mine: Marker = { ...owner, at: now, heartbeatAt: now, operationId: null };
      if (await this.create(id, mine)) return this.runClaimed(id, mine, restore);
      const marker = await this.read(id);
      if (!marker) continue; // removed meanwhile (refused): claim it again, and hear why ourselves
      if (marker.operationId !== null) return marker.operationId;
      if (!this.abandoned(marker)) return this.awaitOther(id);
      // Its replica stopped while verifying: taken over by one replica only.
      const taken = await this.takeOver(id, mine);
      if (taken) return this.runClaimed(id, mine, restore);
      // Not abandoned any more (another replica took it over): its outcome is the answer, as the loop finds. Claimed by
      // another replica (or gone): looked at again once that one has acted.
      if (taken === null) await sleep(POLL_MS);
    }
  }

  /**
   * Replaces an abandoned marker with this replica's own, holding the marker's claim, so that one replica at a time
   * decides from what it claimed (two that each removed the marker they had read as abandoned both took it over: the
   * later removed the one the earlier had just made). Renamed over it: the path is never empty meanwhile, so no other
   * replica creates one in between. False when it is no longer abandoned; null when it is gone, or another replica
   * holds the claim (one held for ABANDONED_MS, by a replica that died holding it, is removed first).
   */
  private takeOver(id: string, mine: Marker): Promise<boolean | null> {
    return withClaim(this.pathOf(id), { staleMs: ABANDONED_MS }, async (claimed) => {
      if (!this.abandoned(parseMarker(claimed.text) ?? unwritten(claimed.stats.mtimeMs))) return false;
      await this.write(id, mine);
      return true;
    });
  }

  private async runClaimed(id: string, marker: Marker, restore: () => Promise<string>): Promise<string> {
    // Rewrites one after the other, so that no heartbeat lands after the outcome.
    let writes: Promise<unknown> = Promise.resolve();
    const heartbeat = setInterval(() => {
      writes = writes.then(() => this.write(id, { ...marker, heartbeatAt: Date.now() })).catch(() => undefined);
    }, HEARTBEAT_MS);
    heartbeat.unref();
    const stop = () => {
      clearInterval(heartbeat);
      return writes;
    };
    let operationId: string;
    try {
      operationId = await restore();
    } catch (error) {
      await stop();
      await rm(this.pathOf(id), { force: true });
      throw error;
    }
    await stop();
    // The restore is queued whatever happens now: its id is the answer. A marker that cannot say so (a full disk) is
    // tried again; failing that, it is left to look abandoned, and its upload's record goes with this answer, so no
    // later request finds an upload to restore again.
    const done = { ...marker, heartbeatAt: Date.now(), operationId };
    await this.write(id, done).catch(() => sleep(POLL_MS).then(() => this.write(id, done))).catch(() => undefined);
    return operationId;
  }

  /** Waits for another replica's verification of the upload: its operation id, or NOT_FOUND when it refused or died. */
  private async awaitOther(id: string): Promise<string> {
    for (;;) {
      const marker = await this.read(id);
      if (!marker || this.abandoned(marker)) throw refused();
      if (marker.operationId !== null) return marker.operationId;
      await sleep(POLL_MS);
    }
  }

  private abandoned(marker: Marker): boolean {
    return marker.operationId === null && Date.now() - marker.heartbeatAt > ABANDONED_MS;
  }

  private pathOf(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  private async read(id: string): Promise<Marker | null> {
    const path = this.pathOf(id);
    const text = await readFile(path, 'utf8').catch(() => null);
    if (text === null) return null;
    const marker = parseMarker(text);
    if (marker) return marker;
    const modified = await stat(path).then((found) => found.mtimeMs, () => null);
    return modified === null ? null : unwritten(modified);
  }

  /** Creates the marker unless one exists: whether this process now owns the upload's verification. */
  private async create(id: string, marker: Marker): Promise<boolean> {
    const handle = await open(this.pathOf(id), 'wx', 0o600).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') return null;
      throw error;
    });
    if (!handle) return false;
    try {
      await handle.writeFile(JSON.stringify(marker));
    } catch (error) {
      // Not claimed after all (a full disk): an empty marker would read as a claim being made.
      await handle.close().catch(() => undefined);
      await rm(this.pathOf(id), { force: true });
      throw error;
    }
    await handle.close();
    return true;
  }

  /** Replaces the marker whole (readers never see half of it). */
  private async write(id: string, marker: Marker): Promise<void> {
    const temp = `${this.pathOf(id)}.tmp-${randomBytes(6).toString('hex')}`;
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(marker));
    } finally {
      await handle.close();
    }
    await rename(temp, this.pathOf(id));
  }
}
