// Applies the tier's retention rules (retention.ts decides) to the metadata: finds the snapshots they concern with
// a few queries per sweep, and removes what they say with its blob and a snapshotUpdated event.
import { type DataSource, In, type Repository } from 'typeorm';
import type { AppConfig } from '../config/app-config';
import { type Tier, TIERS, type TierSchedule } from '../config/tiers';
import { InstanceEntity } from '../entities/instance.entity';
import { OperationEntity } from '../entities/operation.entity';
import { restoreInProgressOn } from '../jobs/operation-queue';
import { SnapshotEntity } from '../entities/snapshot.entity';
import type { Logger } from '../logging/logger';
import type { SnapshotService } from '../services/snapshot.service';
import { type RetainedSnapshot, snapshotsToRemove } from './retention';
import { tierSchedules } from './tier-schedules';

/** Rows read per query: bounds memory however much history there is. */
const PAGE_ROWS = 10_000;
/** Ids per IN (…) list, well under SQLite's and PostgreSQL's bound-parameter limits. */
const ID_CHUNK = 500;

type Candidate = RetainedSnapshot & { instanceId: string };

interface Removal {
  removed: number;
  /** Chosen but still there (in use by an operation, or the delete failed): to be decided again later. */
  kept: Candidate[];
}

/**
 * What a sweep reads, one scan per rule, each a range of the (instanceId, createdAt) history index per instance, so
 * that no sweep reads a whole history:
 * - retention: the snapshots past it (createdAt <= now - retention);
 * - thinning: the SCHEDULED snapshots that crossed the thinAfter line since the last sweep, widened to whole
 *   thinInterval buckets (a bucket's keeper is its oldest member, which may have crossed earlier). Buckets behind
 *   that window were decided by earlier sweeps of this process; the first sweep after a start reads them all;
 * - keepLatestOnly: every snapshot of the tier, few by construction since each completion applies the rule.
 * Each scan is decided on its own with the tier's full rules. That is sound because each holds, per instance,
 * either a createdAt-ordered prefix of the history or whole buckets of thinning candidates, and on such a slice
 * snapshotsToRemove chooses a subset of what it would choose on the whole history: retention is per snapshot, and
 * the latest (or oldest per bucket) of a prefix is never newer than that of the whole.
 */
export class RetentionSweeper {
  private readonly schedules: Record<Tier, TierSchedule>;
  private readonly snapshotRows: Repository<SnapshotEntity>;
  /** Per thinning tier: where the next sweep's thinning window starts (epoch ms, bucket-aligned). */
  private readonly thinFrom = new Map<Tier, number>();
  /** Whether alignExpiry has run in this process. */
  private expiryAligned = false;

  constructor(
    private readonly db: DataSource,
    config: Pick<AppConfig, 'tiers'>,
    private readonly snapshots: SnapshotService,
    private readonly logger: Logger,
  ) {
    this.snapshotRows = db.getRepository(SnapshotEntity);
    this.schedules = tierSchedules(config.tiers);
  }

  /**
   * Called right after one of the instance's snapshots completed (the SNAPSHOT operation's afterCapture hook), so
   * that a latest-only tier (FREE) drops the older snapshots at once rather than at the next sweep. Only that rule
   * depends on a completion; the others depend on time, and the sweep applies them. Never throws: the snapshot has
   * completed whatever happens here, a failure is logged, and the next sweep tries again.
   */
  async onSnapshotCompleted(instance: Pick<InstanceEntity, 'id' | 'tier'>, now = Date.now()): Promise<void> {
    const schedule = this.schedules[instance.tier];
    if (!schedule.keepLatestOnly) return;
    try {
      const snapshots = await this.snapshots.snapshotsOf(instance.id);
      await this.remove(this.decide(snapshots, schedule, now), schedule);
    } catch (error) {
      this.logger.error({ err: error, instanceId: instance.id }, 'could not apply retention after a snapshot');
    }
  }

  /** One pass over every instance's snapshots; returns how many were removed. */
  async sweep(now = Date.now()): Promise<number> {
    if (!this.expiryAligned) {
      await this.alignExpiry();
      this.expiryAligned = true;
    }
    let removed = 0;
    for (const tier of TIERS) {
      const schedule = this.schedules[tier];
      if (schedule.keepLatestOnly) removed += (await this.sweepScan(tier, schedule, now, {})).removed;
      if (schedule.retentionMs !== null) {
        removed += (await this.sweepScan(tier, schedule, now, { expiredAt: now - schedule.retentionMs })).removed;
      }
      if (schedule.thinAfterMs !== null && schedule.thinIntervalMs !== null) {
        removed += await this.sweepThinning(tier, schedule, now);
      }
    }
    return removed;
  }

