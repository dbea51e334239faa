// Reading chunks back: the plaintext of a list of refs as a stream (ranged reads of packs, opened on the worker pool,
// a bounded number ahead of the consumer), and verification of every pack a list of refs uses.
import { ChunkEntity } from '../entities/chunk.entity';
import { ChunkDamage } from './chunk-codec';
import { ChunkCollector } from './chunk-collector';
import { ChunkLocation, ChunkStoreContext, locateChunks, PackReader } from './chunk-store-context';
import { ChunkRef } from './chunk-writer';
import { ChunkIntegrityError, ChunkNotFoundError } from './errors';
import { FOOTER_BYTES, PackEntry, parseFooter, parseTrailer } from './pack-format';
import { TenantKeys } from './tenant-chunk-keys';

/** Largest ranged read of a pack: neighbouring chunks are fetched together up to this size. */
const SEGMENT_BYTES = 4 * 1024 * 1024;
/** Refs of a read looked up in the index together (2 statements of BATCH ids; 250 MiB of a base's chunks). */
const LOCATE_WINDOW = 1_000;

export interface ReadOptions {
  /** Recompute each chunk's keyed id from its plaintext (authentication already proves it is what was stored). */
  verifyIds?: boolean;
  signal?: AbortSignal;
}

export interface VerifyReport {
  packs: number;
  chunks: number;
  /** Stored bytes read back. */
  bytes: number;
  /** Everything found damaged, each naming its pack and, when known, its chunk; empty when all is well. */
  damage: ChunkIntegrityError[];
  /**
   * Why moving the sound chunks out of a pack found with its trailer or footer damaged failed (the blob store full, say),
   * or null: they stay there until a verification that finds the pack so again moves them.
   */
  repairFailure: Error | null;
}

/** Consecutive chunks of one pack, fetched with one ranged read. */
interface Segment {
  packId: string;
  start: number;
  end: number;
  /** Its chunks not yet opened: the bytes are let go after the last one (a read plans every segment up front). */
  unopened: number;
  bytes?: Promise<Buffer>;
}

export class ChunkReader {
  constructor(
    private readonly context: ChunkStoreContext,
    private readonly collector: ChunkCollector,
  ) {}

  /**
   * The plaintext of `refs`, in order; reads at most a few segments and chunks ahead of the consumer, and looks the
   * refs up in the index LOCATE_WINDOW at a time (the next window while the current one is read): a base lists a ref
   * per 256 KiB of its store, and their locations and segments, found all before the first byte, were several times
   * the list itself (a 128 GiB store: 512k of each).
   */
  async *plaintext(tenantId: string, refs: ChunkRef[], { verifyIds = false, signal }: ReadOptions): AsyncGenerator<Buffer> {
    const keys = await this.context.keys.get(tenantId);
    const locate = async (start: number) => {
      const window = refs.slice(start, start + LOCATE_WINDOW);
      const locations = await locateChunks(this.context.db.manager, tenantId, [...new Set(window.map((ref) => ref.id))]);
      const missing = window.find((ref) => !locations.has(ref.id));
      if (missing) throw new ChunkNotFoundError(missing.id);
      // Segments end with the window: one planned later cannot grow a segment whose read is already under way.
      return planSegments(window.map((ref) => locations.get(ref.id)!));
    };
    let located = refs.length > 0 ? locate(0) : Promise.resolve([]);
    located.catch(() => undefined); // awaited in turn below; the consumer may stop before that
    let windowStart = 0;
    let pieces: { location: ChunkLocation; segment: Segment }[] = [];
    const ahead: Promise<Buffer>[] = [];
    let next = 0;
    const readAhead = this.context.pool.parallelism + 2;
    const packs = new PackReader(this.context.blobs, tenantId);
    try {
      for (;;) {
        signal?.throwIfAborted();
        while (ahead.length < readAhead) {
          if (next === pieces.length) {
            if (windowStart >= refs.length) break;
            pieces = await located;
            next = 0;
            windowStart += LOCATE_WINDOW;
            located = windowStart < refs.length ? locate(windowStart) : Promise.resolve([]);
            located.catch(() => undefined);
          }
          const { location, segment } = pieces[next++];
          const plaintext = this.#open(packs, keys, location, segment, verifyIds);
          plaintext.catch(() => undefined); // awaited in turn below; the consumer may stop before that
          ahead.push(plaintext);
        }
        if (ahead.length === 0) return;
        yield await ahead.shift()!;
      }
    } finally {
      await packs.close();
    }
  }

