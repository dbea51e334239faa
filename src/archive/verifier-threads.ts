// The worker threads that verify uploads (ArchiveVerifier), shared by every upload of the process: each upload is a
// channel on one of at most `size` threads (ThreadSet), which reads the bytes of all its channels as they come. A thread
// ends when its last upload does.
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
import type { Worker } from 'node:worker_threads';
import type { ArchiveErrorCode } from './archive-error';
import type { ArchiveHeader } from './archive-header';
import { startWorker } from '../runtime/stoppable-worker';
import { ThreadSet } from '../runtime/thread-set';
import { VERIFY_FRAME_WORKERS } from './frame-pool';

/**
 * Verifier threads of the process: as many as the cores, at least two and at most four (uploads up to this many have
 * one each). Each holds up to about 100 MiB under load, most of it the ArrayBuffers of bytes it has read, which V8
 * collects once tens of MiB of them have piled up (16 uploads on two threads: 88-113 MiB of external memory each).
 * From 4 cores each also has its frame workers (VERIFY_FRAME_WORKERS): at most 12 threads in all.
 */
export const VERIFIER_THREADS = Math.min(4, Math.max(2, availableParallelism()));
/** To a verifier thread: an upload's bytes, their end, or that the upload is over (its verdict came, or it was abandoned). */
export type ToVerifier = { id: number; chunk: Uint8Array } | { id: number; end: true } | { id: number; close: true };

/**
 * From a verifier thread, for one upload: how many more of its bytes it has taken, its header as soon as that is read
 * (`headerRead`, before its body is checked), or its verdict.
 */
export type FromVerifier =
  | { id: number; taken: number }
  | { id: number; headerRead: ArchiveHeader }
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
}

export class VerifierThreads {
  readonly #threads: ThreadSet<VerifierThread>;
  #nextId = 0;

  /** @param frameWorkers threads each verifier thread may inflate and check frames on (FramePool); 0: it does that itself. */
  constructor(size: number, frameWorkers: number) {
    this.#threads = new ThreadSet<VerifierThread>({
      size,
      start: () => {
        const worker = startWorker(join(__dirname, 'archive-verify-worker.js'), { workerData: { frameWorkers } });
        const thread: VerifierThread = { worker, listeners: new Map() };
        worker.on('message', (message: FromVerifier) => thread.listeners.get(message.id)?.message(message));
        return thread;
      },
      load: (thread) => thread.listeners.size,
      lost: (thread, error) => {
        const listeners = [...thread.listeners.values()];
        thread.listeners.clear();
        for (const listener of listeners) listener.lost(error);
      },
      exited: (code) => new Error(`the archive verifier stopped without a verdict (its thread exited with code ${code})`),
    });
  }

  /** Threads running now. */
  get threads(): number {
    return this.#threads.size;
  }

  open(listener: VerifierListener): VerifierChannel {
    const thread = this.#threads.pick();
    const id = ++this.#nextId;
    thread.listeners.set(id, listener);
    const post = (message: ToVerifier, transfer: ArrayBuffer[] = []) => thread.worker.postMessage(message, transfer);
    return {
      get sharers() {
        return Math.max(1, thread.listeners.size);
      },
      send: (bytes) => post({ id, chunk: bytes }, [bytes.buffer as ArrayBuffer]),
      end: () => post({ id, end: true }),
      close: () => {
        if (!thread.listeners.delete(id)) return; // closed already, or the thread was lost
        // A thread ends with its last upload, and its memory with it (lingering 10 s, its heap held 40-60 MiB into the
        // restore that followed its upload); the next upload starts one again, as each did with a thread of its own.
        if (thread.listeners.size === 0) void this.#threads.end(thread);
        else post({ id, close: true });
      },
    };
  }

  /** Ends every thread; uploads under way on them are told they are lost. */
  close(): Promise<void> {
    return this.#threads.endAll();
  }
}

let shared: VerifierThreads | null = null;

/** The process's verifier threads, each with VERIFY_FRAME_WORKERS frame workers. */
export function verifierThreads(): VerifierThreads {
  shared ??= new VerifierThreads(VERIFIER_THREADS, VERIFY_FRAME_WORKERS);
  return shared;
}
