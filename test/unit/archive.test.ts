import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack as createTarPack } from 'tar-stream';
import type { GraphRecord } from '../../src/graph/records';
import {
  ARCHIVE_FORMAT_VERSION,
  ArchiveError,
  type ArchiveErrorCode,
  type ArchiveHeader,
  type ArchiveHeaderInput,
  type ArchiveWriterOptions,
  archiveExtension,
  createArchiveWriter,
  encodeArchive,
  extractArchiveFromTar,
  openArchive,
  readArchiveHeader,
  sniffFileType,
} from '../../src/archive';
import { MAX_FRAME_BYTES } from '../../src/archive/archive-frame';
import { encodeArchiveHeader, PREAMBLE_LENGTH } from '../../src/archive/archive-header';
import { FramePool, SharedFramePool } from '../../src/archive/frame-pool';
import { frameDataOffsets, undeflatableFrame } from '../support';

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers

/** A header whose stats agree with `records`: counts per kind, label and type. */
function headerFor(records: GraphRecord[], overrides: Partial<ArchiveHeaderInput> = {}): ArchiveHeaderInput {
  const nodeCount = records.filter((r) => r.kind === 'node').length;
  const tally = (names: string[]) => [...new Set(names)].map((name) => ({ name, count: names.filter((n) => n === name).length }));
  return {
    engineVersion: 'V5',
    sourceInstanceId: 'inst-7f3a',
    sourceInstanceName: 'Production graph',
    capturedAt: '2024-05-01T12:34:56.789Z',
    stats: {
      nodeCount,
      relationshipCount: records.length - nodeCount,
      labels: tally(records.flatMap((r) => (r.kind === 'node' ? r.node.labels : []))),
      relationshipTypes: tally(records.flatMap((r) => (r.kind === 'relationship' ? [r.relationship.type] : []))),
      storeSizeBytes: 123_456,
    },
    ...overrides,
  };
}

function node(id: number, properties: Record<string, unknown> = {}, labels = ['Person']): GraphRecord {
  return { kind: 'node', node: { id: String(id), labels, properties } };
}

function relationship(id: number, start: number, end: number, properties: Record<string, unknown> = {}): GraphRecord {
  return {
    kind: 'relationship',
    relationship: { id: String(id), type: 'KNOWS', startNodeId: String(start), endNodeId: String(end), properties },
  };
}

/** Properties exercising every JSON type, unicode included. */
const TRICKY_PROPERTIES: Record<string, unknown> = {
  name: 'Zoë Ñandú — 東京 🎉',
  escapes: 'line\nbreak\ttab "quoted" \\ back\u0000nul\u2028sep',
  loneSurrogate: '\ud800',
  integer: 42,
  negative: -17,
  float: 3.141592653589793,
  tiny: 5e-324,
  maxSafe: Number.MAX_SAFE_INTEGER,
  minSafe: Number.MIN_SAFE_INTEGER,
  huge: 1.7976931348623157e308,
  yes: true,
  no: false,
  nothing: null,
  empty: '',
  list: [1, 'two', false, null, [3, [4]], { five: 5 }],
  emptyList: [],
  emptyObject: {},
  nested: { a: { b: { c: { d: ['deep', { e: {} }] } } } },
  'key with spaces & ünïcödé 🔑': 'value',
};

function smallGraph(): GraphRecord[] {
  return [
    node(1, TRICKY_PROPERTIES, ['Person', 'Émigré']),
    node(2, {}, []),
    node(3, { age: 30 }),
    relationship(1, 1, 2, { since: 2020, weight: 0.5 }),
    relationship(2, 2, 3, TRICKY_PROPERTIES),
  ];
}

function largeGraph(nodeCount: number, relationshipCount: number): GraphRecord[] {
  const records: GraphRecord[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    records.push(node(i, { name: `Person ${i}`, age: i % 90, active: i % 2 === 0, tags: [`t${i % 7}`], address: { zip: `${10000 + i}` } }));
  }
  for (let i = 1; i <= relationshipCount; i++) {
    records.push(relationship(i, 1 + (i % nodeCount), 1 + ((i * 7) % nodeCount), { since: 2000 + (i % 24) }));
  }
  return records;
}

/** Nodes with random, hardly compressible properties: archives of a predictable size. */
function noisyNodes(count: number): GraphRecord[] {
  const records: GraphRecord[] = [];
  for (let i = 1; i <= count; i++) records.push(node(i, { noise: randomBytes(48).toString('base64') }));
  return records;
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(parts);
}

async function writeArchive(
  records: GraphRecord[],
  header: ArchiveHeaderInput = headerFor(records),
  options: ArchiveWriterOptions = {},
): Promise<Buffer> {
  const writer = createArchiveWriter(header, options);
  const bytes = collect(writer.stream);
  for (let i = 0; i < records.length; i += 100) await writer.write(records.slice(i, i + 100));
  await writer.end();
  return bytes;
}

