// A blob's bytes read over a network that may break: the read goes on from where it stopped, over a new request.
import { Readable } from 'node:stream';

import { BlobStoreError } from './errors';

export interface ResumingReadOptions {
  /** The blob's key, for errors. */
  key: string;
  /** The offset of the first byte `first` yields. */
  offset: number;
  /** Resumes a read cut short: the bytes from `offset` on, of the same version of the blob (or it fails). */
  reopen(offset: number, signal: AbortSignal): Promise<Readable>;
  /** Times the read may resume. */
  retries: number;
  /** Wait before the first resume, doubled for each next one. */
  retryDelayMs: number;
}

/**
 * The bytes of `first`, then, when its connection breaks (a reset, a timeout), those of `reopen` from the next offset:
 * the consumer sees one stream. Any other error of a source, one of `reopen`, or a break beyond the retries, fails the
 * stream. A source is paused while the consumer lags behind, so at most a buffer's worth is held.
 */
export class ResumingRead extends Readable {
  #source: Readable;
  #offset: number;
  #retried = 0;
  #waiting: NodeJS.Timeout | undefined;
  #reopening: AbortController | undefined;

  constructor(
    first: Readable,
    private readonly options: ResumingReadOptions,
  ) {
    super();
    this.#offset = options.offset;
    this.#source = first;
    this.#attach(first);
  }

  override _read(): void {
    this.#source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#waiting);
    this.#reopening?.abort();
    this.#source.destroy();
    callback(error);
  }

  #attach(source: Readable): void {
    this.#source = source;
    source.on('data', (chunk: Buffer) => {
      this.#offset += chunk.length;
      if (!this.push(chunk)) source.pause();
    });
    source.once('end', () => this.push(null));
    // Not once: a source given up may still emit one more as it closes.
    source.on('error', (error) => {
      if (source === this.#source) this.#sourceFailed(error);
    });
  }

  #sourceFailed(error: Error): void {
    if (this.destroyed) return;
    const { key, retries, retryDelayMs } = this.options;
    if (!isBrokenConnection(error)) return void this.destroy(error);
    if (this.#retried === retries) {
      return void this.destroy(new BlobStoreError(`reading the blob ${key} failed after ${retries} retries, at byte ${this.#offset}: ${error.message}`, { cause: error }));
    }
    this.#waiting = setTimeout(() => this.#reopen(), retryDelayMs * 2 ** this.#retried);
    this.#retried += 1;
  }

  #reopen(): void {
    const reopening = new AbortController();
    this.#reopening = reopening;
    this.options.reopen(this.#offset, reopening.signal).then(
      (source) => {
        this.#reopening = undefined;
        if (this.destroyed) source.destroy();
        else this.#attach(source);
      },
      (error: Error) => {
        this.#reopening = undefined;
        this.destroy(error);
      },
    );
  }
}

/** Errors of a connection that broke (or went silent) mid-answer, which a new request may not meet. */
const BROKEN_CONNECTION_CODES = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENETUNREACH', 'EHOSTUNREACH']);

function isBrokenConnection(error: Error): boolean {
  // TimeoutError: the SDK's socketTimeout, which fails an answer's body that stops.
  return error.name === 'TimeoutError' || BROKEN_CONNECTION_CODES.has((error as NodeJS.ErrnoException).code ?? '');
}
