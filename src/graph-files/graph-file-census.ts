// What a foreign graph file holds, read through once without storing it: counts by label and type, every record
// checked against the format and the graph's rules (not the checks that need the whole graph: repeated ids and
// relationships naming missing nodes are found when it is loaded).
import type { GraphStats, NameCount } from '../graph/records';
import type { GraphFileReader } from './graph-file-format';
import { ArchiveError } from '../archive/archive-error';
import { distinctNamesProblem } from '../graph/graph-rules';
import { assertValidRecord } from './foreign-records';

export type GraphFileCensus = Omit<GraphStats, 'storeSizeBytes'>;

export async function takeCensus(reader: GraphFileReader, signal?: AbortSignal): Promise<GraphFileCensus> {
  const labels = new Map<string, number>();
  const types = new Map<string, number>();
  let nodeCount = 0;
  let relationshipCount = 0;
  for await (const records of reader.records()) {
    signal?.throwIfAborted();
    for (const record of records) {
      assertValidRecord(record, reader);
      if (record.kind === 'node') {
        nodeCount += 1;
        for (const label of record.labels) labels.set(label, (labels.get(label) ?? 0) + 1);
      } else {
        relationshipCount += 1;
        types.set(record.type, (types.get(record.type) ?? 0) + 1);
      }
      // Refused as soon as it is past the bound, so that what is counted stays bounded too.
      const tooMany = record.kind === 'node' ? distinctNamesProblem('label', labels.size) : distinctNamesProblem('type', types.size);
      if (tooMany) throw new ArchiveError('INVALID_RECORD', `The file cannot be restored: at ${reader.describe(record.at)}, ${tooMany}.`);
    }
  }
  return { nodeCount, relationshipCount, labels: sorted(labels), relationshipTypes: sorted(types) };
}

function sorted(counts: Map<string, number>): NameCount[] {
  return [...counts].map(([name, count]) => ({ name, count })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
