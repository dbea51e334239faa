// Sealing and opening of chunks on a small pool of worker threads, so that the event loop stays responsive
// while a snapshot or a restore runs and every core works. With no workers the same code runs inline.
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';

import { startWorker, stopWorker } from '../runtime/stoppable-worker';

import { ChunkCompression, ChunkDamage, ChunkKeyMaterial, DEFAULT_CHUNK_COMPRESSION } from './chunk-codec';
import { ChunkTask, runChunkTask } from './chunk-task';

interface QueuedTask {
  task: ChunkTask;
  transfer: ArrayBuffer[];
  resolve: (result: Uint8Array) => void;
  reject: (error: Error) => void;
}

interface PoolWorker {
  thread: Worker;
  /** Tasks posted to it, oldest first: it runs them in that order, and answers in that order. */
  posted: (QueuedTask & { seq: number })[];
  /** Ends the thread once it has been idle for the pool's idleMs. */
  idleTimer: NodeJS.Timeout | null;
}

export const DEFAULT_CHUNK_WORKERS = Math.min(2, cpus().length);

/**
 * Tasks posted to a worker at once: it goes on to the next without waiting for the event loop to take its last result
 * and give it more. With thousands of WebSocket subscribers the loop is busy for long stretches, and with one task
 * each the workers of a restore they watched sat idle through them (bench:fanout).
 */
const TASKS_PER_WORKER = 4;

/**
 * A worker idle this long ends, and gives back its heap and its allocator's memory (tens of MiB each after a restore);
 * the next task starts one again (in about 30 ms, once per burst of work, not per chunk).
 */
export const DEFAULT_WORKER_IDLE_MS = 5_000;

/**
 * A worker's own heap holds a task's small objects only: the chunks are ArrayBuffers outside it. Bounded, so that
 * garbage cannot pile up there between collections (V8 sizes a thread's heap by the machine's memory otherwise).
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 32 };

const poolClosed = () => new Error('the chunk worker pool is closed');

export class ChunkWorkerPool {
  readonly #workers: PoolWorker[] = [];
  readonly #queue: QueuedTask[] = [];
  #seq = 0;
  #closed = false;

  /**
   * @param size worker threads; 0 runs every task inline on the calling thread.
   * @param idleMs a worker idle this long ends (see DEFAULT_WORKER_IDLE_MS).
   */
  constructor(
    readonly size: number,
    private readonly idleMs = DEFAULT_WORKER_IDLE_MS,
    private readonly compression: ChunkCompression = DEFAULT_CHUNK_COMPRESSION,
  ) {}

  /** Worker threads running now (busy or waiting for work). */
  get threads(): number {
    return this.#workers.length;
  }

  /** Tasks that may usefully be in flight at once: as many as the workers take. */
  get parallelism(): number {
    return Math.max(1, this.size * TASKS_PER_WORKER);
  }

  async seal(keys: ChunkKeyMaterial, id: string, plaintext: Uint8Array): Promise<Buffer> {
    return asBuffer(await this.#run({ op: 'seal', keys, id, data: plaintext, compression: this.compression }));
  }

  /** @throws ChunkDamage (see openChunk). */
  async open(keys: ChunkKeyMaterial, id: string, stored: Uint8Array, plainLength: number, verifyId: boolean): Promise<Buffer> {
    return asBuffer(await this.#run({ op: 'open', keys, id, data: stored, plainLength, verifyId }));
  }

  /** Ends the worker threads, each once its task under way is done; tasks still queued fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const queued of this.#queue.splice(0)) queued.reject(poolClosed());
    const workers = this.#workers.splice(0);
    for (const worker of workers) {
      if (worker.idleTimer) clearTimeout(worker.idleTimer);
      // Out of the list, its exit no longer fails its tasks (see lost): so here, or the callers wait for ever.
      for (const posted of worker.posted.splice(0)) posted.reject(poolClosed());
    }
    await Promise.all(workers.map((worker) => stopWorker(worker.thread)));
  }

  #run(task: ChunkTask): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(poolClosed());
    if (this.size === 0) {
      try {
        return Promise.resolve(runChunkTask(task));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    // A copy of its own is transferred: the caller's buffer stays usable, and copying then transferring costs about a
    // quarter of what posting it (a structured clone) does.
    const data = new Uint8Array(task.data);
    return new Promise((resolve, reject) => {
      this.#queue.push({ task: { ...task, data }, transfer: [data.buffer as ArrayBuffer], resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      // An idle worker first, then a new one, then the least loaded that can take one more.
      const worker = this.#workers.find((candidate) => candidate.posted.length === 0) ?? this.#spawn() ?? leastLoaded(this.#workers);
      if (!worker) return;
      const queued = this.#queue.shift()!;
      if (worker.idleTimer) clearTimeout(worker.idleTimer);
      worker.idleTimer = null;
      const posted = { ...queued, seq: ++this.#seq };
      worker.posted.push(posted);
      worker.thread.ref(); // busy workers keep the process alive until their results arrive
      worker.thread.postMessage({ seq: posted.seq, task: queued.task }, queued.transfer);
    }
  }

  #spawn(): PoolWorker | null {
    if (this.#workers.length >= this.size) return null;
    const worker: PoolWorker = {
      thread: startWorker(join(__dirname, 'chunk-worker.js'), { resourceLimits: WORKER_LIMITS }),
      posted: [],
      idleTimer: null,
    };
    worker.thread.unref();
    worker.thread.on('message', (message: { seq: number; result?: Uint8Array; error?: string; damage?: boolean }) => {
      const done = worker.posted[0];
      if (!done || done.seq !== message.seq) return;
      worker.posted.shift();
      if (worker.posted.length === 0) worker.thread.unref();
      if (message.error === undefined) done.resolve(message.result!);
      else done.reject(message.damage ? new ChunkDamage(message.error) : new Error(message.error));
      this.#dispatch();
      if (worker.posted.length === 0) this.#retireWhenIdle(worker);
    });
    // A crashed worker fails its tasks and is replaced on the next dispatch: every task posted to it, those it had not
    // started too (their bytes were transferred to it and are gone with it), though they may be another operation's.
    const lost = (error: Error) => {
      if (worker.idleTimer) clearTimeout(worker.idleTimer);
      const index = this.#workers.indexOf(worker);
      if (index < 0) return;
      this.#workers.splice(index, 1);
      for (const posted of worker.posted.splice(0)) posted.reject(error);
      this.#dispatch();
    };
    worker.thread.on('error', lost);
    worker.thread.on('exit', (code) => lost(new Error(`a chunk worker exited with code ${code}`)));
    this.#workers.push(worker);
    return worker;
  }

  #retireWhenIdle(worker: PoolWorker): void {
    worker.idleTimer = setTimeout(() => {
      worker.idleTimer = null;
      const index = this.#workers.indexOf(worker);
      if (worker.posted.length > 0 || index < 0) return;
      this.#workers.splice(index, 1); // its exit event then finds nothing to fail
      void stopWorker(worker.thread);
    }, this.idleMs);
    worker.idleTimer.unref();
  }
}

/** The worker with the fewest tasks posted, if one can take another. */
function leastLoaded(workers: PoolWorker[]): PoolWorker | null {
  let least: PoolWorker | null = null;
  for (const worker of workers) {
    if (worker.posted.length < TASKS_PER_WORKER && (least === null || worker.posted.length < least.posted.length)) least = worker;
  }
  return least;
}

function asBuffer(view: Uint8Array): Buffer {
  return Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}
