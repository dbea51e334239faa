// The fields of a tuple line, cut out of its text instead of parsed: what SQLite's `->` (labels, properties) and `->>`
// (ids, a type) would give for them, so that a bulk load binds them as they are. SQLite keeps a compact JSON value's
// text verbatim (escapes and number spellings included), so a slice of a compact line is exactly what `->` renders.
// Anything else (whitespace between tokens, an escaped type, a shape that is not the one expected) gives null: such a
// line goes through SQLite's JSON functions, which normalise it. The lines must already be checked records
// (archive/record-validation.ts): this tells fields apart, it does not check that a properties object is valid JSON.

const QUOTE = 0x22;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const BACKSLASH = 0x5c;
const NODE_PREFIX = '["N","';
const RELATIONSHIP_PREFIX = '["R","';
const SPACE = 0x20;
const TAB = 0x09;
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** [id, labels, properties] of a compact node line `["N","<id>",[<labels>],{<properties>}]`, or null. */
export function nodeFields(line: string): [string, string, string] | null {
  if (!line.startsWith(NODE_PREFIX)) return null;
  const idEnd = digitsEnd(line, NODE_PREFIX.length);
  if (idEnd < 0 || !punctuation(line, idEnd, QUOTE, COMMA, OPEN_BRACKET)) return null;
  const labelsStart = idEnd + 2;
  const labelsEnd = stringListEnd(line, labelsStart);
  if (labelsEnd < 0 || line.charCodeAt(labelsEnd) !== COMMA) return null;
  const properties = lastObject(line, labelsEnd + 1);
  return properties === null ? null : [line.slice(NODE_PREFIX.length, idEnd), line.slice(labelsStart, labelsEnd), properties];
}

/** [id, type, start id, end id, properties] of a compact relationship line, or null (an escaped type included). */
export function relationshipFields(line: string): [string, string, string, string, string] | null {
  if (!line.startsWith(RELATIONSHIP_PREFIX)) return null;
  const idEnd = digitsEnd(line, RELATIONSHIP_PREFIX.length);
  if (idEnd < 0 || !punctuation(line, idEnd, QUOTE, COMMA, QUOTE)) return null;
  const typeStart = idEnd + 3;
  const typeEnd = line.indexOf('"', typeStart);
  // `->>` unescapes a string: a type with a backslash in it is left to SQLite. (Looked for backwards from the type's
  // end, over the line's short head, rather than forwards into its properties.)
  if (typeEnd < 0 || line.lastIndexOf('\\', typeEnd) >= typeStart || !punctuation(line, typeEnd, QUOTE, COMMA, QUOTE)) return null;
  const startEnd = digitsEnd(line, typeEnd + 3);
  if (startEnd < 0 || !punctuation(line, startEnd, QUOTE, COMMA, QUOTE)) return null;
  const endEnd = digitsEnd(line, startEnd + 3);
  if (endEnd < 0 || !punctuation(line, endEnd, QUOTE, COMMA)) return null;
  const properties = lastObject(line, endEnd + 2);
  return properties === null
    ? null
    : [
        line.slice(RELATIONSHIP_PREFIX.length, idEnd),
        line.slice(typeStart, typeEnd),
        line.slice(typeEnd + 3, startEnd),
        line.slice(startEnd + 3, endEnd),
        properties,
      ];
}

/** The end of a run of at least one digit from `at`, or -1. */
function digitsEnd(line: string, at: number): number {
  let end = at;
  for (let c = line.charCodeAt(end); c >= 0x30 && c <= 0x39; c = line.charCodeAt(++end));
  return end > at ? end : -1;
}

function punctuation(line: string, at: number, ...codes: number[]): boolean {
  return codes.every((code, i) => line.charCodeAt(at + i) === code);
}

/** Given `[` at `at`: the index just past a compact list of strings `["a","b"]`, or -1. */
function stringListEnd(line: string, at: number): number {
  let next = at + 1;
  if (line.charCodeAt(next) === CLOSE_BRACKET) return next + 1;
  for (;;) {
    if (line.charCodeAt(next) !== QUOTE) return -1;
    const end = stringEnd(line, next);
    if (end < 0) return -1;
    const after = line.charCodeAt(end + 1);
    if (after === CLOSE_BRACKET) return end + 2;
    if (after !== COMMA) return -1;
    next = end + 2;
  }
}

/** Given a string's opening quote at `open`: the index of its closing quote (one not escaped), or -1. */
function stringEnd(line: string, open: number): number {
  for (let from = open + 1; ; ) {
    const quote = line.indexOf('"', from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (line.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

/**
 * The object from `at` to the line's closing bracket (one value: it closes there and not before), when no whitespace
 * lies outside its strings; else null.
 */
function lastObject(line: string, at: number): string | null {
  const close = line.length - 1;
  if (line.charCodeAt(at) !== OPEN_BRACE || line.charCodeAt(close) !== CLOSE_BRACKET) return null;
  let depth = 0;
  for (let from = at; ; ) {
    const quote = line.indexOf('"', from);
    const stop = quote < 0 || quote > close ? close : quote;
    for (let i = from; i < stop; i++) {
      const c = line.charCodeAt(i);
      if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        if (--depth === 0 && i !== close - 1) return null;
      } else if (c === SPACE || c === TAB || c === LINE_FEED || c === CARRIAGE_RETURN) return null;
    }
    if (stop === close) return depth === 0 ? line.slice(at, close) : null;
    const end = stringEnd(line, quote);
    if (end < 0) return null;
    from = end + 1;
  }
}
