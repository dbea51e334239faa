import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_STALE_MS, UploadLocker } from '../../src/api/http/upload-locks';
import { agedFiles } from '../support/aged-files';
import { pausedFs } from '../support/paused-fs';

/** What two replicas sharing one upload directory each have: a locker of their own (with its own in-process lock). */
async function replicaLockers(dir: string, timeoutMs = 5_000): Promise<[UploadLocker, UploadLocker]> {
  const { ERRORS, MemoryLocker } = await import('@tus/server');
  const replica = () => new UploadLocker(dir, new MemoryLocker({ acquireLockTimeout: timeoutMs }), timeoutMs, ERRORS.ERR_LOCK_TIMEOUT);
  return [replica(), replica()];
}

describe('UploadLocker (one writer of an upload across replicas)', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'snapgraph-upload-locks-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("asks the other replica's holder to let go, and takes the lock once it has", async function () {
    this.timeout(10_000);
    const [a, b] = await replicaLockers(dir);
    const held = a.newLock('up1');
    let askedAt = 0;
    await held.lock(new AbortController().signal, () => void (askedAt ||= Date.now()));
    const wanted = b.newLock('up1');
    let taken = false;
    const taking = wanted.lock(new AbortController().signal, () => undefined).then(() => (taken = true));
    const started = Date.now();
    while (!askedAt && Date.now() - started < 3_000) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(askedAt, 'the holder was asked to let go');
    assert.equal(taken, false, 'not taken while the holder still holds it');
    await held.unlock();
    await taking;
    assert.deepEqual(readdirSync(dir), ['up1.lock']);
    await wanted.unlock();
    assert.deepEqual(readdirSync(dir), [], 'nothing is left behind');
  });

  it('answers 423 when the holder does not let go in time', async function () {
    this.timeout(10_000);
    const [a, b] = await replicaLockers(dir, 1_500);
    const held = a.newLock('up2');
    await held.lock(new AbortController().signal, () => undefined);
    await assert.rejects(b.newLock('up2').lock(new AbortController().signal, () => undefined), (error: { status_code?: number; body?: string }) => {
      assert.equal(error.status_code, 423);
      assert.match(error.body ?? '', /"code":"CONFLICT"/);
      return true;
    });
    await held.unlock();
  });

  it('takes over a lock its process left behind (not touched for the stale period), and sweeps such leftovers', async () => {
    const [a] = await replicaLockers(dir);
    const past = (Date.now() - LOCK_STALE_MS - 5_000) / 1000;
    writeFileSync(join(dir, 'up3.lock'), 'a crashed replica');
    utimesSync(join(dir, 'up3.lock'), past, past);
    const lock = a.newLock('up3');
    await lock.lock(new AbortController().signal, () => undefined);
    await lock.unlock();
    writeFileSync(join(dir, 'up4.lock'), 'another');
    writeFileSync(join(dir, 'up4.release'), '');
    writeFileSync(join(dir, 'up5.lock'), 'a fresh one');
    for (const name of ['up4.lock', 'up4.release']) utimesSync(join(dir, name), past, past);
    assert.equal(await a.sweep(), 2);
    assert.deepEqual(readdirSync(dir), ['up5.lock']);
  });

  describe('taking over a stale lock, two at once', () => {
    // The lock module calls node:fs/promises through its exports: each call of `paused`'s run waits, at its first
    // change to the lock's name (removing, renaming or linking it), until the test lets it go on.
    const { who, pauseFirstChange, claimRefused, restore } = pausedFs();
    afterEach(restore);
    // A claim's age is its ctime, which no test sets: the claims planted here look as old as a test says.
    const aged = agedFiles();
    afterEach(aged.restore);

    function staleLock(path: string): void {
      const past = (Date.now() - LOCK_STALE_MS - 5_000) / 1000;
      writeFileSync(path, 'a crashed replica');
      utimesSync(path, past, past);
    }

    it('lets one request take it: the other, that saw it stale first, waits for that one to let go', async function () {
      this.timeout(10_000);
      const [a, b] = await replicaLockers(dir);
      const lockPath = join(dir, 'up6.lock');
      staleLock(lockPath);
      const { reached, goOn } = pauseFirstChange(lockPath);
      const first = a.newLock('up6');
      let firstHolds = false;
      const firstTaking = who.run('paused', () => first.lock(new AbortController().signal, () => undefined)).then(() => (firstHolds = true));
      await reached;
      // Meanwhile another request sees the same stale lock and takes it over.
      const second = b.newLock('up6');
      await second.lock(new AbortController().signal, () => undefined);
      const held = readFileSync(lockPath, 'utf8');
      goOn();
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(firstHolds, false, 'both requests hold the lock: the first removed the lock the second had just taken');
      assert.equal(readFileSync(lockPath, 'utf8'), held, "the second request's lock was replaced");
      await second.unlock();
      await firstTaking;
      await first.unlock();
      assert.deepEqual(readdirSync(dir), [], 'nothing is left behind');
    });

    it('takes over a stale lock whose claim a request left behind (it died holding it), once held for the stale period', async function () {
      this.timeout(30_000);
      const [a] = await replicaLockers(dir, 20_000);
      const lockPath = join(dir, 'up8.lock');
      staleLock(lockPath);
      const claimPath = `${lockPath}.takeover`;
      writeFileSync(claimPath, '');
      const refused = claimRefused(lockPath, 2);
      const lock = a.newLock('up8');
      let taken = false;
      const taking = who.run('waiting', () => lock.lock(new AbortController().signal, () => undefined)).then(() => (taken = true));
      await refused;
      assert.equal(taken, false, 'taken over while another request may still hold its claim');
      aged.age(claimPath, LOCK_STALE_MS + 5_000);
      await taking;
      await lock.unlock();
      assert.deepEqual(readdirSync(dir), [], 'nothing is left behind');
    });

    it('leaves a lock that a request took over while the sweep looked at it', async function () {
      this.timeout(10_000);
      const [a, b] = await replicaLockers(dir);
      const lockPath = join(dir, 'up7.lock');
      staleLock(lockPath);
      const { reached, goOn } = pauseFirstChange(lockPath);
      const sweeping = who.run('paused', () => a.sweep());
      await reached;
      const taker = b.newLock('up7');
      await taker.lock(new AbortController().signal, () => undefined);
      const held = readFileSync(lockPath, 'utf8');
      goOn();
      assert.equal(await sweeping, 0);
      assert.equal(readFileSync(lockPath, 'utf8'), held, 'the sweep removed the lock a request had just taken over');
      await taker.unlock();
      assert.deepEqual(readdirSync(dir), []);
    });
  });
});
