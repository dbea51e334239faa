import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLAIM_SUFFIX, withClaim } from '../../src/storage/file-claim';
import { agedFiles } from '../support/aged-files';
import { type NameChange, pausedFs } from '../support/paused-fs';

const STALE_MS = 15_000;

describe('withClaim (one process at a time acts on a shared file)', () => {
  let dir: string;
  let path: string;
  let claimPath: string;
  const aged = agedFiles();
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-file-claim-'));
    path = join(dir, 'up1.json');
    claimPath = `${path}${CLAIM_SUFFIX}`;
    writeFileSync(path, 'the claimed file');
  });
  afterEach(() => {
    aged.restore();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A claim its holder left behind, dying between making it and removing it (a file of its own: see agedFiles). */
  function claimLeftBehind(at: string, heldMs: number): void {
    writeFileSync(at, '');
    if (heldMs > 0) aged.age(at, heldMs);
  }

  it('takes over a claim held for longer than the stale period (its holder died), and not one held for less', async () => {
    claimLeftBehind(claimPath, STALE_MS - 5_000);
    assert.equal(await withClaim(path, { staleMs: STALE_MS }, async () => 'ran'), null, 'a claim held for less was taken over');
    claimLeftBehind(claimPath, STALE_MS + 5_000);
    assert.equal(await withClaim(path, { staleMs: STALE_MS }, async ({ text }) => text), 'the claimed file');
    assert.deepEqual(readdirSync(dir), ['up1.json'], 'nothing is left behind');
  });

  it('takes over a stale claim whose taker died too, once the claim of the claim is stale as well', async () => {
    claimLeftBehind(claimPath, STALE_MS + 5_000);
    const claimOfClaim = `${claimPath}${CLAIM_SUFFIX}`;
    claimLeftBehind(claimOfClaim, 0);
    assert.equal(await withClaim(path, { staleMs: STALE_MS }, async () => 'ran'), null, 'taken over while another took it over');
    aged.age(claimOfClaim, STALE_MS + 5_000);
    assert.equal(await withClaim(path, { staleMs: STALE_MS }, async () => 'ran'), 'ran');
    assert.deepEqual(readdirSync(dir), ['up1.json'], 'nothing is left behind');
  });

  describe('two processes that found the same stale claim', () => {
    // The claim module calls node:fs/promises through its exports: `paused`'s first change of the kinds named (writeFile,
    // rm, ...) to the path named waits until the test lets it go on.
    const { who, pauseFirstChange, restore } = pausedFs();
    afterEach(restore);

    /**
     * One process's withClaim: its fn records that it ran, and holds the claim until end(); `settledOrHolding` resolves
     * once it was told another holds the claim, or holds it.
     */
    function contender(name: string, ran: string[]) {
      let holds!: () => void;
      let end!: () => void;
      const holding = new Promise<void>((resolve) => (holds = resolve));
      const ending = new Promise<void>((resolve) => (end = resolve));
      const outcome = withClaim(path, { staleMs: STALE_MS }, async () => {
        ran.push(name);
        holds();
        await ending;
        return name;
      });
      return { outcome, settledOrHolding: Promise.race([holding, outcome]), end };
    }

    /** Both contend for the stale claim, the first paused at its first `op` on `pausedPath` until the second has settled or holds the claim. */
    async function race(pausedPath: string, op: NameChange): Promise<{ ran: string[]; outcomes: (string | null)[] }> {
      claimLeftBehind(claimPath, STALE_MS + 5_000);
      const ran: string[] = [];
      const { reached, goOn } = pauseFirstChange(pausedPath, [op]);
      const first = who.run('paused', () => contender('first', ran));
      await Promise.race([reached, first.outcome]);
      const second = contender('second', ran);
      await second.settledOrHolding;
      goOn();
      await first.settledOrHolding;
      first.end();
      second.end();
      const outcomes = [await first.outcome, await second.outcome];
      assert.deepEqual(readdirSync(dir), ['up1.json'], 'nothing is left behind');
      return { ran, outcomes };
    }

    it('lets one remove it and take the claim: the other, looking meanwhile, is told another holds it', async () => {
      // The first is about to remove the stale claim.
      const { ran, outcomes } = await race(claimPath, 'rm');
      assert.deepEqual(ran, ['first'], 'both held the claim: the first removed the one the second had made meanwhile');
      assert.deepEqual(outcomes, ['first', null]);
    });

    it('lets one take the claim: the other, that had found it stale first, leaves the claim made since', async () => {
      // The first found the claim stale, and is about to make the claim of the claim; meanwhile the second removes the
      // stale claim, and holds a claim of its own.
      const { ran, outcomes } = await race(`${claimPath}${CLAIM_SUFFIX}`, 'writeFile');
      assert.deepEqual(ran, ['second'], 'both held the claim: the first removed the one the second had made meanwhile');
      assert.deepEqual(outcomes, [null, 'second']);
    });
  });
});
