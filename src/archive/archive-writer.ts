// Encodes graph records into archive bytes, streaming: memory stays at about two frames plus
// the stream's buffer however many records pass through.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import type { EncodedBatch, GraphRecord } from '../graph/records';
import { encodeLines } from '../runtime/text-lines';
import { ArchiveError } from './archive-error';
import { DATA_FRAME, encodeEndFrame, encodeFrame, MAX_FRAME_BYTES, type RecordCounts } from './archive-frame';
import { encodeArchiveHeader, type ArchiveHeaderInput } from './archive-header';
import { encodeRecordLine } from './record-codec';

const deflateRawAsync = promisify(deflateRaw);

/** Level 1: about 5x faster than the default for a few percent more bytes on JSON records. */
const COMPRESSION_LEVEL = 1;
const DEFAULT_FRAME_TARGET_BYTES = 128 * 1024;
/** The most raw deflate can make of `length` bytes (zlib's deflateBound, stored blocks included). */
const deflateBound = (length: number) => length + (length >> 12) + (length >> 14) + (length >> 25) + 64;
const STREAM_HIGH_WATER_MARK = 1024 * 1024;

export interface ArchiveWriterOptions {
  /** Uncompressed size at which a data frame is sealed (default 128 KiB). Small values suit tests. */
  targetFrameBytes?: number;
}

export interface ArchiveWriter {
  /** The archive's bytes. The header is already in it when the writer is created. */
  readonly stream: Readable;
  /**
   * Appends records (all nodes before all relationships). Resolves when the caller may write
   * more: the previous frame is compressed and the stream's consumer keeps up. Pass batches
   * (hundreds to thousands of records) rather than single records for speed.
   * Rejects with INVALID_RECORD for a malformed or out-of-order record (the stream is then
   * destroyed), or with the stream's error when its consumer failed.
   */
  write(records: GraphRecord | readonly GraphRecord[]): Promise<void>;
  /**
   * Appends records already encoded as tuple lines (see EncodedBatch), as a store's bulk reader produces
   * them; same ordering rules and backpressure as write(). The lines are trusted to be well-formed tuples.
   */
  writeEncoded(batch: EncodedBatch): Promise<void>;
  /**
   * Writes the last frame, the end frame and the digest, and ends the stream. Rejects with
   * COUNT_MISMATCH (and destroys the stream) when the records written differ from the counts
   * in the header's stats: such an archive would never restore.
   */
  end(): Promise<void>;
  /** Abandons the archive: destroys the stream (with `err`, if given); later writes reject. */
  destroy(err?: Error): void;
}

export function createArchiveWriter(header: ArchiveHeaderInput, options: ArchiveWriterOptions = {}): ArchiveWriter {
  return new StreamingArchiveWriter(header, options);
}

/**
 * The archive of `records` as a stream, pulling from `records` only as fast as the stream is
 * read. An error from `records` destroys the stream with that error.
 */
export function encodeArchive(
  header: ArchiveHeaderInput,
  records: AsyncIterable<GraphRecord | readonly GraphRecord[]> | Iterable<GraphRecord | readonly GraphRecord[]>,
  options: ArchiveWriterOptions = {},
): Readable {
  const writer = createArchiveWriter(header, options);
  void (async () => {
    for await (const batch of records) await writer.write(batch);
    await writer.end();
  })().catch((err: Error) => writer.destroy(err));
  return writer.stream;
}

class StreamingArchiveWriter implements ArchiveWriter {
  readonly stream: Readable;
  private readonly digest = createHash('sha256');
  private readonly announced: RecordCounts;
  private readonly targetFrameChars: number;
  private lines: string[] = [];
  private pendingChars = 0;
  private written: RecordCounts = { nodeCount: 0, relationshipCount: 0 };
  /** Settles once every sealed frame is pushed, in order. Never rejects: failures land in `failure`. */
  private framesPushed: Promise<void> = Promise.resolve();
  /** Settles once all frames but the newest are pushed, so one frame compresses while the caller prepares the next. */
  private olderFramesPushed: Promise<void> = Promise.resolve();
  private consumerWantsData = true;
  private demandWaiters: Array<() => void> = [];
  private failure: Error | undefined;
  private ending: Promise<void> | undefined;
  private complete = false;

  constructor(header: ArchiveHeaderInput, options: ArchiveWriterOptions) {
    const headerBytes = encodeArchiveHeader(header);
    this.announced = { nodeCount: header.stats.nodeCount, relationshipCount: header.stats.relationshipCount };
    this.targetFrameChars = Math.max(1, options.targetFrameBytes ?? DEFAULT_FRAME_TARGET_BYTES);
    this.stream = new Readable({
      highWaterMark: STREAM_HIGH_WATER_MARK,
      read: () => this.onDemand(),
      destroy: (err, callback) => {
        this.onStreamDestroyed(err);
        callback(err);
      },
    });
    this.push(headerBytes);
  }

  write(records: GraphRecord | readonly GraphRecord[]): Promise<void> {
    return this.appendThenYield('write', () => {
      if (isRecordList(records)) for (const record of records) this.append(record);
      else this.append(records);
    });
  }

  writeEncoded(batch: EncodedBatch): Promise<void> {
    return this.appendThenYield('writeEncoded', () => {
      for (const line of batch.lines) this.appendLine(batch.kind, line);
    });
  }

