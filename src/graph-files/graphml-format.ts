// GraphML, as apoc.export.graphml.all writes it with useTypes:true (XmlGraphMLWriter) and apoc.import.graphml reads it
// with readLabels:true (XmlGraphMLReader):
//   <?xml version="1.0" encoding="UTF-8"?>
//   <graphml xmlns="http://graphml.graphdrawing.org/xmlns" …>
//   <key id="name" for="node" attr.name="name" attr.type="string"/>
//   <key id="values" for="node" attr.name="values" attr.type="string" attr.list="long"/>
//   <key id="labels" for="node" attr.name="labels" attr.type="string"/>
//   <key id="label" for="edge" attr.name="label" attr.type="string"/>
//   <graph id="G" edgedefault="directed">
//   <node id="n0" labels=":Foo:Bar"><data key="labels">:Foo:Bar</data><data key="name">foo</data></node>
//   <edge id="e0" source="n0" target="n1" label="KNOWS"><data key="label">KNOWS</data></edge>
//   </graph>
//   </graphml>
// Values are typed by their key (int/long/float/double/boolean/string, attr.list arrays as JSON lists); data naming an
// undeclared key is a string, as APOC reads it. Snapgraph's own exports mark map values with snapgraph.type="map" on
// the key (the value is JSON), so that they come back as maps. Nested graphs, hyperedges and ports are refused.
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { setProperty } from '../graph/records';
import { graphFileError } from './graph-file-error';
import type { ForeignRecord, GraphFileFormat, GraphFileReader } from './graph-file-format';
import { SNAPGRAPH_TYPE_ATTRIBUTE, writeGraphml } from './graphml-writer';
import { holdsUnsafeWholeNumber, UNSAFE_INTEGER, unsafeIntegerLiteral } from './json-values';
import { MAX_TOKEN_CHARS, XmlSyntaxError, type XmlToken, XmlTokenizer } from './xml-tokens';

/**
 * The root element, after what may come before it: processing instructions (the XML declaration), comments and a
 * document type. Each of these matches one way only (up to its first end): one that could also end at a later one was
 * tried every way (2^n) before a file that is not GraphML was given up, on the event loop; 40 <?a?> took an hour.
 */
const GRAPHML_START = /^\uFEFF?\s*(?:(?:<\?(?:[^?]|\?(?!>))*\?>|<!--(?:[^-]|-(?!->))*-->|<!DOCTYPE[^>[]*(?:\[[^\]]*\]\s*)?>)\s*)*<(?:[A-Za-z_][\w.-]*:)?graphml[\s>/]/;

export const GRAPHML_TYPES = ['boolean', 'int', 'long', 'float', 'double', 'string'] as const;
export type GraphmlType = (typeof GRAPHML_TYPES)[number];
/** An edge without a label (files not written by APOC) gets the type apoc.import.graphml gives it. */
const DEFAULT_RELATIONSHIP_TYPE = 'RELATED';
/** APOC's label separator (XmlGraphMLReader.LABEL_SPLIT). */
const LABEL_SPLIT = / *: */;

export const graphmlFormat: GraphFileFormat = {
  kind: 'GRAPHML',
  extension: '.graphml',
  contentType: 'application/graphml+xml',
  detect(head: Buffer): boolean {
    return GRAPHML_START.test(head.toString('utf8'));
  },
  open: (input) => new GraphmlReader(input),
  write: writeGraphml,
};

interface Key {
  name: string;
  type: GraphmlType;
  list: GraphmlType | null;
  map: boolean;
  /** yEd's graphics (a key with yfiles.type): XML, not a value; its data is skipped. */
  graphics?: boolean;
  /** The value of the key's <default>, given to every node (or edge) without data for it. */
  defaultValue?: unknown;
}

/** The element being read: a node or edge (collecting data), a key (its default), or a data or default value. */
interface OpenRecord {
  kind: 'node' | 'edge';
  line: number;
  id: string | null;
  labels: string[];
  type: string | null;
  source: string;
  target: string;
  properties: Record<string, unknown>;
}

const enum Where {
  Document,
  Graphml,
  Key,
  Graph,
  Record,
  Value,
}

/** The most <key> declarations a file may hold (a graph's property names, each declared once per node or edge). */
const MAX_KEYS = 100_000;

