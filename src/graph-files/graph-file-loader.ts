// Loads a foreign graph file into a new store: records checked, given fresh ids (nodes and relationships each numbered
// from 1 in file order) and handed to the store's loader, which maps the file's keys on disk.
import type { GraphLoader } from '../graph/graph-store';
import type { EncodedBatch } from '../graph/records';
import type { GraphFileReader } from './graph-file-format';
import { assertValidRecord, keyedLine } from './foreign-records';

// As the archive restore's batches: large enough to keep SQLite busy, small enough that memory stays flat.
const LOAD_BATCH = { lines: 5_000, chars: 512 * 1024 };

export interface GraphFileLoadOptions {
  signal?: AbortSignal;
  /** Called after each batch with the bytes of the file read so far. */
  progress?: (bytesRead: number) => void;
}

/** Streams every record of `reader` into `loader` (which the caller finishes or aborts). */
export async function loadGraphFile(reader: GraphFileReader, loader: GraphLoader, options: GraphFileLoadOptions = {}): Promise<void> {
  const describe = (at: number) => reader.describe(at);
  const next = { node: 1, relationship: 1 };
  let pending: EncodedBatch | null = null;
  let chars = 0;
  // SQLite loads one batch while the next is parsed.
  let loading: Promise<void> = Promise.resolve();
  const flush = async () => {
    if (!pending) return;
    const batch = pending;
    pending = null;
    chars = 0;
    await loading;
    loading = loader.insertKeyed(batch, describe);
    loading.catch(() => undefined);
  };
  for await (const records of reader.records()) {
    options.signal?.throwIfAborted();
    for (const record of records) {
      assertValidRecord(record, reader);
      if (pending && (pending.kind !== record.kind || pending.lines.length >= LOAD_BATCH.lines || chars >= LOAD_BATCH.chars)) await flush();
      const line = keyedLine(record, next[record.kind]++);
      (pending ??= { kind: record.kind, lines: [] }).lines.push(line);
      chars += line.length;
    }
    options.progress?.(reader.bytesRead());
  }
  await flush();
  await loading;
}
