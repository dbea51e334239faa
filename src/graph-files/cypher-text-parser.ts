// Reads the pieces of APOC's Cypher statements: names, keywords and literal values (strings, numbers, booleans, lists,
// maps, and the temporal and point functions APOC writes). Not a general Cypher parser: the statement shapes are
// matched in apoc-cypher-format.ts.
import { MAX_PROPERTY_DEPTH } from '../graph/graph-rules';
import { setProperty } from '../graph/records';
import { UNSAFE_INTEGER } from './json-values';
import { pointOf } from './cypher-values';

/** A syntax error at a character offset of the statement. */
export class CypherSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const TEMPORAL_FUNCTIONS = new Set(['date', 'datetime', 'localdatetime', 'localtime', 'time', 'duration']);
const NUMBER = /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y;
/**
 * A bare name, as APOC leaves one unquoted (Util.quote: a Java identifier without `$`), which Cypher reads: letters,
 * letter numbers, currency signs and connectors first, then also digits, combining marks and format characters. Only
 * letters and digits, a Hindi or Thai label (its vowel signs are marks) or a key such as price€ was refused.
 */
const NAME_START = String.raw`(?!\$)[\p{L}\p{Nl}\p{Sc}\p{Pc}]`;
const NAME_PART = String.raw`(?!\$)[\p{L}\p{N}\p{Sc}\p{Pc}\p{Mn}\p{Mc}\p{Cf}]`;
const IDENTIFIER = new RegExp(`${NAME_START}${NAME_PART}*`, 'uy');
const NAME_CHARACTER = new RegExp(NAME_PART, 'u');
const SPACE = /\s*/y;
/**
 * How deep values may nest in a statement: the graph's limit, and the few levels of a statement's own lists and maps
 * around a record's properties (UNWIND [{…, properties:{…}}]). Deeper values are refused here rather than by the record
 * rules: they are read by recursion, and a value nested a hundred thousand levels deep overflowed the stack.
 */
const MAX_VALUE_DEPTH = MAX_PROPERTY_DEPTH + 10;

export class CypherTextParser {
  private pos = 0;
  /** Values being read, one inside the other. */
  private depth = 0;

  constructor(private readonly text: string) {}

  get offset(): number {
    return this.pos;
  }

  fail(problem: string): never {
    throw new CypherSyntaxError(problem, this.pos);
  }

  atEnd(): boolean {
    this.skipSpaces();
    return this.pos >= this.text.length;
  }

  /** Consumes `token` (case-insensitive for words) if it comes next. */
  accept(token: string): boolean {
    this.skipSpaces();
    const next = this.text.slice(this.pos, this.pos + token.length);
    const word = /^[A-Za-z]/.test(token);
    if (word ? next.toUpperCase() !== token.toUpperCase() : next !== token) return false;
    if (word && NAME_CHARACTER.test(String.fromCodePoint(this.text.codePointAt(this.pos + token.length) ?? 32))) return false;
    this.pos += token.length;
    return true;
  }

  expect(...tokens: string[]): void {
    for (const token of tokens) if (!this.accept(token)) this.fail(`expected ${token} ${this.here()}`);
  }

  peek(token: string): boolean {
    const at = this.pos;
    const found = this.accept(token);
    this.pos = at;
    return found;
  }

  /** A name: an identifier or a `quoted` one (`` inside stands for one backtick). */
  name(): string {
    this.skipSpaces();
    if (this.text.charAt(this.pos) === '`') {
      let result = '';
      for (let i = this.pos + 1; i < this.text.length; i++) {
        if (this.text.charAt(i) !== '`') {
          result += this.text.charAt(i);
          continue;
        }
        if (this.text.charAt(i + 1) === '`') {
          result += '`';
          i++;
          continue;
        }
        this.pos = i + 1;
        return result;
      }
      this.fail('a `quoted name` is not closed');
    }
    IDENTIFIER.lastIndex = this.pos;
    const match = IDENTIFIER.exec(this.text);
    if (!match) this.fail(`expected a name ${this.here()}`);
    this.pos += match[0].length;
    return match[0];
  }

  /** A literal value, as a property value: see docs/neo4j-files.md for what each Cypher type becomes. */
  value(): unknown {
    if (this.depth >= MAX_VALUE_DEPTH) this.fail(`values nest deeper than ${MAX_PROPERTY_DEPTH} levels, the most Snapgraph holds`);
    this.depth++;
    try {
      return this.valueHere();
    } finally {
      this.depth--;
    }
  }