  /**
   * Sets the expiresAt of every settled snapshot to what this process's retention makes it (createdAt + retention, or
   * null on a tier without a time limit), once, before its first sweep. expiresAt is recorded when a snapshot settles,
   * under the config of that moment; the sweeps remove by the config of now. After a change of a tier's retention
   * (config changes apply at the next start) the API otherwise showed the old times: snapshots removed days before
   * their expiresAt, or kept past it. One statement per tier, writing only the rows whose expiresAt differs.
   */
  private async alignExpiry(): Promise<void> {
    for (const tier of TIERS) {
      const schedule = this.schedules[tier];
      const retentionMs = schedule.keepLatestOnly ? null : schedule.retentionMs;
      const query = this.snapshotRows
        .createQueryBuilder()
        .update(SnapshotEntity)
        .where('"instanceId" IN (SELECT i.id FROM instances i WHERE i.tier = :tier)', { tier });
      if (retentionMs === null) {
        query.set({ expiresAt: null }).andWhere('"expiresAt" IS NOT NULL');
      } else {
        query
          .set({ expiresAt: () => '"createdAt" + :retentionMs' })
          .andWhere("status IN ('COMPLETED', 'FAILED')")
          .andWhere('("expiresAt" IS NULL OR "expiresAt" <> "createdAt" + :retentionMs)')
          .setParameter('retentionMs', retentionMs);
      }
      const { affected } = await query.execute();
      if (affected) this.logger.info({ tier, snapshots: affected, retention: retentionMs }, 'snapshot expiry aligned with the configured retention');
    }
  }

  /** The thinning scan, and where the next one starts: past what is decided, but not past what must be seen again. */
  private async sweepThinning(tier: Tier, schedule: TierSchedule, now: number): Promise<number> {
    const window = { from: this.thinFrom.get(tier) ?? 0, line: now - schedule.thinAfterMs! };
    let revisitFrom = window.line;
    const { removed, complete } = await this.sweepScan(tier, schedule, now, { thinning: window }, (rows, kept) => {
      // Not settled yet (a bucket's keeper may be among them), or chosen but not removed: decide them again.
      for (const row of [...rows.filter(isUnsettled), ...kept]) revisitFrom = Math.min(revisitFrom, row.createdAt);
    });
    if (complete) this.thinFrom.set(tier, bucketStart(revisitFrom, schedule.thinIntervalMs!));
    return removed;
  }

  /**
   * Reads one scan page by page (instances in id order, each instance's rows oldest first), decides each instance's
   * rows and removes what is chosen. Incomplete when an instance had more rows than a page holds: its oldest rows
   * were decided, the rest wait for the next sweep.
   */
  private async sweepScan(
    tier: Tier,
    schedule: TierSchedule,
    now: number,
    scan: Scan,
    observe?: (rows: Candidate[], kept: Candidate[]) => void,
  ): Promise<{ removed: number; complete: boolean }> {
    let removed = 0;
    let complete = true;
    let afterInstance: string | null = null;
    for (;;) {
      const page = splitPage(await this.readPage(tier, scan, afterInstance));
      complete &&= page.complete;
      const rows = [...page.byInstance.values()];
      const outcome = await this.remove(rows.flatMap((instanceRows) => this.decide(instanceRows, schedule, now)), schedule);
      removed += outcome.removed;
      observe?.(rows.flat(), outcome.kept);
      if (page.next === null) return { removed, complete };
      afterInstance = page.next;
    }
  }

  private readPage(tier: Tier, scan: Scan, afterInstance: string | null): Promise<Candidate[]> {
    const query = this.snapshotRows
      .createQueryBuilder('s')
      .select(['s.id', 's.instanceId', 's.createdAt', 's.status', 's.profile'])
      .innerJoin(InstanceEntity, 'i', 'i.id = s.instanceId')
      .where('i.tier = :tier', { tier });
    // Separate scans rather than one OR: each condition stays a range on the history index.
    if (scan.expiredAt !== undefined) query.andWhere('s.createdAt <= :expiredAt', { expiredAt: scan.expiredAt });
    if (scan.thinning) {
      query.andWhere("s.profile = 'SCHEDULED' AND s.createdAt >= :thinFrom AND s.createdAt <= :thinLine", {
        thinFrom: scan.thinning.from,
        thinLine: scan.thinning.line,
      });
    }
    if (afterInstance !== null) query.andWhere('i.id > :afterInstance', { afterInstance });
    // Ordered by i.id, not s.instanceId: SQLite then walks instances and seeks each one's range, instead of
    // walking the whole history index to avoid a sort.
    return query.orderBy('i.id').addOrderBy('s.createdAt').addOrderBy('s.id').limit(PAGE_ROWS).getMany();
  }

  private decide(snapshots: Candidate[], schedule: TierSchedule, now: number): Candidate[] {
    const ids = new Set(snapshotsToRemove(snapshots, schedule, now));
    return snapshots.filter((s) => ids.has(s.id));
  }