  /** Appends (failing the archive on a bad record), then waits until the caller may write more. */
  private async appendThenYield(method: string, append: () => void): Promise<void> {
    if (this.ending) throw new Error(`ArchiveWriter.${method}() called after end()`);
    this.throwIfFailed();
    try {
      append();
    } catch (err) {
      this.fail(err as Error);
      throw err;
    }
    await this.olderFramesPushed;
    await this.consumerDemand();
    this.throwIfFailed();
  }

  end(): Promise<void> {
    this.ending ??= this.finish();
    return this.ending;
  }

  destroy(err?: Error): void {
    this.stream.destroy(err);
  }

  private append(record: GraphRecord): void {
    this.appendLine(record.kind, encodeRecordLine(record), () => recordName(record));
  }

  private appendLine(kind: GraphRecord['kind'], line: string, name = () => `a ${kind}`): void {
    // A character is at most 3 bytes of UTF-8: only a line that may not fit in a frame beside the pending ones is measured.
    if (3 * (this.pendingChars + line.length + 1) > MAX_FRAME_BYTES) this.makeRoomFor(line, name);
    if (kind === 'node') {
      if (this.written.relationshipCount > 0) {
        throw new ArchiveError('INVALID_RECORD', `Cannot write ${name()}: all nodes must be written before the first relationship.`);
      }
      this.written.nodeCount++;
    } else {
      this.written.relationshipCount++;
    }
    this.lines.push(line);
    this.pendingChars += line.length + 1;
    if (this.pendingChars >= this.targetFrameChars) this.sealFrame();
  }

  /**
   * Every record a reader takes is written: one as large as a frame holds (MAX_FRAME_BYTES with its newline) goes in
   * a frame of its own when the pending lines leave no room for it; a larger one no reader could take is refused.
   */
  private makeRoomFor(line: string, name: () => string): void {
    const bytes = Buffer.byteLength(line, 'utf8') + 1;
    if (bytes > MAX_FRAME_BYTES) {
      throw new ArchiveError('INVALID_RECORD', `Cannot write ${name()}: it is larger than a frame holds (64 MiB) once encoded.`);
    }
    let pending = 0;
    for (const pendingLine of this.lines) pending += Buffer.byteLength(pendingLine, 'utf8') + 1;
    if (pending + bytes > MAX_FRAME_BYTES) this.sealFrame();
  }

  /** Compresses the pending lines off the main thread and queues the frame behind the previous one. */
  private sealFrame(): void {
    const raw = encodeLines(this.lines);
    this.lines = [];
    this.pendingChars = 0;
    // Room for the whole frame compressed: zlib hands back one output chunk per trip to the thread pool (16 KiB by
    // default), and each trip waits for the event loop between two; a frame took six where it now takes one.
    const compressed = deflateRawAsync(raw, { level: COMPRESSION_LEVEL, chunkSize: deflateBound(raw.length) });
    const previous = this.framesPushed;
    this.olderFramesPushed = previous;
    this.framesPushed = Promise.all([compressed, previous]).then(
      ([stored]) => {
        if (!this.failure) for (const part of encodeFrame(DATA_FRAME, raw.length, stored)) this.push(part);
      },
      (err: Error) => this.fail(err),
    );
  }

  private async finish(): Promise<void> {
    this.throwIfFailed();
    if (this.lines.length > 0) this.sealFrame();
    await this.framesPushed;
    this.throwIfFailed();
    const { written, announced } = this;
    if (written.nodeCount !== announced.nodeCount || written.relationshipCount !== announced.relationshipCount) {
      const err = new ArchiveError(
        'COUNT_MISMATCH',
        `The archive header announces ${announced.nodeCount} nodes and ${announced.relationshipCount} relationships, ` +
          `but ${written.nodeCount} nodes and ${written.relationshipCount} relationships were written.`,
      );
      this.fail(err);
      throw err;
    }
    this.push(encodeEndFrame(written));
    const digest = this.digest.digest();
    this.complete = true;
    this.stream.push(digest);
    this.stream.push(null);
  }

  private push(bytes: Buffer): void {
    this.digest.update(bytes);
    if (!this.stream.push(bytes)) this.consumerWantsData = false;
  }

  private consumerDemand(): Promise<void> {
    if (this.consumerWantsData || this.failure) return Promise.resolve();
    return new Promise((resolve) => this.demandWaiters.push(resolve));
  }

  private onDemand(): void {
    this.consumerWantsData = true;
    this.releaseDemandWaiters();
  }

  private onStreamDestroyed(err: Error | null): void {
    if (!this.complete && !this.failure) {
      this.failure = err ?? new Error('The archive stream was closed before the archive was complete.');
    }
    this.releaseDemandWaiters();
  }

  private releaseDemandWaiters(): void {
    const waiters = this.demandWaiters;
    this.demandWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.stream.destroy(err);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }
}

function isRecordList(records: GraphRecord | readonly GraphRecord[]): records is readonly GraphRecord[] {
  return Array.isArray(records);
}

function recordName(record: GraphRecord): string {
  return record.kind === 'node' ? `node ${record.node.id}` : `relationship ${record.relationship.id}`;
}
