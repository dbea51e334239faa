// Scratch files sealed under a key of their own, kept in memory: round trips, nothing plaintext on disk, damage found.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

import { BlobIntegrityError } from '../../src/crypto';
import { removeStaleScratchDirs, SealedScratchDir } from '../../src/storage/sealed-scratch-dir';

async function writeAll(dir: SealedScratchDir, name: string, parts: Buffer[]): Promise<void> {
  const writer = dir.createWriter(name);
  for (const part of parts) await writer.write(part);
  await writer.end();
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** CSV-like text, as the spools hold: every 64-byte window of it is distinctive. */
function csvText(bytes: number): Buffer {
  let text = '';
  for (let i = 0; text.length < bytes; i++) text += `${i},person-${i * 7919},"${randomBytes(6).toString('hex')}",KNOWS\n`;
  return Buffer.from(text.slice(0, bytes));
}

describe('SealedScratchDir', () => {
  const dirs: SealedScratchDir[] = [];
  const scratch = async () => {
    const dir = await SealedScratchDir.create('test-');
    dirs.push(dir);
    return dir;
  };
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await dir.remove();
  });

  it('gives back exactly what was written, across chunk boundaries and for an empty file, with its size', async () => {
    const dir = await scratch();
    for (const [name, data] of [['empty', Buffer.alloc(0)], ['one-chunk', csvText(65_536)], ['several', csvText(300_001)]] as const) {
      await writeAll(dir, name, [data.subarray(0, 1000), data.subarray(1000)]);
      assert.equal(await dir.size(name), data.length, name);
      assert.ok((await readAll(dir.createReadStream(name))).equals(data), name);
    }
  });

  it('keeps nothing of the plaintext on disk, in a private directory', async () => {
    const dir = await scratch();
    const data = csvText(200_000);
    await writeAll(dir, 'spool.csv', [data]);
    assert.equal(statSync(dir.path).mode & 0o777, 0o700);
    const stored = readFileSync(`${dir.path}/spool.csv`);
    for (let at = 0; at + 64 <= data.length; at += 4096) {
      assert.equal(stored.indexOf(data.subarray(at, at + 64)), -1, `plaintext at ${at} is on disk`);
    }
  });

  it('fails a read of a file altered on disk, and cannot read another directory’s files', async () => {
    const dir = await scratch();
    const data = csvText(150_000);
    await writeAll(dir, 'a', [data]);
    const path = `${dir.path}/a`;
    const stored = readFileSync(path);
    stored[stored.length - 100] ^= 1;
    writeFileSync(path, stored);
    await assert.rejects(readAll(dir.createReadStream('a')), BlobIntegrityError);

    const other = await scratch();
    await writeAll(dir, 'b', [data]);
    writeFileSync(`${other.path}/b`, readFileSync(`${dir.path}/b`));
    await assert.rejects(readAll(other.createReadStream('b')), /key/i);
  });

  it('fails the next write and the end of a writer whose file failed while nobody waited on it, and removes everything', async () => {
    const dir = await scratch();
    const writer = dir.createWriter('missing/x');
    // The open fails meanwhile, with no write or end() under way: it must neither go unhandled nor be lost.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await assert.rejects(writer.write(csvText(10)), /ENOENT/);
    await assert.rejects(writer.end(), /ENOENT/);
    await writeAll(dir, 'kept', [csvText(10)]);
    assert.deepEqual(readdirSync(dir.path), ['kept']);
    await dir.remove();
    assert.equal(existsSync(dir.path), false);
  });

  it("removes the scratch directories a crash left once they are a day old, and nobody's under way", async () => {
    const parent = mkdtempSync(join(tmpdir(), 'scratch-parent-'));
    try {
      const day = 24 * 3600_000;
      const now = Date.now();
      const make = (name: string, ageMs: number) => {
        const path = join(parent, name);
        mkdirSync(path);
        writeFileSync(join(path, 'spool'), 'sealed bytes');
        const at = new Date(now - ageMs);
        utimesSync(path, at, at);
      };
      make('snapgraph-scratch-admin-csv-export-left', day + 60_000);
      make('snapgraph-scratch-admin-csv-running', 60_000);
      make('someone-else-old', 2 * day);
      assert.equal(await removeStaleScratchDirs(parent, now), 1);
      assert.deepEqual(readdirSync(parent).sort(), ['snapgraph-scratch-admin-csv-running', 'someone-else-old']);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('lives in the OS temp dir under the name the boot looks for', async () => {
    const dir = await scratch();
    assert.equal(dirname(dir.path), tmpdir());
    assert.match(basename(dir.path), /^snapgraph-scratch-test-/);
  });
});
