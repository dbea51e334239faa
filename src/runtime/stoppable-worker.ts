// Worker threads that end between two of their messages, never in the middle of one.
//
// Worker.terminate() stops a thread wherever its JavaScript is. One stopped inside a zlib call (inflateRawSync makes a
// native handle per call and initialises it a few statements later) leaves a handle that was never initialised, and
// closing it as the thread is torn down aborts the whole process (Node 20: `Assertion failed: init_done_ && "close
// before init"`). A frame pool closed while its threads inflated frames ended a server that way, in a restore stopped
// during its load. So the parent asks instead: stopWorker() raises the thread's stop flag, which the thread reads before
// each message, and posts STOP for a thread that is idle; the thread exits from its message handler, where nothing is
// half made. Work queued before the stop is not done.
import { parentPort, Worker, workerData, type WorkerOptions } from 'node:worker_threads';

/** A thread that has not ended this long after it was asked (a task that never returns) is terminated. */
const STOP_GRACE_MS = 30_000;

/** Posted to wake a thread that waits for messages, once its stop flag is up. */
const STOP = { stopWorker: true } as const;

/** The thread's stop flag, shared with it through workerData. */
const STOP_FLAG = 'stopFlag';

const stopFlags = new WeakMap<Worker, Int32Array>();
/** This thread's workers that have not exited. */
const running = new Set<Worker>();

/** A worker thread for serveParent(): `workerData` reaches it as given, with its stop flag beside. */
export function startWorker(file: string, options: WorkerOptions & { workerData?: Record<string, unknown> } = {}): Worker {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(file, { ...options, workerData: { ...options.workerData, [STOP_FLAG]: flag } });
  stopFlags.set(worker, flag);
  running.add(worker);
  worker.once('exit', () => running.delete(worker));
  return worker;
}

/**
 * Ends a thread of startWorker() once the message it handles now (if any) is done: it does not start another. Resolves
 * with its exit code (1 if it had to be terminated, `graceMs` after it was asked).
 */
export function stopWorker(worker: Worker, graceMs = STOP_GRACE_MS): Promise<number> {
  const flag = stopFlags.get(worker);
  if (!flag) throw new Error('stopWorker() stops a thread of startWorker()');
  return new Promise((resolve) => {
    if (!running.has(worker)) return resolve(0);
    const grace = setTimeout(() => void worker.terminate(), graceMs);
    grace.unref();
    // Kept alive until it has ended, as terminate() kept it: a pool's idle threads are unref'd, and an event loop with
    // nothing else to do ended the process with the close that awaited them unsettled (and the closes after it unrun).
    worker.ref();
    worker.once('exit', (code) => {
      clearTimeout(grace);
      resolve(code);
    });
    Atomics.store(flag, 0, 1);
    worker.postMessage(STOP);
  });
}

/**
 * Stops every worker this thread started and has not seen exit, and waits for them: what a process does before it
 * exits, as process.exit() tears down the threads it finds wherever they are. A restore stopped by a shutdown lets its
 * frame pool go without waiting for its threads (SharedFramePool.release), and the verifier threads live as long as
 * the process.
 */
export async function stopAllWorkers(): Promise<void> {
  await Promise.all([...running].map((worker) => stopWorker(worker)));
}

/** process.exit(code) once stopAllWorkers() is done: how the server and the CLI end. */
export function exitAfterWorkers(code: number): void {
  void stopAllWorkers().then(() => process.exit(code));
}

/**
 * In a thread of startWorker(): hands each message from the parent to `handle`, until the parent stops the thread; then
 * `beforeExit` (the thread's own threads to stop, say) and the thread exits.
 */
export function serveParent<T>(handle: (message: T) => void, beforeExit?: () => Promise<unknown>): void {
  const port = parentPort!;
  const flag = (workerData as { [STOP_FLAG]?: Int32Array })[STOP_FLAG];
  if (!flag) throw new Error('serveParent() runs in a thread of startWorker()');
  let stopping = false;
  port.on('message', (message: T | typeof STOP) => {
    if (stopping) return;
    if (Atomics.load(flag, 0) === 0 && !isStop(message)) return handle(message as T);
    stopping = true;
    void (beforeExit?.() ?? Promise.resolve()).finally(() => process.exit(0));
  });
}

function isStop(message: unknown): message is typeof STOP {
  return typeof message === 'object' && message !== null && (message as typeof STOP).stopWorker === true;
}
