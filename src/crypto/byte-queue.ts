// A FIFO of stream chunks from which fixed-size records are taken. A record that lies inside
// one incoming chunk is returned as a view, without copying.
const EMPTY = Buffer.alloc(0);

export class ByteQueue {
  readonly #pieces: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  append(piece: Buffer): void {
    if (piece.length === 0) return;
    this.#pieces.push(piece);
    this.#length += piece.length;
  }

  /** Removes and returns the first `count` bytes; `count` must not exceed `length`. */
  take(count: number): Buffer {
    if (count > this.#length) throw new RangeError('ByteQueue.take beyond its length');
    if (count === 0) return EMPTY;
    this.#length -= count;
    const first = this.#pieces[0];
    if (first.length >= count) return this.#consumeFirst(count);
    const record = Buffer.allocUnsafe(count);
    for (let filled = 0; filled < count; ) {
      const piece = this.#consumeFirst(Math.min(this.#pieces[0].length, count - filled));
      piece.copy(record, filled);
      filled += piece.length;
    }
    return record;
  }

  #consumeFirst(count: number): Buffer {
    const first = this.#pieces[0];
    if (first.length === count) return this.#pieces.shift()!;
    this.#pieces[0] = first.subarray(count);
    return first.subarray(0, count);
  }
}