class GraphmlReader implements GraphFileReader {
  private bytes = 0;
  private readonly keys = { node: new Map<string, Key>(), edge: new Map<string, Key>() };
  /** Of `keys`, those with a <default>: given to each node or edge as it opens (all keys looked at was O(keys) each). */
  private readonly keysWithDefaults = { node: new Map<string, Key>(), edge: new Map<string, Key>() };
  private keysDeclared = 0;
  /** What each open element is (for the ones the reader follows); `skip` counts the depth of elements ignored. */
  private readonly stack: Where[] = [];
  private skip = 0;
  private record: OpenRecord | null = null;
  private key: { id: string; targets: Array<'node' | 'edge'>; key: Key } | null = null;
  /** The value being collected: its key id and line, and its text. */
  private value: { element: 'data' | 'default'; keyId: string; line: number; text: string[]; chars: number } | null = null;

  constructor(private readonly input: Readable) {}

  describe(at: number): string {
    return `the <${at % 2 === 1 ? 'edge' : 'node'}> element on line ${Math.floor(at / 2)}`;
  }

  bytesRead(): number {
    return this.bytes;
  }

  async *records(): AsyncGenerator<ForeignRecord[]> {
    const decoder = new StringDecoder('utf8');
    const tokenizer = new XmlTokenizer();
    let first = true;
    try {
      for await (const piece of this.input as AsyncIterable<Buffer>) {
        this.bytes += piece.length;
        const text = decoder.write(piece);
        if (first && text.length > 0) {
          first = false;
          this.checkEncoding(piece, text);
        }
        const records = this.consume(tokenizer.write(text));
        if (records.length > 0) yield records;
      }
      const records = this.consume([...tokenizer.write(decoder.end()), ...tokenizer.end()]);
      if (records.length > 0) yield records;
    } catch (error) {
      if (error instanceof XmlSyntaxError) throw graphFileError(`line ${error.line}`, `${error.problem} (the file is not well-formed XML)`);
      throw error;
    }
  }

  private checkEncoding(piece: Buffer, text: string): void {
    if ((piece[0] === 0xff && piece[1] === 0xfe) || (piece[0] === 0xfe && piece[1] === 0xff)) {
      throw graphFileError('line 1', 'the file is UTF-16; Snapgraph reads GraphML in UTF-8 (as APOC writes it)');
    }
    const declared = /^\uFEFF?<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']/.exec(text)?.[1];
    if (declared !== undefined && !/^(?:utf-?8|us-ascii)$/i.test(declared)) {
      throw graphFileError('line 1', `the file declares the encoding ${JSON.stringify(declared)}; Snapgraph reads GraphML in UTF-8 (as APOC writes it)`);
    }
  }

  private consume(tokens: XmlToken[]): ForeignRecord[] {
    const out: ForeignRecord[] = [];
    for (const token of tokens) {
      if (token.kind === 'text') {
        if (this.skip === 0) this.addText(token.text, token.line);
        continue;
      }
      if (this.skip > 0) {
        this.skip += token.kind === 'open' ? 1 : -1;
        continue;
      }
      if (token.kind === 'open') this.open(localName(token.name), token.attributes, token.line);
      else this.close(out);
    }
    return out;
  }

  private open(name: string, attributes: Map<string, string>, line: number): void {
    const where = this.stack.length === 0 ? Where.Document : this.stack[this.stack.length - 1];
    const fail = (problem: string) => graphFileError(`the <${name}> element on line ${line}`, problem);
    const enter = (next: Where): void => void this.stack.push(next);
    if (name === 'graph' && where !== Where.Graphml) throw fail('a graph inside a node or edge (a nested graph) is not something Snapgraph (or Neo4j) holds');
    switch (where) {
      case Where.Document:
        if (name !== 'graphml') throw fail('the root element is not <graphml>');
        return enter(Where.Graphml);
      case Where.Graphml:
        if (name === 'key') {
          // Each is kept for the whole file: a file of keys alone (an upload may be 4 GiB) would fill the memory.
          if (++this.keysDeclared > MAX_KEYS) throw fail(`the file declares more than ${MAX_KEYS} keys`);
          this.key = this.keyOf(attributes, fail);
          return enter(Where.Key);
        }
        if (name === 'graph') return enter(Where.Graph);
        break;
      case Where.Key:
        if (name === 'default') {
          this.value = { element: 'default', keyId: this.key!.id, line, text: [], chars: 0 };
          return enter(Where.Value);
        }
        break;
      case Where.Graph:
        if (name === 'node' || name === 'edge') {
          this.record = this.recordOf(name, attributes, fail, line);
          return enter(Where.Record);
        }
        if (name === 'hyperedge') throw fail('hyperedges (edges joining more than two nodes) are not something Snapgraph (or Neo4j) holds');
        break;
      case Where.Record:
        if (name === 'data') {
          const keyId = attributes.get('key');
          if (keyId === undefined) throw fail('it has no key attribute');
          if (this.keys[this.record!.kind].get(keyId)?.graphics) break;
          this.value = { element: 'data', keyId, line, text: [], chars: 0 };
          return enter(Where.Value);
        }
        if (name === 'port') throw fail('ports are not something Snapgraph (or Neo4j) holds');
        break;
      case Where.Value:
        throw graphFileError(`the <${this.value!.element}> element on line ${this.value!.line}`, `it holds the element <${name}>; a value is text`);
    }
    // Elements GraphML readers do not need (desc, data of the graph itself, extensions): skipped with what they hold.
    this.skip = 1;
  }

