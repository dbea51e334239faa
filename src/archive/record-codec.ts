// One record = one line of JSON holding a positional tuple (docs/archive-format.md, "Records"):
//   ["N", id, labels, properties]
//   ["R", id, type, startNodeId, endNodeId, properties]
// Tuples rather than objects: smaller before compression, and faster to parse.
import type { EncodedBatch, GraphRecord, PropertyMap } from '../graph/records';
import { ArchiveError } from './archive-error';

const NODE_TAG = 'N';
const RELATIONSHIP_TAG = 'R';

/** The record as one JSON line, without its newline. Throws INVALID_RECORD for a malformed record. */
export function encodeRecordLine(record: GraphRecord): string {
  try {
    if (record.kind === 'node') {
      const { id, labels, properties } = record.node;
      if (typeof id !== 'string' || !isStringList(labels) || !isPropertyMap(properties)) throw invalidShape(record);
      return JSON.stringify([NODE_TAG, id, labels, properties]);
    }
    if (record.kind === 'relationship') {
      const { id, type, startNodeId, endNodeId, properties } = record.relationship;
      if (
        typeof id !== 'string' ||
        typeof type !== 'string' ||
        typeof startNodeId !== 'string' ||
        typeof endNodeId !== 'string' ||
        !isPropertyMap(properties)
      ) {
        throw invalidShape(record);
      }
      return JSON.stringify([RELATIONSHIP_TAG, id, type, startNodeId, endNodeId, properties]);
    }
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    // JSON.stringify refuses BigInt values and cycles.
    throw new ArchiveError('INVALID_RECORD', `Cannot write a record: ${(err as Error).message}`, { cause: err });
  }
  throw invalidShape(record);
}

/**
 * The records of one data frame's text (newline-terminated lines). JSON strings never contain
 * a raw newline, so the lines can be parsed as one array: one JSON.parse call per frame.
 */
export function decodeRecordLines(text: string): GraphRecord[] {
  if (text.length === 0) return [];
  if (text.charCodeAt(text.length - 1) !== 0x0a) throw malformed('a data frame does not end with a complete record');
  let tuples: unknown;
  try {
    tuples = JSON.parse(`[${text.slice(0, -1).replaceAll('\n', ',')}]`);
  } catch {
    throw malformed('a data frame holds invalid JSON');
  }
  const rows = tuples as unknown[];
  const records: GraphRecord[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) records[i] = decodeTuple(rows[i]);
  return records;
}

function decodeTuple(tuple: unknown): GraphRecord {
  if (Array.isArray(tuple)) {
    if (
      tuple.length === 4 &&
      tuple[0] === NODE_TAG &&
      typeof tuple[1] === 'string' &&
      isStringList(tuple[2]) &&
      isPropertyMap(tuple[3])
    ) {
      return { kind: 'node', node: { id: tuple[1], labels: tuple[2], properties: tuple[3] } };
    }
    if (
      tuple.length === 6 &&
      tuple[0] === RELATIONSHIP_TAG &&
      typeof tuple[1] === 'string' &&
      typeof tuple[2] === 'string' &&
      typeof tuple[3] === 'string' &&
      typeof tuple[4] === 'string' &&
      isPropertyMap(tuple[5])
    ) {
      return {
        kind: 'relationship',
        relationship: { id: tuple[1], type: tuple[2], startNodeId: tuple[3], endNodeId: tuple[4], properties: tuple[5] },
      };
    }
  }
  throw malformed('a record has an unexpected shape');
}

function isStringList(value: unknown): value is string[] {
  if (!Array.isArray(value)) return false;
  for (const item of value) if (typeof item !== 'string') return false;
  return true;
}

function isPropertyMap(value: unknown): value is PropertyMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidShape(record: GraphRecord): ArchiveError {
  const kind = (record as { kind?: unknown } | null)?.kind;
  return new ArchiveError('INVALID_RECORD', `Cannot write a record of kind ${JSON.stringify(kind)}: its fields have the wrong types.`);
}

function malformed(problem: string): ArchiveError {
  return new ArchiveError('CORRUPT', `The archive is invalid: ${problem}.`);
}

/**
 * A data frame's lines grouped by kind, checking only each line's tag (`["N",` or `["R",`); the rest of the
 * tuple is validated by whoever parses it (the bulk loader, in SQL).
 */
export function splitRecordLines(text: string): EncodedBatch[] {
  if (text.length === 0) return [];
  if (text.charCodeAt(text.length - 1) !== 0x0a) throw malformed('a data frame does not end with a complete record');
  const lines = text.slice(0, -1).split('\n');
  const batches: EncodedBatch[] = [];
  for (const line of lines) {
    const kind: EncodedBatch['kind'] | null = line.startsWith('["N",') ? 'node' : line.startsWith('["R",') ? 'relationship' : null;
    if (kind === null) throw malformed('a record is not a node or relationship tuple');
    const current = batches[batches.length - 1];
    if (current?.kind === kind) current.lines.push(line);
    else batches.push({ kind, lines: [line] });
  }
  return batches;
}

const NODE_PREFIX = Buffer.from('["N",');
const RELATIONSHIP_PREFIX = Buffer.from('["R",');

/** The same check as splitRecordLines on a frame's bytes, counting runs of each kind without making strings. */
export function countRecordRuns(raw: Buffer): { kind: EncodedBatch['kind']; count: number }[] {
  if (raw.length === 0) return [];
  if (raw[raw.length - 1] !== 0x0a) throw malformed('a data frame does not end with a complete record');
  const runs: { kind: EncodedBatch['kind']; count: number }[] = [];
  for (let start = 0; start < raw.length; ) {
    const end = raw.indexOf(0x0a, start);
    const kind = raw.compare(NODE_PREFIX, 0, 5, start, start + 5) === 0 ? 'node'
      : raw.compare(RELATIONSHIP_PREFIX, 0, 5, start, start + 5) === 0 ? 'relationship' : null;
    if (kind === null || end - start < 6) throw malformed('a record is not a node or relationship tuple');
    const last = runs[runs.length - 1];
    if (last?.kind === kind) last.count += 1;
    else runs.push({ kind, count: 1 });
    start = end + 1;
  }
  return runs;
}
