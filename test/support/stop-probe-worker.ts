// A thread of startWorker() for the stoppable-worker tests: each message is a task that counts itself started, spins
// until its test releases it, then counts itself finished and answers. A task `forever` never finishes: only
// Worker.terminate() ends its thread.
import { parentPort } from 'node:worker_threads';
import { serveParent } from '../../src/runtime/stoppable-worker';
import { PROBE } from './stop-probe';

serveParent(({ counters, forever }: { counters: Int32Array; forever?: boolean }) => {
  Atomics.add(counters, PROBE.started, 1);
  while (forever || Atomics.load(counters, PROBE.release) === 0) Atomics.wait(counters, PROBE.release, 0, 10);
  Atomics.add(counters, PROBE.finished, 1);
  parentPort!.postMessage('finished');
});
