// `snapgraph rotate-master-key`: moves everything still under a retired master key (SNAPGRAPH_PREVIOUS_MASTER_KEYS) to
// the current one, so that the retired key can then be removed from the configuration. What the master key seals:
//   - each tenant's chunk keys (chunk_keys rows, and their copy beside the packs, tenants/<id>/chunks/keys);
//   - each export destination's credentials (export_destinations rows);
//   - each envelope-encrypted blob's data key, in its 79-byte header (change-log segments, manifests, uploads…).
// Only wrapped keys change: no chunk of data is decrypted or encrypted again. Every step is idempotent (what is under
// the current key is left alone), so a run that stopped half-way is finished by running it again.
import { Readable } from 'node:stream';
import type { DataSource } from 'typeorm';

import { TenantChunkKeys } from '../chunks/tenant-chunk-keys';
import { rewrapEnvelopeHeader } from '../crypto/envelope';
import { ENVELOPE_HEADER_BYTES, ENVELOPE_MAGIC, NAMED_ENVELOPE_VERSION, parseEnvelopeHeader } from '../crypto/envelope-layout';
import { CryptoError } from '../crypto/errors';
import { Keyring } from '../crypto/keyring';
import { ChunkKeyEntity } from '../entities/chunk-key.entity';
import { ExportDestinationEntity } from '../entities/export-destination.entity';
import { RetiredMasterKeyEntity } from '../entities/retired-master-key.entity';
import { resealCredentials } from '../services/export-destination.service';
import { BlobStore } from './blob-store';
import { BlobNotFoundError } from './errors';
import { assertKeyringHoldsDeploymentKey, recordCurrentMasterKey, recordRetiredMasterKeys } from './stored-master-keys';

/** Every blob lives under this folder (tenants/<tenantId>/…). */
const BLOBS_ROOT = 'tenants';

export interface RotationCounts {
  /** Tenants whose chunk keys were sealed again under the current key. */
  chunkKeys: number;
  /** Export destinations whose credentials were. */
  destinations: number;
  /** Blobs looked at, and those whose header was rewritten. */
  blobsChecked: number;
  blobs: number;
  /** What is still under another key than the current one, by key id: a key that is not configured. */
  underUnconfiguredKeys: Map<string, number>;
  /** Each of those, described without secrets (`blob <key> (master key <id>)`), for the operator to find it. */
  unconfigured: string[];
  /** What could not be rewrapped (it does not authenticate under the key it names: damaged), described without secrets. */
  failed: string[];
}

export interface RotationOptions {
  /** Called now and then with a line of progress (no secrets). */
  progress?: (line: string) => void;
  /** How many blobs between two progress lines. */
  progressEvery?: number;
}

/**
 * Seals everything under a previous key of `keyring` again under its current key.
 * @param blobs the raw (encrypted) blob store
 * @throws CryptoError, before anything is changed, when the keyring does not hold the key the deployment's servers
 *   write under (see assertKeyringHoldsDeploymentKey)
 */
