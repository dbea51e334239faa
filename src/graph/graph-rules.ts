// What a graph may hold, wherever its data comes from: the API's writes and restored archives follow the same
// rules, so that a restore never makes a graph the API could not have made (ids aside: those an archive keeps).

/** Labels and relationship types: 1 to this many characters, counted as JavaScript counts them (UTF-16 code units: an emoji is 2). */
export const MAX_NAME_LENGTH = 200;
/**
 * How deep a record's properties may nest, the properties object included. SQLite's JSON functions stop at 1,000
 * levels (a batch adds a few); deeper maps would fail as internal errors.
 */
export const MAX_PROPERTY_DEPTH = 100;

/**
 * Distinct labels a graph may hold, and distinct relationship types: every statistic, snapshot's contents and file
 * inspection lists them all, and an archive's header (4 MiB at most) too. Unbounded, one file with a million
 * distinct labels made the server hold, sort and answer all of them (gigabytes) for any key that inspected it.
 */
export const MAX_DISTINCT_NAMES = 10_000;

/** Why a graph with `count` distinct names of a kind (labels, or relationship types) may not be, or undefined. */
export function distinctNamesProblem(kind: 'label' | 'type', count: number): string | undefined {
  if (count <= MAX_DISTINCT_NAMES) return undefined;
  return `it would hold ${count} distinct ${kind === 'label' ? 'labels' : 'relationship types'}; a graph holds at most ${MAX_DISTINCT_NAMES}`;
}

/** In a `u` pattern a surrogate pair is one code point: only a lone surrogate matches. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why `value` cannot be a label or a relationship type, or undefined. SQLite stores names as text, which cannot
 * hold a lone UTF-16 surrogate: it would come back as another string.
 */
export function nameProblem(what: string, value: unknown): string | undefined {
  if (typeof value !== 'string') return `${what} ${shortJson(value)} is not a string`;
  if (value.length === 0) return `${what} is empty`;
  if (value.length > MAX_NAME_LENGTH) return `${what} is longer than ${MAX_NAME_LENGTH} characters (UTF-16 code units: an emoji counts 2)`;
  if (LONE_SURROGATE.test(value)) return `${what} ${shortJson(value)} holds a lone UTF-16 surrogate`;
  return undefined;
}

/** A value for a message: JSON, cut short. */
export function shortJson(value: unknown): string {
  let text: string;
  try {
    text = value === undefined ? 'undefined' : JSON.stringify(value);
  } catch {
    // JSON.stringify recurses, JSON.parse does not: a value a file nests a hundred thousand levels deep overflows the stack here.
    return Array.isArray(value) ? '[...]' : '{...}';
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
