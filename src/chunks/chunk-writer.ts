// Writes the chunks of one snapshot: deduplicates them against the tenant's index and its own pending chunks, seals
// the new ones on the worker pool and streams them into packs, and commits their index rows at the end.
import { In, LessThan, type EntityManager } from 'typeorm';

import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ChunkEntity } from '../entities/chunk.entity';
import { ChunkDamage, chunkId } from './chunk-codec';
import { batches, ChunkLocation, ChunkStoreContext, findChunk, insertChunkRows, locateChunks, lockPacks, PackReader } from './chunk-store-context';
import { ChunkIntegrityError, ChunkStoreError } from './errors';
import { discardPack, PackWriter, SealedPack } from './pack-writer';
import { TenantKeys } from './tenant-chunk-keys';

export interface ChunkRef {
  /** Hex HMAC-SHA256 of the plaintext under the tenant's id key. */
  id: string;
  plainLength: number;
}

export interface ChunkWriterResult {
  /** Stored bytes of the packs this writer added (chunks, trailers and footers). */
  addedBytes: number;
  newChunks: number;
  dedupedChunks: number;
}

/** Pieces of a JSON document stored by putJson. */
const JSON_PIECE_BYTES = 1024 * 1024;

export class ChunkWriter {
  #state: 'open' | 'finishing' | 'finished' | 'aborted' = 'open';
  #keys: Promise<TenantKeys>;
  /** Chunks this writer stores (sealing, or in a pack). */
  readonly #stored = new Set<string>();
  /** Chunks found in the index, with where they were: put back by finish if collection removed their rows meanwhile. */
  readonly #deduped = new Map<string, ChunkLocation>();
  readonly #inFlight = new Set<Promise<void>>();
  #appending: Promise<void> = Promise.resolve();
  #open: PackWriter | null = null;
  readonly #sealed: SealedPack[] = [];
  #failure: Error | null = null;
  #dedupedCount = 0;
  #lastHeartbeat: number;

  constructor(
    private readonly context: ChunkStoreContext,
    readonly tenantId: string,
  ) {
    this.#keys = context.keys.get(tenantId);
    this.#keys.catch(() => undefined); // reported by put
    this.#lastHeartbeat = context.clock();
  }

