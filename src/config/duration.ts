// ISO-8601 durations (P7D, PT1H, PT0.5S) as exact millisecond counts, for config and the API.
//
// Only weeks, days, hours, minutes and seconds are accepted: years and months have no fixed
// length, and a retention period must be an exact span of time. A day is always 24 hours.

const MS_PER_SECOND = 1000;
const MS_PER_MINUTE = 60 * MS_PER_SECOND;
const MS_PER_HOUR = 60 * MS_PER_MINUTE;
const MS_PER_DAY = 24 * MS_PER_HOUR;
const MS_PER_WEEK = 7 * MS_PER_DAY;

const NUMBER = String.raw`(\d+(?:[.,]\d+)?)`;
// Groups: weeks, days, the time part, hours, minutes, seconds.
const DURATION_PATTERN = new RegExp(
  `^P(?:${NUMBER}W)?(?:${NUMBER}D)?(T(?:${NUMBER}H)?(?:${NUMBER}M)?(?:${NUMBER}S)?)?$`,
);
const COMPONENT_UNITS_MS = [MS_PER_WEEK, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND];

const EXAMPLES = 'e.g. P7D, PT1H, P1DT12H, PT0.5S';

/**
 * The longest duration the config takes (about 273 years; null turns a limit off). A date is at most 8.64e15 ms from
 * the epoch: a longer one, added to now (a snapshot's expiresAt, an instance's next scheduled snapshot, an export
 * link's expiry), named no date, and every answer holding it failed.
 */
export const LONGEST_CONFIG_DURATION = 'P100000D';
export const LONGEST_CONFIG_DURATION_MS = 100_000 * MS_PER_DAY;

/** An issue when a parsed duration is longer than LONGEST_CONFIG_DURATION, else null. */
export function tooLongForConfig(text: string, ms: number): string | null {
  return ms > LONGEST_CONFIG_DURATION_MS ? `${JSON.stringify(text)} is longer than ${LONGEST_CONFIG_DURATION} (use null for no limit)` : null;
}

/**
 * Parses an ISO-8601 duration into milliseconds.
 * A decimal fraction (`.` or `,`) is allowed on the smallest component only, as ISO-8601 says,
 * and the result must be a whole number of milliseconds. Throws an Error whose message quotes
 * the text and says what is wrong; callers prefix it with the config path.
 */
export function parseDuration(text: string): number {
  if (typeof text !== 'string') {
    throw new Error(`${describe(text)} is not an ISO-8601 duration (${EXAMPLES})`);
  }
  const calendarUnit = calendarUnitIn(text);
  if (calendarUnit) {
    throw new Error(
      `${JSON.stringify(text)} uses ${calendarUnit}: only weeks, days, hours, minutes and seconds ` +
        'are supported, because retention must be an exact length of time',
    );
  }
  const match = DURATION_PATTERN.exec(text);
  const components = match ? [match[1], match[2], match[4], match[5], match[6]] : [];
  const present = components.filter((c): c is string => c !== undefined);
  const timePartIsEmpty = match?.[3] === 'T';
  if (!match || present.length === 0 || timePartIsEmpty) {
    throw new Error(`${JSON.stringify(text)} is not an ISO-8601 duration (${EXAMPLES})`);
  }
  if (present.slice(0, -1).some(hasFraction)) {
    throw new Error(
      `${JSON.stringify(text)} is not an ISO-8601 duration: only its smallest component may have a fraction`,
    );
  }

  let totalMs = 0n;
  components.forEach((component, i) => {
    if (component !== undefined) totalMs += componentMs(text, component, COMPONENT_UNITS_MS[i]);
  });
  if (totalMs > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`${JSON.stringify(text)} is too long a duration`);
  }
  return Number(totalMs);
}

/**
 * Formats milliseconds as the canonical ISO-8601 duration that parseDuration reads back:
 * days (never weeks, so 7 days is `P7D`), then hours, minutes and seconds with a millisecond
 * fraction when needed; zero components are left out and zero is `PT0S`.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new Error(`cannot format ${ms} as a duration: expected a non-negative whole number of milliseconds`);
  }
  if (ms === 0) return 'PT0S';

  const days = Math.floor(ms / MS_PER_DAY);
  const hours = Math.floor((ms % MS_PER_DAY) / MS_PER_HOUR);
  const minutes = Math.floor((ms % MS_PER_HOUR) / MS_PER_MINUTE);
  const seconds = Math.floor((ms % MS_PER_MINUTE) / MS_PER_SECOND);
  const millis = ms % MS_PER_SECOND;

  const datePart = days > 0 ? `${days}D` : '';
  let timePart = '';
  if (hours > 0) timePart += `${hours}H`;
  if (minutes > 0) timePart += `${minutes}M`;
  if (seconds > 0 || millis > 0) {
    const fraction = millis > 0 ? '.' + String(millis).padStart(3, '0').replace(/0+$/, '') : '';
    timePart += `${seconds}${fraction}S`;
  }
  return `P${datePart}${timePart ? 'T' + timePart : ''}`;
}

/** 'years' or 'months' when the date part (before T) uses them; P1M is months, PT1M minutes. */
function calendarUnitIn(text: string): string | null {
  if (!text.startsWith('P')) return null;
  const datePart = text.slice(1).split('T')[0];
  if (/\dY/.test(datePart)) return 'years';
  if (/\dM/.test(datePart)) return 'months';
  return null;
}

function hasFraction(component: string): boolean {
  return /[.,]/.test(component);
}

/** Exact arithmetic, so PT0.07S is 70 ms and not 70.00000000000001. */
function componentMs(text: string, component: string, unitMs: number): bigint {
  const [whole, fraction = ''] = component.split(/[.,]/);
  const scale = 10n ** BigInt(fraction.length);
  const scaledMs = BigInt(whole + fraction) * BigInt(unitMs);
  if (scaledMs % scale !== 0n) {
    throw new Error(`${JSON.stringify(text)} is finer than a millisecond`);
  }
  return scaledMs / scale;
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