/** A byte stream delivering `bytes` in chunks of `chunkSize` (to exercise reassembly). */
function streamOf(bytes: Buffer, chunkSize = 64 * 1024): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  return Readable.from(chunks, { objectMode: false });
}

interface ReadOutcome {
  header?: ArchiveHeader;
  records: GraphRecord[];
  error?: unknown;
}

async function readArchive(bytes: Buffer | Readable, chunkSize?: number): Promise<ReadOutcome> {
  const reader = openArchive(Buffer.isBuffer(bytes) ? streamOf(bytes, chunkSize) : bytes);
  const outcome: ReadOutcome = { records: [] };
  try {
    outcome.header = await reader.header;
    for await (const batch of reader.records()) outcome.records.push(...batch);
  } catch (err) {
    outcome.error = err;
  }
  return outcome;
}

async function readAllRecords(bytes: Buffer | Readable): Promise<GraphRecord[]> {
  const outcome = await readArchive(bytes);
  if (outcome.error) throw outcome.error;
  return outcome.records;
}

function assertArchiveError(err: unknown, codes: ArchiveErrorCode[], context = ''): asserts err is ArchiveError {
  assert.ok(err instanceof ArchiveError, `${context}: expected an ArchiveError, got ${String(err)}`);
  assert.ok(codes.includes(err.code), `${context}: expected ${codes.join('|')}, got ${err.code} (${err.message})`);
}

/** Rewrites the header (and the final digest, so that only the header's content differs). */
function withHeader(archive: Buffer, header: ArchiveHeaderInput, formatVersion = ARCHIVE_FORMAT_VERSION): Buffer {
  const oldHeaderEnd = PREAMBLE_LENGTH + archive.readUInt32BE(PREAMBLE_LENGTH - 4) + 4;
  const body = archive.subarray(oldHeaderEnd, archive.length - 32);
  const content = Buffer.concat([encodeArchiveHeader(header, formatVersion), body]);
  return Buffer.concat([content, createHash('sha256').update(content).digest()]);
}

async function tarOf(entries: Array<{ name: string; content?: Buffer; type?: 'file' | 'directory' }>): Promise<Buffer> {
  const tar = createTarPack();
  for (const { name, content, type = 'file' } of entries) {
    if (type === 'directory') tar.entry({ name, type: 'directory' });
    else tar.entry({ name, size: content!.length }, content!);
  }
  tar.finalize();
  return collect(tar as AsyncIterable<unknown>);
}

