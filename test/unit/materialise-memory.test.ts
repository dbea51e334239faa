// A store materialised from a long replay (a point in time far from its base) keeps SQLite's memory within the heap
// every graph-store connection shares (SQLITE_HEAP_BYTES): what the replay must remember of every id it touched goes
// to disk as it grows, rather than into memory that no limit recycles. Run in a child process, whose SQLite heap is
// given a hard limit (the limit is the process's, and this one's other connections would count against it).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const MATERIALISER = resolve(__dirname, '..', '..', 'src', 'graph', 'sqlite-materialiser.js');
const CONNECTION = resolve(__dirname, '..', '..', 'src', 'graph', 'sqlite-connection.js');

// 3M nodes created by the replay (lines as small as lines get), under a hard limit of 40 MiB: 8 MiB above the soft limit
// that the page caches are recycled at.
const CHILD = `
const { materialiseStore } = require(${JSON.stringify(MATERIALISER)});
const { SqliteConnection } = require(${JSON.stringify(CONNECTION)});
(async () => {
  const limit = await SqliteConnection.open(':memory:');
  await limit.exec('PRAGMA hard_heap_limit = ${40 * 1024 * 1024}');
  async function* deltas() {
    for (let start = 1; start <= 3000000; start += 5000) {
      const lines = [];
      for (let id = start; id < start + 5000; id++) lines.push('["N","' + id + '",[],{}]');
      yield { kind: 'node', lines };
    }
  }
  const stats = await materialiseStore(process.argv[1], null, deltas(), null);
  process.stdout.write(String(stats.nodeCount));
})().catch((error) => {
  process.stdout.write(error.message);
  process.exitCode = 1;
});
`;

describe('materialising a store', () => {
  it('replays 3M records within a 40 MiB SQLite heap: the ids it touched do not stay in memory', async function () {
    this.timeout(60_000);
    const dir = mkdtempSync(join(tmpdir(), 'materialise-memory-'));
    try {
      const result = await promisify(execFile)(process.execPath, ['-e', CHILD, join(dir, 'store.sqlite')]).catch((error) => error);
      assert.equal(result.stdout, '3000000', `the replay failed: ${result.stdout}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
