import assert from 'node:assert/strict';
import { DEFAULT_TIER_POLICIES, TierSchedule, scheduleOf } from '../../src/config/tiers.js';
import {
  RetainedSnapshot,
  expiresAtFor,
  nextSnapshotAt,
  snapshotsToRemove,
  sparedOf,
} from '../../src/scheduler/retention.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const FREE = scheduleOf(DEFAULT_TIER_POLICIES.FREE);
const PROFESSIONAL = scheduleOf(DEFAULT_TIER_POLICIES.PROFESSIONAL);
const BUSINESS_CRITICAL = scheduleOf(DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL);
const VDC = scheduleOf(DEFAULT_TIER_POLICIES.VIRTUAL_DEDICATED_CLOUD);

/** An instance created at 00:17 UTC, so its hourly grid is not aligned to the day buckets. */
const INSTANCE_CREATED_AT = Date.UTC(2024, 0, 1, 0, 17);

/**
 * The instance's newest COMPLETED snapshot, outside the rows a test passes (as the sweep passes a slice of a history):
 * where a test is about another rule, none of its rows is the newest, which no rule removes.
 */
const NEWER = 'a-newer-snapshot';

function snapshot(id: string, createdAt: number, overrides: Partial<RetainedSnapshot> = {}): RetainedSnapshot {
  return { id, createdAt, status: 'COMPLETED', profile: 'SCHEDULED', ...overrides };
}

/**
 * Runs a tier's schedule over a fake clock: each step takes the snapshot that is due, then runs
 * the retention sweep, then calls `check` with what is left. Returns each removed snapshot's age
 * at the moment it was removed.
 */
function simulate(
  schedule: TierSchedule,
  duration: number,
  check: (history: RetainedSnapshot[], now: number) => void,
): Map<string, number> {
  const removedAtAge = new Map<string, number>();
  let history: RetainedSnapshot[] = [];
  let lastScheduledAt: number | null = null;
  let now = INSTANCE_CREATED_AT;
  for (let n = 0; ; n++) {
    now = nextSnapshotAt(schedule, lastScheduledAt, INSTANCE_CREATED_AT, now)!;
    if (now > INSTANCE_CREATED_AT + duration) break;
    history.push(snapshot(`s${n}`, now));
    lastScheduledAt = now;

    const removed = new Set(snapshotsToRemove(history, schedule, now));
    for (const s of history) if (removed.has(s.id)) removedAtAge.set(s.id, now - s.createdAt);
    history = history.filter((s) => !removed.has(s.id));
    check(history, now);
  }
  return removedAtAge;
}

describe('expiresAtFor', () => {
  const createdAt = Date.UTC(2024, 5, 1);

  it('is null on FREE, which keeps the latest snapshot only', () => {
    assert.equal(expiresAtFor(createdAt, FREE), null);
  });

  it('is createdAt + retention on the paid tiers', () => {
    assert.equal(expiresAtFor(createdAt, PROFESSIONAL), createdAt + 7 * DAY);
    assert.equal(expiresAtFor(createdAt, BUSINESS_CRITICAL), createdAt + 30 * DAY);
    assert.equal(expiresAtFor(createdAt, VDC), createdAt + 60 * DAY);
  });

  it('is null when there is no retention', () => {
    assert.equal(expiresAtFor(createdAt, { ...PROFESSIONAL, retentionMs: null }), null);
  });
});

