// Checking a foreign file's records against the graph's rules, and encoding them for GraphLoader.insertKeyed.
import { recordProblem } from '../archive/record-validation';
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
