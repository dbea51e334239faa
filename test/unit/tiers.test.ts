import assert from 'node:assert/strict';
import {
  DEFAULT_TIER_POLICIES,
  TIERS,
  TierConfigError,
  resolveTierPolicies,
  scheduleOf,
} from '../../src/config/tiers.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function issuesOf(overrides: unknown): readonly string[] {
  try {
    resolveTierPolicies(overrides);
  } catch (err) {
    assert.ok(err instanceof TierConfigError, `expected a TierConfigError, got ${String(err)}`);
    return err.issues;
  }
  assert.fail('expected resolveTierPolicies to throw');
}

describe('DEFAULT_TIER_POLICIES', () => {
  it('has a policy for every tier', () => {
    assert.deepEqual(Object.keys(DEFAULT_TIER_POLICIES).sort(), [...TIERS].sort());
  });

  it('matches the design defaults', () => {
    assert.deepEqual(DEFAULT_TIER_POLICIES.FREE, {
      snapshotInterval: null,
      retention: null,
      thinAfter: null,
      thinInterval: null,
      keepLatestOnly: true,
      pointInTimeWindow: null,
      maxNodes: 200_000,
      maxRelationships: 400_000,
      memoryGB: [1],
    });
    const allSizes = [1, 2, 4, 8, 16, 32, 64];
    assert.deepEqual(DEFAULT_TIER_POLICIES.PROFESSIONAL, {
      snapshotInterval: 'P1D',
      retention: 'P7D',
      thinAfter: null,
      thinInterval: null,
      keepLatestOnly: false,
      pointInTimeWindow: 'P7D',
      maxNodes: null,
      maxRelationships: null,
      memoryGB: allSizes,
    });
    assert.equal(DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL.snapshotInterval, 'PT1H');
    assert.equal(DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL.retention, 'P30D');
    assert.equal(DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL.thinAfter, null);
    assert.equal(DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL.pointInTimeWindow, 'P30D');
    assert.deepEqual(DEFAULT_TIER_POLICIES.VIRTUAL_DEDICATED_CLOUD, {
      snapshotInterval: 'PT1H',
      retention: 'P60D',
      thinAfter: 'P7D',
      thinInterval: 'P1D',
      keepLatestOnly: false,
      pointInTimeWindow: 'P60D',
      maxNodes: null,
      maxRelationships: null,
      memoryGB: allSizes,
    });
  });

  it('cannot be changed by accident', () => {
    assert.throws(() => {
      (DEFAULT_TIER_POLICIES.FREE as { maxNodes: number }).maxNodes = 1;
    }, TypeError);
    assert.throws(() => DEFAULT_TIER_POLICIES.PROFESSIONAL.memoryGB.push(128), TypeError);
  });
});

