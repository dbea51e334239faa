// APOC JSON lines, as apoc.export.json.all writes them (jsonFormat JSON_LINES, the default): one object per line,
//   {"type":"node","id":"0","labels":["User"],"properties":{"name":"Adam","born":"2015-07-04T19:32:24"}}
//   {"type":"relationship","id":"0","label":"KNOWS","properties":{…},"start":{"id":"0","labels":["User"]},"end":{…}}
// Property values are read as written (APOC writes temporal values as ISO-8601 strings and points as maps).
import { Readable } from 'node:stream';
import type { PropertyMap } from '../graph/records';
import { encodeLines } from '../runtime/text-lines';
import { holdsNumber, holdsUnsafeWholeNumber, jsonKeepingDoubles, UNSAFE_INTEGER, unsafeIntegerLiteral } from './json-values';
import { graphFileError } from './graph-file-error';
import type { ForeignRecord, GraphFileFormat, GraphFileSource } from './graph-file-format';
import { LineFileReader } from './text-lines';

export const apocJsonFormat: GraphFileFormat = {
  kind: 'APOC_JSON',
  extension: '.json',
  contentType: 'application/x-ndjson',
  detect(head: Buffer): boolean {
    const text = head.toString('utf8').replace(/^\uFEFF/, '');
    const firstLine = text.split('\n', 1)[0];
    return /^\s*\{/.test(firstLine) && /"type"\s*:\s*"(node|relationship)"/.test(firstLine);
  },
  open: (input) => new ApocJsonReader(input),
  write: (source) => Readable.from(apocJsonLines(source), { objectMode: false }),
};

class ApocJsonReader extends LineFileReader {
  async *records(): AsyncGenerator<ForeignRecord[]> {
    for await (const lines of this.lines.batches()) {
      const records: ForeignRecord[] = [];
      for (const [number, text] of lines) {
        if (text.trim() === '') continue;
        records.push(this.record(number, text));
      }
      if (records.length > 0) yield records;
    }
  }

  private record(at: number, text: string): ForeignRecord {
    const fail = (problem: string) => graphFileError(this.describe(at), problem);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw fail(`it is not valid JSON (${(error as Error).message})`);
    }
    if (!isObject(value)) throw fail('it is not a JSON object; each line of an APOC JSON file is one node or relationship object');
    const properties = value.properties ?? {};
    if (!isObject(properties)) throw fail('"properties" is not an object');
    // A whole number past 2^53 is an integer literal that lost digits, or a double written with an exponent (1.0E20),
    // held exactly: only the text tells them apart.
    const unsafe = Object.keys(properties).filter((key) => holdsUnsafeWholeNumber(properties[key]));
    const literal = unsafe.length > 0 ? unsafeIntegerLiteral(text) : undefined;
    if (literal) {
      const key = unsafe.find((name) => holdsNumber(properties[name], (n) => n === Number(literal))) ?? unsafe[0];
      throw fail(`property ${JSON.stringify(key)} holds the integer ${literal}, ${UNSAFE_INTEGER}`);
    }
    if (value.type === 'node') {
      const labels = value.labels ?? [];
      if (!Array.isArray(labels)) throw fail('"labels" is not a list');
      return { kind: 'node', at, key: idOf(value.id, '"id"', fail), labels, properties };
    }
    if (value.type === 'relationship') {
      if (typeof value.label !== 'string') throw fail('the relationship has no "label" (its type)');
      if (!isObject(value.start) || !isObject(value.end)) throw fail('the relationship has no "start" or "end" object');
      return {
        kind: 'relationship',
        at,
        key: value.id === undefined ? null : idOf(value.id, '"id"', fail),
        type: value.label,
        startKey: idOf(value.start.id, '"start.id"', fail),
        endKey: idOf(value.end.id, '"end.id"', fail),
        properties,
      };
    }
    throw fail(`"type" is ${JSON.stringify(value.type)}; it must be "node" or "relationship"`);
  }
}

/** APOC writes ids as strings; files written by hand (and APOC's own test files) also use numbers. */
function idOf(value: unknown, field: string, fail: (problem: string) => Error): string {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  throw fail(`${field} ${value === undefined ? 'is missing' : `${JSON.stringify(value)} is not an id (a string or an integer)`}`);
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The lines as APOC writes them: labels and properties left out when empty; a relationship's ends with their labels. */
async function* apocJsonLines(source: GraphFileSource): AsyncGenerator<Buffer> {
  for await (const batch of source.batches()) {
    const ends = batch.some((record) => record.kind === 'relationship')
      ? await source.nodeLabels(batch.flatMap((r) => (r.kind === 'relationship' ? [r.relationship.startNodeId, r.relationship.endNodeId] : [])))
      : new Map<string, string[]>();
    const lines: string[] = [];
    for (const record of batch) {
      if (record.kind === 'node') {
        const { id, labels, properties } = record.node;
        lines.push(`{"type":"node","id":${JSON.stringify(id)}${labelsField(labels)}${propertiesField(properties)}}`);
      } else {
        const { id, type, startNodeId, endNodeId, properties } = record.relationship;
        lines.push(
          `{"type":"relationship","id":${JSON.stringify(id)},"label":${JSON.stringify(type)}${propertiesField(properties)},` +
            `"start":{"id":${JSON.stringify(startNodeId)}${labelsField(ends.get(startNodeId) ?? [])}},` +
            `"end":{"id":${JSON.stringify(endNodeId)}${labelsField(ends.get(endNodeId) ?? [])}}}`,
        );
      }
    }
    yield encodeLines(lines);
  }
}

// APOC sorts labels (FormatUtils.getLabelsSorted); Snapgraph keeps them in the order they were given, which a round
// trip must keep: they are written in that order.
const labelsField = (labels: string[]) => (labels.length > 0 ? `,"labels":${JSON.stringify(labels)}` : '');
const propertiesField = (properties: PropertyMap) =>
  Object.keys(properties).length > 0 ? `,"properties":${jsonKeepingDoubles(properties)}` : '';