describe('snapshotsToRemove', () => {
  const now = Date.UTC(2024, 5, 1, 12);

  it('removes nothing from an empty history', () => {
    for (const schedule of [FREE, PROFESSIONAL, BUSINESS_CRITICAL, VDC]) {
      assert.deepEqual(snapshotsToRemove([], schedule, now), []);
    }
  });

  describe('retention', () => {
    it('removes a snapshot exactly at its retention and keeps it 1 ms before', () => {
      const history = [
        snapshot('expired', now - 7 * DAY),
        snapshot('almost', now - 7 * DAY + 1),
        snapshot('fresh', now - HOUR),
      ];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now), ['expired']);
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now - 1), []);
    });

    it('expires FAILED snapshots too', () => {
      const history = [snapshot('failed', now - 30 * DAY, { status: 'FAILED' })];
      assert.deepEqual(snapshotsToRemove(history, BUSINESS_CRITICAL, now), ['failed']);
    });

    it('expires every profile', () => {
      const history = [
        snapshot('scheduled', now - 8 * DAY),
        snapshot('on-demand', now - 8 * DAY, { profile: 'ON_DEMAND' }),
        snapshot('pre-restore', now - 8 * DAY, { profile: 'PRE_RESTORE' }),
      ];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now, [NEWER]).sort(), ['on-demand', 'pre-restore', 'scheduled']);
    });

    it('never removes PENDING or IN_PROGRESS snapshots', () => {
      const history = [
        snapshot('pending', now - 90 * DAY, { status: 'PENDING' }),
        snapshot('running', now - 90 * DAY, { status: 'IN_PROGRESS' }),
      ];
      for (const schedule of [FREE, PROFESSIONAL, BUSINESS_CRITICAL, VDC]) {
        assert.deepEqual(snapshotsToRemove(history, schedule, now), []);
      }
      assert.deepEqual(snapshotsToRemove([...history, snapshot('newer', now)], FREE, now), []);
    });

    it('keeps everything when there is no retention', () => {
      const history = [snapshot('ancient', now - 3650 * DAY)];
      assert.deepEqual(snapshotsToRemove(history, { ...PROFESSIONAL, retentionMs: null }, now), []);
    });

    it('returns ids oldest first whatever the input order', () => {
      const history = [snapshot('b', now - 9 * DAY), snapshot('c', now - 8 * DAY), snapshot('a', now - 10 * DAY)];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now, [NEWER]), ['a', 'b', 'c']);
    });
  });

  describe("the instance's newest COMPLETED snapshot", () => {
    it('stays past its retention until a newer one completes, while older and FAILED ones go', () => {
      const history = [
        snapshot('older', now - 9 * DAY),
        snapshot('newest', now - 8 * DAY, { profile: 'ON_DEMAND' }),
        snapshot('failed-after', now - 7 * DAY, { status: 'FAILED' }),
        snapshot('running', now - HOUR, { status: 'IN_PROGRESS' }),
      ];
      for (const schedule of [PROFESSIONAL, BUSINESS_CRITICAL, VDC]) {
        const removed = snapshotsToRemove(history, schedule, now + 60 * DAY);
        assert.deepEqual(removed, ['older', 'failed-after'], `${schedule.retentionMs} ms retention`);
      }
      history[3].status = 'COMPLETED';
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now + 60 * DAY), ['older', 'newest', 'failed-after']);
    });

    it('is the newest by createdAt, then id, and stays when every scheduled snapshot since has failed', () => {
      const history = [
        snapshot('b', now - 10 * DAY),
        snapshot('a', now - 10 * DAY),
        ...Array.from({ length: 9 }, (_, i) => snapshot(`failed-${i}`, now - (9 - i) * DAY, { status: 'FAILED' })),
      ];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now), ['a', 'failed-0', 'failed-1', 'failed-2']);
    });

    it('is not thinned out of its bucket', () => {
      const history = [snapshot('h00', Date.UTC(2024, 4, 20)), snapshot('h01', Date.UTC(2024, 4, 20, 1)), snapshot('h02', Date.UTC(2024, 4, 20, 2))];
      assert.deepEqual(snapshotsToRemove(history, VDC, Date.UTC(2024, 4, 30)), ['h01']);
    });

    it('is the one the caller names, when the rows are a slice of the history', () => {
      const history = [snapshot('a', now - 9 * DAY), snapshot('b', now - 8 * DAY)];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now), ['a']);
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now, ['a']), ['b']);
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now, [NEWER]), ['a', 'b']);
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now, ['a', 'b']), []);
    });

    it('found damaged, replaces none of its elders: the newest sound one stays too, until a sound one completes', () => {
      const damage = { error: 'chunk 3 of 9 does not match its hash' };
      const history = [
        snapshot('older', now - 10 * DAY),
        snapshot('sound', now - 9 * DAY),
        snapshot('damaged-between', now - 8.5 * DAY, damage),
        snapshot('damaged', now - 8 * DAY, damage),
      ];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now), ['older', 'damaged-between']);
      // A newer one completes, not known to be damaged: it replaces them all.
      const replaced = [...history, snapshot('new', now - HOUR)];
      assert.deepEqual(snapshotsToRemove(replaced, PROFESSIONAL, now), ['older', 'sound', 'damaged-between', 'damaged']);
      // Found damaged too: the sound one is still the one to restore.
      replaced[4].error = damage.error;
      assert.deepEqual(snapshotsToRemove(replaced, PROFESSIONAL, now), ['older', 'damaged-between', 'damaged']);
    });

    it('is kept when every completed snapshot is found damaged, and so is nothing older', () => {
      const damage = { error: 'the archive ends before its last record' };
      const history = [snapshot('a', now - 9 * DAY, damage), snapshot('b', now - 8 * DAY, damage)];
      assert.deepEqual(snapshotsToRemove(history, PROFESSIONAL, now), ['a']);
    });

    it('spares the newest and the newest sound one of the whole history (sparedOf)', () => {
      const damage = { error: 'damaged' };
      assert.deepEqual(sparedOf([]), []);
      assert.deepEqual(sparedOf([snapshot('f', now, { status: 'FAILED', error: 'disk full' })]), []);
      assert.deepEqual(sparedOf([snapshot('a', now - DAY), snapshot('b', now)]), ['b']);
      assert.deepEqual(sparedOf([snapshot('a', now - DAY), snapshot('b', now, damage), snapshot('c', now + 1, { status: 'IN_PROGRESS' })]), ['b', 'a']);
      assert.deepEqual(sparedOf([snapshot('a', now - DAY, damage), snapshot('b', now, damage)]), ['b']);
    });
  });

  describe('keepLatestOnly (FREE)', () => {
    it('keeps only the newest COMPLETED snapshot', () => {
      const history = [
        snapshot('old', now - 3 * DAY, { profile: 'ON_DEMAND' }),
        snapshot('older-failed', now - 2 * DAY, { profile: 'ON_DEMAND', status: 'FAILED' }),
        snapshot('pre-restore', now - DAY, { profile: 'PRE_RESTORE' }),
        snapshot('latest', now - HOUR, { profile: 'ON_DEMAND' }),
      ];
      assert.deepEqual(snapshotsToRemove(history, FREE, now), ['old', 'older-failed', 'pre-restore']);
    });

    it('keeps the newest sound snapshot too when the latest is found damaged', () => {
      const history = [
        snapshot('old', now - 3 * DAY, { profile: 'ON_DEMAND' }),
        snapshot('sound', now - 2 * DAY, { profile: 'ON_DEMAND' }),
        snapshot('latest', now - HOUR, { profile: 'ON_DEMAND', error: 'damaged' }),
      ];
      assert.deepEqual(snapshotsToRemove(history, FREE, now), ['old']);
      history.push(snapshot('next', now));
      assert.deepEqual(snapshotsToRemove(history, FREE, now), ['old', 'sound', 'latest']);
    });

    it('keeps a FAILED snapshot newer than the kept one', () => {
      const history = [
        snapshot('previous', now - 2 * DAY, { profile: 'ON_DEMAND' }),
        snapshot('latest', now - DAY, { profile: 'ON_DEMAND' }),
        snapshot('failed-after', now - HOUR, { profile: 'ON_DEMAND', status: 'FAILED' }),
      ];
      assert.deepEqual(snapshotsToRemove(history, FREE, now), ['previous']);
    });

    it('keeps the latest forever and removes nothing without a COMPLETED snapshot', () => {
      assert.deepEqual(snapshotsToRemove([snapshot('only', now - 3650 * DAY)], FREE, now), []);
      const failures = [snapshot('f1', now - DAY, { status: 'FAILED' }), snapshot('f2', now, { status: 'FAILED' })];
      assert.deepEqual(snapshotsToRemove(failures, FREE, now), []);
    });

    it('keeps exactly one of two snapshots taken at the same moment', () => {
      const history = [snapshot('b', now), snapshot('a', now)];
      assert.deepEqual(snapshotsToRemove(history, FREE, now), ['a']);
    });
  });

  describe('thinning (VIRTUAL_DEDICATED_CLOUD)', () => {
    const midnight = Date.UTC(2024, 4, 20);
    const hourly = (from: number, hours: number, prefix = 'h') =>
      Array.from({ length: hours }, (_, i) => snapshot(`${prefix}${String(i).padStart(2, '0')}`, from + i * HOUR));

    it('keeps the oldest snapshot of each day once a day is older than thinAfter', () => {
      const history = hourly(midnight, 24);
      const afterDay = midnight + DAY - HOUR + 7 * DAY;
      assert.deepEqual(snapshotsToRemove(history, VDC, afterDay, [NEWER]), history.slice(1).map((s) => s.id));
    });

    it('thins a snapshot exactly at thinAfter and not 1 ms before', () => {
      const history = hourly(midnight, 2);
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + HOUR + 7 * DAY, [NEWER]), ['h01']);
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + HOUR + 7 * DAY - 1, [NEWER]), []);
    });

    it('aligns buckets to the epoch, not to the snapshots', () => {
      const history = [snapshot('before-midnight', midnight - HOUR), snapshot('after-midnight', midnight + HOUR)];
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + 10 * DAY, [NEWER]), []);
    });

    it('keeps the same snapshot as the thinAfter line moves through a day', () => {
      const history = hourly(midnight, 24);
      for (let hour = 0; hour < 24; hour++) {
        const now = midnight + hour * HOUR + 7 * DAY;
        const removed = snapshotsToRemove(history, VDC, now, [NEWER]);
        assert.ok(!removed.includes('h00'), `h00 removed at hour ${hour}`);
        assert.deepEqual(removed, history.slice(1, hour + 1).map((s) => s.id));
      }
    });

    // Kept as the oldest, a damaged snapshot was all that was left of its day, and restored nothing of it.
    it('keeps the oldest snapshot of a day not known to be damaged, and the oldest while every one is', () => {
      const history = hourly(midnight, 24).map((s) => (s.id === 'h00' ? { ...s, error: 'chunk 3 of its base is damaged' } : s));
      const afterDay = midnight + DAY - HOUR + 7 * DAY;
      assert.deepEqual(snapshotsToRemove(history, VDC, afterDay, [NEWER]), history.filter((s) => s.id !== 'h01').map((s) => s.id));
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + 7 * DAY, [NEWER]), [], 'h00 alone crossed: nothing else to keep');
    });

    it('does not thin ON_DEMAND and PRE_RESTORE snapshots', () => {
      const history = [
        snapshot('scheduled', midnight),
        snapshot('on-demand', midnight + HOUR, { profile: 'ON_DEMAND' }),
        snapshot('pre-restore', midnight + 2 * HOUR, { profile: 'PRE_RESTORE' }),
        snapshot('scheduled-2', midnight + 3 * HOUR),
      ];
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + 10 * DAY, [NEWER]), ['scheduled-2']);
    });

    it('leaves FAILED snapshots to retention and keeps the oldest COMPLETED one', () => {
      const history = [
        snapshot('failed', midnight, { status: 'FAILED' }),
        snapshot('first-completed', midnight + HOUR),
        snapshot('second-completed', midnight + 2 * HOUR),
      ];
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + 10 * DAY, [NEWER]), ['second-completed']);
    });

    it('waits while the oldest snapshot of a day is still in progress', () => {
      const history = [
        snapshot('running', midnight, { status: 'IN_PROGRESS' }),
        snapshot('completed', midnight + HOUR),
        snapshot('completed-2', midnight + 2 * HOUR),
      ];
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + 10 * DAY, [NEWER]), []);
      history[0].status = 'COMPLETED';
      assert.deepEqual(snapshotsToRemove(history, VDC, midnight + 10 * DAY, [NEWER]), ['completed', 'completed-2']);
    });

    it('applies to what retention leaves', () => {
      const history = hourly(midnight, 24);
      const now = midnight + 6 * HOUR + 60 * DAY;
      // h00..h06 expire; h07 is the oldest survivor and is kept.
      assert.deepEqual(
        snapshotsToRemove(history, VDC, now, [NEWER]),
        history.filter((s) => s.id !== 'h07').map((s) => s.id),
      );
    });
  });
});

