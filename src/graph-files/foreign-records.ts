// Checking a foreign file's records against the graph's rules, and encoding them for GraphLoader.insertKeyed.
import { MAX_FRAME_BYTES } from '../archive/archive-frame';
import { MAX_RECORD_ID, recordProblem } from '../archive/record-validation';
import { MAX_PROPERTY_DEPTH, nameProblem, shortJson } from '../graph/graph-rules';
import { setProperty } from '../graph/records';
import { graphFileError } from './graph-file-error';
import type { ForeignRecord, GraphFileReader } from './graph-file-format';

/**
 * Throws graphFileError naming the record when it breaks the graph's rules (graph-rules.ts, the archive's record
 * rules): empty or repeated labels, a bad type, properties nesting too deep or numbers JSON cannot hold exactly.
 */
export function assertValidRecord(record: ForeignRecord, reader: Pick<GraphFileReader, 'describe'>): void {
  let problem = problemOf(record);
  // Java writes a negative zero double as -0.0 (APOC, neo4j-admin files): JSON, and so Snapgraph's values, have no -0,
  // which the archive's rules refuse. It is 0 here, as JSON.stringify would write it anyway. Looked for only when a
  // record has a problem: most never hold one.
  if (problem && replaceNegativeZeros(record.properties)) problem = problemOf(record);
  if (problem) throw graphFileError(reader.describe(record.at), `the ${record.kind} ${problem}`);
  const bytes = encodedBytes(record);
  if (bytes > MAX_FRAME_BYTES) {
    throw graphFileError(
      reader.describe(record.at),
      `the ${record.kind} takes ${bytes} bytes once encoded, more than the ${MAX_FRAME_BYTES} a record of a Snapgraph archive may take ` +
        '(a snapshot holding it could never be exported)',
    );
  }
}

/**
 * What the record's line in an archive may take at most (its newline and the largest ids included), or less when that
 * is surely within a frame. A file's line is bounded in characters, not bytes: 34 Mi characters of "é" fit a line but
 * take 68 MiB of UTF-8, and an archive record is one frame at most: the restore succeeded, and exporting failed.
 * Measured exactly only when a bound (6 bytes per character, JSON's longest escape) says it might not fit.
 */
function encodedBytes(record: ForeignRecord): number {
  const largest = String(MAX_RECORD_ID);
  const fields = record.kind === 'node' ? ['N', largest, record.labels, record.properties] : ['R', largest, record.type, largest, largest, record.properties];
  if (boundOf(fields, 0) + 1 <= MAX_FRAME_BYTES) return 0;
  return Buffer.byteLength(JSON.stringify(fields), 'utf8') + 1;
}

/** An upper bound of the bytes of `value` as JSON (the record's depth was checked: recursion stays shallow). */
function boundOf(value: unknown, depth: number): number {
  if (typeof value === 'string') return 6 * value.length + 2;
  if (typeof value !== 'object' || value === null || depth > MAX_PROPERTY_DEPTH) return 32;
  let bytes = 2;
  if (Array.isArray(value)) {
    for (const item of value) bytes += 1 + boundOf(item, depth + 1);
    return bytes;
  }
  for (const key in value) bytes += 6 * key.length + 4 + boundOf((value as Record<string, unknown>)[key], depth + 1);
  return bytes;
}

function problemOf(record: ForeignRecord): string | undefined {
  return record.kind === 'node'
    ? recordProblem('node', ['N', '1', record.labels, record.properties])
    : nameProblem('relationship type', record.type) ?? recordProblem('relationship', ['R', '1', record.type, '1', '1', record.properties]);
}

/** The insertKeyed tuple line of a checked record, given its fresh id. */
export function keyedLine(record: ForeignRecord, id: number): string {
  if (record.kind === 'node') {
    return `[${record.at},${JSON.stringify(record.key)},"${id}",${JSON.stringify(record.labels)},${JSON.stringify(record.properties)}]`;
  }
  return (
    `[${record.at},"${id}",${JSON.stringify(record.type)},${JSON.stringify(record.startKey)},${JSON.stringify(record.endKey)},` +
    `${JSON.stringify(record.properties)},${record.key === null ? 'null' : JSON.stringify(record.key)}]`
  );
}

/** A property value for a message. */
export const describeValue = shortJson;

/**
 * Replaces every -0 in `value`'s lists and maps with 0; true when there was one. Not deeper than the graph's rules let
 * values nest (a record nesting deeper is refused for that, and would overflow the stack here).
 */
function replaceNegativeZeros(value: Record<string, unknown> | unknown[], depth = 0): boolean {
  let replaced = false;
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    if (Object.is(item, -0)) {
      if (Array.isArray(value)) value[Number(key)] = 0;
      else setProperty(value, key, 0);
      replaced = true;
    } else if (typeof item === 'object' && item !== null && depth < MAX_PROPERTY_DEPTH && replaceNegativeZeros(item as Record<string, unknown>, depth + 1)) {
      replaced = true;
    }
  }
  return replaced;
}
