// Verifies an archive on a worker thread while it streams in: the full check of ArchiveReader.verify() (frame CRCs,
// inflating every frame, every record's fields, counts, SHA-256, end of file) is CPU work in JavaScript, so it runs
// beside the event loop instead of on it. Write the archive's bytes into the verifier (pipe), then await `result`.
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { ArchiveError, type ArchiveErrorCode } from './archive-error';
import { VERIFY_FRAME_WORKERS } from './frame-pool';
import type { ArchiveHeader } from './archive-header';

/**
 * Bytes sent to the worker and not yet read by it: the upload waits above this. (The worker holds what it reads on top:
 * the frame it checks, and with frame workers up to 16 MiB of frames ahead; 1 MiB more waits here to be sent.)
 */
const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/**
 * Bytes sent to the worker in one message: a socket hands over 16-64 KiB at a time, and each message costs both threads
 * (an event, a Buffer, a push into the worker's stream) whatever its size.
 */
const MESSAGE_BYTES = 1024 * 1024;

/** What the worker says: how many more bytes it has taken, or its verdict. */
export type VerifierMessage =
  | { taken: number }
  | { header: ArchiveHeader }
  | { error: { message: string; code?: ArchiveErrorCode } };

export class ArchiveVerifier extends Writable {
  /** The archive's header once every byte checked out; rejects with an ArchiveError at the first damage. */
  readonly result: Promise<ArchiveHeader>;
  private readonly worker: Worker;
  private inFlight = 0;
  private waiting: (() => void) | null = null;
  /** The message being gathered (stage), and how many of its bytes are filled. */
  private staging: Buffer | null = null;
  private staged = 0;
  private settled = false;
  private abandon: (error: Error) => void = () => undefined;

  /** @param frameWorkers threads that inflate and check frames beside the verifier's own (FramePool); 0: it does that itself. */
  constructor({ frameWorkers = VERIFY_FRAME_WORKERS }: { frameWorkers?: number } = {}) {
    // Not destroyed when the bytes are all written: the verdict comes after that.
    super({ highWaterMark: 4 * 1024 * 1024, autoDestroy: false });
    this.worker = new Worker(join(__dirname, 'archive-verify-worker.js'), { workerData: { frameWorkers } });
    this.result = new Promise<ArchiveHeader>((resolve, reject) => {
      this.abandon = reject;
      this.worker.on('message', (message: VerifierMessage) => {
        if ('taken' in message) {
          this.inFlight -= message.taken;
          this.release();
          return;
        }
        this.settled = true;
        void this.worker.terminate();
        if ('header' in message) return resolve(message.header);
        const { code, message: text } = message.error;
        const error = code ? new ArchiveError(code, text) : new Error(text);
        reject(error);
        // The verdict is in: whatever still comes is not needed, and the writer is told at its next write.
        this.destroy(error);
      });
      this.worker.on('error', (error) => {
        this.settled = true;
        reject(error);
        this.destroy(error);
      });
      this.worker.on('exit', () => {
        if (!this.settled) reject(new Error('the archive verifier stopped without a verdict'));
        this.release();
      });
    });
    this.result.catch(() => undefined);
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
    this.worker.postMessage({ end: true });
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.settled) {
      this.settled = true;
      void this.worker.terminate();
      this.abandon(error ?? new Error('the archive verification was abandoned'));
    }
    this.release();
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

  /** Sends the bytes gathered so far. */
  private send(): void {
    if (!this.staging || this.staged === 0) return;
    const bytes = new Uint8Array(this.staging.buffer, 0, this.staged);
    this.inFlight += this.staged;
    this.worker.postMessage({ chunk: bytes }, [this.staging.buffer as ArrayBuffer]);
    this.staging = null;
    this.staged = 0;
  }

  private whenRoom(callback: () => void): void {
    if (this.inFlight <= MAX_IN_FLIGHT_BYTES) return callback();
    this.waiting = callback;
  }

  private release(): void {
    if (this.waiting && (this.inFlight <= MAX_IN_FLIGHT_BYTES || this.settled)) {
      const waiting = this.waiting;
      this.waiting = null;
      waiting();
    }
  }
}
