// Numbers in files: Snapgraph's property values are JSON numbers (IEEE doubles). A Neo4j integer beyond ±2^53 would
// silently become another number, so it is refused instead; a float that large (written 1.0E20) is held exactly.
import { MAX_PROPERTY_DEPTH } from '../graph/graph-rules';
import { cypherNumber } from './cypher-values';

/**
 * True when `value` (or a list element or map value, at any depth the graph's rules allow) is a whole number beyond
 * ±2^53: it may have lost digits on the way in. Values nesting deeper are refused for that by the record rules, and
 * would overflow the stack here.
 */
export function holdsUnsafeWholeNumber(value: unknown, depth = 0): boolean {
  return holdsNumber(value, (n) => Number.isInteger(n) && !Number.isSafeInteger(n), depth);
}

/** True when `value` (or a list element or map value, as deep as the graph's rules allow) is a number `test` accepts. */
export function holdsNumber(value: unknown, test: (n: number) => boolean, depth = 0): boolean {
  if (typeof value === 'number') return test(value);
  if (typeof value !== 'object' || value === null || depth >= MAX_PROPERTY_DEPTH) return false;
  return Object.values(value).some((item) => holdsNumber(item, test, depth + 1));
}

// A JSON string (skipped: its digits are text) or an integer literal of 16 digits or more. The string's pattern is
// unrolled ("[^"\\]*(?:\\.[^"\\]*)*"): an alternation repeated per character overflows V8's regexp stack on long strings.
const STRING_OR_LONG_INTEGER = /"[^"\\]*(?:\\.[^"\\]*)*"|(?<![\w.])-?\d{16,}(?![\d.eE])/g;

/** The first integer literal in the JSON `text` beyond ±2^53 (written without fraction or exponent, outside strings), if any. */
export function unsafeIntegerLiteral(text: string): string | undefined {
  // Most texts hold no run of 16 digits at all: they are not scanned string by string.
  if (!/\d{16}/.test(text)) return undefined;
  for (const [match] of text.matchAll(STRING_OR_LONG_INTEGER)) {
    if (match.charCodeAt(0) !== 0x22 && !Number.isSafeInteger(Number(match))) return match;
  }
  return undefined;
}

export const UNSAFE_INTEGER = 'beyond ±9007199254740991 (2^53 - 1), the largest integer Snapgraph holds exactly';

/**
 * `value` as JSON, with a whole double beyond ±2^53 written as APOC writes a double (1.0E20): JSON.stringify writes it
 * as digits up to 1e21, which a reader (rightly, for an integer) refuses as beyond what Snapgraph holds exactly, so an
 * export would not restore (APOC JSON's properties, GraphML's maps). Such numbers are rare: the text is built by hand
 * only when JSON.stringify's holds a run of digits that long.
 */
export function jsonKeepingDoubles(value: unknown): string {
  const text = JSON.stringify(value);
  return unsafeIntegerLiteral(text) === undefined ? text : jsonWithDoubles(value);
}

/** Every other value as JSON.stringify writes it, so that the rest of the text is byte for byte the same. */
function jsonWithDoubles(value: unknown): string {
  if (typeof value === 'number') return writtenAsBareDigits(value) ? cypherNumber(value, false) : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jsonWithDoubles).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const map = value as Record<string, unknown>;
    return `{${Object.keys(map).map((key) => `${JSON.stringify(key)}:${jsonWithDoubles(map[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A whole double past ±2^53 that JSON.stringify writes as digits (it gives an exponent from 1e21 on). */
const writtenAsBareDigits = (value: number) => Number.isInteger(value) && !Number.isSafeInteger(value) && Math.abs(value) < 1e21;
