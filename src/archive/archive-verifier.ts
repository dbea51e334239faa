// Verifies an archive on a worker thread while it streams in: the full check of ArchiveReader.verify() (frame CRCs,
// inflating every frame, every record's fields, counts, SHA-256, end of file) is CPU work in JavaScript, so it runs
// beside the event loop instead of on it. Write the archive's bytes into the verifier (pipe), then await `result`.
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { ArchiveError, type ArchiveErrorCode } from './archive-error';
import { VERIFY_FRAME_WORKERS } from './frame-pool';
import type { ArchiveHeader } from './archive-header';

/** Bytes sent to the worker and not yet read by it: the bound on what an upload holds in memory for verification. */
const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;

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
    this.send(chunk);
    if (this.inFlight <= MAX_IN_FLIGHT_BYTES) return callback();
    this.waiting = () => callback();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    const bytes = Buffer.allocUnsafeSlow(chunks.reduce((sum, { chunk }) => sum + chunk.length, 0));
    let offset = 0;
    for (const { chunk } of chunks) offset += chunk.copy(bytes, offset);
    this._write(bytes, 'binary', callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
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

  /** A copy of its own goes to the worker (transferred, not cloned): the caller's buffer is shared with the blob write. */
  private send(chunk: Buffer): void {
    const copy = new Uint8Array(chunk);
    this.inFlight += copy.length;
    this.worker.postMessage({ chunk: copy }, [copy.buffer as ArrayBuffer]);
  }

  private release(): void {
    if (this.waiting && (this.inFlight <= MAX_IN_FLIGHT_BYTES || this.settled)) {
      const waiting = this.waiting;
      this.waiting = null;
      waiting();
    }
  }
}
