// Uploads may wrap an archive in a .tar: find the archive entry and stream it out, without
// buffering it, refusing tars that hold a Neo4j dump or store instead.
import { Readable } from 'node:stream';
import { extract as createTarExtract, type Extract } from 'tar-stream';
import { ArchiveError } from './archive-error';
import { isNeo4jStorePath, NEO4J_DUMP_MESSAGE, sniffFileType, SNIFF_LENGTH, WHAT_TO_UPLOAD } from './file-type';

/**
 * The first entry of the tar `input` whose content starts with the archive magic (or that `accepts`: another
 * format a restore reads), as a byte stream. Entries before it that are not archives are skipped; the stream fails once
 * the entry is read when an entry after it is one too (a restore reads one file), or is a Neo4j store file (NEO4J_DUMP).
 * Rejects with NOT_AN_ARCHIVE when the tar holds no archive (or is not a tar), and NEO4J_DUMP
 * when it holds Neo4j store files or a Neo4j dump before it. A tar cut off inside the archive entry is
 * TRUNCATED: the rejection of this call, or the error of the returned stream.
 */
export async function extractArchiveFromTar(input: Readable, accepts: (head: Buffer) => boolean = () => false): Promise<Readable> {
  const tar = new TarReader(input);
  let lookalike: string | undefined; // an entry named like an archive that is not one, for the message
  try {
    for (;;) {
      const entry = await tar.nextEntry();
      if (!entry) {
        const detail = lookalike ? ` (${lookalike} is not a Snapgraph archive)` : '';
        throw new ArchiveError('NOT_AN_ARCHIVE', `The tar file does not contain a Snapgraph archive${detail}. ${WHAT_TO_UPLOAD}`);
      }
      const name = entry.header.name;
      if (isNeo4jStorePath(name)) throw storeFilesError(name);
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        await drainIterator(entry[Symbol.asyncIterator]() as Chunks, tar);
        continue;
      }
      const chunks = entry[Symbol.asyncIterator]() as Chunks;
      const head = await readHead(chunks, SNIFF_LENGTH, tar);
      const restorable = (entryHead: Buffer) => sniffFileType(entryHead) === 'snapgraph-archive' || accepts(entryHead);
      const type = sniffFileType(head);
      if (restorable(head)) return Readable.from(tar.streamEntry(name, head, chunks, restorable), { objectMode: false });
      if (type === 'neo4j-dump') {
        throw new ArchiveError('NEO4J_DUMP', `The tar file holds a Neo4j dump (${name}). ${NEO4J_DUMP_MESSAGE}`);
      }
      if (lookalike === undefined && /\.(backup|dump)$/i.test(name)) lookalike = name;
      await drainIterator(chunks, tar);
    }
  } catch (err) {
    tar.close();
    throw err;
  }
}

/** Why a tar holding Neo4j store files (`name`, the first), wherever they are in it, is not restored. */
function storeFilesError(name: string): ArchiveError {
  return new ArchiveError('NEO4J_DUMP', `The tar file holds Neo4j store files (${name}). ${NEO4J_DUMP_MESSAGE}`);
}

/** Why a tar holding two files a restore reads (`first` and `second`, in tar order) is not restored. */
export function secondFileProblem(first: string, second: string): string {
  return (
    `The tar file holds more than one file to restore (${first} and ${second}); a restore reads one file holding ` +
    'the whole graph. Upload that file (apoc.export.cypher.all writes one unless told separateFiles: true).'
  );
}

/** tar-stream 3 streams are streamx streams: async iterable, but not Node streams. */
type TarEntry = Extract extends AsyncIterable<infer E> ? E : never;
type Chunks = AsyncIterator<Buffer>;

/** tar-stream's parser fed from a Node stream, with its errors turned into ArchiveErrors. */
class TarReader {
  private readonly extract = createTarExtract();
  private readonly entries: AsyncIterator<TarEntry>;
  private inputError: unknown;
  /** The parser's own error: entry streams only report a generic "destroyed" error. */
  private parseError: unknown;

