// A small streaming XML tokenizer for graph files (GraphML): elements, attributes, text (entities, character
// references and CDATA decoded), comments and processing instructions skipped, with the line each token starts on.
// It checks well-formedness as far as a reader of data needs it (one root, tags closed in order, known entities,
// quoted attributes) and holds at most one token (capped at MAX_TOKEN_CHARS) in memory. Document type declarations
// with an internal subset (entity definitions) are refused: they are where XML's memory bombs live.

/** A tag, text run or attribute value longer than this is refused: memory stays bounded whatever the file holds. */
export const MAX_TOKEN_CHARS = 64 * 1024 * 1024;
/**
 * Elements open at once (each one's name is kept until it closes) past this are refused: otherwise a file of `<a>`
 * over and over, which a reader skips as an unknown element, would hold a name for every 3 bytes of it. GraphML needs
 * 5 (graphml, graph, node, data, and an element a skipped extension may nest); libxml2 allows 256 by default.
 */
export const MAX_DEPTH = 1000;

export type XmlToken =
  | { kind: 'open'; name: string; attributes: Map<string, string>; line: number }
  | { kind: 'close'; name: string; line: number }
  | { kind: 'text'; text: string; line: number };

/** A file that is not well-formed XML; `line` is where the problem is. */
export class XmlSyntaxError extends Error {
  constructor(
    readonly problem: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${problem}`);
  }
}

const NAME = /^[A-Za-z_:\u00C0-\uFFFF][A-Za-z0-9_:.\-\u00B7\u00C0-\uFFFF]*$/;
const ATTRIBUTE = /\s+([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;
const TRAILING_SPACE = /\s*$/y;
/** Names already found valid (a file uses a handful of element and attribute names, over and over). */
const validNames = new Set<string>();
function isName(name: string): boolean {
  if (validNames.has(name)) return true;
  if (!NAME.test(name)) return false;
  if (validNames.size < 10_000) validNames.add(name);
  return true;
}
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
// Characters XML 1.0 does not allow in a document (also not as character references).
/** A quick test for the characters NOT_XML_CHAR looks at closely (surrogates are fine in pairs). */
const SUSPECT_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/;
const NOT_XML_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Feed it decoded text with write(), in pieces of any size; each call returns the tokens completed so far. end() checks
 * that the document is complete. A self-closing element gives an `open` and a `close` token.
 */
export class XmlTokenizer {
  private buffer = '';
  /** Line of buffer[0]. */
  private line = 1;
  /** A CR at the end of the last piece, held back in case an LF follows. */
  private pendingCr = false;
  private started = false;
  private readonly open: string[] = [];
  private rootClosed = false;
  /** Text before the next markup, from earlier pieces (a long text run spans pieces). */
  private text: string[] = [];
  private textChars = 0;
  private textLine = 1;
  /** Where the search for the end of an unfinished markup token resumes, and whether that search is in quotes. */
  private scanFrom = 0;
  private quote = '';
  /**
   * Pieces that came after `buffer` (an unfinished markup token) without its end: joined to it only once the end comes.
   * Joining each piece as it came copied the token so far every time: a 32 MiB comment in 64 KiB pieces took 9 s.
   */
  private parts: string[] = [];
  private partsChars = 0;

  write(piece: string): XmlToken[] {
    if (this.pendingCr) piece = `\r${piece}`;
    this.pendingCr = piece.endsWith('\r');
    if (this.pendingCr) piece = piece.slice(0, -1);
    // Line ends are normalised as XML requires: CRLF and CR become LF.
    if (piece.includes('\r')) piece = piece.replace(/\r\n?/g, '\n');
    if (!this.started && piece.length > 0) {
      this.started = true;
      if (piece.charCodeAt(0) === 0xfeff) piece = piece.slice(1);
    }
    if (this.scanFrom > 0 && !this.mayEndMarkup(piece)) {
      this.parts.push(piece);
      this.partsChars += piece.length;
      if (this.buffer.length + this.partsChars > MAX_TOKEN_CHARS) throw new XmlSyntaxError(`a tag is longer than ${MAX_TOKEN_CHARS} characters`, this.line);
      return [];
    }
    if (this.parts.length > 0) {
      this.parts.unshift(this.buffer);
      this.parts.push(piece);
      piece = this.parts.join('');
      this.buffer = '';
      this.parts = [];
      this.partsChars = 0;
    }
    this.buffer = this.buffer.length === 0 ? piece : this.buffer + piece;
    const tokens: XmlToken[] = [];
    this.tokenize(tokens);
    return tokens;
  }

  /**
   * Whether `piece`, which follows the unfinished markup token in `buffer` and `parts`, may end it (or holds what makes
   * it malformed): then it is joined and tokenized. Otherwise the search for the token's end moves past the piece, as
   * markupEnd would have moved it (scanFrom, and the quote a tag is inside).
   */
  private mayEndMarkup(piece: string): boolean {
    const buffer = this.buffer;
    const length = buffer.length + this.partsChars;
    const terminator = buffer.startsWith('<!--') ? '-->' : buffer.startsWith('<![CDATA[') ? ']]>' : buffer.startsWith('<?') ? '?>' : null;
    if (terminator !== null) {
      if (`${this.lastChars(terminator.length - 1)}${piece}`.includes(terminator)) return true;
      this.scanFrom = Math.max(this.scanFrom, length + piece.length - terminator.length + 1);
      return false;
    }
    if (buffer.startsWith('<!DOCTYPE')) return piece.includes('>') || piece.includes('[');
    if (buffer.length < 2 || buffer.charAt(1) === '!') return true;
    // A tag, as markupEnd reads it: its end is the first '>' outside quotes, and a '<' anywhere in it is an error.
    let quote = this.quote;
    for (let i = 0; i < piece.length; i++) {
      const c = piece.charCodeAt(i);
      if (quote !== '') {
        if (c === quote.charCodeAt(0)) quote = '';
        else if (c === 60 /* < */) return true;
      } else if (c === 62 /* > */ || c === 60) {
        return true;
      } else if (c === 34 || c === 39) {
        quote = piece.charAt(i);
      }
    }
    this.quote = quote;
    this.scanFrom = length + piece.length;
    return false;
  }

  /** The last `count` characters of the unfinished markup token (`buffer`, then `parts`). */
  private lastChars(count: number): string {
    let chars = '';
    for (let i = this.parts.length - 1; i >= 0 && chars.length < count; i--) chars = this.parts[i].slice(-count) + chars;
    if (chars.length < count) chars = this.buffer.slice(-count) + chars;
    return chars.slice(-count);
  }

  end(): XmlToken[] {
    const tokens = this.pendingCr ? this.write('\n') : [];
    if (this.buffer.length > 0) {
      throw new XmlSyntaxError(`the file ends inside markup (${JSON.stringify(this.buffer.slice(0, 40))}…)`, this.line);
    }
    this.flushText(tokens);
    if (!this.rootClosed) {
      const open = this.open[this.open.length - 1];
      throw new XmlSyntaxError(open ? `the file ends inside <${open}> (it is not closed)` : 'the file has no root element', this.line);
    }
    return tokens;
  }

  private tokenize(tokens: XmlToken[]): void {
    let buffer = this.buffer;
    let at = 0;
    for (;;) {
      if (this.scanFrom === 0) {
        // Text up to the next markup.
        const lt = buffer.indexOf('<', at);
        const end = lt === -1 ? buffer.length : lt;
        if (end > at) {
          this.addText(buffer.slice(at, end));
          at = end;
        }
        if (lt === -1) break;
      }
      const markupEnd = this.markupEnd(buffer, at);
      if (markupEnd === -1) break;
      this.flushText(tokens);
      const markup = buffer.slice(at, markupEnd);
      this.markup(markup, tokens);
      this.line += countLines(markup);
      at = markupEnd;
      this.scanFrom = 0;
      this.quote = '';
    }
    this.buffer = buffer = buffer.slice(at);
    if (this.scanFrom > 0) this.scanFrom -= at;
    if (buffer.length > MAX_TOKEN_CHARS) throw new XmlSyntaxError(`a tag is longer than ${MAX_TOKEN_CHARS} characters`, this.line);
  }

  /** The index just past the markup starting at `at` (a '<'), or -1 when the buffer does not hold all of it yet. */
  private markupEnd(buffer: string, at: number): number {
    const next = buffer.charAt(at + 1);
    if (next === '!') {
      if (buffer.startsWith('<!--', at)) return endAfter(buffer, '-->', Math.max(at + 4, this.scanFrom), (from) => this.wait(from));
      if (buffer.length < at + 9) return this.wait(at + 1);
      if (buffer.startsWith('<![CDATA[', at)) return endAfter(buffer, ']]>', Math.max(at + 9, this.scanFrom), (from) => this.wait(from));
      if (buffer.startsWith('<!DOCTYPE', at)) {
        const close = buffer.indexOf('>', at);
        const bracket = buffer.indexOf('[', at);
        if (bracket !== -1 && (close === -1 || bracket < close)) {
          throw new XmlSyntaxError('the document type declaration has an internal subset (entity definitions), which Snapgraph does not read', this.line);
        }
        return close === -1 ? this.wait(at + 1) : close + 1;
      }
      throw new XmlSyntaxError(`unknown markup ${JSON.stringify(buffer.slice(at, at + 9))}`, this.line);
    }
    if (next === '?') return endAfter(buffer, '?>', Math.max(at + 2, this.scanFrom), (from) => this.wait(from));
    if (next === '') return this.wait(at + 1);
    // A tag: up to the first '>' outside quotes.
    let i = Math.max(at + 1, this.scanFrom);
    let quote = this.quote;
    for (; i < buffer.length; i++) {
      const c = buffer.charCodeAt(i);
      if (quote !== '') {
        if (c === quote.charCodeAt(0)) quote = '';
        else if (c === 60 /* < */) throw new XmlSyntaxError("'<' inside an attribute value (write it as &lt;)", this.line + countLines(buffer.slice(at, i)));
      } else if (c === 62 /* > */) {
        return i + 1;
      } else if (c === 34 || c === 39) {
        quote = buffer.charAt(i);
      } else if (c === 60) {
        throw new XmlSyntaxError(`a tag is not closed before the next '<' (${JSON.stringify(buffer.slice(at, Math.min(i, at + 40)))})`, this.line);
      }
    }
    this.quote = quote;
    return this.wait(i);
  }

  private wait(from: number): number {
    this.scanFrom = Math.max(from, 1);
    return -1;
  }

  private markup(markup: string, tokens: XmlToken[]): void {
    const line = this.line;
    const second = markup.charCodeAt(1);
    if (second !== 33 /* ! */ && second !== 63 /* ? */ && second !== 47 /* / */) return this.startTag(markup, line, tokens);
    if (markup.startsWith('<!--')) return;
    if (markup.startsWith('<?')) {
      if (/^<\?xml[\s?]/i.test(markup) && (this.open.length > 0 || this.rootClosed)) {
        throw new XmlSyntaxError('the XML declaration (<?xml …?>) must be at the start of the file', line);
      }
      return;
    }
    if (markup.startsWith('<!DOCTYPE')) {
      if (this.open.length > 0 || this.rootClosed) throw new XmlSyntaxError('a document type declaration inside the document', line);
      return;
    }
    if (markup.startsWith('<![CDATA[')) {
      if (this.open.length === 0) throw new XmlSyntaxError('CDATA outside the root element', line);
      const text = markup.slice(9, -3);
      checkChars(text, line);
      tokens.push({ kind: 'text', text, line });
      return;
    }
    if (markup.startsWith('</')) {
      const name = markup.slice(2, -1).trim();
      const expected = this.open.pop();
      if (expected === undefined) throw new XmlSyntaxError(`</${name}> closes no element`, line);
      if (name !== expected) throw new XmlSyntaxError(`</${name}> where </${expected}> was expected`, line);
      if (this.open.length === 0) this.rootClosed = true;
      tokens.push({ kind: 'close', name, line });
      return;
    }
    this.startTag(markup, line, tokens);
  }

  private startTag(markup: string, line: number, tokens: XmlToken[]): void {
    const selfClosing = markup.endsWith('/>');
    const body = markup.slice(1, selfClosing ? -2 : -1);
    const nameEnd = body.search(/[\s]|$/);
    const name = body.slice(0, nameEnd);
    if (!isName(name)) throw new XmlSyntaxError(`${JSON.stringify(markup.slice(0, 40))} is not a tag`, line);
    if (this.rootClosed) throw new XmlSyntaxError(`<${name}> after the root element has ended`, line);
    const attributes = this.attributes(body, nameEnd, name, line);
    tokens.push({ kind: 'open', name, attributes, line });
    if (selfClosing) {
      if (this.open.length === 0) this.rootClosed = true;
      tokens.push({ kind: 'close', name, line });
    } else {
      if (this.open.length >= MAX_DEPTH) throw new XmlSyntaxError(`elements are nested deeper than ${MAX_DEPTH} (<${name}>)`, line);
      this.open.push(name);
    }
  }

  private attributes(body: string, from: number, element: string, line: number): Map<string, string> {
    const attributes = new Map<string, string>();
    let at = from;
    for (;;) {
      if (at === body.length) return attributes;
      ATTRIBUTE.lastIndex = at;
      const match = ATTRIBUTE.exec(body);
      if (!match) {
        TRAILING_SPACE.lastIndex = at;
        if (TRAILING_SPACE.test(body) && TRAILING_SPACE.lastIndex === body.length) return attributes;
        throw new XmlSyntaxError(`<${element}> has a malformed attribute near ${JSON.stringify(body.slice(at, at + 30).trim())} (attributes are name="value")`, line);
      }
      const name = match[1];
      if (!isName(name)) throw new XmlSyntaxError(`<${element}> has an attribute named ${JSON.stringify(name)}`, line);
      if (attributes.has(name)) throw new XmlSyntaxError(`<${element}> has the attribute ${name} twice`, line);
      // Whitespace characters in an attribute value become spaces; character references keep what they name.
      let raw = match[2] ?? match[3];
      if (raw.includes('\t') || raw.includes('\n')) raw = raw.replace(/[\t\n]/g, ' ');
      // The value ends before the closing quote; its line breaks became spaces one for one, so offsets are the tag's.
      const valueStart = ATTRIBUTE.lastIndex - 1 - raw.length;
      const lineAt = (offset: number) => line + countLines(body.slice(0, valueStart + offset));
      checkCharsAt(raw, lineAt);
      attributes.set(name, decodeEntitiesAt(raw, lineAt));
      at = ATTRIBUTE.lastIndex;
    }
  }

  private addText(piece: string): void {
    if (this.textChars === 0) this.textLine = this.line;
    this.text.push(piece);
    this.textChars += piece.length;
    this.line += countLines(piece);
    if (this.textChars > MAX_TOKEN_CHARS) throw new XmlSyntaxError(`a text is longer than ${MAX_TOKEN_CHARS} characters`, this.textLine);
  }

  private flushText(tokens: XmlToken[]): void {
    if (this.textChars === 0) return;
    const raw = this.text.length === 1 ? this.text[0] : this.text.join('');
    this.text = [];
    this.textChars = 0;
    if (this.open.length === 0) {
      const at = raw.search(/\S/);
      if (at !== -1) throw new XmlSyntaxError(`text outside the root element (${JSON.stringify(raw.trim().slice(0, 40))})`, this.textLine + countLines(raw.slice(0, at)));
      return;
    }
    if (raw.includes(']]>')) throw new XmlSyntaxError("']]>' in text (write it as ]]&gt;)", this.textLine);
    const text = decodeEntities(raw, this.textLine);
    checkChars(raw, this.textLine);
    tokens.push({ kind: 'text', text, line: this.textLine });
  }
}

function endAfter(buffer: string, terminator: string, from: number, wait: (from: number) => number): number {
  const found = buffer.indexOf(terminator, from);
  return found === -1 ? wait(Math.max(from, buffer.length - terminator.length + 1)) : found + terminator.length;
}

function countLines(text: string): number {
  let count = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) count++;
  return count;
}

function checkChars(text: string, line: number): void {
  checkCharsAt(text, (offset) => line + countLines(text.slice(0, offset)));
}

/** checkChars, with the line of an offset of `text` told by `lineAt`. */
function checkCharsAt(text: string, lineAt: (offset: number) => number): void {
  if (!SUSPECT_CHAR.test(text)) return;
  const bad = NOT_XML_CHAR.exec(text);
  if (bad) {
    const code = bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
    throw new XmlSyntaxError(`the character U+${code} is not allowed in XML`, lineAt(bad.index));
  }
}

/** Text with its entity and character references replaced by what they stand for. */
export function decodeEntities(text: string, line: number): string {
  return decodeEntitiesAt(text, (offset) => line + countLines(text.slice(0, offset)));
}

/**
 * decodeEntities, with the line of an offset of `text` told by `lineAt`: asked only for a message, as counting the lines
 * before every reference took time in the square of their number.
 */
function decodeEntitiesAt(text: string, lineAt: (offset: number) => number): string {
  if (!text.includes('&')) return text;
  return text.replace(/&([^;&\s]*);?/g, (whole, name: string, offset: number) => {
    if (!whole.endsWith(';')) throw new XmlSyntaxError(`'&' that starts no entity (write it as &amp;): ${JSON.stringify(text.slice(offset, offset + 20))}`, lineAt(offset));
    const known = ENTITIES[name];
    if (known !== undefined) return known;
    const numeric = /^#(?:x([0-9A-Fa-f]+)|([0-9]+))$/.exec(name);
    if (!numeric) throw new XmlSyntaxError(`unknown entity &${name}; (XML knows &lt; &gt; &amp; &quot; &apos; and &#…;)`, lineAt(offset));
    const code = numeric[1] !== undefined ? parseInt(numeric[1], 16) : parseInt(numeric[2], 10);
    const char = code <= 0x10ffff ? String.fromCodePoint(code) : '';
    if (char === '' || (code >= 0xd800 && code <= 0xdfff) || NOT_XML_CHAR.test(char)) {
      throw new XmlSyntaxError(`&${name}; names a character XML does not allow`, lineAt(offset));
    }
    return char;
  });
}

/** `text` escaped for XML content (`attribute`: for an attribute value in double quotes). CR and, in attributes, TAB and LF are written as character references so that they survive. */
export function escapeXml(text: string, attribute = false): string {
  return text.replace(attribute ? /[&<>"\t\n\r]/g : /[&<>\r]/g, (c) => XML_ESCAPES[c]);
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\t': '&#9;', '\n': '&#10;', '\r': '&#13;' };

/** True when `text` holds a character XML 1.0 cannot carry, even as a reference. */
export function hasNonXmlChar(text: string): boolean {
  return SUSPECT_CHAR.test(text) && NOT_XML_CHAR.test(text);
}