const NEO4J_5_DUMP = Buffer.concat([Buffer.from('DZV1'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(200)]);

// ---------------------------------------------------------------------------------------------

describe('snapshot archive format', () => {
  describe('round trip', () => {
    it('restores every record exactly, with unicode, nested objects, lists, booleans, nulls and large safe numbers', async () => {
      const records = smallGraph();
      const archive = await writeArchive(records);
      assert.deepEqual(await readAllRecords(archive), records);
    });

    it('restores the header exactly, with the format version', async () => {
      const records = smallGraph();
      const header = headerFor(records, { engineVersion: 'V4', sourceInstanceName: 'Büro — graph 🗂' });
      const outcome = await readArchive(await writeArchive(records, header));
      assert.deepEqual(outcome.header, { formatVersion: ARCHIVE_FORMAT_VERSION, ...header });
    });

    it('writes and reads an empty graph', async () => {
      const archive = await writeArchive([]);
      const outcome = await readArchive(archive);
      assert.equal(outcome.error, undefined);
      assert.deepEqual(outcome.records, []);
      assert.equal(outcome.header?.stats.nodeCount, 0);
    });

    it('reads thousands of records spanning many frames, delivered in odd-sized chunks', async () => {
      const records = largeGraph(3000, 4000);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 4096 });
      assert.deepEqual(await readAllRecords(streamOf(archive, 777)), records);
      assert.equal((await readAllRecords(streamOf(archive, 1))).length, records.length, 'one byte at a time');
    });

    it('hands out records in batches, nodes before relationships, and counts the bytes it read', async () => {
      const records = largeGraph(500, 500);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
      const reader = openArchive(streamOf(archive));
      const batches: GraphRecord[][] = [];
      for await (const batch of reader.records()) batches.push(batch);
      assert.ok(batches.length > 10, `expected many batches, got ${batches.length}`);
      assert.deepEqual(batches.flat(), records);
      assert.equal(reader.bytesRead(), archive.length);
    });

    it('encodes from an async iterable of batches with encodeArchive', async () => {
      const records = largeGraph(1000, 1000);
      async function* batches() {
        for (let i = 0; i < records.length; i += 250) yield records.slice(i, i + 250);
      }
      const archive = await collect(encodeArchive(headerFor(records), batches()));
      assert.deepEqual(await readAllRecords(archive), records);
    });

    it('gives V5 archives the .backup extension and V4 archives .dump', () => {
      assert.equal(archiveExtension('V5'), '.backup');
      assert.equal(archiveExtension('V4'), '.dump');
    });
  });

  describe('the header', () => {
    it('starts with the magic bytes and the format version', async () => {
      const archive = await writeArchive(smallGraph());
      assert.deepEqual([...archive.subarray(0, 8)], [0x89, 0x53, 0x47, 0x41, 0x0d, 0x0a, 0x1a, 0x0a]);
      assert.equal(archive.readUInt16BE(8), ARCHIVE_FORMAT_VERSION);
    });

    it('is readable alone with readArchiveHeader', async () => {
      const records = smallGraph();
      const header = headerFor(records);
      assert.deepEqual(await readArchiveHeader(streamOf(await writeArchive(records, header), 5)), {
        formatVersion: ARCHIVE_FORMAT_VERSION,
        ...header,
      });
    });

    it('is read without reading the body of a large archive file', async () => {
      const records = noisyNodes(20_000);
      const path = join(await fs.mkdtemp(join(tmpdir(), 'snapgraph-archive-')), 'large.backup');
      try {
        await fs.writeFile(path, await writeArchive(records));
        const { size } = await fs.stat(path);
        const input = createReadStream(path);
        const header = await readArchiveHeader(input);
        assert.equal(header.stats.nodeCount, 20_000);
        assert.ok(size > 1024 * 1024, `fixture too small: ${size}`);
        assert.ok(input.bytesRead <= 256 * 1024, `read ${input.bytesRead} of ${size} bytes`);
        input.destroy();
      } finally {
        await fs.rm(join(path, '..'), { recursive: true, force: true });
      }
    });

    it('leaves the rest of the input unread and unconsumed for the caller', async () => {
      const archive = await writeArchive(smallGraph());
      const input = new PassThrough();
      input.end(archive);
      await readArchiveHeader(input);
      const headerEnd = PREAMBLE_LENGTH + archive.readUInt32BE(PREAMBLE_LENGTH - 4) + 4;
      assert.deepEqual(await collect(input), archive.subarray(headerEnd));
    });

    it('refuses an archive with a newer format version, saying so', async () => {
      const records = smallGraph();
      const future = withHeader(await writeArchive(records), headerFor(records), ARCHIVE_FORMAT_VERSION + 1);
      for (const attempt of [readArchiveHeader(streamOf(future)), openArchive(streamOf(future)).header]) {
        await assert.rejects(attempt, (err: unknown) => {
          assertArchiveError(err, ['UNSUPPORTED_VERSION']);
          assert.match(err.message, /archive format version 2 is newer than this server supports \(1\)/);
          return true;
        });
      }
      assertArchiveError((await readArchive(future)).error, ['UNSUPPORTED_VERSION']);
    });

    it('detects a damaged header at once, from its checksum', async () => {
      const archive = await writeArchive(smallGraph());
      const damaged = Buffer.from(archive);
      damaged[PREAMBLE_LENGTH + 5] ^= 0x01;
      await assert.rejects(readArchiveHeader(streamOf(damaged)), (err: unknown) => {
        assertArchiveError(err, ['CORRUPT']);
        assert.match(err.message, /header checksum/);
        return true;
      });
    });

    it('refuses to write an invalid header', () => {
      assert.throws(
        () => createArchiveWriter({ ...headerFor([]), engineVersion: 'V3' as 'V4' }),
        (err: unknown) => (assertArchiveError(err, ['INVALID_HEADER']), true),
      );
      assert.throws(
        () => createArchiveWriter({ ...headerFor([]), capturedAt: 'yesterday' }),
        (err: unknown) => (assertArchiveError(err, ['INVALID_HEADER']), true),
      );
    });
  });

  describe('files that are not archives', () => {
    const cases: Array<[string, Buffer, ArchiveErrorCode, RegExp]> = [
      ['an empty file', Buffer.alloc(0), 'NOT_AN_ARCHIVE', /empty/],
      ['a text file', Buffer.from('hello, this is not an archive\n'), 'BAD_MAGIC', /not a Snapgraph archive/],
      ['random bytes', randomBytes(5000), 'BAD_MAGIC', /not a Snapgraph archive/],
      ['a gzip file', gzipSync(Buffer.from('x'.repeat(1000))), 'BAD_MAGIC', /gzip/],
      ['a Neo4j 5 dump', NEO4J_5_DUMP, 'NEO4J_DUMP', /Neo4j/],
    ];
    for (const [what, bytes, code, message] of cases) {
      it(`refuses ${what} with ${code}`, async () => {
        const { error } = await readArchive(bytes);
        assertArchiveError(error, [code], what);
        assert.match(error.message, message);
      });
    }
  });

  describe('integrity', () => {
    /**
     * 400 nodes and 400 relationships in frames of about 2 KiB: 30 frames of both kinds in 12.6 KiB, every one of them
     * cut and flipped at the sampled offsets. Each sample reads the archive up to its damage, so the cost grows with
     * the square of its size: 800 of each (60 frames, alike) took 3.4-3.9 s of CPU a test, 400 take 1.0-1.1 s.
     */
    const MANY_FRAME_RECORDS = largeGraph(400, 400);
    async function manyFrameArchive(): Promise<Buffer> {
      const archive = await writeArchive(MANY_FRAME_RECORDS, headerFor(MANY_FRAME_RECORDS), { targetFrameBytes: 2048 });
      assert.ok(frameDataOffsets(archive).length >= 30, `the archive has only ${frameDataOffsets(archive).length} frames`);
      return archive;
    }

    it('detects truncation at every offset of a small archive', async () => {
      const archive = await writeArchive(smallGraph());
      for (let length = 1; length < archive.length; length++) {
        const { error } = await readArchive(archive.subarray(0, length));
        assertArchiveError(error, ['TRUNCATED'], `truncated to ${length} of ${archive.length} bytes`);
      }
    });

    it('detects truncation at a dense sample of offsets across a many-frame archive', async () => {
      const archive = await manyFrameArchive();
      const records = MANY_FRAME_RECORDS;
      for (let length = 1; length < archive.length; length += 31) {
        const { error, records: read } = await readArchive(archive.subarray(0, length));
        assertArchiveError(error, ['TRUNCATED'], `truncated to ${length} of ${archive.length} bytes`);
        assert.deepEqual(read, records.slice(0, read.length));
      }
    });

    it('detects a flipped byte at every offset of a small archive', async () => {
      const archive = await writeArchive(smallGraph());
      for (let offset = 0; offset < archive.length; offset++) {
        for (const mask of [0x01, 0xff]) {
          const damaged = Buffer.from(archive);
          damaged[offset] ^= mask;
          const { error } = await readArchive(damaged);
          assertArchiveError(error, ['CORRUPT', 'TRUNCATED', 'BAD_MAGIC'], `byte ${offset} ^ ${mask}`);
        }
      }
    });

    it('detects flipped bytes across a many-frame archive before handing out any damaged record', async () => {
      const archive = await manyFrameArchive();
      const records = MANY_FRAME_RECORDS;
      for (let offset = 0; offset < archive.length; offset += 29) {
        const damaged = Buffer.from(archive);
        damaged[offset] ^= 0x10;
        const { error, records: read } = await readArchive(damaged);
        assertArchiveError(error, ['CORRUPT', 'TRUNCATED', 'BAD_MAGIC'], `byte ${offset}`);
        assert.deepEqual(read, records.slice(0, read.length), `records read before the damage at byte ${offset}`);
      }
    });

    it('detects data appended after the end of the archive', async () => {
      const archive = await writeArchive(smallGraph());
      const { error } = await readArchive(Buffer.concat([archive, Buffer.from([0])]));
      assertArchiveError(error, ['CORRUPT']);
      assert.match(error.message, /after its end/);
    });

    it('detects a header whose counts do not match the records, at the end', async () => {
      const records = smallGraph();
      const header = headerFor(records);
      const lying = withHeader(await writeArchive(records, header), {
        ...header,
        stats: { ...header.stats, relationshipCount: header.stats.relationshipCount + 1 },
      });
      const { error, records: read } = await readArchive(lying);
      assertArchiveError(error, ['COUNT_MISMATCH']);
      assert.match(error.message, /announces 3 nodes and 3 relationships, but it holds 3 nodes and 2 relationships/);
      assert.equal(read.length, records.length);
    });

    it('detects more records than the header announces as soon as they appear', async () => {
      const records = largeGraph(1000, 0);
      const header = headerFor(records);
      const lying = withHeader(await writeArchive(records, header, { targetFrameBytes: 1024 }), {
        ...header,
        stats: { ...header.stats, nodeCount: 1 },
      });
      const { error, records: read } = await readArchive(lying);
      assertArchiveError(error, ['COUNT_MISMATCH']);
      assert.equal(read.length, 0, 'the first frame already exceeds the announced count');
    });
  });

  describe('verify (the upload check)', () => {
    const verify = async (bytes: Buffer) => {
      try {
        return { header: await openArchive(streamOf(bytes, 997)).verify() };
      } catch (error) {
        return { error };
      }
    };

    it('accepts a sound many-frame archive and returns its header', async () => {
      const records = largeGraph(800, 800);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
      const { header, error } = await verify(archive);
      assert.equal(error, undefined);
      assert.equal(header?.stats.nodeCount, 800);
    });

    it('detects truncation and flipped bytes at a dense sample of offsets', async () => {
      const records = largeGraph(300, 300);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
      for (let offset = 1; offset < archive.length; offset += 17) {
        assertArchiveError((await verify(archive.subarray(0, offset))).error, ['TRUNCATED'], `truncated to ${offset}`);
        const flipped = Buffer.from(archive);
        flipped[offset] ^= 0x20;
        assert.ok((await verify(flipped)).error instanceof ArchiveError, `flipped byte at ${offset} went unnoticed`);
      }
    });

    it('lets the event loop turn every few thousand records of a large frame, however small they are (takeTurns)', async () => {
      // 200,000 records of ~21 bytes in one frame of 4 MiB: a hostile writer's frame, whose slices of 1 MiB held 50,000
      // records each (a quarter of a second and more of checking between two turns).
      const records = Array.from({ length: 200_000 }, (_, i) => node(i + 1, {}, []));
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 8 * 1024 * 1024 });
      let turns = 0;
      let counting = true;
      const count = () => {
        if (!counting) return;
        turns += 1;
        setImmediate(count);
      };
      setImmediate(count);
      await openArchive(streamOf(archive)).verify(undefined, { takeTurns: true });
      counting = false;
      assert.ok(turns >= 200_000 / 10_000, `the event loop turned ${turns} times while 200,000 records were checked`);
    });

    it('hands out the records of a large frame checked before (a restore of an upload) a few thousand at a time', async () => {
      // The same hostile frame: counted at once, its 200,000 lines were one batch, split and counted in one go on the
      // restore's event loop (five seconds for a 64 MiB frame of them); the loader awaits each batch, so between
      // slices everything else runs.
      const records = Array.from({ length: 200_000 }, (_, i) => node(i + 1, {}, []));
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 8 * 1024 * 1024 });
      const sizes: number[] = [];
      const lines: string[] = [];
      for await (const batch of openArchive(streamOf(archive)).encodedBatches({ recordsChecked: true })) {
        sizes.push(batch.lines.length);
        lines.push(...batch.lines);
      }
      assert.equal(lines.length, 200_000);
      assert.deepEqual(lines.slice(0, 2).map((line) => JSON.parse(line)[1]), ['1', '2']);
      assert.equal(JSON.parse(lines[199_999])[1], '200000');
      assert.ok(Math.max(...sizes) <= 8192, `a batch of ${Math.max(...sizes)} records was handed out at once`);
    });

    it('detects a header whose counts do not match the records', async () => {
      const records = smallGraph();
      const header = headerFor(records);
      const archive = withHeader(await writeArchive(records), { ...header, stats: { ...header.stats, nodeCount: header.stats.nodeCount + 1 } });
      assertArchiveError((await verify(archive)).error, ['COUNT_MISMATCH']);
    });
  });

  describe('with a frame pool (frames inflated, or checked, on worker threads)', () => {
    let pool: FramePool;
    beforeEach(() => (pool = new FramePool(2)));
    afterEach(() => pool.close());

    /** The lines handed out by encodedBatches (with the pool or without), and the error that ended them. */
    const encodedOutcome = async (bytes: Buffer, withPool: boolean) => {
      const lines: string[] = [];
      try {
        for await (const batch of openArchive(streamOf(bytes, 997)).encodedBatches(withPool ? { pool } : {})) lines.push(...batch.lines);
        return { lines };
      } catch (error) {
        return { lines, error: `${(error as ArchiveError).code}: ${(error as Error).message}` };
      }
    };
    const verdict = (bytes: Buffer, withPool: boolean) =>
      openArchive(streamOf(bytes, 997))
        .verify(withPool ? pool : undefined)
        .then((header) => `${header.stats.nodeCount} nodes`, (error: ArchiveError) => `${error.code}: ${error.message}`);

    it('hands out the same lines as without it, and the same first damage with the lines before it', async () => {
      const records = largeGraph(800, 800);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
      const sound = await encodedOutcome(archive, true);
      assert.ok(pool.threads > 0, 'the frames went through the pool');
      assert.equal(sound.error, undefined);
      assert.deepEqual(sound, await encodedOutcome(archive, false));
      for (let offset = 1; offset < archive.length; offset += 211) {
        assert.deepEqual(await encodedOutcome(archive.subarray(0, offset), true), await encodedOutcome(archive.subarray(0, offset), false), `truncated to ${offset}`);
        const flipped = Buffer.from(archive);
        flipped[offset] ^= 0x20;
        assert.deepEqual(await encodedOutcome(flipped, true), await encodedOutcome(flipped, false), `flipped byte at ${offset}`);
      }
      const cannotInflate = undeflatableFrame(archive, 5);
      const damaged = await encodedOutcome(cannotInflate, true);
      assert.match(damaged.error ?? '', /CORRUPT: .*cannot be decompressed/);
      assert.deepEqual(damaged, await encodedOutcome(cannotInflate, false));
    });

    it('verifies as a single thread does: the same verdicts, a frame that does not inflate included', async () => {
      const records = largeGraph(300, 300);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
      assert.equal(await verdict(archive, true), '300 nodes');
      assert.ok(pool.threads > 0, 'the frames went through the pool');
      for (let offset = 1; offset < archive.length; offset += 97) {
        const flipped = Buffer.from(archive);
        flipped[offset] ^= 0x20;
        assert.equal(await verdict(flipped, true), await verdict(flipped, false), `flipped byte at ${offset}`);
      }
      const cannotInflate = undeflatableFrame(archive, 3);
      assert.match(await verdict(cannotInflate, true), /CORRUPT: .*cannot be decompressed/);
      assert.equal(await verdict(cannotInflate, true), await verdict(cannotInflate, false));
    });
  });

  describe('with a frame pool shared by readers (SharedFramePool)', () => {
    it('hands each reader its own lines, read at once, and ends its threads when the last reader lets it go', async () => {
      const shared = new SharedFramePool(1);
      const archives = await Promise.all(
        [200, 300, 400].map(async (count) => {
          const records = largeGraph(count, count);
          return writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
        }),
      );
      const lines = async (bytes: Buffer, pool?: FramePool) => {
        const read: string[] = [];
        for await (const batch of openArchive(streamOf(bytes, 997)).encodedBatches({ pool })) read.push(...batch.lines);
        return read;
      };
      const pools = archives.map(() => shared.acquire());
      assert.ok(pools.every((pool) => pool === pools[0]), 'one pool for all');
      const together = await Promise.all(archives.map((bytes, i) => lines(bytes, pools[i])));
      assert.equal(pools[0].threads, 1);
      assert.deepEqual(together, await Promise.all(archives.map((bytes) => lines(bytes))));
      shared.release();
      shared.release();
      assert.equal(pools[0].threads, 1, 'still in use by one reader');
      shared.release();
      assert.equal(shared.readers, 0);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(pools[0].threads, 0, 'closed with its last reader');
      const next = shared.acquire();
      assert.notEqual(next, pools[0]);
      assert.deepEqual(await lines(archives[0], next), together[0]);
      shared.release();
    });
  });

  describe('with a frame pool that fails (a worker that crashed)', () => {
    const failing = {
      check: () => Promise.reject(new Error('a frame worker exited with code 1')),
      inflate: () => Promise.reject(new Error('a frame worker exited with code 1')),
    } as unknown as FramePool;

    it('reads and verifies every frame on its own thread instead, with the same outcome', async () => {
      const records = largeGraph(300, 300);
      const archive = await writeArchive(records, headerFor(records), { targetFrameBytes: 2048 });
      const lines = async (pool?: FramePool) => {
        const read: string[] = [];
        for await (const batch of openArchive(streamOf(archive)).encodedBatches({ pool })) read.push(...batch.lines);
        return read;
      };
      assert.deepEqual(await lines(failing), await lines());
      assert.equal((await openArchive(streamOf(archive)).verify(failing)).stats.nodeCount, 300);
      const flipped = Buffer.from(archive);
      flipped[archive.length - 40] ^= 0x01;
      await assert.rejects(openArchive(streamOf(flipped)).verify(failing), ArchiveError);
    });
  });

  describe('createArchiveWriter', () => {
    it('refuses to end when the records written differ from the header stats', async () => {
      const records = smallGraph();
      const writer = createArchiveWriter(headerFor(records));
      const consumed = collect(writer.stream).catch((err: unknown) => err);
      await writer.write(records.slice(0, 4));
      await assert.rejects(writer.end(), (err: unknown) => (assertArchiveError(err, ['COUNT_MISMATCH']), true));
      assertArchiveError(await consumed, ['COUNT_MISMATCH'], 'the stream fails too');
    });

    it('refuses a node written after a relationship', async () => {
      const writer = createArchiveWriter(headerFor([node(1), relationship(1, 1, 1), node(2)]));
      const consumed = collect(writer.stream).catch((err: unknown) => err);
      await writer.write([node(1), relationship(1, 1, 1)]);
      await assert.rejects(writer.write(node(2)), (err: unknown) => (assertArchiveError(err, ['INVALID_RECORD']), true));
      assertArchiveError(await consumed, ['INVALID_RECORD']);
    });

    it('refuses a record that is not JSON-serialisable', async () => {
      const writer = createArchiveWriter(headerFor([node(1)]));
      const consumed = collect(writer.stream).catch((err: unknown) => err);
      await assert.rejects(writer.write(node(1, { big: 10n })), (err: unknown) => (assertArchiveError(err, ['INVALID_RECORD']), true));
      await consumed;
    });

    it('writes every record a reader takes: one as large as a frame holds, after smaller ones, and no larger', async function () {
      this.timeout(60_000);
      // The line ["N","2",["Person"],{"big":"…"}] and its newline: exactly MAX_FRAME_BYTES of UTF-8, 3 bytes a character.
      const lineBytes = (text: string) => Buffer.byteLength(JSON.stringify(['N', '2', ['Person'], { big: text }])) + 1;
      const fill = '€'.repeat(Math.floor((MAX_FRAME_BYTES - lineBytes('')) / 3));
      const largest = fill + 'x'.repeat(MAX_FRAME_BYTES - lineBytes(fill));
      assert.equal(lineBytes(largest), MAX_FRAME_BYTES);
      const records = [node(1, { small: 'before' }), node(2, { big: largest }), node(3, { small: 'after' })];
      const read = await readAllRecords(await writeArchive(records));
      assert.equal(read.length, 3);
      assert.equal(read[1].kind === 'node' && read[1].node.properties.big, largest);
      assert.deepEqual([read[0], read[2]], [records[0], records[2]]);

      const writer = createArchiveWriter(headerFor([node(2, { big: `${largest}x` })]));
      const consumed = collect(writer.stream).catch((err: unknown) => err);
      await assert.rejects(writer.write(node(2, { big: `${largest}x` })), (err: unknown) => (assertArchiveError(err, ['INVALID_RECORD']), /64 MiB/.test(err.message)));
      assertArchiveError(await consumed, ['INVALID_RECORD']);
    });

    it('waits for a slow consumer instead of buffering (backpressure)', async () => {
      const records = noisyNodes(40_000);
      const writer = createArchiveWriter(headerFor(records));
      // Nothing reads the stream yet: write() must stop resolving once the stream's buffer is full.
      let written = 0;
      let waiting: Promise<void> | undefined;
      while (!waiting && written < records.length) {
        const write = writer.write(records.slice(written, (written += 500)));
        if (!(await settlesWithin(write, 100))) waiting = write;
      }
      assert.ok(waiting, 'write() never waited although nothing read the stream');
      const consumed = collect(writer.stream);
      await waiting;
      for (; written < records.length; written += 500) await writer.write(records.slice(written, written + 500));
      await writer.end();
      assert.deepEqual(await readAllRecords(await consumed), records);
    });

    it('rejects writes once the consumer has destroyed the stream', async () => {
      const records = largeGraph(10, 0);
      const writer = createArchiveWriter(headerFor(records));
      writer.stream.on('error', () => undefined);
      writer.stream.destroy(new Error('disk full'));
      await assert.rejects(writer.write(records), /disk full/);
    });

    it('makes encodeArchive fail its stream when the record source fails', async () => {
      async function* failing(): AsyncGenerator<GraphRecord[]> {
        yield [node(1)];
        throw new Error('store read failed');
      }
      await assert.rejects(collect(encodeArchive(headerFor([node(1)]), failing())), /store read failed/);
    });
  });

  describe('openArchive', () => {
    it('destroys its input when the caller stops iterating early', async () => {
      const records = largeGraph(2000, 0);
      const input = streamOf(await writeArchive(records, headerFor(records), { targetFrameBytes: 1024 }), 512);
      for await (const batch of openArchive(input).records()) {
        assert.ok(batch.length > 0);
        break;
      }
      assert.equal(input.destroyed, true);
    });

    it('reads object-mode streams of buffers, such as Readable.from([buffer])', async () => {
      const records = smallGraph();
      const archive = await writeArchive(records);
      assert.equal((await readArchiveHeader(Readable.from([archive]))).sourceInstanceId, 'inst-7f3a');
      assert.deepEqual(await readAllRecords(Readable.from([archive.subarray(0, 10), archive.subarray(10)])), records);
    });

    it('passes an error of the input stream through unchanged', async () => {
      const input = new PassThrough();
      input.write((await writeArchive(smallGraph())).subarray(0, 100));
      setImmediate(() => input.destroy(new Error('decryption failed')));
      const { error } = await readArchive(input);
      assert.match(String(error), /decryption failed/);
    });
  });
});