  /**
   * Removes the chosen snapshots with their blobs and events, except those an operation is reading or writing (a
   * restore from an expiring snapshot must not lose its source), and every snapshot of an instance being restored:
   * they stay until a later sweep. A restore's safety snapshot is COMPLETED as soon as it is taken, before the
   * restore's load; were it the latest, a keep-latest-only tier would lose every older snapshot, and a restore that
   * then fails or is cancelled removes its safety snapshot too, leaving the instance no backup at all.
   * Both are looked at again as each row goes, with keep-latest-only's reason (a newer COMPLETED snapshot still there):
   * the choice rests on rows read before, and a restore that failed since took the safety snapshot that superseded the
   * others with it (the look before found no restore, and the instance's only snapshot went).
   */
  private async remove(chosen: Candidate[], schedule: Pick<TierSchedule, 'keepLatestOnly'>): Promise<Removal> {
    const outcome: Removal = { removed: 0, kept: [] };
    const operations = this.db.getRepository(OperationEntity);
    for (let i = 0; i < chosen.length; i += ID_CHUNK) {
      const batch = chosen.slice(i, i + ID_CHUNK);
      const ids = batch.map((s) => s.id);
      const reading = await operations.find({ select: { snapshotId: true }, where: { snapshotId: In(ids), status: In(['QUEUED', 'RUNNING']) } });
      const restoring = await operations.find({ select: { instanceId: true }, where: restoreInProgressOn([...new Set(batch.map((s) => s.instanceId))]) });
      const busyInstances = new Set(restoring.map((operation) => operation.instanceId));
      const busy = new Set([
        ...reading.map((operation) => operation.snapshotId),
        ...batch.filter((s) => busyInstances.has(s.instanceId)).map((s) => s.id),
      ]);
      // Rows gone since the query were removed by someone else (a user, another sweep): nothing to do for them.
      const free = ids.filter((id) => !busy.has(id));
      const rows = free.length > 0 ? await this.snapshotRows.findBy({ id: In(free) }) : [];
      outcome.kept.push(...batch.filter((s) => busy.has(s.id)));
      for (const snapshot of rows) {
        try {
          // Looked at again as the row goes: a restore from it (or of its instance) may have been queued since the look
          // above, or the snapshot that superseded it gone.
          const removal = await this.snapshots.deleteUnlessRead(snapshot, { unlessRestoring: true, supersededOnly: schedule.keepLatestOnly });
          if (removal === 'read' || removal === 'needed') outcome.kept.push(batch.find((s) => s.id === snapshot.id)!);
          if (removal === 'deleted') {
            outcome.removed += 1;
            const { id: snapshotId, instanceId, tenantId, profile } = snapshot;
            this.logger.info({ snapshotId, instanceId, tenantId, profile }, 'snapshot removed by retention');
          }
        } catch (error) {
          outcome.kept.push(batch.find((s) => s.id === snapshot.id)!);
          this.logger.error({ err: error, snapshotId: snapshot.id, instanceId: snapshot.instanceId }, 'could not remove snapshot');
        }
      }
    }
    return outcome;
  }
}

/** Which rows of a tier one scan reads: all of them ({}), the expired ones, or a thinning window. */
interface Scan {
  expiredAt?: number;
  /** SCHEDULED snapshots with from <= createdAt <= line (line: now - thinAfter). */
  thinning?: { from: number; line: number };
}

/** The bucket grid retention.ts thins on: epoch multiples of thinInterval. */
function bucketStart(at: number, intervalMs: number): number {
  return Math.floor(at / intervalMs) * intervalMs;
}

function isUnsettled(s: RetainedSnapshot): boolean {
  return s.status === 'PENDING' || s.status === 'IN_PROGRESS';
}

/**
 * Groups a page by instance. A full page may have cut the last instance's rows short: that instance is left for
 * the next page, which starts at it, unless it is the page's only instance (more rows than a page holds); then its
 * oldest rows are decided now (a prefix decides a subset, see above) and the scan is incomplete.
 */
function splitPage(page: Candidate[]): { byInstance: Map<string, Candidate[]>; next: string | null; complete: boolean } {
  const byInstance = new Map<string, Candidate[]>();
  for (const row of page) {
    const rows = byInstance.get(row.instanceId);
    if (rows) rows.push(row);
    else byInstance.set(row.instanceId, [row]);
  }
  if (page.length < PAGE_ROWS) return { byInstance, next: null, complete: true };
  const instances = [...byInstance.keys()];
  const last = instances[instances.length - 1];
  if (instances.length === 1) return { byInstance, next: last, complete: false };
  byInstance.delete(last);
  return { byInstance, next: instances[instances.length - 2], complete: true };
}
