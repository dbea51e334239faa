// The tier scheduler: while this process leads, every second (or sooner, when a snapshot falls due or expires before
// then) it queues the scheduled snapshots that are due and sweeps retention. What is due and what goes are decided by the
// pure functions of retention.ts.
import type { DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config';
import { type Tier, TIERS, type TierSchedule } from '../config/tiers';
import { InstanceEntity } from '../entities/instance.entity';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { isAppError } from '../errors/app-error';
import type { Logger } from '../logging/logger';
import type { SnapshotService } from '../services/snapshot.service';
import type { SchedulerLeadership } from './leadership';
import { scheduledDueAt } from './retention';
import type { RetentionSweeper } from './retention-sweeper';
import { tierSchedules } from './tier-schedules';

export interface SchedulerOptions {
  /**
   * Longest pause between the end of one tick and the start of the next (shorter when a snapshot falls due
   * sooner); also how often a follower asks to lead.
   */
  tickMs?: number;
}

interface ScheduledInstance {
  instance: InstanceEntity;
  dueAt: number;
}

export class Scheduler {
  private readonly schedules: Record<Tier, TierSchedule>;
  private readonly tickMs: number;
  /** The due time each busy instance is waiting to be snapshotted for: a deferral is logged once, not every tick. */
  private readonly deferred = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  /** When the pending timer fires (epoch ms). */
  private timerAt = 0;
  private inFlight: Promise<unknown> | null = null;
  /** The retention sweep under way: it runs beside the ticks, which go on queuing the snapshots that fall due. */
  private sweeping: Promise<void> | null = null;
  private running = false;
  private lastSweepAt = 0;
  /** The soonest expiresAt the last sweep did not reach, if it comes before the next regular sweep: a sweep starts then. */
  private nextExpiry: number | null = null;
  /** Whether this process led at the previous tick: when it starts leading, it aligns the stored due times first. */
  private leading = false;

  constructor(
    private readonly db: DataSource,
    config: Pick<AppConfig, 'tiers'>,
    private readonly snapshots: SnapshotService,
    private readonly retention: RetentionSweeper,
    private readonly leadership: SchedulerLeadership,
    private readonly logger: Logger,
    { tickMs = 1_000 }: SchedulerOptions = {},
  ) {
    this.schedules = tierSchedules(config.tiers);
    this.tickMs = tickMs;
  }

  /** Starts ticking at once (a snapshot missed while the server was down is due now). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.scheduleTick(0);
  }

  /** Stops ticking, waits for a tick and a sweep in progress to end, and gives leadership up. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
    await this.sweeping;
    await this.leadership.release();
  }

  /**
   * One round: nothing unless this process leads; then the due snapshots, and the retention sweep is started unless one
   * is under way. Returns when the next round should start if that is before the next regular tick (a snapshot falls
   * due, or the next sweep), else null.
   */
  async tick(): Promise<number | null> {
    if (!(await this.leadership.check())) {
      this.leading = false;
      this.nextExpiry = null;
      return null;
    }
    if (!this.leading) {
      await this.alignGridDueTimes();
      this.leading = true;
    }
    // The clock stepped back behind the last sweep's start: measured from that later clock, none was due for the whole
    // step (a day's error corrected, a day without retention). Due now instead.
    if (this.lastSweepAt > Date.now()) this.lastSweepAt = Date.now() - this.tickMs;
    const { due, soonest } = await this.scheduledBy(Date.now(), Date.now() + this.tickMs);
    await this.takeDueSnapshots(due);
    // Retention is swept once a tick's length, and at the moment a snapshot expires (measured under load: removals came
    // 0.1-1.2 s after expiresAt, most of it the wait for the next regular sweep), not at every extra round woken for a
    // due time. It runs beside the ticks, not awaited here: a sweep with much to do (the first after a start reads every
    // thinned history; a shortened retention or a long downtime expires thousands of snapshots, each removal deletions
    // in the blob store) put off every snapshot that fell due meanwhile until it had ended.
    if (this.running && this.sweeping === null && Date.now() >= this.nextSweepAt()) this.startSweep();
    this.nextExpiry = await this.expiryAfter(this.lastSweepAt, this.lastSweepAt + this.tickMs);
    // A round for a due time does not put the next sweep off: a round just short of a tick after the last sweep would
    // otherwise skip it, and the one after come a whole tick later (measured: expired snapshots removed 2 s late on a
    // 3 s schedule). While a sweep runs, the next one waits for its end (see startSweep).
    if (this.sweeping !== null) return soonest;
    const nextSweep = this.nextSweepAt();
    return soonest === null ? nextSweep : Math.min(soonest, nextSweep);
  }

  /** A tick's length after the last sweep started, or sooner when a snapshot expires before then. */
  private nextSweepAt(): number {
    const regular = this.lastSweepAt + this.tickMs;
    return this.nextExpiry === null ? regular : Math.min(regular, this.nextExpiry);
  }

  private startSweep(): void {
    this.lastSweepAt = Date.now();
    this.nextExpiry = null;
    this.sweeping = this.retention
      .sweep(this.lastSweepAt)
      .then(
        () => undefined,
        (error: unknown) => this.logger.error({ err: error }, 'retention sweep failed'),
      )
      .finally(() => {
        this.sweeping = null;
        // A snapshot that expired while it ran is swept at once, not at the next regular tick. (Were a tick under way
        // now, it sees the sweep ended and wakes for the expiry itself.)
        if (this.running && this.timer !== null && this.nextSweepAt() < this.timerAt) {
          clearTimeout(this.timer);
          this.scheduleTick(Math.max(0, this.nextSweepAt() - Date.now()));
        }
      });
  }

  /**
   * The soonest expiresAt in (after, by], read on idx_snapshots_expiry; null when none. Snapshots kept past it (an
   * operation reads them) lie before `after` once swept, so they do not wake the scheduler again.
   */
  private async expiryAfter(after: number, by: number): Promise<number | null> {
    const row = await this.db
      .getRepository(SnapshotEntity)
      .createQueryBuilder('s')
      .select('MIN(s.expiresAt)', 'at')
      .where('s.expiresAt > :after AND s.expiresAt <= :by', { after, by })
      .getRawOne<{ at: number | string | null }>();
    return row?.at === null || row?.at === undefined ? null : Number(row.at);
  }

  private scheduleTick(delayMs: number): void {
    // A chain of timeouts rather than an interval: ticks never overlap, however long one takes.
    this.timerAt = Date.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      const tick = this.tick().catch((error) => {
        this.logger.error({ err: error }, 'scheduler tick failed');
        return null;
      });
      this.inFlight = tick.then((next) => {
        this.inFlight = null;
        if (!this.running) return;
        this.scheduleTick(next === null ? this.tickMs : Math.min(this.tickMs, Math.max(0, next - Date.now())));
      });
    }, delayMs);
    this.timer.unref();
  }

  private async takeDueSnapshots(due: ScheduledInstance[]): Promise<void> {
    const dueIds = new Set(due.map(({ instance }) => instance.id));
    for (const id of this.deferred.keys()) if (!dueIds.has(id)) this.deferred.delete(id);
    for (const { instance, dueAt } of due) {
      if (!this.running) return;
      await this.takeScheduledSnapshot(instance, dueAt);
    }
  }

  /**
   * The running (or restoring) instances whose next scheduled snapshot is due by `horizon`, in one query: those due
   * now, and the soonest due time after now and by `horizon` (so the next tick can wake up for it). The query reads,
   * through indexes, only the instances whose stored grid due time (nextScheduledAt) is by `horizon`, and those whose
   * last scheduled snapshot or creation lies ahead of the clock (it was stepped back: due now); a tick with nothing
   * due reads no instance. scheduledDueAt then decides, so the API and the scheduler share one definition of "due".
   */
  private async scheduledBy(now: number, horizon: number): Promise<{ due: ScheduledInstance[]; soonest: number | null }> {
    const scheduled = TIERS.filter((tier) => this.schedules[tier].intervalMs !== null);
    if (scheduled.length === 0) return { due: [], soonest: null };
    const shortestInterval = Math.min(...scheduled.map((tier) => this.schedules[tier].intervalMs!));
    await this.storeGridDueTimes('unset');
    // Each way of being due is an index range of its own, read by a subquery of its own: as one OR, SQLite walks the
    // table.
    const dueIn = [
      '"nextScheduledAt" <= :horizon',
      // The clock stepped back behind the last one (or the creation), by more than half the shortest interval.
      '"lastScheduledAt" > :steppedBackAfter',
      '"createdAt" > :steppedBackAfter',
    ];
    const candidates = await this.db
      .getRepository(InstanceEntity)
      .createQueryBuilder('i')
      // RESTORING too: its snapshot is due all the same, and is deferred (and logged) until the restore ends.
      .where("i.status IN ('RUNNING', 'RESTORING')")
      .andWhere(`i.id IN (${dueIn.map((where) => `SELECT "id" FROM "instances" WHERE ${where}`).join(' UNION ALL ')})`, {
        horizon,
        steppedBackAfter: now + Math.floor(shortestInterval / 2),
      })
      .getMany();
    const withDueTimes = candidates.flatMap((instance) => {
      // Not clamped to now: when it fell due, even if the server was down then (the logs show how late it is).
      const dueAt = scheduledDueAt(this.schedules[instance.tier], instance.lastScheduledAt, instance.createdAt, now);
      return dueAt === null ? [] : [{ instance, dueAt }];
    });
    const soonest = withDueTimes.reduce<number | null>(
      (min, { dueAt }) => (dueAt > now && dueAt <= horizon && (min === null || dueAt < min) ? dueAt : min),
      null,
    );
    return { due: withDueTimes.filter(({ dueAt }) => dueAt <= now).sort((a, b) => a.dueAt - b.dueAt), soonest };
  }

  /**
   * Gives every instance the grid due time of this process's config, when it starts leading: the config may have
   * changed since the stored ones were computed (before a restart, or by another process), and after the upgrade
   * that added the column none has one.
   */
  private async alignGridDueTimes(): Promise<void> {
    await this.storeGridDueTimes('all');
  }

  /**
   * Stores each instance's grid due time (scheduleGridDueAt, computed by the database from the row as it is) in
   * nextScheduledAt: of every instance, one statement per tier that writes only the rows that differ (null on a tier
   * without a schedule), or, in one statement, of those that have none ('unset': rows written without one, by another
   * release or by hand; the services write it with createdAt and lastScheduledAt). A tick with none unset writes
   * nothing, so it gives no tenant a new data version.
   */
  private async storeGridDueTimes(which: 'all' | 'unset'): Promise<void> {
    const scheduled = TIERS.filter((tier) => this.schedules[tier].intervalMs !== null);
    const update = () => this.db.createQueryBuilder().update(InstanceEntity);
    if (which === 'unset') {
      if (scheduled.length === 0) return;
      const byTier = scheduled.map((tier) => `WHEN '${tier}' THEN ${gridDueAtSql(this.schedules[tier].intervalMs!)}`);
      await update()
        .set({ nextScheduledAt: () => `CASE "tier" ${byTier.join(' ')} END` })
        .where('"nextScheduledAt" IS NULL AND "tier" IN (:...scheduled)', { scheduled })
        .execute();
      return;
    }
    for (const tier of TIERS) {
      const { intervalMs } = this.schedules[tier];
      const ofTier = update().where('"tier" = :tier', { tier });
      if (intervalMs === null) {
        await ofTier.set({ nextScheduledAt: null }).andWhere('"nextScheduledAt" IS NOT NULL').execute();
        continue;
      }
      const dueAt = gridDueAtSql(intervalMs);
      await ofTier.set({ nextScheduledAt: () => dueAt }).andWhere(`("nextScheduledAt" IS NULL OR "nextScheduledAt" <> ${dueAt})`).execute();
    }
  }

  /**
   * Queues the snapshot and records it in lastScheduledAt, together. When the instance is busy (a restore runs) or
   * another process got there first, nothing is recorded, so a busy instance is tried again on the next tick: its
   * snapshot is taken right after the restore, not skipped.
   */
  private async takeScheduledSnapshot(instance: InstanceEntity, dueAt: number): Promise<void> {
    const due = new Date(dueAt).toISOString();
    try {
      const snapshot = await this.snapshots.enqueueScheduledSnapshot(instance);
      const deferred = this.deferred.delete(instance.id);
      this.logger.info(
        {
          snapshotId: snapshot.id,
          instanceId: instance.id,
          tenantId: instance.tenantId,
          dueAt: due,
          lateMs: snapshot.createdAt - dueAt,
          deferred,
        },
        'scheduled snapshot queued',
      );
    } catch (error) {
      if (isAppError(error) && (error.code === 'CONFLICT' || error.code === 'INSTANCE_UNAVAILABLE')) {
        if (this.deferred.get(instance.id) !== dueAt) {
          this.deferred.set(instance.id, dueAt);
          this.logger.info(
            { instanceId: instance.id, dueAt: due, reason: error.message },
            'scheduled snapshot deferred while the instance is busy',
          );
        }
        return;
      }
      this.logger.error({ err: error, instanceId: instance.id, dueAt: due }, 'could not queue a scheduled snapshot');
    }
  }
}

/**
 * scheduleGridDueAt (retention.ts) as an SQL expression over an instance row, for an interval of whole milliseconds:
 * createdAt + ceil((lastScheduledAt + interval/2 - createdAt) / interval) × interval, or createdAt + interval before
 * the first one. In integers (interval/2 need not be whole): the ceiling of n / 2i with n = 2 (lastScheduledAt -
 * createdAt) + i; SQLite and PostgreSQL both truncate an integer division towards zero, which is the ceiling when n
 * <= 0 and needs n + 2i - 1 when n > 0. test/unit/scheduler-due-query.test.ts holds it to scheduledDueAt on both.
 */
function gridDueAtSql(intervalMs: number): string {
  const n = `(2 * ("lastScheduledAt" - "createdAt") + ${intervalMs})`;
  const steps = `CASE WHEN ${n} > 0 THEN (${n} + ${2 * intervalMs - 1}) / ${2 * intervalMs} ELSE (0 - (0 - ${n}) / ${2 * intervalMs}) END`;
  return `(CASE WHEN "lastScheduledAt" IS NULL THEN "createdAt" + ${intervalMs} ELSE "createdAt" + (${steps}) * ${intervalMs} END)`;
}