  private valueHere(): unknown {
    this.skipSpaces();
    const c = this.text.charAt(this.pos);
    if (c === '"' || c === "'") return this.string();
    if (c === '[') return this.list();
    if (c === '{') return this.map();
    if (c === '-' || c === '.' || (c >= '0' && c <= '9')) return this.number();
    if (this.accept('true')) return true;
    if (this.accept('false')) return false;
    if (this.accept('null')) return null;
    const start = this.pos;
    const name = this.name().toLowerCase();
    if (!this.accept('(')) {
      this.pos = start;
      this.fail(`${JSON.stringify(name)} is not a value Snapgraph can load (NaN and Infinity cannot be stored either)`);
    }
    const unsupported = () => {
      this.pos = start;
      return this.fail(`${name}(…) is not a value Snapgraph can load`);
    };
    if (!TEMPORAL_FUNCTIONS.has(name) && name !== 'point') unsupported();
    const argument = this.value();
    this.expect(')');
    if (TEMPORAL_FUNCTIONS.has(name) && typeof argument === 'string') return argument;
    if (name === 'point' && isRecord(argument)) return pointOf(argument, (problem) => this.fail(problem));
    return unsupported();
  }

  map(): Record<string, unknown> {
    this.expect('{');
    const result: Record<string, unknown> = {};
    if (this.accept('}')) return result;
    do {
      const key = this.name();
      this.expect(':');
      setProperty(result, key, this.value());
    } while (this.accept(','));
    this.expect('}');
    return result;
  }

  private list(): unknown[] {
    this.expect('[');
    const result: unknown[] = [];
    if (this.accept(']')) return result;
    do result.push(this.value());
    while (this.accept(','));
    this.expect(']');
    return result;
  }

  private number(): number {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (!match) this.fail(`expected a number ${this.here()}`);
    const text = match[0];
    const value = Number(text);
    if (/^-?\d+$/.test(text) && !Number.isSafeInteger(value)) this.fail(`the integer ${text} is ${UNSAFE_INTEGER}`);
    if (!Number.isFinite(value)) this.fail(`the number ${text} is too large for a double`);
    this.pos += text.length;
    return Object.is(value, -0) ? 0 : value;
  }

  /**
   * A string literal with Cypher's escapes. Each run between escapes is found by one sticky match from where it starts:
   * looking for the next quote and the next backslash anywhere ahead scanned as far as the end of the statement for
   * every string and every escape (a list of 400,000 strings, 4 MiB, took 10 s).
   */
  private string(): string {
    const quote = this.text.charAt(this.pos);
    const run = quote === '"' ? DOUBLE_QUOTED_RUN : SINGLE_QUOTED_RUN;
    let result = '';
    let i = this.pos + 1;
    for (;;) {
      run.lastIndex = i;
      run.exec(this.text);
      const stop = run.lastIndex;
      result += this.text.slice(i, stop);
      if (stop >= this.text.length) this.fail('a string is not closed');
      if (this.text.charAt(stop) === quote) {
        this.pos = stop + 1;
        return result;
      }
      const escape = stop;
      const code = this.text.charAt(escape + 1);
      const simple = ESCAPES[code];
      if (simple !== undefined) {
        result += simple;
        i = escape + 2;
      } else if (code === 'u' || code === 'U') {
        const digits = code === 'u' ? 4 : 8;
        const hex = this.text.slice(escape + 2, escape + 2 + digits);
        if (!(code === 'u' ? HEX_4 : HEX_8).test(hex)) {
          this.pos = escape;
          this.fail(`\\${code} must be followed by ${digits} hexadecimal digits`);
        }
        const codePoint = parseInt(hex, 16);
        if (codePoint > 0x10ffff) {
          this.pos = escape;
          this.fail(`\\${code}${hex} names no Unicode character (the last is U+10FFFF)`);
        }
        result += String.fromCodePoint(codePoint);
        i = escape + 2 + digits;
      } else {
        this.pos = escape;
        this.fail(`\\${code} is not an escape Cypher knows`);
      }
    }
  }

  private skipSpaces(): void {
    SPACE.lastIndex = this.pos;
    SPACE.exec(this.text);
    this.pos = SPACE.lastIndex;
  }

  private here(): string {
    const rest = this.text.slice(this.pos, this.pos + 30);
    return rest ? `before ${JSON.stringify(rest)}` : 'at the end of the statement';
  }
}

/** A string's characters up to its closing quote or its next escape. */
const DOUBLE_QUOTED_RUN = /[^"\\]*/y;
const SINGLE_QUOTED_RUN = /[^'\\]*/y;
const HEX_4 = /^[0-9A-Fa-f]{4}$/;
const HEX_8 = /^[0-9A-Fa-f]{8}$/;
const ESCAPES: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', r: '\r', t: '\t', b: '\b', f: '\f' };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