describe('resolveTierPolicies', () => {
  it('returns the defaults when there are no overrides', () => {
    assert.deepEqual(resolveTierPolicies(undefined), DEFAULT_TIER_POLICIES);
    assert.deepEqual(resolveTierPolicies(null), DEFAULT_TIER_POLICIES);
    assert.deepEqual(resolveTierPolicies({}), DEFAULT_TIER_POLICIES);
  });

  it('returns copies that callers may change', () => {
    const policies = resolveTierPolicies({});
    policies.FREE.memoryGB.push(2);
    assert.deepEqual(DEFAULT_TIER_POLICIES.FREE.memoryGB, [1]);
  });

  it('overrides field by field, leaving other fields and tiers at their defaults', () => {
    const policies = resolveTierPolicies({
      PROFESSIONAL: { snapshotInterval: 'PT2S', retention: 'PT10S' },
      FREE: { maxNodes: 10 },
    });
    assert.deepEqual(policies.PROFESSIONAL, {
      ...DEFAULT_TIER_POLICIES.PROFESSIONAL,
      snapshotInterval: 'PT2S',
      retention: 'PT10S',
    });
    assert.deepEqual(policies.FREE, { ...DEFAULT_TIER_POLICIES.FREE, maxNodes: 10 });
    assert.deepEqual(policies.BUSINESS_CRITICAL, DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL);
  });

  it('accepts null to turn a nullable field off', () => {
    const policies = resolveTierPolicies({
      BUSINESS_CRITICAL: { snapshotInterval: null, retention: null },
      FREE: { maxNodes: null, maxRelationships: null },
    });
    assert.equal(policies.BUSINESS_CRITICAL.snapshotInterval, null);
    assert.equal(policies.BUSINESS_CRITICAL.retention, null);
    assert.equal(policies.FREE.maxNodes, null);
  });

  it('treats memoryGB as the full list of allowed sizes, sorted', () => {
    const policies = resolveTierPolicies({ FREE: { memoryGB: [4, 1, 2] } });
    assert.deepEqual(policies.FREE.memoryGB, [1, 2, 4]);
  });

  it('names the path of a bad duration', () => {
    assert.deepEqual(issuesOf({ PROFESSIONAL: { retention: 'P1X' } }).length, 1);
    assert.match(
      issuesOf({ PROFESSIONAL: { retention: 'P1X' } })[0],
      /^tiers\.PROFESSIONAL\.retention: "P1X" is not an ISO-8601 duration/,
    );
    assert.match(
      issuesOf({ BUSINESS_CRITICAL: { snapshotInterval: 'P1M' } })[0],
      /^tiers\.BUSINESS_CRITICAL\.snapshotInterval: "P1M" uses months/,
    );
    assert.match(issuesOf({ PROFESSIONAL: { retention: 7 } })[0], /^tiers\.PROFESSIONAL\.retention: expected an ISO-8601 duration/);
  });

  it('rejects zero-length durations', () => {
    assert.match(issuesOf({ PROFESSIONAL: { snapshotInterval: 'PT0S' } })[0], /snapshotInterval: "PT0S" must be longer than zero/);
  });

  // Accepted, they made every snapshot's expiresAt (or an instance's schedule.nextSnapshotAt) a moment past the last
  // one a date can name: each query asking for it failed with "DateTime cannot represent ...".
  it('rejects durations too long to be added to a date, naming the longest', () => {
    for (const field of ['snapshotInterval', 'retention', 'thinAfter', 'thinInterval', 'pointInTimeWindow']) {
      const overrides = { VIRTUAL_DEDICATED_CLOUD: { [field]: 'P100000000D' } };
      assert.match(issuesOf(overrides)[0], new RegExp(`^tiers\\.VIRTUAL_DEDICATED_CLOUD\\.${field}: "P100000000D" is longer than P100000D`), field);
    }
    assert.equal(resolveTierPolicies({ PROFESSIONAL: { retention: 'P100000D' } }).PROFESSIONAL.retention, 'P100000D');
  });

  it('rejects counts that are not positive integers', () => {
    for (const bad of [0, -1, 1.5, '10', true, 2 ** 60]) {
      assert.match(issuesOf({ FREE: { maxNodes: bad } })[0], /^tiers\.FREE\.maxNodes: expected a positive integer or null/, String(bad));
    }
  });

  it('rejects a keepLatestOnly that is not a boolean', () => {
    assert.match(issuesOf({ FREE: { keepLatestOnly: 'yes' } })[0], /^tiers\.FREE\.keepLatestOnly: expected true or false/);
    assert.match(issuesOf({ FREE: { keepLatestOnly: null } })[0], /^tiers\.FREE\.keepLatestOnly: expected true or false/);
  });

  it('rejects bad memoryGB lists', () => {
    for (const bad of [[], [3], [1, 128], [1, 1], 4, null, ['1']]) {
      assert.match(issuesOf({ PROFESSIONAL: { memoryGB: bad } })[0], /^tiers\.PROFESSIONAL\.memoryGB: expected a non-empty list of distinct sizes/, JSON.stringify(bad));
    }
  });

  it('rejects unknown tiers and unknown fields', () => {
    assert.match(issuesOf({ ENTERPRISE: {} })[0], /^tiers\.ENTERPRISE: unknown tier/);
    assert.match(issuesOf({ FREE: { retentionDays: 3 } })[0], /^tiers\.FREE\.retentionDays: unknown field/);
  });

  it('rejects overrides that are not objects', () => {
    assert.match(issuesOf('PROFESSIONAL')[0], /^tiers: expected an object/);
    assert.match(issuesOf([])[0], /^tiers: expected an object/);
    assert.match(issuesOf({ FREE: [] })[0], /^tiers\.FREE: expected an object/);
  });

  it('checks the merged policy as a whole', () => {
    assert.match(issuesOf({ PROFESSIONAL: { thinAfter: 'P1D' } })[0], /^tiers\.PROFESSIONAL: thinAfter and thinInterval must be set together/);
    assert.match(issuesOf({ VIRTUAL_DEDICATED_CLOUD: { thinInterval: null } })[0], /thinAfter and thinInterval must be set together/);
    assert.match(issuesOf({ PROFESSIONAL: { keepLatestOnly: true } })[0], /^tiers\.PROFESSIONAL: keepLatestOnly cannot be combined with retention/);
    assert.match(issuesOf({ FREE: { retention: 'P1D' } })[0], /^tiers\.FREE: keepLatestOnly cannot be combined with retention/);
    assert.doesNotThrow(() => resolveTierPolicies({ PROFESSIONAL: { keepLatestOnly: true, retention: null } }));
    assert.doesNotThrow(() => resolveTierPolicies({ FREE: { keepLatestOnly: false, retention: 'P1D' } }));
  });

  it('lists every problem at once', () => {
    const issues = issuesOf({
      PROFESSIONAL: { retention: 'P1X', maxNodes: 0 },
      FREE: { memoryGB: [] },
      GOLD: {},
    });
    assert.equal(issues.length, 4);
    try {
      resolveTierPolicies({ PROFESSIONAL: { retention: 'P1X', maxNodes: 0 } });
    } catch (err) {
      assert.match((err as Error).message, /tiers\.PROFESSIONAL\.retention[\s\S]*tiers\.PROFESSIONAL\.maxNodes/);
    }
  });
});

