// Verifies an archive on a worker thread while it streams in: the full check of ArchiveReader.verify() (frame CRCs,
// inflating every frame, every record's fields, counts, SHA-256, end of file) is CPU work in JavaScript, so it runs
// beside the event loop instead of on it, on one of the threads every upload shares (VerifierThreads). Write the
// archive's bytes into the verifier (pipe), then await `result`; `header` comes as soon as the header is read.
import { Writable } from 'node:stream';
import { ArchiveError } from './archive-error';
import type { ArchiveHeader } from './archive-header';
import { type FromVerifier, type VerifierChannel, type VerifierThreads, verifierThreads } from './verifier-threads';
import { deferred } from '../runtime/deferred';

/**
 * Bytes sent to a thread and not yet taken by it, all its uploads together: an upload waits above its share. (The
 * thread holds up to 1 MiB more of each unread, and with frame workers up to 16 MiB of frames ahead; 1 MiB more of each
 * waits here to be sent.) Alone on its thread, an upload has it all, as when each had a thread of its own; 16 uploads
 * sharing one thread held 16 MiB each there before this bound, and peaked at 737 MiB of RSS against 638 MiB with 2 MiB
 * each.
 */
const THREAD_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** An upload's share never falls below this: each keeps a message in flight and one on its way. */
const MIN_IN_FLIGHT_BYTES = 2 * 1024 * 1024;
/**
 * Bytes sent to the thread in one message: a socket hands over 16-64 KiB at a time, and each message costs both threads
 * (an event, a Buffer, a push into the upload's stream there) whatever its size.
 */
const MESSAGE_BYTES = 1024 * 1024;

export class ArchiveVerifier extends Writable {
  /** The archive's header once every byte checked out; rejects with an ArchiveError at the first damage. */
  readonly result: Promise<ArchiveHeader>;
  /**
   * The archive's header as soon as the thread has read it (it comes with the first message of bytes, MESSAGE_BYTES),
   * before its body is checked: what the archive claims, which `result` confirms or refutes. Rejects as `result` does
   * when the archive fails before it.
   */
  readonly header: Promise<ArchiveHeader>;
  private readonly channel: VerifierChannel;
  private inFlight = 0;
  private waiting: (() => void) | null = null;
  /** The message being gathered (stage), and how many of its bytes are filled. */
  private staging: Buffer | null = null;
  private staged = 0;
  private settled = false;
  private abandon: (error: Error) => void = () => undefined;

  /** @param threads the verifier threads to use: the process's own (with VERIFY_FRAME_WORKERS frame workers) by default. */
  constructor({ threads = verifierThreads() }: { threads?: VerifierThreads } = {}) {
    // Not destroyed when the bytes are all written: the verdict comes after that.
    super({ highWaterMark: 1024 * 1024, autoDestroy: false });
    const result = deferred<ArchiveHeader>();
    const header = deferred<ArchiveHeader>();
    this.result = result.promise;
    this.header = header.promise;
    // A promise settles once: the header, read already, stays when the verdict refutes the rest.
    this.abandon = (error) => {
      header.reject(error);
      result.reject(error);
    };
    this.channel = threads.open({
      message: (message: FromVerifier) => {
        if ('taken' in message) {
          this.inFlight -= message.taken;
          this.release();
          return;
        }
        if ('headerRead' in message) return header.resolve(message.headerRead);
        this.settle();
        if ('header' in message) {
          header.resolve(message.header);
          return result.resolve(message.header);
        }
        const { code, message: text } = message.error;
        const error = code ? new ArchiveError(code, text) : new Error(text);
        this.abandon(error);
        // The verdict is in: whatever still comes is not needed, and the writer is told at its next write.
        this.destroy(error);
      },
      lost: (error) => {
        this.settle();
        this.abandon(error);
        this.destroy(error);
      },
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.stage(chunk);
    this.whenRoom(callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    for (const { chunk } of chunks) this.stage(chunk);
    this.whenRoom(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.send();
    if (!this.settled) this.channel.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.settled) {
      this.settle();
      this.abandon(error ?? new Error('the archive verification was abandoned'));
    }
    callback(error);
  }

  /**
   * Copies the bytes into the message being gathered, sent when it is full: the caller's buffer is shared with the
   * blob write, and a message of its own is transferred to the worker, not cloned.
   */
  private stage(chunk: Buffer): void {
    for (let at = 0; at < chunk.length; ) {
      this.staging ??= Buffer.allocUnsafeSlow(MESSAGE_BYTES);
      const copied = chunk.copy(this.staging, this.staged, at);
      at += copied;
      this.staged += copied;
      if (this.staged === MESSAGE_BYTES) this.send();
    }
  }

  /** Sends the bytes gathered so far (none once the verdict is in). */
  private send(): void {
    if (!this.staging || this.staged === 0) return;
    const bytes = new Uint8Array(this.staging.buffer, 0, this.staged);
    this.staging = null;
    this.staged = 0;
    if (this.settled) return;
    this.inFlight += bytes.byteLength;
    this.channel.send(bytes);
  }

  /** The verdict is in, or will never come: the thread forgets this upload, and a writer waiting for room goes on. */
  private settle(): void {
    this.settled = true;
    this.channel.close();
    this.release();
  }

  /** This upload's share of its thread's bytes in flight (shrinking as others join it, growing as they leave). */
  private get maxInFlight(): number {
    return Math.max(MIN_IN_FLIGHT_BYTES, THREAD_IN_FLIGHT_BYTES / this.channel.sharers);
  }

  private whenRoom(callback: () => void): void {
    if (this.settled || this.inFlight <= this.maxInFlight) return callback();
    this.waiting = callback;
  }

  /** A writer waiting for room goes on: there is room (its own bytes were taken, so its share is looked at again), or the verdict is in. */
  private release(): void {
    if (this.waiting && (this.settled || this.inFlight <= this.maxInFlight)) {
      const waiting = this.waiting;
      this.waiting = null;
      waiting();
    }
  }
}