describe('a tier schedule over time', () => {
  it('FREE takes no scheduled snapshots', () => {
    assert.equal(nextSnapshotAt(FREE, null, INSTANCE_CREATED_AT, INSTANCE_CREATED_AT + DAY), null);
  });

  it('PROFESSIONAL: daily for 30 days keeps the last 7', () => {
    let count = 0;
    const removedAtAge = simulate(PROFESSIONAL, 30 * DAY, (history, now) => {
      count++;
      assert.ok(history.length <= 7, `${history.length} snapshots kept`);
      assert.ok(history.every((s) => now - s.createdAt < 7 * DAY));
    });
    assert.equal(count, 30);
    assert.deepEqual(new Set(removedAtAge.values()), new Set([7 * DAY]));
    assert.equal(removedAtAge.size, 30 - 7);
  });

  it('BUSINESS_CRITICAL: hourly for 40 days keeps 30 days of hourly snapshots', () => {
    let last: RetainedSnapshot[] = [];
    const removedAtAge = simulate(BUSINESS_CRITICAL, 40 * DAY, (history) => (last = history));
    assert.equal(last.length, 30 * 24);
    assert.deepEqual(new Set(removedAtAge.values()), new Set([30 * DAY]));
  });

  it('VIRTUAL_DEDICATED_CLOUD: a year of hourly snapshots, swept every hour, converges', function () {
    this.timeout(60_000);
    let runs = 0;
    let last: RetainedSnapshot[] = [];
    const removedAtAge = simulate(VDC, 365 * DAY, (history, now) => {
      runs++;
      last = history;
      const young = history.filter((s) => now - s.createdAt < 7 * DAY);
      const old = history.filter((s) => now - s.createdAt >= 7 * DAY);

      assert.equal(young.length, Math.min(runs, 7 * 24), 'every snapshot younger than 7 days is kept');
      young.slice(1).forEach((s, i) => assert.equal(s.createdAt - young[i].createdAt, HOUR));

      const days = old.map((s) => Math.floor(s.createdAt / DAY));
      assert.equal(new Set(days).size, days.length, 'at most one snapshot per day after 7 days');
      const firstOfItsDay = (s: RetainedSnapshot) => s.id === 's0' || s.createdAt % DAY < HOUR;
      assert.ok(old.every(firstOfItsDay), 'the first snapshot of each day is the one kept');
      assert.ok(history.every((s) => now - s.createdAt < 60 * DAY), 'nothing older than 60 days');

      // Once the first day has expired: 7 days of hourly snapshots, then one a day for 53 days.
      if (now >= INSTANCE_CREATED_AT + 61 * DAY) assert.equal(history.length, 7 * 24 + 53);
    });

    assert.equal(runs, 365 * 24);
    assert.equal(last.length, 7 * 24 + 53);
    // Each snapshot is decided once: thinned the hour it turns 7 days old, or kept until 60 days.
    assert.deepEqual(new Set(removedAtAge.values()), new Set([7 * DAY, 60 * DAY]));
  });
});