describe('scheduleOf', () => {
  it('converts the default policies to milliseconds', () => {
    assert.deepEqual(scheduleOf(DEFAULT_TIER_POLICIES.FREE), {
      intervalMs: null,
      retentionMs: null,
      thinAfterMs: null,
      thinIntervalMs: null,
      keepLatestOnly: true,
      pointInTimeWindowMs: null,
    });
    assert.deepEqual(scheduleOf(DEFAULT_TIER_POLICIES.PROFESSIONAL), {
      intervalMs: DAY,
      retentionMs: 7 * DAY,
      thinAfterMs: null,
      thinIntervalMs: null,
      keepLatestOnly: false,
      pointInTimeWindowMs: 7 * DAY,
    });
    assert.deepEqual(scheduleOf(DEFAULT_TIER_POLICIES.BUSINESS_CRITICAL), {
      intervalMs: HOUR,
      retentionMs: 30 * DAY,
      thinAfterMs: null,
      thinIntervalMs: null,
      keepLatestOnly: false,
      pointInTimeWindowMs: 30 * DAY,
    });
    assert.deepEqual(scheduleOf(DEFAULT_TIER_POLICIES.VIRTUAL_DEDICATED_CLOUD), {
      intervalMs: HOUR,
      retentionMs: 60 * DAY,
      thinAfterMs: 7 * DAY,
      thinIntervalMs: DAY,
      keepLatestOnly: false,
      pointInTimeWindowMs: 60 * DAY,
    });
  });

  it('converts overridden short durations', () => {
    const { PROFESSIONAL } = resolveTierPolicies({ PROFESSIONAL: { snapshotInterval: 'PT2S', retention: 'PT0.5S' } });
    assert.equal(scheduleOf(PROFESSIONAL).intervalMs, 2000);
    assert.equal(scheduleOf(PROFESSIONAL).retentionMs, 500);
  });
});
