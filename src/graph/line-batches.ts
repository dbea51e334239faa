// Tuple lines (a legacy snapshot delta's bytes, change-log entries) as the batches a materialise applies.
import { StringDecoder } from 'node:string_decoder';
import { decodePiece } from '../runtime/text-lines';
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
      const decoder = new StringDecoder('utf8');
      let rest = '';
      for await (const piece of source) {
        for (const text of decodePiece(decoder, piece)) {
          // Only the new text is split: a line longer than many pieces is not scanned again at each.
          const lines = text.split('\n');
          if (lines.length === 1) {
            rest += text;
            continue;
          }
          lines[0] = rest + lines[0];
          rest = lines.pop()!;
          yield* lines;
        }
      }
      yield rest + decoder.end();
    })(),
  );
}
