// Decodes archive bytes back into records, streaming, verifying as it goes: every frame's
// CRC and every record's fields (record-validation.ts) before its records are handed out, and
// counts, digest and end of file before the iteration reports completion.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { EncodedBatch, GraphRecord } from '../graph/records';
import { ArchiveError, readOrTruncated } from './archive-error';
import { DIGEST_LENGTH, END_FRAME, decodeEndFrame, inflateDataFrame, inflateDataFrameOffThread, readFrame, type Frame } from './archive-frame';
import { decodeArchiveHeader, type ArchiveHeader } from './archive-header';
import { StreamByteReader } from './byte-reader';
import type { FramePool } from './frame-pool';
import { toGraphRecord } from './record-codec';
import { type CheckedRecord, RecordValidator, type TaggedLine } from './record-validation';

export interface ArchiveReader {
  /** The header; rejects with an ArchiveError when the file is not a readable archive. */
  readonly header: Promise<ArchiveHeader>;
  /**
   * The records, one batch per data frame, nodes first. Throws an ArchiveError where damage is
   * found; completes only after the end frame, the counts, the SHA-256 digest and the end of
   * the file have been checked. Stopping early (break, or an error) destroys the input.
   * Can be iterated once.
   */
  records(): AsyncIterable<GraphRecord[]>;
  /**
   * The same verified stream as the tuple lines stored (for bulk loading, which binds their fields as they are),
   * one batch per run of one kind within a frame. Use either records() or encodedBatches(), once.
   * `recordsChecked`: every record passed this release's checks before (see RecordValidator.countedSlices), so lines
   * are only counted, not parsed again; frames, counts, digest and end of file are checked all the same.
   * `pool`: frames are inflated on its threads, a few ahead of the one handed out.
   */
  encodedBatches(options?: { recordsChecked?: boolean; pool?: FramePool }): AsyncIterable<EncodedBatch>;
  /**
   * Checks the whole archive (frame CRCs, every record's fields, order and counts against the header, digest,
   * end of file) without keeping anything: for uploads. Rejects with ArchiveError at the first damage.
   * `pool`: frames are inflated and their records checked on its threads, several at once; the verdict is the same.
   * `takeTurns`: the event loop turns between frames, and within a frame every TURN_BYTES or TURN_RECORDS of records
   * checked on this thread, so that readers sharing a thread take turns (VerifierThreads).
   */
  verify(pool?: FramePool, options?: { takeTurns?: boolean }): Promise<ArchiveHeader>;
  /** Bytes of the input consumed so far (for progress against the file size). */
  bytesRead(): number;
}

/** Reads an archive from `input`, which it takes over. The header is read at once. */
export function openArchive(input: Readable): ArchiveReader {
  return new StreamingArchiveReader(input);
}

/**
 * Reads only the header, then stops: the rest of the input is left unread (what was read
 * ahead is put back with unshift), and the input is neither resumed nor destroyed.
 */
export async function readArchiveHeader(input: Readable): Promise<ArchiveHeader> {
  const bytes = new StreamByteReader(input);
  try {
    return await decodeArchiveHeader(bytes);
  } finally {
    bytes.release();
  }
}

/** A frame's records, every field of every one checked. */
const checked = (validator: RecordValidator, raw: Buffer): CheckedRecord[] => validator.frame(raw);

/**
 * Records checked between two turns of the event loop when a reader takes turns (verify): about 10-50 ms of work, 1 MiB
 * of records or this many of the smallest ones (a record of ~20 bytes takes a few microseconds).
 */
const TURN_BYTES = 1024 * 1024;
const TURN_RECORDS = 8192;
/** Frames at least this large are inflated on libuv's thread pool: a writer's are 128 KiB; a hostile one's, up to 64 MiB. */
const OFF_THREAD_INFLATE_BYTES = 4 * 1024 * 1024;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Frames read and sent to a pool ahead of the one handed out (framesAhead): enough to keep two threads busy. */
const MAX_FRAMES_AHEAD = 8;
/**
 * ... and their bytes, stored and inflated (what an inflated frame waiting to be handed out holds), so that frames of up
 * to 64 MiB (hostile input: a few KiB of deflate can claim and hold 64 MiB) cannot pile up.
 */
