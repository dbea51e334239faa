// Store-level figures behind restore points made of a physical base and logical deltas: sizes of a store, of the
// pages and of the rows that change when 1% of the nodes are updated, and the times of a base copy and of a
// materialise against their plain-file baselines (`sqlite3 .backup`; `gzip -d` of a `gzip -1` copy + fsync), run
// interleaved. Prints figures; asserts nothing.
// Usage: node dist/scripts/bench/store-deltas.js [--nodes 1000000] [--relationships 2000000] [--pairs 3] [--deltas 24]
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { lineBatches } from '../../src/graph/line-batches';
import type { DeltaBatch, GraphStats } from '../../src/graph/records';
import { SqliteConnection } from '../../src/graph/sqlite-connection';
import { SqliteGraphLoader, SqliteGraphStore, removeStoreFiles } from '../../src/graph/sqlite-graph-store';
import { materialiseStore } from '../../src/graph/sqlite-materialiser';
import { flag, MiB } from './server-process';
import { rng, syntheticGraph } from './synthetic-graph';

const LIMITS = { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER };
const PAGE = 4096;
const CHUNK = 256 * 1024;

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const start = process.hrtime.bigint();
  const result = await fn();
  return [Number(process.hrtime.bigint() - start) / 1e9, result];
}

const sh = (command: string) => execFileSync('sh', ['-c', command], { maxBuffer: 1 << 20 }).toString().trim();
const gzip1Bytes = (path: string) => Number(sh(`gzip -1 -c '${path}' | wc -c`));

/** Updates `count` distinct random nodes (their properties, as an application would: same fields, new values). */
async function updateRandomNodes(store: SqliteGraphStore, nodes: number, count: number, random: () => number, round: number) {
  const ids = new Set<number>();
  while (ids.size < count) ids.add(1 + Math.floor(random() * nodes));
  const all = [...ids];
  for (let start = 0; start < all.length; start += 1_000) {
    await store.updateNodes(
      all.slice(start, start + 1_000).map((id) => ({
        id: String(id),
        properties: { name: `node-${id}`, age: id % 97, score: Math.round(random() * 1e6) / 1e3, active: id % 2 === 0, tags: ['a', 'b'], rev: round },
      })),
      LIMITS,
    );
  }
}

/** The store's change log since a seq, as the batches a materialise applies, and where the store stands after it. */
async function readDelta(store: SqliteGraphStore, since: number): Promise<{ seq: number; stats: GraphStats; batches: DeltaBatch[] }> {
  const { seq, stats } = await store.position();
  const pieces: Buffer[] = [];
  for (let after = since; after < seq; ) {
    const entries = await store.readLog(after, 1 << 20);
    for (const entry of entries) pieces.push(Buffer.from(entry.lines.join('\n') + '\n'));
    after = entries[entries.length - 1].seq;
  }
  const batches: DeltaBatch[] = [];
  for await (const batch of lineBatches(Readable.from(pieces))) batches.push(batch);
  return { seq, stats, batches };
}

/** Fraction of fixed-size blocks that differ between two files, and the gzip -1 size of the differing ones. */
function blockDiff(a: Buffer, b: Buffer, size: number) {
  const blocks = Math.ceil(Math.max(a.length, b.length) / size);
  const changed: Buffer[] = [];
  for (let i = 0; i < blocks; i++) {
    const left = a.subarray(i * size, (i + 1) * size);
    const right = b.subarray(i * size, (i + 1) * size);
    if (!left.equals(right)) changed.push(right);
  }
  const bytes = Buffer.concat(changed);
  return { fraction: changed.length / blocks, changedBytes: bytes.length, gzip1: gzipSync(bytes, { level: 1 }).length };
}

async function* chain(deltas: DeltaBatch[][]): AsyncIterable<DeltaBatch> {
  for (const delta of deltas) yield* delta;
}

function summary(values: number[]): string {
  const sorted = [...values].sort((x, y) => x - y);
  return `median ${sorted[Math.floor(sorted.length / 2)].toFixed(2)} (range ${sorted[0].toFixed(2)}–${sorted[sorted.length - 1].toFixed(2)})`;
}