  private close(out: ForeignRecord[]): void {
    const where = this.stack.pop();
    if (where === Where.Value) {
      const value = this.value!;
      this.value = null;
      if (value.element === 'default') {
        const key = this.key!;
        key.key.defaultValue = this.parse(key.key, value.text.join(''), `the <default> element on line ${value.line}`);
      } else {
        this.data(value.keyId, value.text.join(''), value.line);
      }
    } else if (where === Where.Key) {
      const { id, targets, key } = this.key!;
      for (const target of targets) {
        this.keys[target].set(id, key);
        if (key.defaultValue !== undefined) this.keysWithDefaults[target].set(id, key);
        else this.keysWithDefaults[target].delete(id);
      }
      this.key = null;
    } else if (where === Where.Record) {
      out.push(this.finish(this.record!));
      this.record = null;
    }
  }

  private addText(text: string, line: number): void {
    const value = this.value;
    if (!value) return;
    value.text.push(text);
    value.chars += text.length;
    if (value.chars > MAX_TOKEN_CHARS) throw graphFileError(`the <${value.element}> element on line ${line}`, `its value is longer than ${MAX_TOKEN_CHARS} characters`);
  }

  private keyOf(attributes: Map<string, string>, fail: (problem: string) => Error) {
    const id = attributes.get('id');
    if (id === undefined) throw fail('the key has no id attribute');
    const typeOf = (attribute: string): GraphmlType | null => {
      const text = attributes.get(attribute);
      if (text === undefined) return null;
      const type = text.trim().toLowerCase();
      if (!(GRAPHML_TYPES as readonly string[]).includes(type)) {
        throw fail(`${attribute}="${text}" is not a GraphML type (${GRAPHML_TYPES.join(', ')})`);
      }
      return type as GraphmlType;
    };
    const marker = attributes.get(SNAPGRAPH_TYPE_ATTRIBUTE);
    if (marker !== undefined && marker !== 'map') throw fail(`${SNAPGRAPH_TYPE_ATTRIBUTE}="${marker}" is not a type Snapgraph writes (only "map")`);
    const domain = attributes.get('for') ?? 'all';
    const targets: Array<'node' | 'edge'> = domain === 'node' || domain === 'edge' ? [domain] : domain === 'all' ? ['node', 'edge'] : [];
    if (attributes.has('yfiles.type')) return { id, targets, key: { name: id, type: 'string' as const, list: null, map: false, graphics: true } };
    const key: Key = { name: attributes.get('attr.name') ?? id, type: typeOf('attr.type') ?? 'string', list: typeOf('attr.list'), map: marker === 'map' };
    return { id, targets, key };
  }

  private recordOf(kind: 'node' | 'edge', attributes: Map<string, string>, fail: (problem: string) => Error, line: number): OpenRecord {
    const properties: Record<string, unknown> = {};
    for (const key of this.keysWithDefaults[kind].values()) setProperty(properties, key.name, key.defaultValue);
    const id = attributes.get('id') ?? null;
    const record: OpenRecord = { kind, line, id, labels: [], type: null, source: '', target: '', properties };
    if (kind === 'node') {
      if (id === null) throw fail('the node has no id attribute');
      const labels = attributes.get('labels');
      if (labels !== undefined) this.addLabels(record, labels);
    } else {
      const source = attributes.get('source');
      const target = attributes.get('target');
      if (source === undefined || target === undefined) throw fail(`the edge has no ${source === undefined ? 'source' : 'target'} attribute`);
      record.source = source;
      record.target = target;
      record.type = attributes.get('label') ?? null;
    }
    return record;
  }

