// A store's tuple lines (records.ts, EncodedBatch) as records, for the writers of foreign graph files.
import type { EncodedBatch, GraphRecord } from '../graph/records';

export async function* decodedBatches(batches: AsyncIterable<EncodedBatch>): AsyncGenerator<GraphRecord[]> {
  for await (const batch of batches) {
    yield batch.lines.map((line): GraphRecord => {
      const tuple = JSON.parse(line);
      return batch.kind === 'node'
        ? { kind: 'node', node: { id: tuple[1], labels: tuple[2], properties: tuple[3] } }
        : { kind: 'relationship', relationship: { id: tuple[1], type: tuple[2], startNodeId: tuple[3], endNodeId: tuple[4], properties: tuple[5] } };
    });
  }
}
