// Upload blobs no restore will read: `tenants/<tenant>/uploads/*.blob` that no queued or running operation names. A
// crash between storing an uploaded file and queueing its restore (one database insert) leaves one, and so do a
// replica that takes over a resumable upload's completion after the file was stored, and a restore whose clean-up
// could not delete its file. Each is as large as its upload (resumable ones have no size limit), and only this finds them.
//
// A blob store keeps no times, so how long a blob has gone unclaimed is remembered here, from the first collection
// that found it so: it is deleted by a later collection, at least the grace period later, that still finds no
// operation naming it (a file just stored is named by its restore within moments). A restart forgets, and the grace
// starts again.
import { type DataSource, In } from 'typeorm';
import { OperationEntity } from '../entities/operation.entity';
import { TenantEntity } from '../entities/tenant.entity';
import type { Logger } from '../logging/logger';
import type { BlobStore } from '../storage/blob-store';
import { uploadKeyOf } from './restore.service';

export interface UploadCollectorOptions {
  /** How long a blob must go unclaimed before it is deleted. */
  graceMs: number;
  clock?: () => number;
}

export class UploadCollector {
  /** Upload blobs no operation named when last looked at, and since when. */
  private readonly unclaimedSince = new Map<string, number>();
  private readonly clock: () => number;
  private running: Promise<number> | null = null;
  private stopped = false;

  constructor(
    private readonly db: DataSource,
    private readonly blobs: Pick<BlobStore, 'list' | 'delete'>,
    private readonly logger: Logger,
    private readonly options: UploadCollectorOptions,
  ) {
    this.clock = options.clock ?? Date.now;
  }

  /** One pass over every tenant's uploads (the one under way, if any); resolves to how many blobs it deleted. */
  collect(): Promise<number> {
    if (this.stopped) return Promise.resolve(0);
    this.running ??= this.pass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** No pass starts any more; resolves once the one under way has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => undefined);
  }

  private async pass(): Promise<number> {
    const now = this.clock();
    // Claims first, then the listing: a blob stored after this read is new to the listing too, so it is not deleted
    // before a grace period has passed.
    const claimed = await this.claimedKeys();
    const tenants = await this.db.getRepository(TenantEntity).find({ select: { id: true } });
    const unclaimed = new Set<string>();
    const due: { key: string; since: number }[] = [];
    const unlisted = new Set<string>();
    for (const { id } of tenants) {
      const folder = `tenants/${id}/uploads`;
      try {
        for await (const key of this.blobs.list(folder)) {
          if (claimed.has(key)) continue;
          unclaimed.add(key);
          const since = this.unclaimedSince.get(key);
          if (since === undefined) this.unclaimedSince.set(key, now);
          // Never on a first sighting, whatever the grace: a file just stored is named by its restore a moment later.
          else if (now - since >= this.options.graceMs) due.push({ key, since });
        }
      } catch (error) {
        // One tenant's listing (a bucket's answer) does not hold up the others; what it had seen is kept.
        unlisted.add(`${folder}/`);
        this.logger.warn({ err: error, tenantId: id }, 'could not list the uploaded files of a tenant; it is retried');
      }
    }
    for (const key of this.unclaimedSince.keys()) {
      if (!unclaimed.has(key) && !unlisted.has(key.slice(0, key.lastIndexOf('/') + 1))) this.unclaimedSince.delete(key);
    }
    // Looked at again just before deleting: nothing may have queued a restore of it meanwhile.
    const stillClaimed = due.length > 0 ? await this.claimedKeys() : claimed;
    let removed = 0;
    for (const { key, since } of due) {
      if (stillClaimed.has(key)) continue;
      try {
        await this.blobs.delete(key);
        this.unclaimedSince.delete(key);
        removed += 1;
        this.logger.info({ key, unclaimedMs: now - since }, 'removed an uploaded file no restore names');
      } catch (error) {
        this.logger.warn({ err: error, key }, 'could not remove an uploaded file no restore names; it is retried');
      }
    }
    return removed;
  }

  /** The upload blobs that queued or running operations (restores from a file, and their later attempts) will read. */
  private async claimedKeys(): Promise<Set<string>> {
    const active = await this.db.getRepository(OperationEntity).find({ select: { id: true, params: true }, where: { status: In(['QUEUED', 'RUNNING']) } });
    const keys = new Set<string>();
    for (const operation of active) {
      const key = uploadKeyOf(operation.params);
      if (key) keys.add(key);
    }
    return keys;
  }
}
