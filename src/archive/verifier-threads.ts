// The worker threads that verify uploads (ArchiveVerifier), shared by every upload of the process: each upload is a
// channel on one of at most `size` threads, which reads the bytes of all its channels as they come. A thread ends when
// its last upload does.
//
// One thread per upload (earlier releases) made memory grow with the uploads under way, not with their size: each
// thread's own heap came on top of the bytes in flight (bench:uploads-at-once, 16 uploads of 64 MiB at once: 1,396 MiB
// of RSS against 256 MiB for one). Verifying is CPU work, so threads beyond the cores add memory, not speed.
//
// What a thread of its own gave an upload was isolation: the kernel shares the cores between threads, while uploads on
// one thread wait for each other. And a frame's cost follows the records it claims, not its stored bytes (a few KiB
// of deflate may claim 64 MiB of tiny records: seconds of checking). So uploads on a thread take turns: a message of
// bytes (1 MiB) at a time, and within it a frame, or 1 MiB of a frame's records, at a time (ArchiveReader.verify's
// takeTurns). Beside an upload of 298 KiB whose two frames claim 60 MiB each (8 s of checking), a small upload on the
// same thread was verified in 1.4 s instead of 10.1 s (74 ms on a thread of its own).
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ArchiveErrorCode } from './archive-error';
import type { ArchiveHeader } from './archive-header';
import { VERIFY_FRAME_WORKERS } from './frame-pool';

/**
 * Verifier threads of the process: as many as the cores, at least two and at most four (uploads up to this many have
 * one each). Each holds up to about 100 MiB under load, most of it the ArrayBuffers of bytes it has read, which V8
 * collects once tens of MiB of them have piled up (16 uploads on two threads: 88-113 MiB of external memory each).
 * From 4 cores each also has its frame workers (VERIFY_FRAME_WORKERS): at most 12 threads in all.
 */
export const VERIFIER_THREADS = Math.min(4, Math.max(2, availableParallelism()));
/**
 * A thread with no upload ends after this long, its memory with it (its heap held 40-60 MiB into the restore that
 * followed its upload when it lingered 10 s); the next upload starts one again, as each did with a thread of its own.
 */
const IDLE_MS = 0;

/** To a verifier thread: an upload's bytes, their end, or that the upload is over (its verdict came, or it was abandoned). */
export type ToVerifier = { id: number; chunk: Uint8Array } | { id: number; end: true } | { id: number; close: true };

/** From a verifier thread, for one upload: how many more of its bytes it has taken, or its verdict. */
export type FromVerifier =
  | { id: number; taken: number }
  | { id: number; header: ArchiveHeader }
  | { id: number; error: { message: string; code?: ArchiveErrorCode } };

/** What an upload hears from its thread. */
export interface VerifierListener {
  message(message: FromVerifier): void;
  /** The thread failed or exited: no verdict will come. */
  lost(error: Error): void;
}

/** An upload's line to its thread. */
export interface VerifierChannel {
  /** Transfers the bytes to the thread (the buffer is not usable here afterwards). */
  send(bytes: Uint8Array): void;
  end(): void;
  /** The upload is over: the thread forgets it. */
  close(): void;
  /** Uploads on its thread now, this one included (at least 1). */
  readonly sharers: number;
}

interface VerifierThread {
  worker: Worker;
  listeners: Map<number, VerifierListener>;
  idleTimer: NodeJS.Timeout | null;
}

export class VerifierThreads {
  readonly #threads: VerifierThread[] = [];
  #nextId = 0;

  /** @param frameWorkers threads each verifier thread may inflate and check frames on (FramePool); 0: it does that itself. */
  constructor(
    readonly size: number,
    private readonly frameWorkers: number,
    private readonly idleMs = IDLE_MS,
  ) {}

  /** Threads running now. */
  get threads(): number {
    return this.#threads.length;
  }

  open(listener: VerifierListener): VerifierChannel {
    const thread = this.leastBusy();
    const id = ++this.#nextId;
    thread.listeners.set(id, listener);
    if (thread.idleTimer) clearTimeout(thread.idleTimer);
    thread.idleTimer = null;
    thread.worker.ref();
    const post = (message: ToVerifier, transfer: ArrayBuffer[] = []) => thread.worker.postMessage(message, transfer);
    return {
      get sharers() {
        return Math.max(1, thread.listeners.size);
      },
      send: (bytes) => post({ id, chunk: bytes }, [bytes.buffer as ArrayBuffer]),
      end: () => post({ id, end: true }),
      close: () => {
        if (!thread.listeners.delete(id)) return; // closed already, or the thread was lost
        post({ id, close: true });
        if (thread.listeners.size === 0) this.idle(thread);
      },
    };
  }

  /** Ends every thread; uploads under way on them are told they are lost. */
  async close(): Promise<void> {
    const threads = this.#threads.splice(0);
    await Promise.all(threads.map((thread) => thread.worker.terminate()));
  }

  /** A thread with no upload, a new one while there are fewer than `size`, or the one with the fewest uploads. */
  private leastBusy(): VerifierThread {
    const idle = this.#threads.find((thread) => thread.listeners.size === 0);
    if (idle) return idle;
    if (this.#threads.length < this.size) return this.spawn();
    return this.#threads.reduce((least, thread) => (thread.listeners.size < least.listeners.size ? thread : least));
  }

  private spawn(): VerifierThread {
    const worker = new Worker(join(__dirname, 'archive-verify-worker.js'), { workerData: { frameWorkers: this.frameWorkers } });
    const thread: VerifierThread = { worker, listeners: new Map(), idleTimer: null };
    worker.on('message', (message: FromVerifier) => thread.listeners.get(message.id)?.message(message));
    let lostOnce = false;
    const lost = (error: Error) => {
      if (lostOnce) return;
      lostOnce = true;
      const index = this.#threads.indexOf(thread);
      if (index >= 0) this.#threads.splice(index, 1);
      if (thread.idleTimer) clearTimeout(thread.idleTimer);
      const listeners = [...thread.listeners.values()];
      thread.listeners.clear();
      for (const listener of listeners) listener.lost(error);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the archive verifier stopped without a verdict (its thread exited with code ${code})`)));
    this.#threads.push(thread);
    return thread;
  }

  /** An idle thread does not keep the process alive, and ends unless an upload comes within idleMs. */
  private idle(thread: VerifierThread): void {
    thread.worker.unref();
    thread.idleTimer = setTimeout(() => {
      thread.idleTimer = null;
      if (thread.listeners.size > 0) return;
      const index = this.#threads.indexOf(thread);
      if (index >= 0) this.#threads.splice(index, 1);
      void thread.worker.terminate();
    }, this.idleMs);
    thread.idleTimer.unref();
  }
}

const shared = new Map<number, VerifierThreads>();

/** The process's verifier threads whose frames go to `frameWorkers` more threads each (one set per value asked for). */
export function verifierThreads(frameWorkers = VERIFY_FRAME_WORKERS): VerifierThreads {
  let threads = shared.get(frameWorkers);
  if (!threads) {
    threads = new VerifierThreads(VERIFIER_THREADS, frameWorkers);
    shared.set(frameWorkers, threads);
  }
  return threads;
}
