// Stopping a transfer part-way: Ctrl-C (SIGINT) or SIGTERM from the user, or SNAPGRAPH_CLI_STOP_AFTER_BYTES, which
// simulates an interruption after that many bytes so tests can exercise resumption deterministically.

export class Interruption {
  private requested = false;
  private readonly listeners = new Set<() => void>();
  private readonly onSignal = () => this.request();

  /** Bytes after which the transfer stops as if interrupted; null when unset. */
  readonly stopAfterBytes: number | null;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    const limit = Number(env.SNAPGRAPH_CLI_STOP_AFTER_BYTES);
    this.stopAfterBytes = Number.isSafeInteger(limit) && limit > 0 ? limit : null;
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  get isRequested(): boolean {
    return this.requested;
  }

  /** Runs `listener` once when an interruption is requested (at once if it already was). */
  onRequest(listener: () => void): void {
    if (this.requested) listener();
    else this.listeners.add(listener);
  }

  request(): void {
    if (this.requested) return;
    this.requested = true;
    for (const listener of this.listeners) listener();
    this.listeners.clear();
  }

  /** The part of `chunk` (arriving after `bytesDone` bytes) before the test limit; requests the interruption there. */
  clip(chunk: Buffer, bytesDone: number): Buffer {
    if (this.stopAfterBytes === null) return chunk;
    const room = Math.max(0, this.stopAfterBytes - bytesDone);
    if (room > chunk.length) return chunk;
    this.request();
    return chunk.subarray(0, room);
  }

  /** Call as bytes are accepted: requests the interruption once the test limit is reached. */
  count(bytesDone: number): void {
    if (this.stopAfterBytes !== null && bytesDone >= this.stopAfterBytes) this.request();
  }

  dispose(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    this.listeners.clear();
  }
}
