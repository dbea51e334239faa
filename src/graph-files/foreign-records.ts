// Checking a foreign file's records against the graph's rules, and encoding them for GraphLoader.insertKeyed.
import { recordProblem } from '../archive/record-validation';
import { nameProblem, shortJson } from '../graph/graph-rules';
import { graphFileError } from './graph-file-error';
import type { ForeignRecord, GraphFileReader } from './graph-file-format';

/**
 * Throws graphFileError naming the record when it breaks the graph's rules (graph-rules.ts, the archive's record
 * rules): empty or repeated labels, a bad type, properties nesting too deep or numbers JSON cannot hold exactly.
 */
export function assertValidRecord(record: ForeignRecord, reader: Pick<GraphFileReader, 'describe'>): void {
  const problem =
    record.kind === 'node'
      ? recordProblem('node', ['N', '1', record.labels, record.properties])
      : nameProblem('relationship type', record.type) ??
        recordProblem('relationship', ['R', '1', record.type, '1', '1', record.properties]);
  if (problem) throw graphFileError(reader.describe(record.at), `the ${record.kind} ${problem}`);
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
