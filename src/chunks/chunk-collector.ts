// Garbage collection of one tenant's chunks: mark (the caller's live set) and sweep, with a grace period.
//
// Each step commits on its own, and the order keeps every crash harmless:
// 1. delete the index rows of dead chunks (not live, untouched for the grace period);
// 2. condemn SEALED packs with no rows left; repack SEALED packs whose live share fell under half (write the live
//    chunks to a new pack, then move their rows in one transaction; an old pack left without rows is condemned);
//    verification repacks the same way, at once, a pack whose footer or trailer it found damaged (repackDamaged);
// 3. delete packs CONDEMNED for the grace period (readers and writers that located a chunk there before its row
//    went may still use it), WRITING packs whose writer stopped beating for the grace period, and DELETING packs
//    (a crash interrupted their deletion): under a row lock, re-check that no row points into the pack (a writer may
//    have put a row back), mark it DELETING, delete the blob, then the row.
// A crash leaves at worst rows that a later collection finishes with: a pack blob always has a row until it is gone.
import { In, LessThanOrEqual, MoreThan } from 'typeorm';

import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ChunkEntity } from '../entities/chunk.entity';
import { ChunkDamage } from './chunk-codec';
import { batches, ChunkStoreContext, lockPacks, PackReader } from './chunk-store-context';
import { ChunkIntegrityError } from './errors';
import { packKey } from './pack-format';
import { discardPack, PackWriter, SealedPack } from './pack-writer';
import { TenantKeys } from './tenant-chunk-keys';

export interface CollectOptions {
  /** Chunks and packs touched more recently than this are spared, and condemned packs are kept this long. */
  graceMs: number;
  /**
   * When the caller began to list what it keeps (the store's clock): the grace period is counted back from then, not
   * from the sweep. A writer finishes within the grace period, so a chunk untouched for it before the listing belongs
   * to no restore point recorded after it; counted from the sweep, a base whose chunks were written just after the
   * listing, and whose point was recorded while the caller marked, lost them once the marking took longer than the
   * grace period left.
   */
  markedAt?: number;
}

export interface CollectResult {
  removedChunks: number;
  removedPacks: number;
  repackedPacks: number;
  /** Stored bytes of the pack blobs deleted. */
  freedBytes: number;
  /** Packs left alone because a chunk to move out of them did not authenticate (verify names the chunk). */
  damagedPacks: string[];
}

/**
 * The chunks the caller keeps, asked about a page of the index at a time: a tenant's restore points may list more
 * chunks than a set in memory should hold (see BackupService.collect).
 */
export interface LiveChunkSet {
  /** Which of `ids` are live. */
  liveAmong(ids: string[]): Promise<ReadonlySet<string>>;
}

const PAGE = 1000;
const REPACK_BELOW_LIVE_SHARE = 0.5;

interface PackUse {
  liveBytes: number;
}

/** A live chunk being moved out of an old pack. */
interface Move {
  id: string;
  fromPackId: string;
}

export class ChunkCollector {
  constructor(private readonly context: ChunkStoreContext) {}

  async collect(tenantId: string, live: LiveChunkSet, { graceMs, markedAt = Infinity }: CollectOptions): Promise<CollectResult> {
    const cutoff = Math.min(this.context.clock(), markedAt) - graceMs;
    const result: CollectResult = { removedChunks: 0, removedPacks: 0, repackedPacks: 0, freedBytes: 0, damagedPacks: [] };
    result.removedChunks = await this.#deleteDeadRows(tenantId, live, cutoff);
    const candidates = await this.#condemnEmptyPacks(tenantId, cutoff);
    await this.#repack(tenantId, candidates, result);
    await this.#deleteCondemnedPacks(tenantId, cutoff, result);
    return result;
  }

  /**
   * Moves the indexed chunks of packs whose footer or trailer a verification found damaged into a new pack now, however
   * much of them is live. Each chunk is authenticated on its own, so those the verification left in the index are sound
   * and stay; but every later writer holding their data deduplicated against them in the damaged pack, and every
   * verification of what it wrote named that pack again, for ever. As safe beside collections (another replica's too)
   * and writers as a collection's repacking: a row moves only from the pack it is still in, and the old pack, condemned
   * once no row points into it, is kept for the grace period. A pack one of whose chunks no longer authenticates is
   * left as it is, as collection leaves it: verification names the chunk.
   */
  async repackDamaged(tenantId: string, packIds: string[]): Promise<void> {
    const result: CollectResult = { removedChunks: 0, removedPacks: 0, repackedPacks: 0, freedBytes: 0, damagedPacks: [] };
    const packs: ChunkPackEntity[] = [];
    for (const batch of batches(packIds)) {
      packs.push(...(await this.context.db.getRepository(ChunkPackEntity).findBy({ tenantId, id: In(batch), state: 'SEALED' })));
    }
    await this.#repack(tenantId, packs, result);
  }