const MAX_BYTES_AHEAD = 16 * 1024 * 1024;
/** The bytes a frame sent ahead may hold. */
const weightOf = (frame: Frame) => frame.stored.length + frame.rawLength;

class StreamingArchiveReader implements ArchiveReader {
  readonly header: Promise<ArchiveHeader>;
  private readonly bytes: StreamByteReader;
  private readonly digest = createHash('sha256');
  private iterated = false;

  constructor(private readonly input: Readable) {
    this.bytes = new StreamByteReader(input);
    this.bytes.observe((chunk) => this.digest.update(chunk));
    this.header = decodeArchiveHeader(this.bytes);
    // Callers that only iterate records() see the failure there; don't report it as unhandled.
    this.header.catch(() => undefined);
  }

  bytesRead(): number {
    return this.bytes.consumed;
  }

  records(): AsyncIterable<GraphRecord[]> {
    if (this.iterated) throw new Error('ArchiveReader.records() can only be iterated once');
    this.iterated = true;
    return this.readRecords();
  }

  encodedBatches({ recordsChecked = false, pool }: { recordsChecked?: boolean; pool?: FramePool } = {}): AsyncIterable<EncodedBatch> {
    if (this.iterated) throw new Error('ArchiveReader.encodedBatches() can only be iterated once');
    this.iterated = true;
    return this.readEncoded(recordsChecked ? (validator, raw) => validator.countedSlices(raw, TURN_BYTES, TURN_RECORDS) : (validator, raw) => [checked(validator, raw)], pool);
  }

  async verify(pool?: FramePool, { takeTurns = false }: { takeTurns?: boolean } = {}): Promise<ArchiveHeader> {
    if (this.iterated) throw new Error('ArchiveReader.verify() can only be called once');
    this.iterated = true;
    const validator = await this.validator();
    /** The frame's records checked here: whole, or a slice per turn. */
    const checkHere = async (raw: Buffer) => {
      if (!takeTurns) return void validator.frame(raw);
      for (const _ of validator.frameSlices(raw, TURN_BYTES, TURN_RECORDS)) await nextTurn();
    };
    if (!pool) {
      for await (const raw of this.frames(validator)) await checkHere(raw);
      return this.header;
    }
    // A pool that fails (a worker that crashed) leaves its frames to this thread, as damaged ones are.
    const check = (frame: Frame) => pool.check(frame).catch(() => null);
    for await (const { frame, result: verdict } of this.framesAhead(validator, check)) {
      // A frame its thread found fault with (or one that breaks a rule across frames) is read again here, to name the damage.
      if (verdict === null || verdict === 'damaged' || !validator.merge(verdict)) await checkHere(inflateDataFrame(frame));
      else if (takeTurns) await nextTurn();
    }
    return this.header;
  }

  private async *readRecords(): AsyncGenerator<GraphRecord[]> {
    for await (const records of this.checkedFrames(checked)) {
      if (records.length > 0) yield records.map(toGraphRecord);
    }
  }

  /** `take`: a frame's records, in slices (each handed out before the next is made). */
  private async *readEncoded(take: (validator: RecordValidator, raw: Buffer) => Iterable<TaggedLine[]>, pool?: FramePool): AsyncGenerator<EncodedBatch> {
    for await (const slices of pool ? this.inflatedFrames(take, pool) : this.checkedFrames(take)) {
      for (const records of slices) {
        const batches: EncodedBatch[] = [];
        for (const record of records) {
          const last = batches[batches.length - 1];
          if (last?.kind === record.kind) last.lines.push(record.line);
          else batches.push({ kind: record.kind, lines: [record.line] });
        }
        yield* batches;
      }
    }
  }

  /** Each data frame's records, as `take` checks them; ends only after the end frame, digest and end of file are verified. */
  private async *checkedFrames<T>(take: (validator: RecordValidator, raw: Buffer) => T): AsyncGenerator<T> {
    const validator = await this.validator();
    for await (const raw of this.frames(validator)) yield take(validator, raw);
  }