  private addLabels(record: OpenRecord, text: string): void {
    for (const part of text.trim().split(LABEL_SPLIT)) {
      const label = part.trim();
      if (label !== '' && !record.labels.includes(label)) record.labels.push(label);
    }
  }

  /** A <data> element of the open node or edge. */
  private data(keyId: string, text: string, line: number): void {
    const record = this.record!;
    if (record.kind === 'node' && keyId === 'labels') return this.addLabels(record, text);
    if (record.kind === 'edge' && keyId === 'label') {
      record.type ??= text.trim().replace(/^:/, '');
      return;
    }
    const key = this.keys[record.kind].get(keyId) ?? { name: keyId, type: 'string', list: null, map: false };
    setProperty(record.properties, key.name, this.parse(key, text, `the <data> element on line ${line}`));
  }

  private finish(record: OpenRecord): ForeignRecord {
    const at = record.line * 2 + (record.kind === 'edge' ? 1 : 0);
    if (record.kind === 'node') return { kind: 'node', at, key: record.id!, labels: record.labels, properties: record.properties };
    const type = record.type === null || record.type === '' ? DEFAULT_RELATIONSHIP_TYPE : record.type;
    return { kind: 'relationship', at, key: record.id, type, startKey: record.source, endKey: record.target, properties: record.properties };
  }

  /** The value of `text` for `key` (as XmlGraphMLReader.Key.parseValue, stricter: a malformed value is refused). */
  private parse(key: Key, text: string, where: string): unknown {
    const fail = (problem: string) => graphFileError(where, `${JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text)} ${problem}`);
    const plain = !key.map && key.list === null && key.type === 'string';
    if (plain) return text;
    const trimmed = text.trim();
    // APOC: an empty value is the key's default, or the empty string.
    if (trimmed === '') return key.defaultValue ?? '';
    if (key.map) {
      const value = parseJson(trimmed);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('is not a JSON object (the key is marked snapgraph.type="map")');
      const literal = unsafeIntegerLiteral(trimmed);
      if (literal && holdsUnsafeWholeNumber(value)) throw fail(`holds the integer ${literal}, ${UNSAFE_INTEGER}`);
      return value;
    }
    if (key.list !== null) {
      const list = parseJson(trimmed);
      const type = key.list;
      if (!Array.isArray(list)) throw fail(`is not a JSON list (the key has attr.list="${type}")`);
      if (list.some((element) => !isOfType(element, type))) throw fail(`is not a list of ${type} values (the key has attr.list="${type}")`);
      if ((type === 'int' || type === 'long') && holdsUnsafeWholeNumber(list)) throw fail(`holds the integer ${unsafeIntegerLiteral(trimmed) ?? ''}, ${UNSAFE_INTEGER}`);
      return list;
    }
    switch (key.type) {
      case 'boolean':
        if (!/^(?:true|false)$/i.test(trimmed)) throw fail('is not a boolean (true or false)');
        return trimmed.toLowerCase() === 'true';
      case 'int':
      case 'long': {
        if (!/^[+-]?\d+$/.test(trimmed)) throw fail(`is not an integer (the key has attr.type="${key.type}")`);
        const value = Number(trimmed);
        if (!Number.isSafeInteger(value)) throw fail(`is ${UNSAFE_INTEGER}`);
        return value;
      }
      default: {
        // float, double: Java's Double.parseDouble decimal forms (a trailing d or f included); NaN and Infinity are refused.
        if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[dDfF]?$/.test(trimmed)) {
          throw fail(`is not a finite number (the key has attr.type="${key.type}"; NaN and Infinity are not values Snapgraph holds)`);
        }
        const value = Number(trimmed.replace(/[dDfF]$/, ''));
        if (!Number.isFinite(value)) throw fail('is beyond the range of a double');
        return value;
      }
    }
  }
}

/** The name without its namespace prefix (APOC reads local names). */
function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon === -1 ? name : name.slice(colon + 1);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isOfType(value: unknown, type: GraphmlType): boolean {
  switch (type) {
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
    case 'int':
    case 'long':
      return typeof value === 'number' && Number.isInteger(value);
    default:
      return typeof value === 'number';
  }
}
