// A tus upload's bytes go through UploadService's check and encrypted store as they arrive, PATCH after PATCH, on the
// replica that receives them, beside the plain partial file that tus keeps for resuming. When the last byte arrives
// the check is nearly done: finishing ends a stream instead of reading the whole file back and checking it then,
// which took as long again as the transfer.
//
// The plain file stays the source of truth. A receiver that misses any byte is dropped, and the finished upload is
// read back from its file as before: the client resumed on another replica or after a restart, a PATCH failed midway,
// the upload paused longer than RECEIVER_IDLE_MS, or the check stopped early (a refusal is then given by the read-back
// check, against the state of things when the upload finished, not when it started).
import { PassThrough, pipeline, type Readable, Transform } from 'node:stream';

/** A receiver that gets no byte for this long is dropped (its check stops and its stored bytes are deleted). */
export const RECEIVER_IDLE_MS = 5 * 60_000;
/** Bytes a receiver holds for its check before the upload waits for it. */
const FEED_BYTES = 4 * 1024 * 1024;

/** Starts the check and store of an upload's bytes, read from `input`; resolves with the queued operation's id. */
export type StartReceiving = (input: Readable) => Promise<string>;

export class UploadReceivers {
  /** Uploads created here whose first byte has not come yet: how to start their receiver. */
  private readonly expected = new Map<string, { start: StartReceiving; timer: NodeJS.Timeout }>();
  private readonly receivers = new Map<string, Receiver>();

  constructor(private readonly idleMs = RECEIVER_IDLE_MS) {}

  /** An upload was created here: its bytes may be received from the first one on. */
  expect(id: string, start: StartReceiving): void {
    this.forget(id);
    const timer = setTimeout(() => this.forget(id), this.idleMs);
    timer.unref();
    this.expected.set(id, { start, timer });
  }

  /**
   * The body of a write at `offset`, for the partial file: passed on unchanged, and to the upload's receiver when it
   * has every byte before `offset` (the first write starts it). Call settle() once the file has taken the write.
   */
  receive(id: string, offset: number, body: Readable): { body: Readable; settle(endOffset: number | null): void } {
    const receiver = this.receiverAt(id, offset);
    if (!receiver) return { body, settle: () => undefined };
    return {
      body: receiver.tee(body),
      // The file took the write (its new end), or not (null): the receiver is kept only if it got the same bytes.
      settle: (endOffset) => {
        if (endOffset === null || endOffset !== receiver.received) this.drop(id);
      },
    };
  }

  /**
   * The last byte of the upload (`sizeBytes` in all) is in its file: the operation its receiver queued, or null when
   * there is none that got every byte, or its check did not end in an operation (then read the file back).
   */
  async finish(id: string, sizeBytes: number): Promise<string | null> {
    this.forget(id);
    const receiver = this.receivers.get(id);
    this.receivers.delete(id);
    if (!receiver) return null;
    return receiver.finish(sizeBytes);
  }

  private receiverAt(id: string, offset: number): Receiver | null {
    const receiver = this.receivers.get(id);
    if (receiver) {
      if (receiver.received === offset && receiver.alive) return receiver;
      this.drop(id);
      return null;
    }
    const expected = this.expected.get(id);
    if (!expected || offset !== 0) return null;
    this.forget(id);
    const started = new Receiver(expected.start, this.idleMs, () => {
      if (this.receivers.get(id) === started) this.receivers.delete(id);
    });
    this.receivers.set(id, started);
    return started;
  }

  private drop(id: string): void {
    this.forget(id);
    this.receivers.get(id)?.drop();
    this.receivers.delete(id);
  }

  private forget(id: string): void {
    const expected = this.expected.get(id);
    if (expected) clearTimeout(expected.timer);
    this.expected.delete(id);
  }
}

class Receiver {
  /** Bytes handed to the check so far. */
  received = 0;
  private readonly feed = new PassThrough({ highWaterMark: FEED_BYTES });
  private readonly operationId: Promise<string>;
  private stopped = false;
  /** A write waiting for the check to take more. */
  private waiting: (() => void) | null = null;
  private idle: NodeJS.Timeout;

  constructor(
    start: StartReceiving,
    private readonly idleMs: number,
    private readonly onDropped: () => void,
  ) {
    this.operationId = start(this.feed);
    // A check that stops before the end (a refusal, the server's state) drops the receiver: see the top of the file.
    this.operationId.catch(() => this.drop());
    this.feed.on('drain', () => this.release());
    // Its reader (the check) hears a drop where it reads; after the check has stopped nobody reads it, and the drop's
    // error must not reach the process as an 'error' event nobody listens to.
    this.feed.on('error', () => undefined);
    this.idle = this.idleTimer();
  }

  get alive(): boolean {
    return !this.stopped;
  }

  /** The write's bytes, passed on; a copy of each chunk to the check, which paces the write as it does a multipart upload. */
  tee(body: Readable): Readable {
    const tee = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        if (this.stopped) return done(null, chunk);
        this.idle.refresh();
        this.received += chunk.length;
        if (this.feed.write(chunk)) return done(null, chunk);
        this.waiting = () => done(null, chunk);
      },
    });
    pipeline(body, tee, () => undefined);
    return tee;
  }

  async finish(sizeBytes: number): Promise<string | null> {
    if (this.stopped || this.received !== sizeBytes) {
      this.drop();
      return null;
    }
    clearTimeout(this.idle);
    this.feed.end();
    return this.operationId.catch(() => null);
  }

  drop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.idle);
    this.feed.destroy(new Error('the upload was not received here to its end; its file is checked when it is complete'));
    this.release();
    this.onDropped();
  }

  private release(): void {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }

  private idleTimer(): NodeJS.Timeout {
    const timer = setTimeout(() => this.drop(), this.idleMs);
    timer.unref();
    return timer;
  }
}
