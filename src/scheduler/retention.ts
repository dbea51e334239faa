// Retention and scheduling decisions as pure functions of (snapshots, tier schedule, now):
// no I/O and no clock, so the sweep can be re-run at any time and tested with a fake clock.

import type { TierSchedule } from '../config/tiers.js';

export type RetainedSnapshotStatus = 'PENDING' | 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';
export type RetainedSnapshotProfile = 'SCHEDULED' | 'ON_DEMAND' | 'PRE_RESTORE';

export interface RetainedSnapshot {
  id: string;
  /** The point in time the snapshot captures, ms since the epoch. */
  createdAt: number;
  status: RetainedSnapshotStatus;
  profile: RetainedSnapshotProfile;
  /** On a COMPLETED snapshot, the damage verification found in it (null or absent: none known). */
  error?: string | null;
}

/**
 * The expiresAt to store on a snapshot when it completes: createdAt + retention, or null when
 * the tier keeps the latest snapshot only or has no retention. On a tier with thinning this is
 * an upper bound: a scheduled snapshot can be thinned out before it.
 */
export function expiresAtFor(createdAt: number, schedule: TierSchedule): number | null {
  if (schedule.keepLatestOnly || schedule.retentionMs === null) return null;
  return createdAt + schedule.retentionMs;
}

/**
 * The ids of the snapshots to delete at `now`, oldest first. PENDING and IN_PROGRESS snapshots
 * are never removed, nor is the instance's newest COMPLETED snapshot, nor its newest one not known to be damaged,
 * whatever their age: the rules below apply to the others.
 *
 * - keepLatestOnly: the newest COMPLETED snapshot is kept; every COMPLETED or FAILED snapshot
 *   older than it goes (a FAILED one newer than it stays, as the record of the last attempt).
 *   Retention and thinning do not apply (tier config rejects combining them).
 * - Retention: COMPLETED and FAILED snapshots go once createdAt + retention <= now.
 * - Thinning, applied to what retention leaves: SCHEDULED snapshots with
 *   createdAt <= now - thinAfter are grouped into buckets aligned to epoch multiples of
 *   thinInterval, and each bucket keeps only its OLDEST completed snapshot not known to be damaged
 *   (the oldest, while every one is; a damaged keeper restored nothing of its day). Snapshots cross the
 *   thinAfter line oldest first, so the first one of a bucket to cross is the one kept, and
 *   every later arrival is newer and is removed as it crosses: a snapshot kept once stays kept
 *   until retention removes it, and each snapshot is decided once. (Keeping the newest would
 *   keep each arrival for one sweep, then delete it when the next one crossed.) A bucket whose
 *   oldest candidate is still PENDING/IN_PROGRESS is left alone until it settles, since it may
 *   become the keeper. ON_DEMAND and PRE_RESTORE snapshots are not thinned: someone asked for
 *   them, and they stay until their expiresAt.
 * - The newest COMPLETED snapshot stays past its retention (or its bucket's thinning) until a newer one completes: an
 *   instance whose scheduled snapshots keep failing, one nobody snapshots any more, or a clock wrongly ahead by more
 *   than the retention must not be left with no snapshot to restore. (keepLatestOnly keeps it by definition.)
 * - So does the newest COMPLETED one that verification has not found damaged, until a newer one not known to be
 *   damaged completes: a damaged snapshot restores nothing, so it replaces none of its elders (on keepLatestOnly too).
 *
 * `spared` are the ids no rule removes (sparedOf): by default those of `snapshots`, which is right when they are the
 * whole history. A caller deciding on a slice of the history (the sweep reads only the rows a rule concerns) passes
 * the whole history's.
 */
export function snapshotsToRemove(
  snapshots: RetainedSnapshot[],
  schedule: TierSchedule,
  now: number,
  spared: readonly string[] = sparedOf(snapshots),
): string[] {
  const oldestFirst = [...snapshots].sort(byAge);
  let removed: RetainedSnapshot[];
  if (schedule.keepLatestOnly) {
    removed = supersededByLatest(oldestFirst);
  } else {
    const expired = expiredByRetention(oldestFirst, schedule.retentionMs, now);
    const expiredSet = new Set(expired);
    const survivors = oldestFirst.filter((s) => !expiredSet.has(s));
    removed = [...expired, ...thinnedOut(survivors, schedule, now)].sort(byAge);
  }
  return removed.filter((s) => !spared.includes(s.id)).map((s) => s.id);
}

/**
 * The ids among `snapshots` that no rule removes: the newest COMPLETED snapshot (by createdAt, then id) and the newest
 * COMPLETED one not known to be damaged; one id when they are the same, none without a COMPLETED snapshot.
 */
export function sparedOf(snapshots: RetainedSnapshot[]): string[] {
  let newest: RetainedSnapshot | null = null;
  let newestSound: RetainedSnapshot | null = null;
  for (const s of snapshots) {
    if (s.status !== 'COMPLETED') continue;
    if (newest === null || byAge(newest, s) < 0) newest = s;
    if (!s.error && (newestSound === null || byAge(newestSound, s) < 0)) newestSound = s;
  }
  return [...new Set([newest?.id, newestSound?.id])].filter((id): id is string => id !== undefined);
}