  async #deleteDeadRows(tenantId: string, live: LiveChunkSet, cutoff: number): Promise<number> {
    const repo = this.context.db.getRepository(ChunkEntity);
    let removed = 0;
    let after = '';
    for (;;) {
      const page = await repo.find({
        select: { id: true, touchedAt: true },
        where: { tenantId, id: MoreThan(after) },
        order: { id: 'ASC' },
        take: PAGE,
      });
      if (page.length === 0) return removed;
      after = page[page.length - 1].id;
      const old = page.filter((row) => row.touchedAt <= cutoff).map((row) => row.id);
      const kept = old.length > 0 ? await live.liveAmong(old) : new Set<string>();
      const dead = old.filter((id) => !kept.has(id));
      // touchedAt is checked again by the DELETE: a writer may have just deduplicated against the chunk.
      for (const batch of batches(dead)) {
        const { affected } = await repo.delete({ tenantId, id: In(batch), touchedAt: LessThanOrEqual(cutoff) });
        removed += affected ?? 0;
      }
    }
  }

  /** Condemns SEALED packs older than the grace period with no rows left; returns the packs worth repacking. */
  async #condemnEmptyPacks(tenantId: string, cutoff: number): Promise<ChunkPackEntity[]> {
    const packs = await this.context.db.getRepository(ChunkPackEntity).findBy({ tenantId, state: 'SEALED', touchedAt: LessThanOrEqual(cutoff) });
    const use = await this.#packUse(tenantId);
    const repack: ChunkPackEntity[] = [];
    for (const pack of packs) {
      const liveBytes = use.get(pack.id)?.liveBytes ?? 0;
      if (liveBytes === 0) await this.#condemn(tenantId, pack.id);
      else if (liveBytes < pack.sizeBytes * REPACK_BELOW_LIVE_SHARE) repack.push(pack);
    }
    return repack;
  }

  async #packUse(tenantId: string): Promise<Map<string, PackUse>> {
    const rows: { packId: string; liveBytes: string | number }[] = await this.context.db
      .getRepository(ChunkEntity)
      .createQueryBuilder('chunk')
      .select('chunk.packId', 'packId')
      .addSelect('SUM(chunk.length)', 'liveBytes')
      .where('chunk.tenantId = :tenantId', { tenantId })
      .groupBy('chunk.packId')
      .getRawMany();
    return new Map(rows.map((row) => [row.packId, { liveBytes: Number(row.liveBytes) }]));
  }

  /** SEALED → CONDEMNED when no row points into it (checked in the same statement); touchedAt starts its grace. */
  async #condemn(tenantId: string, packId: string): Promise<void> {
    await this.context.db.transaction(async (manager) => {
      const [pack] = await lockPacks(manager, tenantId, [packId], 'write');
      if (pack?.state !== 'SEALED' || (await manager.countBy(ChunkEntity, { tenantId, packId })) > 0) return;
      await manager.update(ChunkPackEntity, { tenantId, id: packId }, { state: 'CONDEMNED', touchedAt: this.context.clock() });
    });
  }

  async #repack(tenantId: string, packs: ChunkPackEntity[], result: CollectResult): Promise<void> {
    if (packs.length === 0) return;
    const keys = await this.context.keys.get(tenantId);
    let target: PackWriter | null = null;
    let moves: Move[] = [];
    const commit = async () => {
      if (!target) return;
      const sealed = await target.seal();
      target = null;
      await this.#moveRows(tenantId, sealed, moves).catch(async (error: unknown) => {
        // Nothing moved into it: its blob goes (nothing lists pack blobs without a row). Not when that is not known.
        const holds = await this.context.db.getRepository(ChunkEntity).countBy({ tenantId, packId: sealed.id }).catch(() => 1);
        if (holds === 0) await discardPack(this.context, tenantId, sealed.id).catch(() => undefined);
        throw error;
      });
      moves = [];
    };
    try {
      for (const pack of packs) {
        const chunks = await this.#authenticatedChunks(keys, pack.id);
        if (!chunks) {
          result.damagedPacks.push(pack.id);
          continue;
        }
        for (const chunk of chunks) {
          target ??= await PackWriter.create(this.context, keys);
          await target.append(chunk.id, chunk.stored, chunk.plainLength);
          moves.push({ id: chunk.id, fromPackId: pack.id });
          if (target.dataBytes >= this.context.packTargetBytes) await commit();
        }
        result.repackedPacks += 1;
      }
      await commit();
    } catch (error) {
      await (target as PackWriter | null)?.discard();
      throw error;
    }
    for (const pack of packs) await this.#condemn(tenantId, pack.id);
  }

  /**
   * The stored bytes of a pack's indexed chunks, each authenticated (so that repacking never copies damage out of
   * sight); null when one does not authenticate or the pack cannot be read.
   */
  async #authenticatedChunks(keys: TenantKeys, packId: string) {
    const rows = await this.context.db.getRepository(ChunkEntity).find({ where: { tenantId: keys.tenantId, packId }, order: { offset: 'ASC' } });
    const chunks: { id: string; stored: Buffer; plainLength: number }[] = [];
    const packs = new PackReader(this.context.blobs, keys.tenantId);
    try {
      for (const row of rows) {
        const stored = await packs.read(packId, row.offset, row.offset + row.length);
        await this.context.pool.open(keys, row.id, stored, row.plainLength, false);
        chunks.push({ id: row.id, stored, plainLength: row.plainLength });
      }
    } catch (error) {
      if (error instanceof ChunkDamage || error instanceof ChunkIntegrityError) return null;
      throw error;
    } finally {
      await packs.close();
    }
    return chunks;
  }

  /** Seals the new pack and points the moved rows at it, in one transaction; rows deleted meanwhile stay deleted. */
  async #moveRows(tenantId: string, pack: SealedPack, moves: Move[]): Promise<void> {
    await this.context.db.transaction(async (manager) => {
      const [row] = await lockPacks(manager, tenantId, [pack.id], 'write');
      if (row?.state !== 'WRITING') throw new Error(`repacked pack ${pack.id} was collected while it was being written`);
      await manager.update(
        ChunkPackEntity,
        { tenantId, id: pack.id },
        { state: 'SEALED', sizeBytes: pack.sizeBytes, chunkCount: pack.entries.length, touchedAt: this.context.clock() },
      );
      for (const [index, entry] of pack.entries.entries()) {
        await manager.update(
          ChunkEntity,
          { tenantId, id: entry.id, packId: moves[index].fromPackId },
          { packId: pack.id, offset: entry.offset },
        );
      }
    });
  }

  async #deleteCondemnedPacks(tenantId: string, cutoff: number, result: CollectResult): Promise<void> {
    const repo = this.context.db.getRepository(ChunkPackEntity);
    const packs = [
      ...(await repo.findBy({ tenantId, state: In(['CONDEMNED', 'WRITING']), touchedAt: LessThanOrEqual(cutoff) })),
      ...(await repo.findBy({ tenantId, state: 'DELETING' })),
    ];
    for (const pack of packs) {
      if (!(await this.#markDeleting(tenantId, pack.id, cutoff))) continue;
      const key = packKey(tenantId, pack.id);
      const sizeBytes = (await this.context.blobs.size(key)) ?? 0;
      await this.context.blobs.delete(key);
      await repo.delete({ tenantId, id: pack.id, state: 'DELETING' });
      result.removedPacks += 1;
      result.freedBytes += sizeBytes;
    }
  }

  /**
   * Whether the pack may go: still CONDEMNED with no row pointing into it (else a writer put rows back: it is SEALED
   * again), or WRITING with no heartbeat within the grace period, or already DELETING.
   */
  async #markDeleting(tenantId: string, packId: string, cutoff: number): Promise<boolean> {
    return this.context.db.transaction(async (manager) => {
      const [pack] = await lockPacks(manager, tenantId, [packId], 'write');
      if (!pack) return false;
      if (pack.state === 'DELETING') return true;
      if (pack.touchedAt > cutoff || (pack.state !== 'CONDEMNED' && pack.state !== 'WRITING')) return false;
      if ((await manager.countBy(ChunkEntity, { tenantId, packId })) > 0) {
        await manager.update(ChunkPackEntity, { tenantId, id: packId }, { state: 'SEALED', touchedAt: this.context.clock() });
        return false;
      }
      await manager.update(ChunkPackEntity, { tenantId, id: packId }, { state: 'DELETING' });
      return true;
    });
  }
}
