// The CLI's lock files that name their process (src/cli/pid-lock.ts): one left by a process that is gone is taken over,
// by one of the runs that find it so at once.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import fsPromises = require('node:fs/promises');
import { join } from 'node:path';
import { releasePidLock, takePidLock } from '../../src/cli/pid-lock';
import { pausedFs } from '../support/paused-fs';

/** Above Linux's largest pid (2^22): no process has it. */
const GONE_PID = 4_194_305;

describe('takePidLock (the CLI lock files naming their process)', () => {
  let dir: string;
  let lock: string;
  const fs = pausedFs();
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-pid-lock-'));
    lock = join(dir, 'out.backup.part.lock');
  });
  afterEach(() => {
    fs.restore();
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes a free lock, and answers who holds a held one', async () => {
    assert.equal(await takePidLock(lock), true);
    assert.equal(readFileSync(lock, 'utf8'), `${process.pid}\n`);
    assert.equal(await takePidLock(lock), process.pid);
  });

  // In a container every run of the CLI is often the same pid (1): the lock of one killed there named the next run.
  it("takes over a lock naming this process's own id that it does not hold (an earlier process with the same id)", async () => {
    writeFileSync(lock, `${process.pid}\n`);
    assert.equal(await takePidLock(lock), true);
    assert.equal(await takePidLock(lock), process.pid, 'a lock this process holds is still held');
    await releasePidLock(lock);
    assert.equal(existsSync(lock), false);
    assert.equal(await takePidLock(lock), true);
    await releasePidLock(lock);
  });

  it('takes over a lock whose process is gone, and one left unnamed long ago, not one being made', async () => {
    writeFileSync(lock, `${GONE_PID}\n`);
    assert.equal(await takePidLock(lock), true);
    rmSync(lock);
    writeFileSync(lock, '');
    assert.equal(await takePidLock(lock), 'unnamed', 'a lock being made was taken over');
    const { utimesSync } = await import('node:fs');
    const longAgo = (Date.now() - 60_000) / 1000;
    utimesSync(lock, longAgo, longAgo);
    assert.equal(await takePidLock(lock), true);
  });

  it('lets one of two runs that found the lock gone at once take it over: the other is told who holds it', async () => {
    writeFileSync(lock, `${GONE_PID}\n`);
    // The first found the lock gone and is about to act on it (remove it, or claim it to decide); meanwhile the second
    // takes it over, and holds it.
    const { reached, goOn } = fs.pauseFirstChange(lock, ['rm', 'unlink', 'link']);
    const first = fs.who.run('paused', () => takePidLock(lock));
    await reached;
    const second = await takePidLock(lock);
    goOn();
    const outcomes = [await first, second];
    assert.deepEqual(outcomes.sort(), [true, process.pid].sort(), `both took the lock: ${JSON.stringify(outcomes)}`);
    assert.equal(readFileSync(lock, 'utf8'), `${process.pid}\n`);
    assert.deepEqual(readdirSync(dir), ['out.backup.part.lock'], 'nothing else is left behind');
    assert.ok(existsSync(lock));
  });

  describe('when the lock cannot be made', () => {
    const { open } = fsPromises;
    afterEach(() => void Object.assign(fsPromises, { open }));
    const failing = (code: string) => Object.assign(new Error(`${code}: failed`), { code });

    it('removes a lock it made but could not write (a full volume), naming no process, and says why', async () => {
      Object.assign(fsPromises, {
        open: async (...args: Parameters<typeof open>) => {
          const handle = await open(...args);
          return Object.assign(handle, { writeFile: async () => Promise.reject(failing('ENOSPC')) });
        },
      });
      await assert.rejects(takePidLock(lock), { code: 'ENOSPC' });
      assert.deepEqual(readdirSync(dir), [], 'an unnamed lock was left to hold off the next run');
    });

    it("leaves another's lock when it could not even open one (too many open files)", async () => {
      writeFileSync(lock, `${process.pid}\n`);
      Object.assign(fsPromises, { open: async () => Promise.reject(failing('EMFILE')) });
      await assert.rejects(takePidLock(lock), { code: 'EMFILE' });
      assert.equal(readFileSync(lock, 'utf8'), `${process.pid}\n`, "another process's lock was removed");
    });
  });
});
