// Worker threads of one kind, started as work comes, up to a bound: work goes to an idle thread, to a new one while
// there are fewer than the bound, or to the least busy. A thread that fails or exits leaves the set (the next work
// starts another), and its owner hears of it once, to fail the work it held.
import type { Worker } from 'node:worker_threads';
import { stopWorker } from './stoppable-worker';

export interface SetThread {
  worker: Worker;
}

export interface ThreadSetOptions<T extends SetThread> {
  /** Threads at most. */
  size: number;
  /** A new thread, its worker started by startWorker() (so that end() can stop it between two messages). */
  start(): T;
  /** The work a thread holds now (0: idle). */
  load(thread: T): number;
  /** The thread failed or exited (also when ended by end or endAll): its work is lost. */
  lost(thread: T, error: Error): void;
  /** The error a thread that exited by itself is lost with. */
  exited(code: number): Error;
}

export class ThreadSet<T extends SetThread> {
  readonly #threads: T[] = [];

  constructor(private readonly options: ThreadSetOptions<T>) {}

  /** Threads running now. */
  get size(): number {
    return this.#threads.length;
  }

  /** An idle thread, a new one while there are fewer than the bound, or the one with the least work. */
  pick(): T {
    const { load } = this.options;
    const idle = this.#threads.find((thread) => load(thread) === 0);
    if (idle) return idle;
    if (this.#threads.length < this.options.size) return this.spawn();
    return this.#threads.reduce((least, thread) => (load(thread) < load(least) ? thread : least));
  }

  /** Ends the thread once its message under way is done (its owner hears it lost, as for any exit). */
  end(thread: T): Promise<number> {
    this.forget(thread);
    return stopWorker(thread.worker);
  }

  /** Ends every thread. */
  async endAll(): Promise<void> {
    await Promise.all([...this.#threads].map((thread) => this.end(thread)));
  }

  private spawn(): T {
    const thread = this.options.start();
    let lostOnce = false;
    const lost = (error: Error) => {
      if (lostOnce) return;
      lostOnce = true;
      this.forget(thread);
      this.options.lost(thread, error);
    };
    thread.worker.on('error', lost);
    thread.worker.on('exit', (code) => lost(this.options.exited(code)));
    this.#threads.push(thread);
    return thread;
  }

  private forget(thread: T): void {
    const index = this.#threads.indexOf(thread);
    if (index >= 0) this.#threads.splice(index, 1);
  }
}