describe('sniffFileType', () => {
  it('recognises a Snapgraph archive', async () => {
    assert.equal(sniffFileType((await writeArchive(smallGraph())).subarray(0, 512)), 'snapgraph-archive');
  });

  it('recognises Neo4j 5 dumps and backups by their magic (DZV1, DGV1, BZV1, BTV1...)', () => {
    assert.equal(sniffFileType(NEO4J_5_DUMP), 'neo4j-dump');
    assert.equal(sniffFileType(Buffer.concat([Buffer.from('DGV1'), gzipSync(Buffer.from('tar'))])), 'neo4j-dump');
    assert.equal(sniffFileType(Buffer.from('BZV1 backup')), 'neo4j-dump');
    assert.equal(sniffFileType(Buffer.from('BTV2 backup')), 'neo4j-dump');
  });

  it('recognises a Neo4j 4.x dump: a bare zstd stream', () => {
    assert.equal(sniffFileType(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(100)])), 'neo4j-dump');
  });

  it("recognises a Neo4j 3.x dump: a gzip'd tar of store files", async () => {
    const store = await tarOf([
      { name: 'schema/', type: 'directory' },
      { name: 'neostore', content: randomBytes(2000) },
      { name: 'neostore.nodestore.db', content: Buffer.alloc(8192) },
    ]);
    assert.equal(sniffFileType(gzipSync(store).subarray(0, 4096)), 'neo4j-dump');
  });

  it('recognises a plain tar of a Neo4j store directory', async () => {
    const store = await tarOf([{ name: 'data/databases/neo4j/neostore.relationshipstore.db', content: Buffer.alloc(100) }]);
    assert.equal(sniffFileType(store.subarray(0, 4096)), 'neo4j-dump');
  });

  it('recognises a tar that may hold an archive', async () => {
    const tar = await tarOf([{ name: 'graph.backup', content: await writeArchive(smallGraph()) }]);
    assert.equal(sniffFileType(tar.subarray(0, 4096)), 'tar');
  });

  it('recognises other gzip files as gzip', () => {
    assert.equal(sniffFileType(gzipSync(Buffer.from('{"some":"json"}'))), 'gzip');
  });

  it('calls anything else unknown', () => {
    assert.equal(sniffFileType(Buffer.alloc(0)), 'unknown');
    assert.equal(sniffFileType(Buffer.from('PK\x03\x04 a zip file')), 'unknown');
    assert.equal(sniffFileType(Buffer.alloc(1024)), 'unknown');
  });
});