/**
 * When the next scheduled snapshot is due, or null when the tier has no schedule.
 *
 * Snapshots are due on a grid anchored at the instance's creation (createdAt + k × interval),
 * so a daily snapshot keeps its time of day and small delays in taking one never accumulate.
 * The next due time is the first grid point at least half an interval after `lastScheduledAt`
 * (the createdAt of the newest SCHEDULED snapshot, whatever its status: a failed attempt waits
 * for the next slot instead of retrying in a loop). The half-interval margin means a snapshot
 * taken a little early or late, or a catch-up one, is never followed by a near-duplicate.
 * When that time has already passed (the server was down), the snapshot is due `now`, once:
 * after it is taken, the schedule continues from the grid, with no burst of catch-up snapshots.
 * A last snapshot (or, before the first one, the instance's creation) more than half an interval after `now` means
 * the clock was stepped back since (or the server that wrote it has a clock ahead): counted from it, the next one
 * would wait for the length of the step on top of the interval (years, after a boot with a clock far ahead), so it is
 * due now, once, and the grid goes on from it.
 */
export function nextSnapshotAt(
  schedule: TierSchedule,
  lastScheduledAt: number | null,
  instanceCreatedAt: number,
  now: number,
): number | null {
  const due = scheduledDueAt(schedule, lastScheduledAt, instanceCreatedAt, now);
  return due === null ? null : Math.max(due, now);
}

/** nextSnapshotAt before it is moved to `now`: when the snapshot fell due (the scheduler logs how late it is). */
export function scheduledDueAt(
  schedule: TierSchedule,
  lastScheduledAt: number | null,
  instanceCreatedAt: number,
  now: number,
): number | null {
  const interval = schedule.intervalMs;
  if (interval === null) return null;
  if (clockSteppedBack(interval, lastScheduledAt, instanceCreatedAt, now)) return now;
  return scheduleGridDueAt(schedule, lastScheduledAt, instanceCreatedAt);
}

/**
 * scheduledDueAt while the clock has not been stepped back: the first grid point at least half an interval after
 * `lastScheduledAt` (one interval after the creation before the first one). It does not depend on the clock, so the
 * scheduler stores it with the instance (nextScheduledAt) and finds the due ones through an index.
 */
export function scheduleGridDueAt(
  schedule: TierSchedule,
  lastScheduledAt: number | null,
  instanceCreatedAt: number,
): number | null {
  const interval = schedule.intervalMs;
  if (interval === null) return null;
  const earliest = lastScheduledAt === null ? instanceCreatedAt + interval : lastScheduledAt + interval / 2;
  // Before the creation too, when the clock was stepped back behind it: the grid extends both ways.
  return instanceCreatedAt + Math.ceil((earliest - instanceCreatedAt) / interval) * interval;
}

/** The last scheduled snapshot (or, before the first one, the creation) more than half an interval ahead of `now`. */
function clockSteppedBack(intervalMs: number, lastScheduledAt: number | null, instanceCreatedAt: number, now: number): boolean {
  return (lastScheduledAt ?? instanceCreatedAt) > now + intervalMs / 2;
}

function supersededByLatest(oldestFirst: RetainedSnapshot[]): RetainedSnapshot[] {
  const latest = oldestFirst.filter((s) => s.status === 'COMPLETED').at(-1);
  if (!latest) return [];
  return oldestFirst.filter((s) => s !== latest && isSettled(s) && byAge(s, latest) < 0);
}

function expiredByRetention(
  oldestFirst: RetainedSnapshot[],
  retentionMs: number | null,
  now: number,
): RetainedSnapshot[] {
  if (retentionMs === null) return [];
  return oldestFirst.filter((s) => isSettled(s) && s.createdAt + retentionMs <= now);
}

function thinnedOut(oldestFirst: RetainedSnapshot[], schedule: TierSchedule, now: number): RetainedSnapshot[] {
  const { thinAfterMs, thinIntervalMs } = schedule;
  if (thinAfterMs === null || thinIntervalMs === null) return [];
  const buckets = new Map<number, RetainedSnapshot[]>();
  for (const s of oldestFirst) {
    const candidate = s.profile === 'SCHEDULED' && s.status !== 'FAILED' && s.createdAt <= now - thinAfterMs;
    if (!candidate) continue;
    const bucket = Math.floor(s.createdAt / thinIntervalMs);
    const members = buckets.get(bucket);
    if (members) members.push(s);
    else buckets.set(bucket, [s]);
  }
  const removed: RetainedSnapshot[] = [];
  for (const members of buckets.values()) {
    if (members[0].status !== 'COMPLETED') continue;
    // The oldest one not known to be damaged: kept as the oldest, a damaged one was all that was left of its bucket,
    // and restored nothing. Every member is damaged: the oldest.
    const keeper = members.find((s) => s.status === 'COMPLETED' && !s.error) ?? members[0];
    removed.push(...members.filter((s) => s !== keeper && s.status === 'COMPLETED'));
  }
  return removed;
}

function isSettled(s: RetainedSnapshot): boolean {
  return s.status === 'COMPLETED' || s.status === 'FAILED';
}

/** Oldest first; ties broken by id so every run decides the same way. */
function byAge(a: RetainedSnapshot, b: RetainedSnapshot): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
