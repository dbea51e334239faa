import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ABANDONED_MS, UploadCompletions } from '../../src/api/http/upload-completions';
import { agedFiles } from '../support/aged-files';
import { pausedFs } from '../support/paused-fs';

const EXPIRY_MS = 24 * 3600_000;

describe('UploadCompletions (one completion of an upload across replicas)', () => {
  let dataDir: string;
  let markers: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'snapgraph-upload-completions-'));
    markers = join(dataDir, 'upload-completions');
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));
  // A claim's age is its ctime, which no test sets: the claims planted here look as old as a test says.
  const aged = agedFiles();
  afterEach(aged.restore);

  /** What two replicas sharing one data dir each have: their own UploadCompletions. */
  const replicas = async () => [await UploadCompletions.open(dataDir, EXPIRY_MS), await UploadCompletions.open(dataDir, EXPIRY_MS)];

  /** The marker a replica that stopped while it verified the upload left: its heartbeat long stopped. */
  function abandonedMarker(id: string, at = Date.now() - ABANDONED_MS - 5_000): string {
    const path = join(markers, `${id}.json`);
    writeFileSync(path, JSON.stringify({ tenantId: 't1', sizeBytes: 10, at, heartbeatAt: Date.now() - ABANDONED_MS - 5_000, operationId: null }));
    return path;
  }

  /** A restore that counts its runs and answers `operationId`. */
  function restoreAs(operationId: string, runs: string[]): () => Promise<string> {
    return async () => {
      runs.push(operationId);
      return operationId;
    };
  }

  describe('taking over an abandoned marker, two replicas at once', () => {
    // The completions module calls node:fs/promises through its exports: each call of `paused`'s run waits, at its
    // first change to the marker's name (removing, renaming or linking it), until the test lets it go on.
    const { who, pauseFirstChange, claimRefused, restore } = pausedFs();
    afterEach(restore);

    it('lets one replica take it over: the other, that saw it abandoned as well, answers with its operation', async () => {
      const [a, b] = await replicas();
      const path = abandonedMarker('up1');
      const runs: string[] = [];
      const { reached, goOn } = pauseFirstChange(path);
      const first = who.run('paused', () => a.run('up1', 't1', 10, restoreAs('op-a', runs)));
      await reached;
      // Meanwhile the other replica sees the same abandoned marker, takes it over and completes the upload.
      assert.equal(await b.run('up1', 't1', 10, restoreAs('op-b', runs)), 'op-b');
      const completed = readFileSync(path, 'utf8');
      goOn();
      assert.equal(await first, 'op-b', 'the first replica took over the marker the second had just taken over, and restored the upload again');
      assert.deepEqual(runs, ['op-b']);
      assert.equal(readFileSync(path, 'utf8'), completed, "the second replica's marker was replaced");
      assert.deepEqual(readdirSync(markers), ['up1.json'], 'nothing is left behind');
    });

    it('makes the other replica wait while one takes it over, and answers it with that one\'s operation', async () => {
      const [a, b] = await replicas();
      const path = abandonedMarker('up2');
      const runs: string[] = [];
      // The first replica holds the marker's claim, and is about to put its own marker in place of the abandoned one.
      const { reached, goOn } = pauseFirstChange(path, ['rename']);
      const taking = who.run('paused', () => a.run('up2', 't1', 10, restoreAs('op-a', runs)));
      await reached;
      const refused = claimRefused(path);
      const waiting = who.run('waiting', () => b.run('up2', 't1', 10, restoreAs('op-b', runs)));
      await refused;
      goOn();
      assert.equal(await taking, 'op-a');
      assert.equal(await waiting, 'op-a');
      assert.deepEqual(runs, ['op-a']);
      assert.deepEqual(readdirSync(markers), ['up2.json'], 'nothing is left behind');
    });

    it('takes over a marker whose claim a replica left behind (it died holding it), once held as long as abandoned', async () => {
      const [a] = await replicas();
      const path = abandonedMarker('up3');
      const claimPath = `${path}.takeover`;
      writeFileSync(claimPath, '');
      const runs: string[] = [];
      const refused = claimRefused(path, 2);
      const running = who.run('waiting', () => a.run('up3', 't1', 10, restoreAs('op-a', runs)));
      await refused;
      assert.deepEqual(runs, [], 'taken over while another replica may still hold its claim');
      aged.age(claimPath, ABANDONED_MS + 5_000);
      assert.equal(await running, 'op-a', 'the claim left behind blocked the takeover');
      assert.deepEqual(runs, ['op-a']);
      assert.deepEqual(readdirSync(markers), ['up3.json'], 'nothing is left behind');
    });

    it('leaves a marker that a replica took over while the sweep looked at it', async () => {
      const [a, b] = await replicas();
      const path = abandonedMarker('up4', Date.now() - EXPIRY_MS - 5_000);
      const runs: string[] = [];
      const { reached, goOn } = pauseFirstChange(path);
      const sweeping = who.run('paused', () => a.sweep());
      await reached;
      assert.equal(await b.run('up4', 't1', 10, restoreAs('op-b', runs)), 'op-b');
      const completed = readFileSync(path, 'utf8');
      goOn();
      assert.equal(await sweeping, 0);
      assert.equal(readFileSync(path, 'utf8'), completed, 'the sweep removed the marker a replica had just taken over');
    });
  });

  it('sweeps the takeover claims their replicas left behind (a crash while taking over), not one being held', async () => {
    const [a] = await replicas();
    abandonedMarker('up5');
    writeFileSync(join(markers, 'up5.json.takeover'), '');
    assert.equal(await a.sweep(), 0);
    assert.deepEqual(readdirSync(markers).sort(), ['up5.json', 'up5.json.takeover']);
    // A claim is held for a few file operations: one held for the abandoned period is left behind.
    assert.equal(await a.sweep(Date.now() + ABANDONED_MS + 5_000), 1);
    assert.deepEqual(readdirSync(markers), ['up5.json']);
  });

  it('sweeps the temporary files of marker writes their replicas died in, not one being written', async () => {
    const [a] = await replicas();
    const writing = join(markers, 'up6.json.tmp-0123456789ab');
    writeFileSync(writing, '{}');
    assert.equal(await a.sweep(), 0);
    assert.deepEqual(readdirSync(markers), ['up6.json.tmp-0123456789ab'], 'the sweep removed a marker being written');
    assert.equal(await a.sweep(Date.now() + ABANDONED_MS + 5_000), 1);
    assert.deepEqual(readdirSync(markers), []);
  });
});
