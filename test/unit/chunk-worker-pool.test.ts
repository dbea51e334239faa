// The chunk worker pool: idle workers end (giving their memory back) and the next task starts one again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chunkId } from '../../src/chunks/chunk-codec';
import { ChunkWorkerPool } from '../../src/chunks/chunk-worker-pool';

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe('ChunkWorkerPool', () => {
  const keys = { dataKey: randomBytes(32), idKey: randomBytes(32) };
  let pool: ChunkWorkerPool;

  afterEach(() => pool.close());

  it('ends idle workers and starts them again for the next task', async () => {
    pool = new ChunkWorkerPool(2, 100);
    const seal = async () => {
      const plaintext = randomBytes(64 * 1024);
      const id = chunkId(keys, plaintext);
      const stored = await pool.seal(keys, id, plaintext);
      assert.deepEqual(await pool.open(keys, id, stored, plaintext.length, true), plaintext);
    };
    // Counted as the tasks are posted (seal posts before its first await): once they run, a worker the other one
    // outpaced may sit idle for its 100 ms on a loaded machine and end before the last task is answered.
    const sealing = Promise.all([seal(), seal(), seal()]);
    assert.equal(pool.threads, 2);
    await sealing;
    for (let waited = 0; pool.threads > 0 && waited < 5_000; waited += 50) await sleep(50);
    assert.equal(pool.threads, 0, 'idle workers ended');
    const again = seal();
    assert.equal(pool.threads, 1, 'the next task started a worker again');
    await again;
  });

  it('keeps a worker that gets work before its idle time is up', async () => {
    pool = new ChunkWorkerPool(1, 300);
    const plaintext = randomBytes(1024);
    const id = chunkId(keys, plaintext);
    for (let i = 0; i < 5; i++) {
      await pool.seal(keys, id, plaintext);
      await sleep(100);
      assert.equal(pool.threads, 1);
    }
  });

  it('answers each of many tasks given to its workers at once with its own result, whatever their sizes', async () => {
    pool = new ChunkWorkerPool(2);
    const plaintexts = Array.from({ length: 40 }, (_, i) => randomBytes(1024 * (1 + ((i * 37) % 300))));
    const stored = await Promise.all(plaintexts.map((plaintext) => pool.seal(keys, chunkId(keys, plaintext), plaintext)));
    const opened = await Promise.all(plaintexts.map((plaintext, i) => pool.open(keys, chunkId(keys, plaintext), stored[i], plaintext.length, true)));
    opened.forEach((bytes, i) => assert.deepEqual(bytes, plaintexts[i], `task ${i}`));
    assert.equal(pool.threads, 2);
  });

  it('fails the tasks it is running and those queued when it closes, rather than leaving them waiting', async () => {
    pool = new ChunkWorkerPool(1);
    const plaintext = randomBytes(16 * 1024 * 1024);
    const id = chunkId(keys, plaintext);
    // More than the worker is given at once: four are posted to it, two wait in the pool's own queue. It closes before
    // the event loop could take any answer, so none can have been answered (a pause here let a fast machine answer one).
    const outcomes = Promise.allSettled(Array.from({ length: 6 }, () => pool.seal(keys, id, plaintext)));
    assert.equal(pool.threads, 1, 'the worker was given its tasks');
    await pool.close();
    const settled = await Promise.race([outcomes, sleep(5_000).then(() => 'still waiting' as const)]);
    assert.notEqual(settled, 'still waiting');
    for (const outcome of settled as PromiseSettledResult<Buffer>[]) {
      assert.equal(outcome.status, 'rejected');
      assert.match(String((outcome as PromiseRejectedResult).reason), /closed/);
    }
  });
});
