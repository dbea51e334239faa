// Pulls exact byte counts out of a Readable without taking it over: it reads in paused mode
// and takes only the bytes it is asked for, so a caller that only wanted a prefix (the
// header) leaves the rest of the stream unread.
import type { Readable } from 'node:stream';

export class StreamByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private consumedBytes = 0;
  private onConsume: ((bytes: Buffer) => void) | undefined;

  constructor(private readonly input: Readable) {}

  /** Bytes handed out by read() so far: the offset of the next byte in the file. */
  get consumed(): number {
    return this.consumedBytes;
  }

  /** Called with every byte range handed out, in order (used to hash the whole file). */
  observe(onConsume: (bytes: Buffer) => void): void {
    this.onConsume = onConsume;
  }

  /**
   * Exactly `length` bytes, or undefined when the input ends first (the bytes that were
   * available are then consumed: see `consumed` to tell where the input ended).
   */
  async read(length: number): Promise<Buffer | undefined> {
    await this.fill(length);
    if (this.buffered < length) {
      this.take(this.buffered);
      return undefined;
    }
    return this.take(length);
  }

  /** Up to `length` bytes without consuming them (fewer only when the input ends). */
  async peek(length: number): Promise<Buffer> {
    await this.fill(length);
    const available = Math.min(length, this.buffered);
    this.coalesce(available);
    return this.chunks.length === 0 ? Buffer.alloc(0) : this.chunks[0].subarray(0, available);
  }

  /** True when every byte of the input has been consumed and the input has ended. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffered === 0;
  }

  /** Gives unconsumed bytes back to the input so that its next reader sees them. */
  release(): void {
    if (this.buffered > 0 && !this.input.destroyed && !this.input.readableEnded) {
      this.input.unshift(Buffer.concat(this.chunks, this.buffered));
    }
    this.chunks = [];
    this.buffered = 0;
  }

  private take(length: number): Buffer {
    this.coalesce(length);
    let bytes: Buffer;
    if (length === 0) {
      bytes = Buffer.alloc(0);
    } else {
      const first = this.chunks[0];
      bytes = first.subarray(0, length);
      if (length === first.length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
    }
    this.buffered -= length;
    this.consumedBytes += length;
    this.onConsume?.(bytes);
    return bytes;
  }

  /** Makes the first chunk at least `length` bytes long (joining chunks only when needed). */
  private coalesce(length: number): void {
    if (this.chunks.length > 1 && this.chunks[0].length < length) {
      this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    }
  }

  /**
   * Buffers at least `length` bytes (fewer only at the end of the input). Takes no more than
   * it needs out of a byte stream, so the rest stays in the stream for whoever reads next.
   */
  private async fill(length: number): Promise<void> {
    const input = this.input;
    while (this.buffered < length && !this.ended) {
      if (input.readableLength === 0) {
        input.read(0); // asks the source for more, or lets a finished stream emit 'end'
        await this.waitForInput();
        continue;
      }
      const wanted = input.readableObjectMode ? undefined : Math.min(input.readableLength, length - this.buffered);
      const chunk: Buffer | string | null = input.read(wanted);
      if (chunk === null) {
        await this.waitForInput();
        continue;
      }
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (bytes.length === 0) continue;
      this.chunks.push(bytes);
      this.buffered += bytes.length;
    }
  }

  private waitForInput(): Promise<void> {
    const input = this.input;
    if (input.errored) return Promise.reject(input.errored);
    if (input.readableEnded || input.destroyed) {
      this.ended = true;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const settle = (ended: boolean, err?: unknown) => {
        input.off('readable', onReadable);
        input.off('end', onEnd);
        input.off('close', onClose);
        input.off('error', onError);
        if (ended) this.ended = true;
        if (err) reject(err);
        else resolve();
      };
      const onReadable = () => settle(false);
      const onEnd = () => settle(true);
      // A stream destroyed without an error ended early: to the archive, that is truncation.
      const onClose = () => settle(true, input.errored ?? undefined);
      const onError = (err: unknown) => settle(true, err);
      input.on('readable', onReadable);
      input.on('end', onEnd);
      input.on('close', onClose);
      input.on('error', onError);
    });
  }
}
