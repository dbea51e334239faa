// Each tenant's chunk keys: a random data key (encrypts chunks and pack trailers) and a random id key (keys the chunk
// ids), sealed together by the master key. Created on first use, cached, rewrapped when the master key rotated.
//
// Where they live: the metadata row (chunk_keys) decides, because an INSERT that ignores a conflict lets exactly one
// of several processes creating a tenant's keys at once win (a blob has no create-if-absent: a losing writer would
// overwrite the winner's keys, and chunks sealed under them would be lost). A copy is kept beside the packs as the
// blob `tenants/<tenantId>/chunks/keys`, so that the packs and the master key alone are enough to rebuild the index
// after the metadata database is lost (rebuildIndex adopts that copy when there is no row).
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { CryptoError } from '../crypto/errors';
import { Keyring } from '../crypto/keyring';
import { ChunkKeyEntity } from '../entities/chunk-key.entity';
import { BlobStore } from '../storage/blob-store';
import { BlobNotFoundError } from '../storage/errors';
import { CHUNK_KEY_BYTES, ChunkKeyMaterial } from './chunk-codec';

export interface TenantKeys extends ChunkKeyMaterial {
  tenantId: string;
}

interface SealedKeys {
  masterKeyId: string;
  sealedKeys: string;
}

export const chunkKeysBlobKey = (tenantId: string) => `tenants/${tenantId}/chunks/keys`;
const sealAad = (tenantId: string) => Buffer.from(`snapgraph chunk keys\0${tenantId}`);

export class TenantChunkKeys {
  readonly #cache = new Map<string, Promise<TenantKeys>>();

  constructor(
    private readonly blobs: BlobStore,
    private readonly db: DataSource,
    private readonly keyring: Keyring,
  ) {}

  /**
   * The tenant's keys, created on first use.
   * @throws UnknownKeyError when they are sealed under a master key that is not configured; CryptoError when they do
   *   not authenticate.
   */
  get(tenantId: string): Promise<TenantKeys> {
    let keys = this.#cache.get(tenantId);
    if (!keys) {
      keys = this.#load(tenantId);
      this.#cache.set(tenantId, keys);
      keys.catch(() => this.#cache.delete(tenantId));
    }
    return keys;
  }

  async #load(tenantId: string): Promise<TenantKeys> {
    const repo = this.db.getRepository(ChunkKeyEntity);
    let row = await repo.findOneBy({ tenantId });
    if (!row) {
      const candidate = (await this.#readCopy(tenantId)) ?? this.#sealNew(tenantId);
      await this.db.createQueryBuilder().insert().into(ChunkKeyEntity).values({ tenantId, ...candidate, createdAt: Date.now() }).orIgnore().execute();
      row = await repo.findOneByOrFail({ tenantId });
    }
    const keys = this.#unseal(tenantId, row);
    if (row.masterKeyId !== this.keyring.current.keyId) {
      // Rotated: wrap them under the current key (every process computes the same keys, so racing updates agree).
      Object.assign(row, this.#seal(tenantId, keys));
      await repo.update({ tenantId }, { masterKeyId: row.masterKeyId, sealedKeys: row.sealedKeys });
    }
    await this.#keepCopy(tenantId, row);
    return keys;
  }

  #sealNew(tenantId: string): SealedKeys {
    return this.#seal(tenantId, { dataKey: randomBytes(CHUNK_KEY_BYTES), idKey: randomBytes(CHUNK_KEY_BYTES) });
  }

  #seal(tenantId: string, keys: ChunkKeyMaterial): SealedKeys {
    const secret = Buffer.concat([keys.dataKey, keys.idKey]);
    const sealed = this.keyring.current.seal(secret, sealAad(tenantId));
    secret.fill(0);
    return { masterKeyId: this.keyring.current.keyId, sealedKeys: sealed.toString('base64') };
  }

  #unseal(tenantId: string, sealed: SealedKeys): TenantKeys {
    const secret = this.keyring.get(sealed.masterKeyId).unseal(Buffer.from(sealed.sealedKeys, 'base64'), sealAad(tenantId));
    if (secret?.length !== 2 * CHUNK_KEY_BYTES) throw new CryptoError(`The chunk keys of tenant ${tenantId} do not authenticate`);
    // Buffers of their own (not slices of a shared pool): they are posted to worker threads with every task.
    const keys = {
      tenantId,
      dataKey: Buffer.from(new Uint8Array(secret.subarray(0, CHUNK_KEY_BYTES))),
      idKey: Buffer.from(new Uint8Array(secret.subarray(CHUNK_KEY_BYTES))),
    };
    secret.fill(0);
    return keys;
  }

  async #readCopy(tenantId: string): Promise<SealedKeys | null> {
    let text: string;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await this.blobs.read(chunkKeysBlobKey(tenantId))) chunks.push(chunk as Buffer);
      text = Buffer.concat(chunks).toString('utf8');
    } catch (error) {
      if (error instanceof BlobNotFoundError) return null;
      throw error;
    }
    const parsed = JSON.parse(text) as SealedKeys & { tenantId: string };
    if (parsed.tenantId !== tenantId) throw new CryptoError(`The chunk keys blob of tenant ${tenantId} names another tenant`);
    return { masterKeyId: parsed.masterKeyId, sealedKeys: parsed.sealedKeys };
  }

  /** Writes the blob copy when it is missing or differs from the row (first use, rotation, a lost write). */
  async #keepCopy(tenantId: string, row: SealedKeys): Promise<void> {
    const copy = await this.#readCopy(tenantId).catch(() => null);
    if (copy?.masterKeyId === row.masterKeyId && copy.sealedKeys === row.sealedKeys) return;
    const text = JSON.stringify({ format: 1, tenantId, masterKeyId: row.masterKeyId, sealedKeys: row.sealedKeys });
    await this.blobs.write(chunkKeysBlobKey(tenantId), Readable.from([Buffer.from(text)]));
  }
}