  /**
   * Reads back every pack that `refs` use, whole: the footer, the trailer, and every chunk in it that the index points
   * at (authenticated, decompressed, id recomputed), so that a flipped byte anywhere in what those packs hold is found;
   * and checks that the index agrees with each pack's trailer. A chunk found damaged leaves the index (see #forget), and
   * the sound chunks of a pack whose footer or trailer is damaged (or that is cut short) move into a new pack, so that
   * nothing deduplicates against them in the damaged one (see ChunkCollector.repackDamaged).
   * Stops with the signal's reason once it aborts (seen before each pack and each window of reads in it), so that a
   * cancelled verification does not read the rest of a large snapshot first.
   */
  async verify(tenantId: string, refs: ChunkRef[], signal?: AbortSignal): Promise<VerifyReport> {
    const keys = await this.context.keys.get(tenantId);
    const report: VerifyReport = { packs: 0, chunks: 0, bytes: 0, damage: [], repairFailure: null };
    const damagedCopies: ChunkLocation[] = [];
    /** Packs whose footer or trailer did not read: their sound chunks are moved out once the damaged ones are forgotten. */
    const unsoundPacks: string[] = [];
    // The packs the refs are in, looked up LOCATE_WINDOW refs at a time, as plaintext() does: every ref's location at
    // once was 250-300 B a chunk beside the list (a 128 GiB store: 512k of them). What a pack's rows say is read with it.
    const locate = async (): Promise<{ packIds: Set<string>; missing: Set<string> }> => {
      const packIds = new Set<string>();
      const missing = new Set<string>();
      for (let start = 0; start < refs.length; start += LOCATE_WINDOW) {
        signal?.throwIfAborted();
        const ids = [...new Set(refs.slice(start, start + LOCATE_WINDOW).map((ref) => ref.id))];
        const locations = await locateChunks(this.context.db.manager, tenantId, ids);
        for (const id of ids) {
          const location = locations.get(id);
          if (location) packIds.add(location.packId);
          else missing.add(id);
        }
      }
      return { packIds, missing };
    };
    const first = await locate();
    for (const id of first.missing) report.damage.push(new ChunkIntegrityError(null, id, 'it is not in the index'));
    /** Packs a collection emptied and removed while this verification went on: their chunks moved, nothing was lost. */
    let moved = false;
    const verifyPack = async (packId: string): Promise<void> => {
      signal?.throwIfAborted();
      report.packs += 1;
      const packs = new PackReader(this.context.blobs, tenantId);
      try {
        // The copies the index points at: another entry of the trailer is a chunk collected meanwhile (or a copy a
        // concurrent writer stored too), dead bytes that no read reaches and repacking drops, whose damage harms nothing.
        const indexed = await this.context.db.getRepository(ChunkEntity).find({
          select: { id: true, packId: true, offset: true, length: true, plainLength: true },
          where: { tenantId, packId },
          order: { offset: 'ASC' },
        });
        // Its chunks moved to packs made since the look above: they are read there (see below).
        if (indexed.length === 0) moved = true;
        let live: ChunkLocation[];
        let segmentBytes = SEGMENT_BYTES;
        try {
          const { entries } = await readPackEntries(packs, keys, packId);
          const entryOf = new Map(entries.map((entry) => [entry.id, entry]));
          for (const location of indexed) {
            const entry = entryOf.get(location.id);
            if (!entry || entry.offset !== location.offset || entry.length !== location.length || entry.plainLength !== location.plainLength) {
              report.damage.push(new ChunkIntegrityError(packId, location.id, 'the index does not match the pack trailer'));
            }
          }
          const at = new Set(indexed.map((row) => `${row.id}@${row.offset}`));
          live = entries.filter((entry) => at.has(`${entry.id}@${entry.offset}`)).map((entry) => ({ ...entry, packId }));
        } catch (error) {
          if (!(error instanceof ChunkIntegrityError)) throw error;
          // No chunk indexed in it any more (looked at again: the rows read above may be older than the pack's removal):
          // a collection repacked it and removed it since the look above (a verification of a large store outlasts a
          // grace period). Nothing is read through it: not damage.
          if (indexed.length === 0 || !(await this.context.db.getRepository(ChunkEntity).existsBy({ tenantId, packId }))) {
            report.packs -= 1;
            moved = true;
            return;
          }
          report.damage.push(error);
          unsoundPacks.push(packId);
          // A chunk is read without the trailer: each indexed one is still opened, so that those the damage reached (all
          // of a missing pack, those past a truncation) leave the index rather than be what every later base
          // deduplicates against, and those it left whole stay; one read each, so that one cut chunk fails alone.
          live = indexed;
          segmentBytes = 0;
        }
        const pieces = planSegments(live, segmentBytes);
        const window = this.context.pool.parallelism + 2;
        for (let start = 0; start < pieces.length; start += window) {
          signal?.throwIfAborted();
          const opened = pieces.slice(start, start + window).map(({ location, segment }) =>
            this.#open(packs, keys, location, segment, true).then(
              () => null,
              (error) => {
                if (!(error instanceof ChunkIntegrityError)) return Promise.reject(error);
                damagedCopies.push(location);
                // A pack missing or cut short is reported once, as the pack's damage, rather than once a chunk.
                return error.chunkId === null && report.damage.some((damage) => damage.packId === packId && damage.chunkId === null) ? null : error;
              },
            ),
          );
          for (const damage of await Promise.all(opened)) if (damage) report.damage.push(damage);
        }
        report.chunks += live.length;
        report.bytes += live.reduce((sum, entry) => sum + entry.length, 0);
      } finally {
        await packs.close();
      }
    };
    const visited = new Set<string>();
    for (let pending = first.packIds; pending.size > 0; ) {
      for (const packId of pending) {
        visited.add(packId);
        await verifyPack(packId);
      }
      if (!moved) break;
      // Where the chunks of the packs removed meanwhile are now (a pack made after the look above): read there too.
      moved = false;
      pending = new Set([...(await locate()).packIds].filter((packId) => !visited.has(packId)));
    }
    await this.#forget(tenantId, damagedCopies);
    // The damage is the report, whether or not its repair works now.
    report.repairFailure = await this.collector.repackDamaged(tenantId, unsoundPacks).then(
      () => null,
      (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
    );
    return report;
  }

