// The CPU-heavy work on chunks, as messages a worker thread (or the main thread, without workers) can run.
import { ChunkCompression, ChunkDamage, ChunkKeyMaterial, openChunk, sealChunk } from './chunk-codec';

export type ChunkTask =
  | { op: 'seal'; keys: ChunkKeyMaterial; id: string; data: Uint8Array; compression: ChunkCompression }
  | { op: 'open'; keys: ChunkKeyMaterial; id: string; data: Uint8Array; plainLength: number; verifyId: boolean };

/** The stored bytes (seal) or the plaintext (open). @throws ChunkDamage from open. */
export function runChunkTask(task: ChunkTask): Uint8Array {
  const keys = { dataKey: Buffer.from(task.keys.dataKey), idKey: Buffer.from(task.keys.idKey) };
  switch (task.op) {
    case 'seal':
      return sealChunk(keys, task.id, task.data, task.compression);
    case 'open':
      return openChunk(keys, task.id, task.data, task.plainLength, task.verifyId);
  }
}

export { ChunkDamage };
