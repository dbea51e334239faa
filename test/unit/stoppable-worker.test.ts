// Worker threads stopped between two of their messages (stoppable-worker.ts): Worker.terminate() interrupts a thread
// wherever it is, and one interrupted inside a zlib call aborts the process as the thread is torn down.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { startWorker, stopAllWorkers, stopWorker } from '../../src/runtime/stoppable-worker';
import { probeCounters, PROBE } from '../support/stop-probe';
import { eventually } from '../support/wait';

const PROBE_WORKER = join(__dirname, '../support/stop-probe-worker.js');

describe('stoppable worker threads', () => {
  let worker: Worker | undefined;

  afterEach(async () => {
    await worker?.terminate();
    worker = undefined;
  });

  it('end once the task under way is done, without starting the tasks queued behind it', async () => {
    worker = startWorker(PROBE_WORKER);
    const counters = probeCounters();
    const answers: unknown[] = [];
    worker.on('message', (answer) => answers.push(answer));
    worker.postMessage({ counters });
    worker.postMessage({ counters });
    await eventually(() => Atomics.load(counters, PROBE.started) === 1, { what: 'the first task started' });
    const exited = stopWorker(worker);
    worker.postMessage({ counters }); // after the stop: never started either
    Atomics.store(counters, PROBE.release, 1);
    assert.equal(await exited, 0, 'the thread exited by itself');
    assert.equal(Atomics.load(counters, PROBE.finished), 1, 'the task under way ran to its end');
    assert.equal(Atomics.load(counters, PROBE.started), 1, 'no task queued behind it started');
    assert.deepEqual(answers, ['finished'], 'its answer reached the parent before the exit');
  });

  it('end at once when idle', async () => {
    worker = startWorker(PROBE_WORKER);
    await once(worker, 'online');
    assert.equal(await stopWorker(worker), 0);
  });

  it('are terminated when the task under way outlasts the grace', async () => {
    worker = startWorker(PROBE_WORKER);
    const counters = probeCounters();
    worker.postMessage({ counters, forever: true });
    await eventually(() => Atomics.load(counters, PROBE.started) === 1, { what: 'the task started' });
    assert.equal(await stopWorker(worker, 200), 1, 'terminated');
    assert.equal(Atomics.load(counters, PROBE.finished), 0);
  });

  it('resolve a second stop, or a stop of a thread that has ended, with no wait', async () => {
    worker = startWorker(PROBE_WORKER);
    assert.equal(await stopWorker(worker), 0);
    assert.equal(await stopWorker(worker), 0);
  });

  it('keep the process alive until the thread has ended, though it was unref\'d (as a pool\'s idle threads are)', async () => {
    // In a process of its own: here mocha's timers would keep the event loop alive anyway. Unref'd, the thread let the
    // loop end before its exit came, and the process ended with the stop (a pool's close) unsettled.
    const script = `
      const { startWorker, stopWorker } = require(${JSON.stringify(require.resolve('../../src/runtime/stoppable-worker'))});
      const worker = startWorker(${JSON.stringify(PROBE_WORKER)});
      worker.once('online', async () => {
        worker.unref();
        console.log('stopped with', await stopWorker(worker));
      });`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script]);
    assert.equal(stdout.trim(), 'stopped with 0');
  });

  it('stopAllWorkers stops every thread not yet ended, and waits for the task under way', async () => {
    const counters = probeCounters();
    const busy = startWorker(PROBE_WORKER);
    const idle = startWorker(PROBE_WORKER);
    const exits = [once(busy, 'exit'), once(idle, 'exit')];
    busy.postMessage({ counters });
    await eventually(() => Atomics.load(counters, PROBE.started) === 1, { what: 'the task started' });
    const stopped = stopAllWorkers();
    Atomics.store(counters, PROBE.release, 1);
    await stopped;
    assert.deepEqual(await Promise.all(exits), [[0], [0]]);
    assert.equal(Atomics.load(counters, PROBE.finished), 1);
  });
});