  /**
   * Drops the index rows that point at damaged copies of chunks. A writer deduplicates against any indexed chunk, so
   * every later snapshot holding the same data would otherwise list the damaged copy too, and taking a new snapshot
   * would never give a sound one. The next writer to hold that data stores it again, and the snapshots that list it read
   * that copy (a chunk is named by its content); until then they read it as missing. The damaged bytes go with their
   * pack, once collection finds it (mostly) dead.
   */
  async #forget(tenantId: string, copies: ChunkLocation[]): Promise<void> {
    const repo = this.context.db.getRepository(ChunkEntity);
    // Only the row still pointing at the damaged copy: repacking may have moved it to a sound one meanwhile.
    for (const { id, packId, offset } of copies) await repo.delete({ tenantId, id, packId, offset });
  }

  async #open(packs: PackReader, keys: TenantKeys, location: ChunkLocation, segment: Segment, verifyId: boolean): Promise<Buffer> {
    segment.bytes ??= packs.read(segment.packId, segment.start, segment.end);
    const read = segment.bytes;
    if (--segment.unopened === 0) segment.bytes = undefined;
    const bytes = await read;
    const stored = bytes.subarray(location.offset - segment.start, location.offset - segment.start + location.length);
    try {
      return await this.context.pool.open(keys, location.id, stored, location.plainLength, verifyId);
    } catch (error) {
      if (error instanceof ChunkDamage) throw new ChunkIntegrityError(location.packId, location.id, error.message);
      throw error;
    }
  }
}

/** The entries of a pack from its footer and trailer, and its stored size. @throws ChunkIntegrityError naming the pack. */
export async function readPackEntries(packs: PackReader, keys: TenantKeys, packId: string): Promise<{ entries: PackEntry[]; sizeBytes: number }> {
  const size = await packs.size(packId);
  if (size === null) throw new ChunkIntegrityError(packId, null, 'the pack is missing');
  if (size < FOOTER_BYTES) throw new ChunkIntegrityError(packId, null, 'the pack is truncated');
  const footer = parseFooter(await packs.read(packId, size - FOOTER_BYTES, size), size);
  if (typeof footer === 'string') throw new ChunkIntegrityError(packId, null, footer);
  const { trailerOffset, trailerLength } = footer;
  const trailer = await packs.read(packId, trailerOffset, trailerOffset + trailerLength);
  const entries = parseTrailer(keys.dataKey, keys.tenantId, packId, trailer, trailerOffset);
  if (typeof entries === 'string') throw new ChunkIntegrityError(packId, null, entries);
  return { entries, sizeBytes: size };
}

/**
 * Groups locations, in the order given, into ranged reads: a chunk joins the previous one's segment when it follows
 * it directly in the same pack and the segment stays within `maxBytes`.
 */
function planSegments(locations: ChunkLocation[], maxBytes = SEGMENT_BYTES): { location: ChunkLocation; segment: Segment }[] {
  let segment: Segment | null = null;
  return locations.map((location) => {
    const end = location.offset + location.length;
    if (segment && segment.packId === location.packId && segment.end === location.offset && end - segment.start <= maxBytes) {
      segment.end = end;
      segment.unopened += 1;
    } else {
      segment = { packId: location.packId, start: location.offset, end, unopened: 1 };
    }
    return { location, segment };
  });
}