export async function rotateMasterKey(db: DataSource, blobs: BlobStore, keyring: Keyring, options: RotationOptions = {}): Promise<RotationCounts> {
  await assertKeyringHoldsDeploymentKey(db, keyring);
  // Before anything is sealed again: a run that stops half-way (killed, its database gone) leaves chunk keys under the
  // current key, and servers booted again with the previous key alone (the rotation "failed") served, failing every
  // read of them; an operator who then threw the new key away lost that data. Now such a boot is refused, naming both.
  await recordRetiredMasterKeys(db, keyring);
  await recordCurrentMasterKey(db, keyring);
  const counts: RotationCounts = { chunkKeys: 0, destinations: 0, blobsChecked: 0, blobs: 0, underUnconfiguredKeys: new Map(), unconfigured: [], failed: [] };
  const progress = options.progress ?? (() => undefined);
  const current = keyring.current.keyId;
  const unconfigured = (keyId: string, what: string) => {
    counts.underUnconfiguredKeys.set(keyId, (counts.underUnconfiguredKeys.get(keyId) ?? 0) + 1);
    counts.unconfigured.push(`${what} (master key ${keyId})`);
  };

  // Chunk keys: TenantChunkKeys seals a row under another key again (one UPDATE, which racing servers compute alike)
  // and rewrites the blob copy when it differs from the row: every row, so that a copy a crash left under the old key
  // is caught up too.
  const chunkKeys = new TenantChunkKeys(blobs, db, keyring);
  const rows = await db.getRepository(ChunkKeyEntity).find({ select: { tenantId: true, masterKeyId: true } });
  for (const row of rows) {
    if (!keyring.has(row.masterKeyId)) {
      unconfigured(row.masterKeyId, `the chunk keys of tenant ${row.tenantId}`);
      continue;
    }
    try {
      await chunkKeys.get(row.tenantId);
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error;
      counts.failed.push(`the chunk keys of tenant ${row.tenantId}: ${error.message}`);
      continue;
    }
    if (row.masterKeyId !== current) counts.chunkKeys += 1;
  }
  progress(`chunk keys: ${counts.chunkKeys} of ${rows.length} tenant(s) sealed again under master key ${current}`);

  // Export destinations: each row changes only if it is still what was read (a server beside this may replace them).
  const destinations = db.getRepository(ExportDestinationEntity);
  const sealed = await destinations.find({ select: { id: true, tenantId: true, masterKeyId: true, sealedCredentials: true } });
  for (const destination of sealed) {
    // '' is a destination being created (it is sealed before it is probed).
    if (destination.masterKeyId === '' || destination.masterKeyId === current) continue;
    if (!keyring.has(destination.masterKeyId)) {
      unconfigured(destination.masterKeyId, `the credentials of export destination ${destination.id}`);
      continue;
    }
    const resealed = resealCredentials(destination, keyring);
    if (!resealed) {
      counts.failed.push(`the credentials of export destination ${destination.id}: they do not authenticate`);
      continue;
    }
    const { masterKeyId, sealedCredentials } = destination;
    const result = await destinations.update({ id: destination.id, masterKeyId, sealedCredentials }, resealed);
    if (result.affected !== 0) counts.destinations += 1;
  }
  progress(`export destinations: ${counts.destinations} of ${sealed.length} sealed again`);

  const every = options.progressEvery ?? 1000;
  for await (const key of blobs.list(BLOBS_ROOT)) {
    counts.blobsChecked += 1;
    try {
      // A header damaged where it is read before anything is authenticated (its version, its chunk size) fails here:
      // listed with the rest, as the blob may be under an old key, and the next blobs are still looked at.
      const keyId = await envelopeKeyId(blobs, key);
      if (keyId !== null && keyId !== current) {
        if (!keyring.has(keyId)) unconfigured(keyId, `blob ${key}`);
        else if (await rewrapBlob(blobs, key, keyring)) counts.blobs += 1;
      }
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error;
      counts.failed.push(`blob ${key}: ${error.message}`);
    }
    if (counts.blobsChecked % every === 0) progress(`blobs: ${counts.blobsChecked} looked at, ${counts.blobs} rewrapped`);
  }
  progress(`blobs: ${counts.blobsChecked} looked at, ${counts.blobs} rewrapped`);
  // Nothing is left under another key: the boots may go without the previous ones (stored-master-keys.ts).
  if (counts.underUnconfiguredKeys.size === 0 && counts.failed.length === 0) {
    await db.createQueryBuilder().delete().from(RetiredMasterKeyEntity).execute();
    // And the servers write under the current key from now on (stored-master-keys.ts refuses a boot without it).
    await recordCurrentMasterKey(db, keyring);
  }
  return counts;
}

/**
 * The master key id of an envelope-encrypted blob; null for other blobs (packs, JSON), and for one gone meanwhile.
 * @throws BlobIntegrityError when its header is not one this release reads (damaged)
 */
async function envelopeKeyId(blobs: BlobStore, key: string): Promise<string | null> {
  let header: Buffer;
  try {
    header = await readAll(await blobs.read(key, { start: 0, end: ENVELOPE_HEADER_BYTES }));
  } catch (error) {
    if (error instanceof BlobNotFoundError) return null;
    throw error;
  }
  if (header.length < ENVELOPE_HEADER_BYTES || !header.subarray(0, ENVELOPE_MAGIC.length).equals(ENVELOPE_MAGIC)) return null;
  return parseEnvelopeHeader(header).keyId;
}

/**
 * Writes the blob again with its data key sealed under the current key: the header is taken from the same read as the
 * chunks that follow it, and the store's write is atomic (a new file, fsynced, renamed over the old one; a new S3
 * object), so a crash leaves the blob as it was or rewrapped, never torn. False when it is gone, or under the current
 * key already (another run).
 * @throws CryptoError when its data key does not open
 */
async function rewrapBlob(blobs: BlobStore, key: string, keyring: Keyring): Promise<boolean> {
  let raw: Readable;
  try {
    raw = await blobs.read(key);
  } catch (error) {
    if (error instanceof BlobNotFoundError) return false;
    throw error;
  }
  const iterator = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let headBytes = 0;
  while (headBytes < ENVELOPE_HEADER_BYTES) {
    const next = await iterator.next();
    if (next.done) break;
    head.push(next.value);
    headBytes += next.value.length;
  }
  const start = Buffer.concat(head);
  const header = start.subarray(0, ENVELOPE_HEADER_BYTES);
  try {
    const parsed = parseEnvelopeHeader(header);
    if (parsed.keyId === keyring.current.keyId) return false;
    // A blob bound to its name (version 2) is bound to the key it is stored under.
    const rewrapped = rewrapEnvelopeHeader(header, keyring, parsed.version === NAMED_ENVELOPE_VERSION ? key : undefined);
    const rest = start.subarray(ENVELOPE_HEADER_BYTES);
    await blobs.write(key, Readable.from(followedBy([rewrapped, rest], iterator)));
    return true;
  } finally {
    raw.destroy();
  }
}

async function* followedBy(first: Buffer[], rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  for (const piece of first) if (piece.length > 0) yield piece;
  for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
