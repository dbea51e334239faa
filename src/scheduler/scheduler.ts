// The tier scheduler: while this process leads, every second (or sooner, when a snapshot falls due before then) it
// queues the scheduled snapshots that are due and sweeps retention. What is due and what goes are decided by the
// pure functions of retention.ts.
import { Brackets, type DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config';
import { type Tier, TIERS, type TierSchedule } from '../config/tiers';
import { InstanceEntity } from '../entities/instance.entity';
import { isAppError } from '../errors/app-error';
import type { Logger } from '../logging/logger';
import type { SnapshotService } from '../services/snapshot.service';
import type { SchedulerLeadership } from './leadership';
import { nextSnapshotAt } from './retention';
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
  private inFlight: Promise<unknown> | null = null;
  private running = false;
  private lastSweepAt = 0;

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

  /** Stops ticking, waits for a tick in progress to end, and gives leadership up. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
    await this.leadership.release();
  }

  /**
   * One round: nothing unless this process leads; then the due snapshots, then the retention sweep. Returns when the
   * next round should start if that is before the next regular tick (a snapshot falls due, or the next sweep), else
   * null.
   */
  async tick(): Promise<number | null> {
    if (!(await this.leadership.check())) return null;
    const { due, soonest } = await this.scheduledBy(Date.now(), Date.now() + this.tickMs);
    await this.takeDueSnapshots(due);
    // Retention is swept once a tick's length, not at every extra round woken for a due time...
    if (this.running && Date.now() - this.lastSweepAt >= this.tickMs) {
      this.lastSweepAt = Date.now();
      await this.retention.sweep(this.lastSweepAt);
    }
    // ...and a round for a due time does not put the next sweep off: a round just short of a tick after the last
    // sweep would otherwise skip it, and the one after come a whole tick later (measured: expired snapshots removed
    // 2 s late on a 3 s schedule).
    const nextSweep = this.lastSweepAt + this.tickMs;
    return soonest === null ? nextSweep : Math.min(soonest, nextSweep);
  }

  private scheduleTick(delayMs: number): void {
    // A chain of timeouts rather than an interval: ticks never overlap, however long one takes.
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
   * now, and the soonest due time after now (so the next tick can wake up for it). SQL narrows the rows with a bound
   * that follows from nextSnapshotAt (never due before createdAt + interval, nor before lastScheduledAt + half an
   * interval); nextSnapshotAt itself then decides, so the API and the scheduler share one definition of "due".
   */
  private async scheduledBy(now: number, horizon: number): Promise<{ due: ScheduledInstance[]; soonest: number | null }> {
    const scheduled = TIERS.filter((tier) => this.schedules[tier].intervalMs !== null);
    if (scheduled.length === 0) return { due: [], soonest: null };
    const candidates = await this.db
      .getRepository(InstanceEntity)
      .createQueryBuilder('i')
      // RESTORING too: its snapshot is due all the same, and is deferred (and logged) until the restore ends.
      .where("i.status IN ('RUNNING', 'RESTORING')")
      .andWhere(
        new Brackets((tiers) => {
          scheduled.forEach((tier, n) => {
            const intervalMs = this.schedules[tier].intervalMs!;
            tiers.orWhere(
              `(i.tier = :tier${n} AND ((i.lastScheduledAt IS NULL AND i.createdAt <= :firstDueBefore${n}) ` +
                `OR i.lastScheduledAt <= :againDueBefore${n}))`,
              { [`tier${n}`]: tier, [`firstDueBefore${n}`]: horizon - intervalMs, [`againDueBefore${n}`]: horizon - Math.floor(intervalMs / 2) },
            );
          });
        }),
      )
      .getMany();
    const withDueTimes = candidates.map((instance) => ({
      instance,
      // Not clamped to now: when it fell due, even if the server was down then (the logs show how late it is).
      dueAt: nextSnapshotAt(this.schedules[instance.tier], instance.lastScheduledAt, instance.createdAt, -Infinity)!,
    }));
    const soonest = withDueTimes.reduce<number | null>(
      (min, { dueAt }) => (dueAt > now && (min === null || dueAt < min) ? dueAt : min),
      null,
    );
    return { due: withDueTimes.filter(({ dueAt }) => dueAt <= now).sort((a, b) => a.dueAt - b.dueAt), soonest };
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