  /**
   * Stores `plaintext` as one chunk unless the tenant already has it, and returns its ref. Resolves once the chunk's
   * id is known and it is queued: sealing and writing go on in the background, a few chunks at a time (a put waits
   * while that many are in flight), and their failure is reported by the next put or by finish.
   */
  async put(plaintext: Buffer): Promise<ChunkRef> {
    this.#assertWritable();
    const keys = await this.#keys;
    // Hashed here rather than on the pool (HMAC-SHA256 runs at over 1 GB/s: about 0.2 ms for a base chunk): queued
    // behind the seals in flight, the hash held up the next put and left the workers idle half of the time.
    const id = chunkId(keys, plaintext);
    const ref = { id, plainLength: plaintext.length };
    if (this.#isKnown(id)) return this.#dedup(ref);
    const hit = await findChunk(this.context.db, this.tenantId, id);
    this.#assertWritable();
    if (this.#isKnown(id)) return this.#dedup(ref);
    if (hit) {
      this.#deduped.set(id, hit);
      return this.#dedup(ref);
    }
    this.#stored.add(id);
    while (this.#inFlight.size >= this.context.pool.parallelism) await Promise.race(this.#inFlight);
    this.#assertWritable();
    await this.#heartbeat();
    const task = this.context.pool
      .seal(keys, id, plaintext)
      .then((stored) => this.#append(keys, id, stored, plaintext.length))
      .catch((error: Error) => {
        this.#failure ??= error;
      })
      .finally(() => this.#inFlight.delete(task));
    this.#inFlight.add(task);
    return ref;
  }

  /** Stores a JSON document (a manifest) as chunks of at most 1 MiB; read it back with ChunkStore.readJson. */
  async putJson(value: unknown): Promise<ChunkRef[]> {
    const bytes = Buffer.from(JSON.stringify(value));
    const refs: ChunkRef[] = [];
    for (let start = 0; start < bytes.length || refs.length === 0; start += JSON_PIECE_BYTES) {
      refs.push(await this.put(bytes.subarray(start, start + JSON_PIECE_BYTES)));
    }
    return refs;
  }

  /**
   * Seals the open pack and commits the index rows of every new chunk in one transaction, which also makes sure each
   * deduplicated chunk is still indexed (putting back rows a concurrent collection removed; their packs are kept for
   * the grace period; each copy put back is read back first). On failure nothing of this writer is left.
   * @throws ChunkStoreError when a chunk this writer relies on is gone: the writer outlived the collection grace period;
   *   ChunkIntegrityError when the copy of one whose row went is damaged (verification dropped it meanwhile).
   */
  async finish(): Promise<ChunkWriterResult> {
    this.#assertWritable();
    this.#state = 'finishing';
    try {
      await this.#settle();
      if (this.#failure) throw this.#failure;
      // The last put may be a while ago (a manifest was written since): the packs are told to live until the commit.
      await this.#heartbeat();
      if (this.#open) {
        this.#sealed.push(await this.#open.seal());
        this.#open = null;
      }
      await this.#commitOnce();
    } catch (error) {
      await this.#discard();
      throw error;
    }
    this.#state = 'finished';
    return {
      addedBytes: this.#sealed.reduce((sum, pack) => sum + pack.sizeBytes, 0),
      newChunks: this.#stored.size,
      dedupedChunks: this.#dedupedCount,
    };
  }

  /**
   * Commits the index rows. A failure once the transaction's work is done is the COMMIT's, whose outcome the error does
   * not tell (PostgreSQL's connection cut before its answer): the packs' rows say, and a commit that went through is
   * this writer's success. Removing its packs then left committed rows naming deleted packs, which every later writer
   * deduplicated against. When the rows cannot be read either, the packs stay: collection removes those no row made
   * SEALED (a crashed writer's).
   */
  async #commitOnce(): Promise<void> {
    let worked = false;
    try {
      await this.context.db.transaction(async (manager) => {
        await this.#commit(manager);
        worked = true;
      });
    } catch (error) {
      if (!worked || this.#sealed.length === 0) throw error;
      const pack = this.#sealed[0];
      const row = await this.context.db
        .getRepository(ChunkPackEntity)
        .findOne({ select: { state: true }, where: { tenantId: this.tenantId, id: pack.id } })
        .catch(() => undefined);
      if (row?.state === 'SEALED') return;
      // Unknown: kept for collection to decide (#discard removes nothing once they are forgotten here).
      if (row === undefined) this.#sealed.length = 0;
      throw error;
    }
  }

  /** Stops writing and removes every pack this writer wrote; no index row was committed. */
  async abort(): Promise<void> {
    if (this.#state === 'finished' || this.#state === 'aborted') return;
    this.#state = 'aborted';
    await this.#settle();
    await this.#discard();
  }

  #assertWritable(): void {
    if (this.#state !== 'open') throw new ChunkStoreError(`this chunk writer is ${this.#state}`);
    if (this.#failure) throw this.#failure;
  }

  #isKnown(id: string): boolean {
    return this.#stored.has(id) || this.#deduped.has(id);
  }

  /**
   * A chunk the tenant has already: the writer still says that its packs live (a base of a store that barely changed
   * puts little else, for longer than a grace period on a large store, and its open pack was collected under it).
   */
  async #dedup(ref: { id: string; plainLength: number }): Promise<ChunkRef> {
    this.#dedupedCount += 1;
    await this.#heartbeat();
    return ref;
  }

  /** Appends in order, one pack at a time; a full pack is sealed before the next one opens. */
  #append(keys: TenantKeys, id: string, stored: Buffer, plainLength: number): Promise<void> {
    this.#appending = this.#appending.then(async () => {
      if (this.#failure || this.#state === 'aborted') return;
      this.#open ??= await PackWriter.create(this.context, keys);
      await this.#open.append(id, stored, plainLength);
      if (this.#open.dataBytes >= this.context.packTargetBytes) {
        // Open until sealed: the heartbeat keeps it while its blob is finished (which may take a while), and a seal that
        // fails leaves it to #discard.
        this.#sealed.push(await this.#open.seal());
        this.#open = null;
      }
    });
    return this.#appending;
  }

  async #settle(): Promise<void> {
    await Promise.all(this.#inFlight);
    await this.#appending.catch(() => undefined);
  }

  /** Refreshes the WRITING packs' touchedAt now and then: collection removes WRITING packs untouched for its grace. */
  async #heartbeat(): Promise<void> {
    const now = this.context.clock();
    if (now - this.#lastHeartbeat < this.context.heartbeatMs) return;
    this.#lastHeartbeat = now;
    const ids = [...this.#sealed.map((pack) => pack.id), ...(this.#open ? [this.#open.id] : [])];
    for (const batch of batches(ids)) {
      await this.context.db
        .getRepository(ChunkPackEntity)
        .update({ tenantId: this.tenantId, id: In(batch), state: 'WRITING' }, { touchedAt: now });
    }
  }

  async #commit(manager: EntityManager): Promise<void> {
    const now = this.context.clock();
    const packs = await lockPacks(manager, this.tenantId, this.#sealed.map((pack) => pack.id), 'write');
    for (const pack of this.#sealed) {
      if (packs.find((row) => row.id === pack.id)?.state !== 'WRITING') {
        throw new ChunkStoreError(`pack ${pack.id} was collected while it was being written (the writer outlived the collection grace period)`);
      }
      await manager.update(
        ChunkPackEntity,
        { tenantId: this.tenantId, id: pack.id },
        { state: 'SEALED', sizeBytes: pack.sizeBytes, chunkCount: pack.entries.length, touchedAt: now },
      );
      await insertChunkRows(
        manager,
        pack.entries.map((entry) => ({ tenantId: this.tenantId, packId: pack.id, ...entry, touchedAt: now })),
      );
    }
    // A chunk that a concurrent writer stored too, and indexed first, keeps that writer's row (insertChunkRows ignores
    // this one's): it is touched as a deduplicated chunk is, or it went with the other writer's touch, a grace period
    // after that one finished, though this writer's manifest may not be recorded yet.
    for (const batch of batches([...this.#stored])) {
      await manager.update(ChunkEntity, { tenantId: this.tenantId, id: In(batch), touchedAt: LessThan(now) }, { touchedAt: now });
    }
    await this.#keepDeduped(manager, now);
  }

  /**
   * Touches every deduplicated chunk (collection spares chunks touched within its grace period, so they survive
   * until the snapshot's manifest is recorded as live) and puts back the rows of those collected since put.
   */
  async #keepDeduped(manager: EntityManager, now: number): Promise<void> {
    const ids = [...this.#deduped.keys()];
    for (const batch of batches(ids)) {
      await manager.update(ChunkEntity, { tenantId: this.tenantId, id: In(batch) }, { touchedAt: now });
    }
    const present = await locateChunks(manager, this.tenantId, ids);
    const missing = [...this.#deduped.values()].filter((location) => !present.has(location.id));
    if (missing.length === 0) return;
    // Locked against other writers too: one that puts rows back into a CONDEMNED pack makes it SEALED again, and two
    // doing so under share locks each waited for the other's to update it (a deadlock, failing one of them).
    const packs = await lockPacks(manager, this.tenantId, [...new Set(missing.map((location) => location.packId))], 'write');
    for (const location of missing) {
      const pack = packs.find((row) => row.id === location.packId);
      if (pack?.state !== 'SEALED' && pack?.state !== 'CONDEMNED') {
        throw new ChunkStoreError(`chunk ${location.id} was collected while this writer used it (the writer outlived the collection grace period)`);
      }
    }
    await this.#assertSound(missing);
    await insertChunkRows(manager, missing.map((location) => ({ ...location, tenantId: this.tenantId, touchedAt: now })));
    for (const pack of packs.filter((row) => row.state === 'CONDEMNED')) {
      await manager.update(ChunkPackEntity, { tenantId: this.tenantId, id: pack.id }, { state: 'SEALED', touchedAt: now });
    }
  }

  /**
   * Reads back each copy about to be put back in the index, and opens it (its id recomputed). A row goes because
   * collection found the chunk dead or because verification found that copy damaged (ChunkReader's #forget), and only
   * the bytes tell which: a damaged copy put back would be what every later writer deduplicates against (the base
   * that verification starts, too, when it is the one under way), so that no later snapshot holding that data could
   * be restored. This writer no longer holds the data to store it again: it fails, and the next one stores it anew.
   */
  async #assertSound(locations: ChunkLocation[]): Promise<void> {
    const keys = await this.#keys;
    const packs = new PackReader(this.context.blobs, this.tenantId);
    try {
      for (const location of locations) {
        const stored = await packs.read(location.packId, location.offset, location.offset + location.length);
        try {
          await this.context.pool.open(keys, location.id, stored, location.plainLength, true);
        } catch (error) {
          if (error instanceof ChunkDamage) throw new ChunkIntegrityError(location.packId, location.id, error.message);
          throw error;
        }
      }
    } finally {
      await packs.close();
    }
  }

  async #discard(): Promise<void> {
    const packs = this.#sealed.map((pack) => pack.id);
    const open = this.#open;
    this.#open = null;
    this.#sealed.length = 0;
    await open?.discard();
    for (const id of packs) await discardPack(this.context, this.tenantId, id);
  }
}