async function main() {
  const nodes = flag('nodes', 1_000_000);
  const relationships = flag('relationships', 2_000_000);
  const pairs = flag('pairs', 3);
  const deltaCount = flag('deltas', 24);
  const dir = mkdtempSync(join(tmpdir(), 'snapgraph-store-deltas-'));
  const file = (name: string) => join(dir, name);
  try {
    const loader = await SqliteGraphLoader.create(file('source.sqlite'), { maxNodes: null, maxRelationships: null, maxBytes: Number.MAX_SAFE_INTEGER }, async () => undefined);
    for await (const batch of syntheticGraph(nodes, relationships)) await loader.insert(batch);
    await loader.finish();
    const store = await SqliteGraphStore.open(file('source.sqlite'));
    const random = rng(7);
    const onePercent = Math.round(nodes / 100);
    console.log(`store: ${nodes} nodes, ${relationships} relationships; ${onePercent} nodes updated per round`);

    // A live store has been written to since it was loaded: one round of updates before the first base.
    await updateRandomNodes(store, nodes, onePercent, random, 0);
    const base0 = await store.captureBase(file('base0.sqlite'));
    const storeBytes = statSync(file('base0.sqlite')).size;
    console.log(`(a) store file ${MiB(storeBytes)}, gzip -1 ${MiB(gzip1Bytes(file('base0.sqlite')))}`);
    const freelist = await (async () => {
      const db = await SqliteConnection.open(file('base0.sqlite'));
      const row = await db.get<{ free: number }>(`SELECT freelist_count AS free FROM pragma_freelist_count`);
      await db.close();
      return row!.free;
    })();
    console.log(`    free pages in the copy: ${freelist}`);

    await updateRandomNodes(store, nodes, onePercent, random, 1);
    const delta1 = await readDelta(store, base0.seq);
    await store.captureBase(file('base1.sqlite'));
    const [b0, b1] = [readFileSync(file('base0.sqlite')), readFileSync(file('base1.sqlite'))];
    for (const size of [PAGE, CHUNK]) {
      const diff = blockDiff(b0, b1, size);
      console.log(
        `(b) ${size / 1024} KiB blocks changed between two base copies 1% apart: ${(diff.fraction * 100).toFixed(1)}%, ` +
          `${MiB(diff.changedBytes)}, gzip -1 ${MiB(diff.gzip1)}`,
      );
    }
    const lines = delta1.batches.flatMap((batch) => batch.lines).join('\n');
    console.log(
      `(c) delta of 1%: ${delta1.batches.reduce((sum, batch) => sum + batch.lines.length, 0)} lines, ${MiB(Buffer.byteLength(lines))}, ` +
        `gzip -1 ${(gzipSync(lines, { level: 1 }).length / 1024).toFixed(0)} KiB`,
    );

    // Would a VACUUMed copy do better? Its time, its size, and how much of it a 1% change rewrites.
    const [vacuumSeconds] = await timed(async () => {
      const db = await SqliteConnection.open(file('base0.sqlite'));
      await db.exec(`VACUUM INTO '${file('vacuum0.sqlite')}'`);
      await db.close();
    });
    const db1 = await SqliteConnection.open(file('base1.sqlite'));
    await db1.exec(`VACUUM INTO '${file('vacuum1.sqlite')}'`);
    await db1.close();
    const vacuumDiff = blockDiff(readFileSync(file('vacuum0.sqlite')), readFileSync(file('vacuum1.sqlite')), PAGE);
    console.log(
      `    VACUUM INTO of a copy: ${vacuumSeconds.toFixed(2)} s, ${MiB(statSync(file('vacuum0.sqlite')).size)}; ` +
        `4 KiB pages changed between two vacuumed copies 1% apart: ${(vacuumDiff.fraction * 100).toFixed(1)}%`,
    );
    rmSync(file('vacuum0.sqlite'));
    rmSync(file('vacuum1.sqlite'));

    const [checkSeconds] = await timed(async () => {
      const db = await SqliteConnection.open(file('base0.sqlite'));
      await db.all(`PRAGMA quick_check`);
      await db.close();
    });
    console.log(`    PRAGMA quick_check of the copy: ${checkSeconds.toFixed(2)} s`);

    // (d) base copy versus sqlite3 .backup, interleaved.
    const capture: number[] = [];
    const backup: number[] = [];
    for (let pair = 0; pair < pairs; pair++) {
      const [cli] = await timed(async () => sh(`sqlite3 '${file('source.sqlite')}' ".backup '${file('cli.sqlite')}'"`));
      const [ours] = await timed(() => store.captureBase(file('capture.sqlite')));
      backup.push(cli);
      capture.push(ours);
      rmSync(file('cli.sqlite'));
      await removeStoreFiles(file('capture.sqlite'));
    }
    console.log(`(d) captureBase ${summary(capture)} s; sqlite3 .backup ${summary(backup)} s; ratio ${summary(capture.map((c, i) => c / backup[i]))}`);

    // The chain: delta1 and (deltaCount - 1) more rounds of 1%.
    const deltas = [delta1.batches];
    let last = delta1;
    for (let round = 2; round <= deltaCount; round++) {
      await updateRandomNodes(store, nodes, onePercent, random, round);
      last = await readDelta(store, last.seq);
      deltas.push(last.batches);
    }
    sh(`gzip -1 -c '${file('base0.sqlite')}' > '${file('base0.sqlite.gz')}'`);
    const restored = file('restored.sqlite');
    const runs = {
      plain: [] as number[],
      one: [] as number[],
      oneChecked: [] as number[],
      all: [] as number[],
    };
    for (let pair = 0; pair < pairs; pair++) {
      const [plain] = await timed(async () => sh(`gzip -dc '${file('base0.sqlite.gz')}' > '${restored}' && sync '${restored}'`));
      runs.plain.push(plain);
      await removeStoreFiles(restored);
      const [one] = await timed(() => materialiseStore(restored, createReadStream(file('base0.sqlite'), { highWaterMark: CHUNK }), chain(deltas.slice(0, 1)), delta1.stats));
      runs.one.push(one);
      const [oneChecked] = await timed(() =>
        materialiseStore(restored, createReadStream(file('base0.sqlite'), { highWaterMark: CHUNK }), chain(deltas.slice(0, 1)), delta1.stats, { quickCheck: true }),
      );
      runs.oneChecked.push(oneChecked);
      const [all] = await timed(() => materialiseStore(restored, createReadStream(file('base0.sqlite'), { highWaterMark: CHUNK }), chain(deltas), last.stats));
      runs.all.push(all);
      await removeStoreFiles(restored);
    }
    console.log(`    gzip -d of the gzip -1 copy + fsync: ${summary(runs.plain)} s`);
    console.log(`(d) materialise base + 1 delta: ${summary(runs.one)} s, ratio ${summary(runs.one.map((t, i) => t / runs.plain[i]))}`);
    console.log(`    the same with quick_check: ${summary(runs.oneChecked)} s, ratio ${summary(runs.oneChecked.map((t, i) => t / runs.plain[i]))}`);
    console.log(`(d) materialise base + ${deltas.length} deltas: ${summary(runs.all)} s, ratio ${summary(runs.all.map((t, i) => t / runs.plain[i]))}`);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
