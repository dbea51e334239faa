// Tuple lines (a legacy snapshot delta's bytes, change-log entries) as the batches a materialise applies.
import { streamLines } from '../runtime/text-lines';
import type { DeltaBatch } from './records';

const BATCH_LINES = 5_000;

/**
 * Lines in their order as batches of consecutive lines of one kind: node lines (`["N",…]`, `["-N",…]`) or
 * relationship lines (`["R",…]`, `["-R",…]`). Empty lines are skipped.
 */
export async function* batchesOfLines(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<DeltaBatch> {
  let batch: DeltaBatch | null = null;
  for await (const line of lines) {
    if (line === '') continue;
    const kind = line.startsWith('["R"') || line.startsWith('["-R"') ? 'relationship' : 'node';
    if (batch && (batch.kind !== kind || batch.lines.length >= BATCH_LINES)) {
      yield batch;
      batch = null;
    }
    (batch ??= { kind, lines: [] }).lines.push(line);
  }
  if (batch) yield batch;
}

/** The newline-separated lines of a byte stream (split across its pieces anywhere) as batches: see batchesOfLines. */
export function lineBatches(source: AsyncIterable<Buffer>): AsyncGenerator<DeltaBatch> {
  return batchesOfLines(
    (async function* () {
      for await (const lines of streamLines(source)) yield* lines;
    })(),
  );
}
