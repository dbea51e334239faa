// Streams stored chunks into one new pack blob as they come, so that a pack is never held in memory. The pack's row
// (WRITING) is inserted before its blob is started: every pack blob has a row through which collection finds it,
// even when its writer died.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';

import { ChunkPackEntity } from '../entities/chunk-pack.entity';
import { ChunkStoreContext } from './chunk-store-context';
import { PackEntry, packEnd, packKey } from './pack-format';
import { TenantKeys } from './tenant-chunk-keys';

const STREAM_BUFFER_BYTES = 1024 * 1024;

export interface SealedPack {
  id: string;
  sizeBytes: number;
  entries: PackEntry[];
}

export class PackWriter {
  readonly id = randomBytes(16).toString('hex');
  readonly #stream = new PassThrough({ highWaterMark: STREAM_BUFFER_BYTES });
  readonly #entries: PackEntry[] = [];
  #dataBytes = 0;
  #written!: Promise<{ sizeBytes: number }>;

  private constructor(
    private readonly context: ChunkStoreContext,
    private readonly keys: TenantKeys,
  ) {}

  static async create(context: ChunkStoreContext, keys: TenantKeys): Promise<PackWriter> {
    const pack = new PackWriter(context, keys);
    const now = context.clock();
    await context.db.getRepository(ChunkPackEntity).insert({
      tenantId: keys.tenantId,
      id: pack.id,
      state: 'WRITING',
      sizeBytes: 0,
      chunkCount: 0,
      createdAt: now,
      touchedAt: now,
    });
    pack.#written = context.blobs.write(packKey(keys.tenantId, pack.id), pack.#stream);
    pack.#written.catch(() => undefined); // reported by append or seal
    return pack;
  }

  /** Bytes of chunks appended so far. */
  get dataBytes(): number {
    return this.#dataBytes;
  }

  /** Appends one stored chunk; resolves once the blob store has taken it in (its backpressure is ours). */
  async append(id: string, stored: Buffer, plainLength: number): Promise<void> {
    this.#entries.push({ id, offset: this.#dataBytes, length: stored.length, plainLength });
    this.#dataBytes += stored.length;
    if (this.#stream.write(stored)) return;
    await Promise.race([
      once(this.#stream, 'drain'),
      this.#written.then(() => Promise.reject(new Error('the pack blob was closed before the pack was sealed'))),
    ]);
  }

  /** Writes the trailer and footer and waits until the blob is stored whole. */
  async seal(): Promise<SealedPack> {
    this.#stream.end(packEnd(this.keys.dataKey, this.keys.tenantId, this.id, this.#entries, this.#dataBytes));
    const { sizeBytes } = await this.#written;
    return { id: this.id, sizeBytes, entries: this.#entries };
  }

  /** Stops the blob write (the blob store leaves nothing) and deletes the blob, if sealed, and the row. */
  async discard(): Promise<void> {
    this.#stream.destroy();
    await this.#written.catch(() => undefined);
    await discardPack(this.context, this.keys.tenantId, this.id);
  }
}

/** Deletes a pack that no index row points into: the blob first, so a crash in between leaves a row to find it by. */
export async function discardPack(context: ChunkStoreContext, tenantId: string, packId: string): Promise<void> {
  await context.blobs.delete(packKey(tenantId, packId));
  await context.db.getRepository(ChunkPackEntity).delete({ tenantId, id: packId });
}
