// Per-tier policy (schedules, retention, limits): the documented defaults (README, docs/scheduling.md),
// merged field by field with the `tiers.<TIER>` objects of the SNAPGRAPH_CONFIG file.

import { parseDuration, tooLongForConfig } from './duration.js';

export type Tier = 'FREE' | 'PROFESSIONAL' | 'BUSINESS_CRITICAL' | 'VIRTUAL_DEDICATED_CLOUD';

export const TIERS: readonly Tier[] = Object.freeze([
  'FREE',
  'PROFESSIONAL',
  'BUSINESS_CRITICAL',
  'VIRTUAL_DEDICATED_CLOUD',
] as const);

/** Every memory size an instance can have; storageGB is always 2 × memoryGB. */
export const MEMORY_SIZES_GB: readonly number[] = Object.freeze([1, 2, 4, 8, 16, 32, 64]);

export interface TierPolicy {
  /** ISO-8601 duration between scheduled snapshots; null = on-demand snapshots only. */
  snapshotInterval: string | null;
  /** ISO-8601 duration a snapshot is kept; null = kept until keepLatestOnly or a user removes it. */
  retention: string | null;
  /** Snapshots older than this are thinned to one per thinInterval (set both or neither). */
  thinAfter: string | null;
  thinInterval: string | null;
  /**
   * Only the newest completed snapshot is kept (with the newest sound one, when verification found it damaged: see
   * snapshotsToRemove), for as long as it is the newest. Cannot be
   * combined with retention or thinning: the three rules would contradict each other.
   */
  keepLatestOnly: boolean;
  /**
   * ISO-8601 duration back from now that a point-in-time restore can reach (the change log and bases are kept that
   * long); null = no point-in-time restore.
   */
  pointInTimeWindow: string | null;
  /** null = unlimited (only the instance's storage limits the data). */
  maxNodes: number | null;
  maxRelationships: number | null;
  /**
   * The memory sizes an instance of this tier may be created or resized with, a non-empty
   * subset of MEMORY_SIZES_GB. An override replaces the whole list (it is not merged), and is
   * kept sorted ascending.
   */
  memoryGB: number[];
}

const PAID_TIER_LIMITS = {
  keepLatestOnly: false,
  maxNodes: null,
  maxRelationships: null,
} as const;

export const DEFAULT_TIER_POLICIES: Record<Tier, TierPolicy> = deepFreeze({
  FREE: {
    snapshotInterval: null,
    retention: null,
    thinAfter: null,
    thinInterval: null,
    keepLatestOnly: true,
    maxNodes: 200_000,
    maxRelationships: 400_000,
    pointInTimeWindow: null,
    memoryGB: [1],
  },
  PROFESSIONAL: {
    snapshotInterval: 'P1D',
    retention: 'P7D',
    thinAfter: null,
    thinInterval: null,
    ...PAID_TIER_LIMITS,
    pointInTimeWindow: 'P7D',
    memoryGB: [...MEMORY_SIZES_GB],
  },
  BUSINESS_CRITICAL: {
    snapshotInterval: 'PT1H',
    retention: 'P30D',
    thinAfter: null,
    thinInterval: null,
    ...PAID_TIER_LIMITS,
    pointInTimeWindow: 'P30D',
    memoryGB: [...MEMORY_SIZES_GB],
  },
  VIRTUAL_DEDICATED_CLOUD: {
    snapshotInterval: 'PT1H',
    retention: 'P60D',
    thinAfter: 'P7D',
    thinInterval: 'P1D',
    ...PAID_TIER_LIMITS,
    pointInTimeWindow: 'P60D',
    memoryGB: [...MEMORY_SIZES_GB],
  },
});

