// Newline-separated tuple lines (a snapshot's delta, change log entries) as the batches a materialise applies.
import { StringDecoder } from 'node:string_decoder';
import type { DeltaBatch } from './records';

const BATCH_LINES = 5_000;

/**
 * The lines of a byte stream (split across its pieces anywhere) in their order, as batches of consecutive lines of
 * one kind: node lines (`["N",…]`, `["-N",…]`) or relationship lines (`["R",…]`, `["-R",…]`).
 */
export async function* lineBatches(source: AsyncIterable<Buffer>): AsyncGenerator<DeltaBatch> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let batch: DeltaBatch | null = null;
  const take = function* (line: string): Generator<DeltaBatch> {
    if (line === '') return;
    const kind = line.startsWith('["R"') || line.startsWith('["-R"') ? 'relationship' : 'node';
    if (batch && (batch.kind !== kind || batch.lines.length >= BATCH_LINES)) {
      yield batch;
      batch = null;
    }
    (batch ??= { kind, lines: [] }).lines.push(line);
  };
  for await (const piece of source) {
    const lines = (rest + decoder.write(piece)).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) yield* take(line);
  }
  yield* take(rest + decoder.end());
  if (batch) yield batch;
}
