// Data frames inflated (and checked) on worker threads: an archive's frames are compressed and checked independently
// of each other. The reader keeps the file's order, the digest and the rules across frames (ArchiveReader).
//
// Verifying an upload, inflating and checking are most of the work (a 252 MiB archive: 1.1 s of its verifier's 2.7 s
// inflating, 0.8 s parsing records), and two frame workers share it, but only where there are cores to spare.
// Verifying that archive alone, with a core free beside the one reading it, took 1.69-2.09 s with two frame workers
// against 2.27-2.55 s on one thread (6 runs each). But an upload keeps a second core busy with its own work (receiving,
// encrypting and writing the bytes), and on two cores the pool only added CPU: accepted in 2.43 s (2.16-2.81) against
// 2.48 s (2.41-3.17), with 4.15 s of server CPU against 3.39 s (VERIFY_FRAME_WORKERS).
//
// Loading an archive into a store (a restore), the event loop decrypts, hashes, cuts and binds the records while SQLite
// writes them on a thread of its own: the restore uses about one core of two, and inflating was a quarter of the event
// loop's time. One frame worker inflating for it: the same upload loaded in 4.30 s (4.15-5.21) against 5.39 s
// (4.72-5.47), six restores each, interleaved.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { Frame } from './archive-frame';
import { startWorker } from '../runtime/stoppable-worker';
import { ThreadSet } from '../runtime/thread-set';
import type { FrameSummary } from './record-validation';

/** A verifier thread's frame workers (VerifierThreads): up to two, on the cores beyond the two it and the uploads' own work take (0: none). */
export const VERIFY_FRAME_WORKERS = Math.min(2, Math.max(0, availableParallelism() - 2));

/**
 * A data frame's verdict: its summary, null when one of its records breaks a rule, or 'damaged' when it does not
 * inflate to its length. Either failure sends the reader through the frame again on its own thread, which names the
 * damage exactly as a reader without a pool does.
 */
export type FrameVerdict = FrameSummary | null | 'damaged';

/** A data frame's inflated bytes, or 'damaged' (see FrameVerdict). */
export type InflatedFrame = Buffer | 'damaged';

export interface FrameMessage {
  seq: number;
  /** Check the frame's records (a FrameVerdict), or only inflate it (its bytes). */
  task: 'check' | 'inflate';
  stored: Uint8Array;
  rawLength: number;
}

export type FrameReply = { seq: number; verdict: FrameVerdict } | { seq: number; raw: Uint8Array | 'damaged' } | { seq: number; error: string };

interface PoolThread {
  worker: Worker;
  /** Frames sent and not answered. */
  waiting: Map<number, { resolve: (reply: FrameReply) => void; reject: (error: Error) => void }>;
}

/**
 * Worker threads for the frames of one reader, or of several at once (frames are independent of each other and of
 * their archive: see SharedFramePool), started as frames come; ended by close().
 */
export class FramePool {
  readonly #threads: ThreadSet<PoolThread>;
  private seq = 0;
  private closed = false;

  constructor(size: number) {
    this.#threads = new ThreadSet<PoolThread>({
      size,
      start: () => this.start(),
      load: (thread) => thread.waiting.size,
      // A thread that fails fails its frames; the reader stops at the first.
      lost: (thread, error) => this.fail(thread, this.closed ? new Error('the frame pool is closed') : error),
      exited: (code) => new Error(`a frame worker exited with code ${code}`),
    });
  }

  /** Worker threads running now. */
  get threads(): number {
    return this.#threads.size;
  }

  async check(frame: Frame): Promise<FrameVerdict> {
    return ((await this.send('check', frame)) as { verdict: FrameVerdict }).verdict;
  }

  async inflate(frame: Frame): Promise<InflatedFrame> {
    const { raw } = (await this.send('inflate', frame)) as { raw: Uint8Array | 'damaged' };
    return raw === 'damaged' ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  }

  private send(task: FrameMessage['task'], frame: Frame): Promise<FrameReply> {
    if (this.closed) return Promise.reject(new Error('the frame pool is closed'));
    const thread = this.#threads.pick();
    const seq = ++this.seq;
    // A copy of its own is transferred: the frame's bytes are usually a slice of a larger read, and the reader keeps them.
    const stored = new Uint8Array(frame.stored);
    return new Promise((resolve, reject) => {
      thread.waiting.set(seq, { resolve, reject });
      const message: FrameMessage = { seq, task, stored, rawLength: frame.rawLength };
      thread.worker.postMessage(message, [stored.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.#threads.endAll();
  }

  private start(): PoolThread {
    const thread: PoolThread = { worker: startWorker(join(__dirname, 'frame-worker.js')), waiting: new Map() };
    thread.worker.on('message', (reply: FrameReply) => {
      const waiting = thread.waiting.get(reply.seq);
      if (!waiting) return;
      thread.waiting.delete(reply.seq);
      if ('error' in reply) waiting.reject(new Error(reply.error));
      else waiting.resolve(reply);
    });
    return thread;
  }

  private fail(thread: PoolThread, error: Error): void {
    for (const { reject } of thread.waiting.values()) reject(error);
    thread.waiting.clear();
  }
}

/**
 * One FramePool for every reader of the process that asks for it: started by the first reader, closed when the last one
 * lets it go. A pool per reader made memory grow with the readers under way (each thread has its own heap), not their
 * speed, once they outnumber the cores.
 */
export class SharedFramePool {
  #pool: FramePool | null = null;
  #readers = 0;

  constructor(private readonly size: number) {}

  /** Readers using the pool now. */
  get readers(): number {
    return this.#readers;
  }

  /** The pool, until release(). */
  acquire(): FramePool {
    this.#readers += 1;
    this.#pool ??= new FramePool(this.size);
    return this.#pool;
  }

  release(): void {
    if (this.#readers === 0 || --this.#readers > 0) return;
    const pool = this.#pool;
    this.#pool = null;
    void pool?.close();
  }
}