  constructor(private readonly input: Readable) {
    this.entries = this.extract[Symbol.asyncIterator]();
    this.extract.on('error', (err: unknown) => {
      this.parseError ??= err;
    });
    input.on('error', (err) => {
      this.inputError = err;
      this.extract.destroy(err);
    });
    // streamx writables implement what pipe() needs (write/end/drain events).
    input.pipe(this.extract as unknown as NodeJS.WritableStream);
  }

  async nextEntry(): Promise<TarEntry | undefined> {
    try {
      const { value, done } = await this.entries.next();
      return done ? undefined : value;
    } catch (err) {
      throw this.translate(err, 'before its archive entry');
    }
  }

  /**
   * The entry `name`, then a check of the entries after it: a tar holding a second file a restore reads (APOC's
   * separateFiles export: schema, nodes, relationships and clean-up in four scripts) would restore its first alone;
   * Neo4j store files refuse a tar wherever they are in it (inspectFile says so, and the look at the tar's first 4 KiB
   * refuses it when they are there: further on, it was restored).
   */
  async *streamEntry(name: string, head: Buffer, chunks: Chunks, restorable: (head: Buffer) => boolean): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      for (;;) {
        const { value, done } = await this.nextChunk(chunks);
        if (done) break;
        yield value;
      }
      const after = await this.nextRefusedEntry(restorable);
      if (after?.storeFile) throw storeFilesError(after.name);
      if (after) throw new ArchiveError('INVALID_RECORD', secondFileProblem(name, after.name));
    } finally {
      this.close();
    }
  }

  /**
   * The name of the next entry that refuses the tar once its archive was read: a Neo4j store file, or a file
   * `restorable` accepts. A damaged or cut tail ends the search: the entry before it was read whole, and what follows it
   * is no part of it.
   */
  private async nextRefusedEntry(restorable: (head: Buffer) => boolean): Promise<{ name: string; storeFile: boolean } | undefined> {
    try {
      for (let entry = await this.nextEntry(); entry; entry = await this.nextEntry()) {
        const name = entry.header.name;
        if (isNeo4jStorePath(name)) return { name, storeFile: true };
        const chunks = entry[Symbol.asyncIterator]() as Chunks;
        const isFile = entry.header.type === 'file' || entry.header.type === 'contiguous-file';
        if (isFile && restorable(await readHead(chunks, SNIFF_LENGTH, this))) return { name, storeFile: false };
        await drainIterator(chunks, this);
      }
    } catch (err) {
      if (this.inputError !== undefined && err === this.inputError) throw err;
    }
    return undefined;
  }

  async nextChunk(chunks: Chunks): Promise<IteratorResult<Buffer>> {
    try {
      return await chunks.next();
    } catch (err) {
      throw this.translate(err, 'inside its archive entry');
    }
  }

  close(): void {
    this.input.unpipe(this.extract);
    this.extract.destroy();
    this.input.destroy();
  }

  /** Failures of the input itself pass through; tar parsing failures describe the upload. */
  private translate(err: unknown, where: string): unknown {
    if (this.inputError !== undefined && err === this.inputError) return err;
    if (err instanceof ArchiveError) return err;
    const cause = this.parseError ?? err;
    const message = cause instanceof Error ? cause.message : String(cause);
    if (/unexpected end/i.test(message)) {
      return new ArchiveError('TRUNCATED', `The tar file is incomplete: it ends ${where}. Upload the complete file.`, { cause });
    }
    return new ArchiveError('NOT_AN_ARCHIVE', `The file is not a valid tar file (${message}). ${WHAT_TO_UPLOAD}`, { cause });
  }
}

/** At least `length` bytes from the start of an entry (fewer if it is shorter). */
async function readHead(chunks: Chunks, length: number, tar: TarReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  while (size < length) {
    const { value, done } = await tar.nextChunk(chunks);
    if (done) break;
    parts.push(value);
    size += value.length;
  }
  return Buffer.concat(parts, size);
}

async function drainIterator(chunks: Chunks, tar: TarReader): Promise<void> {
  for (;;) if ((await tar.nextChunk(chunks)).done) return;
}

