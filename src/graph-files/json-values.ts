// Numbers in files: Snapgraph's property values are JSON numbers (IEEE doubles). A Neo4j integer beyond ±2^53 would
// silently become another number, so it is refused instead; a float that large (written 1.0E20) is held exactly.

/** True when `value` (or a list element) is a whole number beyond ±2^53: it may have lost digits on the way in. */
export function holdsUnsafeWholeNumber(value: unknown): boolean {
  if (typeof value === 'number') return Number.isInteger(value) && !Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.some(holdsUnsafeWholeNumber);
  return false;
}

/** The first integer literal in `text` beyond ±2^53 (written without fraction or exponent), if any. */
export function unsafeIntegerLiteral(text: string): string | undefined {
  for (const match of text.matchAll(/(?<![\w.])-?\d{16,}(?![\d.eE])/g)) {
    if (!Number.isSafeInteger(Number(match[0]))) return match[0];
  }
  return undefined;
}

export const UNSAFE_INTEGER = 'beyond ±9007199254740991 (2^53 - 1), the largest integer Snapgraph holds exactly';
