// A tus upload's bytes go through UploadService's check as they arrive, PATCH after PATCH, on the replica that
// receives them, while the upload's file keeps them (encrypted: PartialBlobFile); with a blob store that cannot take
// that file as it is (S3), they are also stored there as they are checked, as a multipart upload's are. When the last byte arrives the check
// is nearly done: finishing ends a stream instead of reading the whole file back and checking it then, which took as
// long again as the transfer. The restore is queued only then, by the caller, with what finish() gives.
//
// The upload's file stays the source of truth. A receiver that misses any byte is dropped (its check stops, and what
// it kept, if anything, is discarded), and the finished upload is read back from its file instead: the client resumed
// on another replica or after a restart, a PATCH failed midway, the upload paused longer than RECEIVER_IDLE_MS or was
// deleted, the check stopped early (a refusal is then given by the read-back check, against the state of things when
// the upload finished, not when it started), or MAX_RECEIVERS uploads were being received already.
import { PassThrough, pipeline, type Readable, Transform } from 'node:stream';

/** A receiver that gets no byte for this long is dropped. */
export const RECEIVER_IDLE_MS = 5 * 60_000;
/**
 * Uploads received at once, at most (each holds a worker thread for its check, and with S3 a blob being written, for
 * as long as the upload lasts); more are read back when they are complete.
 */
export const MAX_RECEIVERS = 8;
/** Bytes a receiver holds for its check before the upload waits for it (a PassThrough holds this on each side). */
const FEED_SIDE_BYTES = 2 * 1024 * 1024;

export interface ReceiverOptions<T> {
  /** Discards what a check kept (if it keeps anything) when its receiver is dropped after the check ended. */
  discard?(received: T): Promise<void>;
  idleMs?: number;
  /** How long finish() waits for the check to end once the last byte is in, before reading the file back instead. */
  finishTimeoutMs: number;
}

/** Receivers of the uploads of this process, by upload id; T is what a check gives (a stored, checked file). */
export class UploadReceivers<T> {
  /** Uploads created here whose first byte has not come yet: how to start their check. */
  private readonly expected = new Map<string, { start: (input: Readable) => Promise<T>; timer: NodeJS.Timeout }>();
  private readonly receivers = new Map<string, Receiver<T>>();
  private readonly idleMs: number;

  constructor(private readonly options: ReceiverOptions<T>) {
    this.idleMs = options.idleMs ?? RECEIVER_IDLE_MS;
  }

  /** An upload was created here: its bytes may be checked by `start` from the first one on. */
  expect(id: string, start: (input: Readable) => Promise<T>): void {
    this.abandon(id);
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
        if (endOffset === null || endOffset !== receiver.received) this.abandon(id);
      },
    };
  }

  /**
   * The last byte of the upload (`sizeBytes` in all) is in its file: what its receiver's check gave, or null when
   * there is no receiver that got every byte, or its check did not succeed in time (then read the file back).
   */
  async finish(id: string, sizeBytes: number): Promise<T | null> {
    this.forget(id);
    const receiver = this.receivers.get(id);
    this.receivers.delete(id);
    return receiver ? receiver.finish(sizeBytes, this.options.finishTimeoutMs) : null;
  }

  /** Drops the upload's receiver, if any (the upload was deleted, or finished without it). */
  abandon(id: string): void {
    this.forget(id);
    this.receivers.get(id)?.drop();
    this.receivers.delete(id);
  }

  private receiverAt(id: string, offset: number): Receiver<T> | null {
    const receiver = this.receivers.get(id);
    if (receiver) {
      if (receiver.received === offset && receiver.alive) return receiver;
      this.abandon(id);
      return null;
    }
    const expected = this.expected.get(id);
    if (!expected || offset !== 0 || this.receivers.size >= MAX_RECEIVERS) return null;
    this.forget(id);
    const discard = (received: T) => this.options.discard?.(received) ?? Promise.resolve();
    const started: Receiver<T> = new Receiver(expected.start, discard, this.idleMs, () => {
      if (this.receivers.get(id) === started) this.receivers.delete(id);
    });
    this.receivers.set(id, started);
    return started;
  }

  private forget(id: string): void {
    const expected = this.expected.get(id);
    if (expected) clearTimeout(expected.timer);
    this.expected.delete(id);
  }
}

class Receiver<T> {
  /** Bytes handed to the check so far. */
  received = 0;
  private readonly feed = new PassThrough({ highWaterMark: FEED_SIDE_BYTES });
  private readonly checked: Promise<T>;
  /** What the check gave, once it has (to discard if the receiver is dropped after that). */
  private result: { value: T } | null = null;
  private stopped = false;
  /** A write waiting for the check to take more. */
  private waiting: (() => void) | null = null;
  private readonly idle: NodeJS.Timeout;

  constructor(
    start: (input: Readable) => Promise<T>,
    private readonly discard: (received: T) => Promise<void>,
    idleMs: number,
    private readonly onDropped: () => void,
  ) {
    this.checked = start(this.feed);
    this.checked.then(
      (value) => {
        if (this.stopped) return void this.discard(value).catch(() => undefined);
        // The check may end before the last byte (an archive inside a tar ends before the tar does): what still comes
        // is not needed by it, and must not wait for it (its reader may be gone).
        this.result = { value };
        this.release();
      },
      // A check that stops before the end (a refusal, the server's state) drops the receiver: see the top of the file.
      () => this.drop(),
    );
    this.feed.on('drain', () => this.release());
    // Its reader (the check) hears a drop where it reads; after the check has stopped nobody reads it, and the drop's
    // error must not reach the process as an 'error' event nobody listens to.
    this.feed.on('error', () => undefined);
    this.idle = setTimeout(() => this.drop(), idleMs);
    this.idle.unref();
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
        if (this.result || this.feed.write(chunk)) return done(null, chunk);
        this.waiting = () => done(null, chunk);
      },
    });
    pipeline(body, tee, () => undefined);
    return tee;
  }

  async finish(sizeBytes: number, timeoutMs: number): Promise<T | null> {
    if (this.stopped || this.received !== sizeBytes) {
      this.drop();
      return null;
    }
    clearTimeout(this.idle);
    if (!this.result) this.feed.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    const value = await Promise.race([this.checked.then((checked) => ({ checked }), () => null), late]);
    clearTimeout(timer);
    if (value === null) this.drop(); // stopped, or stuck: its work is discarded, and the file is read back
    return value?.checked ?? null;
  }

  drop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.idle);
    this.feed.destroy(new Error('the upload was not received here to its end; its file is checked when it is complete'));
    if (this.result) void this.discard(this.result.value).catch(() => undefined);
    this.release();
    this.onDropped();
  }

  private release(): void {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }
}