describe('nextSnapshotAt', () => {
  const created = INSTANCE_CREATED_AT;

  it('schedules the first snapshot one interval after the instance was created', () => {
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, null, created, created), created + HOUR);
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, null, created, created + 10 * MINUTE), created + HOUR);
  });

  it('makes the first snapshot due now when the first interval has passed', () => {
    // e.g. a FREE instance upgraded to PROFESSIONAL after a month
    const now = created + 30 * DAY + 5 * HOUR;
    assert.equal(nextSnapshotAt(PROFESSIONAL, null, created, now), now);
  });

  it('schedules the next grid point after an on-time snapshot', () => {
    const takenLate = created + 3 * HOUR + 2 * SECOND;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, takenLate, created, takenLate + SECOND), created + 4 * HOUR);
    const takenEarly = created + 3 * HOUR - 2 * SECOND;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, takenEarly, created, takenEarly + SECOND), created + 4 * HOUR);
  });

  it('does not drift when each snapshot is taken a little late', () => {
    let last = created;
    for (let i = 1; i <= 100; i++) {
      const due = nextSnapshotAt(BUSINESS_CRITICAL, last, created, last + SECOND)!;
      assert.equal(due, created + i * HOUR);
      last = due + 3 * SECOND;
    }
  });

  it('is due now when exactly on time', () => {
    const due = created + 5 * HOUR;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, created + 4 * HOUR, created, due), due);
  });

  it('after many missed intervals, is due now once, then back on the grid', () => {
    const lastBeforeOutage = created + 3 * HOUR;
    const backUp = created + 50 * HOUR + 20 * MINUTE;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, lastBeforeOutage, created, backUp), backUp);
    // The catch-up snapshot is taken at backUp: the next one waits for the grid, at least half an interval.
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, backUp, created, backUp + SECOND), created + 51 * HOUR);
    const backUpLate = created + 50 * HOUR + 45 * MINUTE;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, backUpLate, created, backUpLate + SECOND), created + 52 * HOUR);
  });

  it('is due now, once, when the clock was stepped back behind the last snapshot', () => {
    // Taken at 10:17 by a clock two hours ahead (a host booted with its clock wrong); corrected, it reads 08:20.
    const takenAhead = created + 10 * HOUR;
    const corrected = created + 8 * HOUR + 3 * MINUTE;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, takenAhead, created, corrected), corrected);
    // Taken then, it is the last one, and the grid goes on from it.
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, corrected, created, corrected + SECOND), created + 9 * HOUR);
    // Less than half an interval ahead (a replica's clock a little behind the one that took it): the grid as usual.
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, takenAhead, created, takenAhead - 20 * MINUTE), created + 11 * HOUR);
  });

  it('is due now, once, when the clock was stepped back behind the instance creation, and then keeps to the grid', () => {
    const behind = created - 2 * HOUR - 10 * MINUTE;
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, null, created, behind), behind);
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, created + 3 * HOUR, created, behind), behind);
    assert.equal(nextSnapshotAt(BUSINESS_CRITICAL, behind, created, behind + SECOND), created - HOUR);
  });

  it('takes no burst of snapshots after an outage', () => {
    // Ticking every minute, taking a snapshot whenever one is due, after 10 missed days.
    let last: number | null = created + DAY;
    const taken: number[] = [];
    for (let now = created + 11 * DAY; now < created + 14 * DAY; now += MINUTE) {
      if (nextSnapshotAt(PROFESSIONAL, last, created, now)! <= now) {
        taken.push(now);
        last = now;
      }
    }
    assert.deepEqual(taken, [created + 11 * DAY, created + 12 * DAY, created + 13 * DAY]);
  });
});