  /** checkedFrames(), each frame inflated on the pool's threads. */
  private async *inflatedFrames<T>(take: (validator: RecordValidator, raw: Buffer) => T, pool: FramePool): AsyncGenerator<T> {
    const validator = await this.validator();
    const inflate = (frame: Frame) => pool.inflate(frame).catch(() => 'damaged' as const);
    for await (const { frame, result } of this.framesAhead(validator, inflate)) {
      yield take(validator, result === 'damaged' ? inflateDataFrame(frame) : result);
    }
  }

  private async validator(): Promise<RecordValidator> {
    try {
      return new RecordValidator(await this.header);
    } catch (error) {
      this.input.destroy();
      throw error;
    }
  }

  /**
   * Each data frame (CRC-checked) with what `send` made of it (on a pool's thread), in the file's order, while up to
   * `ahead` more frames are read and sent. Damage found in reading one of those (a bad CRC, the file's end) is thrown
   * only after the frames before it are handed out: the first damage in the file is the one reported. Ends only after
   * the end frame, digest and end of file are verified.
   */
  private async *framesAhead<T>(
    validator: RecordValidator,
    send: (frame: Frame) => Promise<T>,
    ahead = MAX_FRAMES_AHEAD,
  ): AsyncGenerator<{ frame: Frame; result: T }> {
    const sent: { frame: Frame; result: Promise<T> }[] = [];
    let sentBytes = 0;
    const oldest = async () => {
      const { frame, result } = sent.shift()!;
      sentBytes -= weightOf(frame);
      return { frame, result: await result };
    };
    let complete = false;
    try {
      for (;;) {
        let frame: Frame;
        try {
          frame = await readFrame(this.bytes);
        } catch (error) {
          while (sent.length > 0) yield await oldest();
          throw error;
        }
        if (frame.type === END_FRAME) {
          while (sent.length > 0) yield await oldest();
          await this.verifyEnd(frame, validator);
          complete = true;
          return;
        }
        const result = send(frame);
        // Observed now: a thread that fails while an earlier frame's damage is being thrown is not an unhandled rejection.
        result.catch(() => undefined);
        sent.push({ frame, result });
        sentBytes += weightOf(frame);
        while (sent.length > ahead || sentBytes > MAX_BYTES_AHEAD) yield await oldest();
      }
    } finally {
      if (!complete) this.input.destroy();
    }
  }

  /**
   * Each data frame, CRC-checked and inflated; ends only after the end frame, digest and end of file are verified. A
   * large frame is inflated off the event loop (see inflateDataFrameOffThread); the usual ones here, whose hop to
   * libuv's pool cost more than their inflate (uploads were accepted 1.5 times slower with every frame sent there).
   */
  private async *frames(validator: RecordValidator): AsyncGenerator<Buffer> {
    const inflate = async (frame: Frame) => (frame.rawLength >= OFF_THREAD_INFLATE_BYTES ? inflateDataFrameOffThread(frame) : inflateDataFrame(frame));
    for await (const { result } of this.framesAhead(validator, inflate, 0)) yield result;
  }

  /** The end frame's counts, then the digest over everything before it, then nothing after it. */
  private async verifyEnd(frame: Frame, validator: RecordValidator): Promise<void> {
    const ended = decodeEndFrame(frame);
    const expectedDigest = this.digest.digest();
    this.bytes.observe(() => undefined);
    const storedDigest = await readOrTruncated(this.bytes, DIGEST_LENGTH, 'final checksum');
    if (!storedDigest.equals(expectedDigest)) {
      throw new ArchiveError('CORRUPT', 'The archive is damaged: its SHA-256 checksum does not match its contents.');
    }
    validator.complete(ended);
    if (!(await this.bytes.atEnd())) {
      throw new ArchiveError('CORRUPT', `The archive is damaged: unexpected data after its end, at byte ${this.bytes.consumed}.`);
    }
  }
}
