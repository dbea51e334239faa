// A worker thread of the chunk pool: seals and opens chunks off the main thread (see chunk-worker-pool.ts).
import { parentPort } from 'node:worker_threads';

import { ChunkDamage, ChunkTask, runChunkTask } from './chunk-task';
import { ownedBytes } from '../runtime/owned-bytes';
import { serveParent } from '../runtime/stoppable-worker';

serveParent(({ seq, task }: { seq: number; task: ChunkTask }) => {
  try {
    const bytes = ownedBytes(runChunkTask(task));
    parentPort!.postMessage({ seq, result: bytes }, [bytes.buffer as ArrayBuffer]);
  } catch (error) {
    parentPort!.postMessage({ seq, error: (error as Error).message, damage: error instanceof ChunkDamage });
  }
});
