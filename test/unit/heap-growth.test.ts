import { strict as assert } from 'node:assert';
import { BULK_HEADROOM_BYTES, HeapGrowth } from '../../src/runtime/heap-growth';

describe('HeapGrowth', () => {
  /** A heap of a quarter of the bulk headroom: while streams run, it may grow by 400%. */
  function recorded(heapBytes = BULK_HEADROOM_BYTES / 4) {
    const flags: string[] = [];
    return { flags, growth: new HeapGrowth((flag) => flags.push(flag), () => heapBytes) };
  }

  it('bounds the growth, lifts it while bulk streams run, and brings it back when the last one ends', async () => {
    const { flags, growth } = recorded();
    growth.limit(50);
    let endFirst!: () => void;
    const first = growth.whileStreamingBulk(() => new Promise<void>((resolve) => (endFirst = resolve)));
    const second = growth.whileStreamingBulk(async () => 'second');
    assert.equal(await second, 'second');
    assert.deepEqual(flags, ['--heap-growing-percent=50', '--heap-growing-percent=400'], 'lifted once, still lifted while one runs');
    endFirst();
    await first;
    assert.deepEqual(flags.at(-1), '--heap-growing-percent=50');
    assert.equal(flags.length, 3);
  });

  it('brings the bound back when a stream fails', async () => {
    const { flags, growth } = recorded();
    growth.limit(40);
    await assert.rejects(growth.whileStreamingBulk(async () => Promise.reject(new Error('client went away'))), /client went away/);
    assert.deepEqual(flags, ['--heap-growing-percent=40', '--heap-growing-percent=400', '--heap-growing-percent=40']);
  });

  it('lifts the bound while a bulk source is read, and brings it back when it ends or its reader stops', async () => {
    const { flags, growth } = recorded();
    growth.limit(50);
    async function* pieces() {
      yield 1;
      yield 2;
      yield 3;
    }
    const read: number[] = [];
    for await (const piece of growth.bulkPieces(pieces())) {
      read.push(piece);
      assert.equal(flags.at(-1), '--heap-growing-percent=400');
    }
    assert.deepEqual(read, [1, 2, 3]);
    assert.equal(flags.at(-1), '--heap-growing-percent=50');
    for await (const piece of growth.bulkPieces(pieces())) if (piece === 1) break;
    assert.equal(flags.at(-1), '--heap-growing-percent=50', 'back once the reader stopped');
    assert.deepEqual(flags, ['--heap-growing-percent=50', '--heap-growing-percent=400', '--heap-growing-percent=50', '--heap-growing-percent=400', '--heap-growing-percent=50']);
  });

  it('keeps the bound while streams run when it leaves the heap room enough already (a large live heap)', async () => {
    const { flags, growth } = recorded(BULK_HEADROOM_BYTES * 4);
    growth.limit(50);
    await growth.whileStreamingBulk(async () => undefined);
    assert.deepEqual(flags, ['--heap-growing-percent=50']);
    const smaller = recorded(BULK_HEADROOM_BYTES * 1.6);
    smaller.growth.limit(50);
    await smaller.growth.whileStreamingBulk(async () => undefined);
    assert.deepEqual(smaller.flags, ['--heap-growing-percent=50', '--heap-growing-percent=63', '--heap-growing-percent=50'], 'room for the headroom: 62.5%, rounded up');
  });

  it('leaves V8 alone when there is no bound (0, or never set), streams or not', async () => {
    const { flags, growth } = recorded();
    growth.limit(0);
    await growth.whileStreamingBulk(async () => undefined);
    assert.deepEqual(flags, []);
    const unset = recorded();
    await unset.growth.whileStreamingBulk(async () => undefined);
    assert.deepEqual(unset.flags, []);
  });
});