describe('extractArchiveFromTar', () => {
  it('streams out the archive entry, skipping directories and other files', async () => {
    const records = largeGraph(300, 300);
    const archive = await writeArchive(records);
    const tar = await tarOf([
      { name: 'export/', type: 'directory' },
      { name: 'export/README.txt', content: Buffer.from('exported from Snapgraph\n') },
      { name: 'export/graph.backup', content: archive },
      { name: 'export/notes.txt', content: Buffer.from('after the archive') },
    ]);
    const extracted = await extractArchiveFromTar(streamOf(tar, 1000));
    assert.deepEqual(await collect(extracted), archive);
    assert.deepEqual(await readAllRecords(await extractArchiveFromTar(streamOf(tar))), records);
  });

  it('starts streaming the entry before the tar has been fully received', async () => {
    const archive = await writeArchive(noisyNodes(5000));
    const tar = await tarOf([{ name: 'graph.backup', content: archive }]);
    const input = new PassThrough();
    input.write(tar.subarray(0, 64 * 1024));
    const extracted = await extractArchiveFromTar(input);
    const first = await new Promise<Buffer>((resolve) => extracted.once('data', resolve));
    assert.ok(first.length > 0);
    extracted.pause();
    input.end(tar.subarray(64 * 1024));
    extracted.destroy();
  });

  it('refuses a tar without an archive with NOT_AN_ARCHIVE', async () => {
    const tar = await tarOf([{ name: 'readme.txt', content: Buffer.from('nothing to see') }]);
    await assert.rejects(extractArchiveFromTar(streamOf(tar)), (err: unknown) => {
      assertArchiveError(err, ['NOT_AN_ARCHIVE']);
      assert.match(err.message, /does not contain a Snapgraph archive/);
      return true;
    });
  });

  it('names an entry that looks like an archive but is not one', async () => {
    const tar = await tarOf([{ name: 'graph.backup', content: Buffer.from('not really an archive') }]);
    await assert.rejects(extractArchiveFromTar(streamOf(tar)), (err: unknown) => {
      assertArchiveError(err, ['NOT_AN_ARCHIVE']);
      assert.match(err.message, /graph\.backup is not a Snapgraph archive/);
      return true;
    });
  });

  it('refuses an input that is not a tar with NOT_AN_ARCHIVE', async () => {
    await assert.rejects(extractArchiveFromTar(streamOf(randomBytes(4096))), (err: unknown) => {
      assertArchiveError(err, ['NOT_AN_ARCHIVE']);
      return true;
    });
  });

  it('refuses a tar of Neo4j store files with NEO4J_DUMP', async () => {
    const tar = await tarOf([{ name: 'graph.db/neostore', content: Buffer.alloc(64) }]);
    await assert.rejects(extractArchiveFromTar(streamOf(tar)), (err: unknown) => (assertArchiveError(err, ['NEO4J_DUMP']), true));
  });

  it('refuses a tar holding a Neo4j dump with NEO4J_DUMP', async () => {
    const tar = await tarOf([{ name: 'neo4j.dump', content: NEO4J_5_DUMP }]);
    await assert.rejects(extractArchiveFromTar(streamOf(tar)), (err: unknown) => (assertArchiveError(err, ['NEO4J_DUMP']), true));
  });

  it('reports a tar cut off inside the archive entry as truncated', async () => {
    const records = largeGraph(2000, 0);
    const tar = await tarOf([{ name: 'graph.dump', content: await writeArchive(records) }]);
    const error = await extractArchiveFromTar(streamOf(tar.subarray(0, Math.floor(tar.length / 2))))
      .then(async (extracted) => (await readArchive(extracted)).error)
      .catch((err: unknown) => err);
    assertArchiveError(error, ['TRUNCATED']);
  });
});
