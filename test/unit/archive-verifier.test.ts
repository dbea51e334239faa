// The upload's verifier (ArchiveReader.verify() on a worker thread, fed as the bytes arrive) gives the verdict verify()
// gives on the calling thread, for sound archives and for damage of every kind, the first damage in the file winning.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openArchive } from '../../src/archive';
import { ArchiveVerifier } from '../../src/archive/archive-verifier';
import { VerifierThreads } from '../../src/archive/verifier-threads';
import { craftArchive, frameDataOffsets, paddedArchive } from '../support';

type Verdict = { nodeCount: number } | { error: string };

const node = (id: number, labels: string[] = ['Person'], properties: Record<string, unknown> = { i: id }) => JSON.stringify(['N', String(id), labels, properties]);
const relationship = (id: number, start: number, end: number) => JSON.stringify(['R', String(id), 'KNOWS', String(start), String(end), { w: id / 7 }]);

function pieces(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

const verdictOf = (settled: Promise<{ stats: { nodeCount: number } }>): Promise<Verdict> =>
  settled.then(
    (header) => ({ nodeCount: header.stats.nodeCount }),
    (error: Error & { code?: string }) => ({ error: `${error.code}: ${error.message}` }),
  );

/** Verifier threads whose frames are checked on two more each (FramePool), whatever the machine's cores; and without. */
const pooled = new VerifierThreads(2, 2);
const unpooled = new VerifierThreads(1, 0);

/** Runs `test` on verifier threads of its own (no frame workers), ended afterwards whatever happens. */
async function withThreads(size: number, test: (threads: VerifierThreads) => Promise<void>): Promise<void> {
  const threads = new VerifierThreads(size, 0);
  try {
    await test(threads);
  } finally {
    await threads.close();
  }
}

/** On a verifier thread, its frames checked on two more (FramePool), or with frameWorkers 0 on that thread itself. */
async function twoThreads(bytes: Buffer, frameWorkers = 2, threads = frameWorkers > 0 ? pooled : unpooled): Promise<Verdict> {
  const verifier = new ArchiveVerifier({ threads });
  const verdict = verdictOf(verifier.result);
  // A verdict of damage ends the verifier as a stream: what is still being written is refused.
  await pipeline(Readable.from(pieces(bytes, 64 * 1024)), verifier).catch(() => undefined);
  return verdict;
}

const oneThread = (bytes: Buffer): Promise<Verdict> => verdictOf(openArchive(Readable.from(pieces(bytes, 64 * 1024))).verify());

async function assertSameVerdict(bytes: Buffer, expected: RegExp | number): Promise<void> {
  const [two, one] = await Promise.all([twoThreads(bytes), oneThread(bytes)]);
  assert.deepEqual(two, one);
  if (typeof expected === 'number') assert.deepEqual(two, { nodeCount: expected });
  else assert.match((two as { error: string }).error, expected);
}

describe('ArchiveVerifier', () => {
  after(() => Promise.all([pooled.close(), unpooled.close()]));

  const nodes = Array.from({ length: 3_000 }, (_, i) => node(i + 1, i % 2 ? ['Person'] : ['Person', 'Admin'], { i, text: 'x'.repeat(i % 300) }));
  const relationships = Array.from({ length: 1_000 }, (_, i) => relationship(i + 1, i + 1, 3_000 - i));
  const sound = [...nodes, ...relationships];

  it('accepts a sound archive, in frames small and large', async () => {
    await assertSameVerdict(craftArchive(sound, { linesPerFrame: 3 }), 3_000);
    await assertSameVerdict(craftArchive(sound, { linesPerFrame: 500 }), 3_000);
  });

  it('checks the frames itself when it has no frame workers (machines of two cores)', async () => {
    assert.deepEqual(await twoThreads(craftArchive(sound, { linesPerFrame: 50 }), 0), { nodeCount: 3_000 });
    const lines = [...sound];
    lines[2_345] = node(2_346, ['Person'], 'not an object' as never);
    assert.match((await twoThreads(craftArchive(lines), 0) as { error: string }).error, /INVALID_RECORD: .*node record 2346/);
  });

  it('names the bad record, however far into the file', async () => {
    const lines = [...sound];
    lines[2_345] = node(2_346, ['Person'], 'not an object' as never);
    await assertSameVerdict(craftArchive(lines), /INVALID_RECORD: .*node record 2346/);
  });

  it('reports the first damage in the file: a bad record before a damaged frame', async () => {
    const lines = [...sound];
    lines[150] = '["N","151",["Person"],{"i":}]';
    const bytes = craftArchive(lines);
    bytes[frameDataOffsets(bytes)[2] + 5] ^= 0xff;
    await assertSameVerdict(bytes, /node record 151 is not valid JSON/);
  });

  it('reports a damaged frame before a bad record', async () => {
    const lines = [...sound];
    lines[250] = '["N","251",["Person"],{"i":}]';
    const bytes = craftArchive(lines);
    bytes[frameDataOffsets(bytes)[1] + 5] ^= 0xff;
    await assertSameVerdict(bytes, /CORRUPT/);
  });

  it('checks the order of kinds and the counts across frames', async () => {
    await assertSameVerdict(craftArchive([...nodes.slice(0, 10), relationships[0], nodes[10]]), /node record 11 follows the relationships/);
    await assertSameVerdict(craftArchive(sound, { stats: { nodeCount: 2_999 } }), /COUNT_MISMATCH/);
    await assertSameVerdict(craftArchive(sound, { stats: { nodeCount: 3_001 } }), /COUNT_MISMATCH/);
    await assertSameVerdict(craftArchive(sound, { stats: { labels: [{ name: 'Person', count: 3_000 }, { name: 'Admin', count: 1_499 }] } }), /Admin/);
    await assertSameVerdict(craftArchive(sound, { stats: { labels: [{ name: 'Person', count: 1 }, { name: 'Person', count: 1 }] } }), /twice/);
  });

  it('applies the rules across frames in the file\'s order when every frame holds a few records (checked on several threads)', async () => {
    const small = { linesPerFrame: 7 };
    await assertSameVerdict(craftArchive([...nodes.slice(0, 10), relationships[0], nodes[10]], small), /node record 11 follows the relationships/);
    // The relationship ends one frame, the node starts the next.
    await assertSameVerdict(craftArchive([...nodes.slice(0, 6), relationships[0], nodes[6]], small), /node record 7 follows the relationships/);
    await assertSameVerdict(craftArchive(sound, { ...small, stats: { nodeCount: 2_999 } }), /COUNT_MISMATCH: .*2999 nodes .* or more/);
    await assertSameVerdict(craftArchive(sound, { ...small, stats: { relationshipCount: 999 } }), /COUNT_MISMATCH/);
    await assertSameVerdict(craftArchive(sound, { ...small, stats: { labels: [{ name: 'Person', count: 3_000 }, { name: 'Admin', count: 1_499 }] } }), /node record 2999 is one more/);
    await assertSameVerdict(craftArchive(sound, { ...small, stats: { relationshipTypes: [{ name: 'KNOWS', count: 999 }] } }), /relationship record 1000 is one more/);
    const unlisted = [...sound];
    unlisted[1_234] = node(1_235, ['Robot']);
    const listed = { labels: [{ name: 'Person', count: 2_999 }, { name: 'Admin', count: 1_499 }] };
    await assertSameVerdict(craftArchive(unlisted, { ...small, stats: listed }), /node record 1235 has the label "Robot"/);
    // A bad record in one frame (records 701-707) and a label too many in the next (record 709, the 355th Admin): the
    // bad record, first in the file, is the verdict; without it, the label.
    const admins = { labels: [{ name: 'Person', count: 3_000 }, { name: 'Admin', count: 354 }] };
    await assertSameVerdict(craftArchive(sound, { ...small, stats: admins }), /node record 709 is one more/);
    const both = [...sound];
    both[700] = '["N","701",["Person"],{"i":}]';
    await assertSameVerdict(craftArchive(both, { ...small, stats: admins }), /node record 701 is not valid JSON/);
    const damaged = craftArchive(sound, small);
    damaged[frameDataOffsets(damaged)[300] + 2] ^= 0xff;
    await assertSameVerdict(damaged, /CORRUPT: .*checksum of the frame/);
    // The bad record's frame (100) is with a worker when the damaged frame two after it is read: the record still wins.
    const recordThenFrame = craftArchive(both, { ...small, stats: admins });
    recordThenFrame[frameDataOffsets(recordThenFrame)[102] + 2] ^= 0xff;
    await assertSameVerdict(recordThenFrame, /node record 701 is not valid JSON/);
  });

  it('gets through a node of a million labels (a few MiB of upload) to its verdict', async () => {
    // Each label was compared with every one before it: the thread was held for most of an hour (and inspectFile, which
    // verifies on the event loop, held the server).
    const labels = Array.from({ length: 1_000_000 }, (_, i) => `L${i}`);
    const archive = craftArchive([node(1, labels)], { stats: { nodeCount: 1, relationshipCount: 0, labels: [], relationshipTypes: [] } });
    assert.match(((await twoThreads(archive, 0)) as { error: string }).error, /COUNT_MISMATCH: .*label "L0", which its header does not list/);
  });

  it('checks the digest, the end and what follows it', async () => {
    const bytes = craftArchive(sound);
    const digestDamaged = Buffer.from(bytes);
    digestDamaged[digestDamaged.length - 1] ^= 0x01;
    await assertSameVerdict(digestDamaged, /SHA-256/);
    await assertSameVerdict(Buffer.concat([bytes, Buffer.from('more')]), /unexpected data after its end/);
    await assertSameVerdict(bytes.subarray(0, bytes.length - 20), /TRUNCATED/);
    await assertSameVerdict(bytes.subarray(0, Math.floor(bytes.length / 2)), /TRUNCATED/);
  });

  it('checks a large frame a slice at a time (taking turns) with the verdict of the whole frame at once', async () => {
    // Frames of about 2 MiB of records: two slices and a bit each.
    const lines = Array.from({ length: 30_000 }, (_, i) => node(i + 1, ['Person'], { i, text: 'y'.repeat(40 + (i % 50)) }));
    await assertSameVerdict(craftArchive(lines, { linesPerFrame: 15_000 }), 30_000);
    const late = [...lines];
    late[15_000 + 13_500] = '["N","28501",["Person"],{"i":}]';
    await assertSameVerdict(craftArchive(late, { linesPerFrame: 15_000 }), /node record 28501 is not valid JSON/);
    const cut = [...lines.slice(0, 20_000)];
    await assertSameVerdict(craftArchive(cut, { linesPerFrame: 15_000, stats: { nodeCount: 30_000 } }), /COUNT_MISMATCH|CORRUPT/);
  });

  it('verifies many uploads at once on the threads it is given, each to its own verdict', async () => {
    await withThreads(2, async (threads) => {
      const archives = Array.from({ length: 7 }, (_, i) => {
        const lines = nodes.slice(0, 1_000 + i * 250);
        if (i % 3 === 1) lines[700 + i] = '["N","x",["Person"],{}]';
        const bytes = craftArchive(lines, { linesPerFrame: 40 });
        if (i % 3 === 2) bytes[frameDataOffsets(bytes)[5] + 3] ^= 0xff;
        return bytes;
      });
      const verifying = archives.map((bytes) => twoThreads(bytes, 0, threads));
      assert.equal(threads.threads, 2, 'a thread each for the first two, then shared');
      const verdicts = await Promise.all(verifying);
      assert.deepEqual(verdicts, await Promise.all(archives.map(oneThread)));
      assert.ok(verdicts.filter((verdict) => 'nodeCount' in verdict).length === 3 && verdicts.filter((verdict) => 'error' in verdict).length === 4);
    });
  });

  it('shares a thread\'s bytes in flight between its uploads: large ones, written in small pieces, all get their verdicts', async function () {
    this.timeout(30_000);
    // Random text: about 18 MiB stored each, more than a thread's bytes in flight (16 MiB) and than each one's share.
    const large = Array.from({ length: 24_000 }, (_, i) => node(i + 1, ['Person'], { i, text: randomBytes(768).toString('base64') }));
    const sound = craftArchive(large, { linesPerFrame: 200 });
    assert.ok(sound.length > 16 * 1024 * 1024);
    const damaged = Buffer.from(sound);
    damaged[frameDataOffsets(damaged)[90] + 7] ^= 0xff;
    await withThreads(1, async (threads) => {
      const verdicts = await Promise.all([sound, damaged, sound].map((bytes) => twoThreads(bytes, 0, threads)));
      assert.deepEqual(verdicts[0], { nodeCount: 24_000 });
      assert.deepEqual(verdicts[2], { nodeCount: 24_000 });
      assert.deepEqual(verdicts[1], await oneThread(damaged));
    });
  });

  it('leaves the other uploads of its thread alone when one is abandoned halfway', async () => {
    await withThreads(1, async (threads) => {
      const large = craftArchive(
        Array.from({ length: 4_000 }, (_, i) => node(i + 1, ['Person'], { text: randomBytes(768).toString('base64') })),
        { linesPerFrame: 100 },
      );
      const abandoned = new ArchiveVerifier({ threads }).on('error', () => undefined);
      const abandonedVerdict = verdictOf(abandoned.result);
      // Past the first message of bytes (1 MiB): the thread is reading it when it is abandoned.
      for (const piece of pieces(large.subarray(0, 3 * 1024 * 1024), 64 * 1024)) abandoned.write(piece);
      const other = twoThreads(craftArchive(sound, { linesPerFrame: 40 }), 0, threads);
      await new Promise((resolve) => setImmediate(resolve));
      abandoned.destroy(new Error('the client went away'));
      assert.deepEqual(await abandonedVerdict, { error: 'undefined: the client went away' });
      assert.deepEqual(await other, { nodeCount: 3_000 });
      assert.deepEqual(await twoThreads(large, 0, threads), { nodeCount: 4_000 });
    });
  });

  it('fails the uploads of a thread that ends, and starts another for the next', async () => {
    await withThreads(1, async (threads) => {
      const cut = new ArchiveVerifier({ threads }).on('error', () => undefined);
      const cutVerdict = verdictOf(cut.result);
      const bytes = craftArchive(sound);
      cut.write(bytes.subarray(0, 1_000));
      await threads.close();
      assert.match((await cutVerdict as { error: string }).error, /stopped without a verdict/);
      assert.deepEqual(await twoThreads(bytes, 0, threads), { nodeCount: 3_000 });
    });
  });

  it('ends a thread with its last upload, and starts another for the next', async () => {
    await withThreads(1, async (threads) => {
      const verifying = twoThreads(craftArchive(sound), 0, threads);
      assert.equal(threads.threads, 1);
      assert.deepEqual(await verifying, { nodeCount: 3_000 });
      assert.equal(threads.threads, 0);
      assert.deepEqual(await twoThreads(craftArchive(sound), 0, threads), { nodeCount: 3_000 });
      assert.equal(threads.threads, 0);
    });
  });

  it('refuses what is not an archive', async () => {
    await assertSameVerdict(Buffer.from('not an archive at all, just text'), /BAD_MAGIC|NOT_AN_ARCHIVE/);
  });

  it('gives the header as soon as it is read, while the rest of the archive has not come', async () => {
    const parts: Buffer[] = [];
    for await (const part of paddedArchive({ nodes: 64, padBytes: 64 * 1024 })) parts.push(part);
    const archive = Buffer.concat(parts);
    assert.ok(archive.length > 2 * 1024 * 1024, `the archive takes only ${archive.length} bytes`);
    const verifier = new ArchiveVerifier({ threads: pooled });
    // A message of bytes (1 MiB) reaches its thread: the header is in it, the rest is held back until the header came.
    verifier.write(archive.subarray(0, 1024 * 1024));
    assert.equal((await verifier.header).stats.nodeCount, 64);
    verifier.end(archive.subarray(1024 * 1024));
    assert.equal((await verifier.result).stats.nodeCount, 64);
  });

  it('rejects the header as it rejects the verdict when the file fails before it', async () => {
    const verifier = new ArchiveVerifier({ threads: pooled });
    verifier.on('error', () => undefined); // the verdict, seen below
    verifier.end(Buffer.from('not an archive at all, just text'));
    const [header, result] = await Promise.allSettled([verifier.header, verifier.result]);
    assert.equal(header.status, 'rejected');
    assert.equal(result.status, 'rejected');
    assert.equal((header as PromiseRejectedResult).reason, (result as PromiseRejectedResult).reason);
  });
});
