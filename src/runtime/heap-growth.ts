// How far the JavaScript heap may grow between full collections: bounded for the server's request work, by a fixed
// room in bytes while bytes stream through in bulk.
//
// Why both. Request work leaves JavaScript garbage (finished requests, replayed log lines, parsed records); V8 would
// let it pile up to 4× what is live before collecting it, and that is most of the server's peak RSS, so the heap's
// growth is bounded (SNAPGRAPH_HEAP_GROWTH_PERCENT, 50). Streaming bytes leaves a different garbage: Buffers (every file
// read, every decrypted chunk), which V8 keeps outside the heap and collects with the young generation once about
// 32 MiB of them have piled up. Until then V8 counts them against the old generation's limit, which under the bound is
// only ~17–20 MiB above a ~31 MiB live heap: streaming started a full collection every ~20 MiB (a 504 MiB export
// download: one every ~40 ms, 2.6–2.9 s of server CPU, against 0.9–1.1 s with the bound lifted; a restore writing a
// 200 MiB store back from its chunks: 0.70–0.75× the time). So while a bulk stream runs (an export download, an archive
// upload being checked, an archive loaded by a restore, a store's base read back from its chunks) the heap may grow
// by BULK_HEADROOM_BYTES over what it holds when the first of them starts, or by the bound if that is more; the bound
// comes back when the last one ends.
// Room in bytes, not V8's own factor (at most 4×, which the bound lifted to `0` gave earlier releases): for the small
// heap of a server at rest (31–45 MiB) the room is a little more than that factor gave, but with 10,000 WebSocket
// clients connected the heap holds a few hundred MiB, the bound alone leaves room enough, and V8's factor let a
// restore they watched take the server to 630–780 MiB (bench:fanout). V8 applies a new bound at its next full
// collection, so the heap may stay larger until then: streams that run all the time (a snapshot storing its base)
// stay bounded.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

/** How far the heap may grow while bulk streams run: several young generations' worth of Buffers (V8 counts them until one collects them). */
export const BULK_HEADROOM_BYTES = 160 * 1024 * 1024;

/** The smallest heap the room is computed from (V8's flag is an int; no heap is smaller than this). */
const MIN_HEAP_BYTES = 1024 * 1024;

/** The bound and the streams under way; one per process (`heapGrowth`), as V8's flags are. */
export class HeapGrowth {
  #boundPercent = 0;
  #streaming = 0;
  /** The value V8 has now (0, its own factor, until told otherwise): with no bound to lift, a stream changes nothing. */
  #applied = 0;
  /** The growth allowed while the bulk streams under way run (set when the first of them starts). */
  #bulkPercent = 0;

  constructor(
    private readonly setFlags: (flags: string) => void = setFlagsFromString,
    /** The bytes the heap holds now (live, and garbage not collected yet: the room computed from it errs small). */
    private readonly heapBytes: () => number = () => getHeapStatistics().used_heap_size,
  ) {}

  /** Bounds the heap's growth between full collections to `percent` over what was live after the last one; 0: V8's choice. */
  limit(percent: number): void {
    this.#boundPercent = percent;
    this.#apply();
  }

  /** Runs `work` (a stream of bytes in bulk: a download, an upload) with the bound lifted to BULK_HEADROOM_BYTES. */
  async whileStreamingBulk<T>(work: () => Promise<T>): Promise<T> {
    this.#enter();
    try {
      return await work();
    } finally {
      this.#leave();
    }
  }

  /**
   * `source` (pieces of bytes in bulk: a store read back from its chunks), with the bound lifted (as whileStreamingBulk)
   * from its first piece until it ends, fails or its consumer stops (for await, Readable.from and pipeline all end an
   * iterator they leave).
   */
  async *bulkPieces<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
    this.#enter();
    try {
      yield* source;
    } finally {
      this.#leave();
    }
  }

  #enter(): void {
    if (this.#streaming > 0) {
      this.#streaming += 1;
      return;
    }
    // The room, as V8's flag takes it: a percentage of the heap now (computed before the stream counts, should it throw).
    const headroomPercent = Math.ceil((BULK_HEADROOM_BYTES / Math.max(this.heapBytes(), MIN_HEAP_BYTES)) * 100);
    this.#bulkPercent = Math.max(this.#boundPercent, headroomPercent);
    this.#streaming = 1;
    this.#apply();
  }

  #leave(): void {
    if (--this.#streaming === 0) this.#apply();
  }

  #apply(): void {
    // 0 is V8's own growing factor: with no bound, streams leave it alone.
    const percent = this.#boundPercent > 0 && this.#streaming > 0 ? this.#bulkPercent : this.#boundPercent;
    if (percent === this.#applied) return;
    this.#applied = percent;
    this.setFlags(`--heap-growing-percent=${percent}`);
  }
}

export const heapGrowth = new HeapGrowth();