/** Thrown by resolveTierPolicies; `issues` holds one message per bad field, each naming its path. */
export class TierConfigError extends Error {
  constructor(readonly issues: readonly string[]) {
    super(issues.length === 1 ? issues[0] : `invalid tier configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'TierConfigError';
  }
}

type FieldValidator = (value: unknown, path: string) => string | null;

const FIELD_VALIDATORS: Record<keyof TierPolicy, FieldValidator> = {
  snapshotInterval: nullable(positiveDuration),
  retention: nullable(positiveDuration),
  thinAfter: nullable(positiveDuration),
  thinInterval: nullable(positiveDuration),
  keepLatestOnly: boolean,
  pointInTimeWindow: nullable(positiveDuration),
  maxNodes: nullable(positiveInteger),
  maxRelationships: nullable(positiveInteger),
  memoryGB: memorySizes,
};
const FIELDS = Object.keys(FIELD_VALIDATORS) as (keyof TierPolicy)[];

/**
 * Merges `overrides` (the `tiers` value of the config file: undefined, or an object whose keys
 * are tiers and whose values are partial policies) over DEFAULT_TIER_POLICIES. Every field is
 * validated, and so is each merged policy as a whole. Throws a TierConfigError listing every
 * problem, e.g. `tiers.PROFESSIONAL.retention: "P1X" is not an ISO-8601 duration (…)`.
 */
export function resolveTierPolicies(overrides: unknown): Record<Tier, TierPolicy> {
  if (overrides === undefined || overrides === null) return clonePolicies(DEFAULT_TIER_POLICIES);
  if (!isPlainObject(overrides)) {
    throw new TierConfigError([`tiers: expected an object keyed by tier, got ${describe(overrides)}`]);
  }

  const issues: string[] = [];
  for (const key of Object.keys(overrides)) {
    if (!isTier(key)) issues.push(`tiers.${key}: unknown tier (expected one of ${TIERS.join(', ')})`);
  }

  const policies = clonePolicies(DEFAULT_TIER_POLICIES);
  for (const tier of TIERS) {
    const override = overrides[tier];
    if (override === undefined) continue;
    const path = `tiers.${tier}`;
    if (!isPlainObject(override)) {
      issues.push(`${path}: expected an object, got ${describe(override)}`);
      continue;
    }
    const fieldIssues = mergeOverride(policies[tier], override, path);
    issues.push(...fieldIssues);
    if (fieldIssues.length === 0) issues.push(...consistencyIssues(policies[tier], path));
  }

  if (issues.length > 0) throw new TierConfigError(issues);
  return policies;
}

/** A policy's durations in milliseconds, as the scheduler and retention sweeps use them. */
export interface TierSchedule {
  intervalMs: number | null;
  retentionMs: number | null;
  thinAfterMs: number | null;
  thinIntervalMs: number | null;
  keepLatestOnly: boolean;
  pointInTimeWindowMs: number | null;
}

/** Expects a validated policy (a default or a resolveTierPolicies result). */
export function scheduleOf(policy: TierPolicy): TierSchedule {
  return {
    intervalMs: parseOptionalDuration(policy.snapshotInterval),
    retentionMs: parseOptionalDuration(policy.retention),
    thinAfterMs: parseOptionalDuration(policy.thinAfter),
    thinIntervalMs: parseOptionalDuration(policy.thinInterval),
    keepLatestOnly: policy.keepLatestOnly,
    pointInTimeWindowMs: parseOptionalDuration(policy.pointInTimeWindow),
  };
}

/** Copies each valid field of `override` into `policy`; returns one issue per bad field. */
function mergeOverride(policy: TierPolicy, override: Record<string, unknown>, path: string): string[] {
  const issues: string[] = [];
  for (const [field, value] of Object.entries(override)) {
    const fieldPath = `${path}.${field}`;
    if (!isField(field)) {
      issues.push(`${fieldPath}: unknown field (expected one of ${FIELDS.join(', ')})`);
      continue;
    }
    const issue = FIELD_VALIDATORS[field](value, fieldPath);
    if (issue) {
      issues.push(issue);
      continue;
    }
    // The validators guarantee the value's type matches the field.
    (policy as unknown as Record<string, unknown>)[field] =
      field === 'memoryGB' ? [...(value as number[])].sort((a, b) => a - b) : value;
  }
  return issues;
}

/** Rules between fields, checked on the merged policy so defaults count too. */
function consistencyIssues(policy: TierPolicy, path: string): string[] {
  const issues: string[] = [];
  if ((policy.thinAfter === null) !== (policy.thinInterval === null)) {
    issues.push(`${path}: thinAfter and thinInterval must be set together (or both null)`);
  }
  if (policy.keepLatestOnly && policy.retention !== null) {
    issues.push(`${path}: keepLatestOnly cannot be combined with retention; set retention to null`);
  }
  if (policy.keepLatestOnly && (policy.thinAfter !== null || policy.thinInterval !== null)) {
    issues.push(`${path}: keepLatestOnly cannot be combined with thinAfter/thinInterval; set them to null`);
  }
  return issues;
}

function nullable(validate: FieldValidator): FieldValidator {
  return (value, path) => (value === null ? null : validate(value, path));
}

function positiveDuration(value: unknown, path: string): string | null {
  if (typeof value !== 'string') return `${path}: expected an ISO-8601 duration string or null, got ${describe(value)}`;
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (err) {
    return `${path}: ${(err as Error).message}`;
  }
  if (ms === 0) return `${path}: ${JSON.stringify(value)} must be longer than zero`;
  const tooLong = tooLongForConfig(value, ms);
  return tooLong ? `${path}: ${tooLong}` : null;
}

function positiveInteger(value: unknown, path: string): string | null {
  return Number.isSafeInteger(value) && (value as number) > 0
    ? null
    : `${path}: expected a positive integer or null, got ${describe(value)}`;
}

function boolean(value: unknown, path: string): string | null {
  return typeof value === 'boolean' ? null : `${path}: expected true or false, got ${describe(value)}`;
}

function memorySizes(value: unknown, path: string): string | null {
  const expected = `expected a non-empty list of distinct sizes from [${MEMORY_SIZES_GB.join(', ')}]`;
  if (!Array.isArray(value) || value.length === 0) return `${path}: ${expected}, got ${describe(value)}`;
  const invalid = value.filter((size) => !MEMORY_SIZES_GB.includes(size as number));
  if (invalid.length > 0) return `${path}: ${expected}; ${describe(invalid)} not allowed`;
  if (new Set(value).size !== value.length) return `${path}: ${expected}; ${describe(value)} has duplicates`;
  return null;
}

function parseOptionalDuration(text: string | null): number | null {
  return text === null ? null : parseDuration(text);
}

function isTier(key: string): key is Tier {
  return (TIERS as readonly string[]).includes(key);
}

function isField(key: string): key is keyof TierPolicy {
  return Object.prototype.hasOwnProperty.call(FIELD_VALIDATORS, key);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function clonePolicies(policies: Record<Tier, TierPolicy>): Record<Tier, TierPolicy> {
  const copy = {} as Record<Tier, TierPolicy>;
  for (const tier of TIERS) copy[tier] = { ...policies[tier], memoryGB: [...policies[tier].memoryGB] };
  return copy;
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
