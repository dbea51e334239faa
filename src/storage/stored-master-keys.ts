// The boot's check that the configured master key is the one the stored data is under. A server booted with another
// key (a mistyped SNAPGRAPH_MASTER_KEY, a replica given a key of its own, a data dir restored without keys/master.key)
// would serve, fail every read of what is stored, and seal what it writes meanwhile (change-log segments, a new
// tenant's chunk keys) under that key: once the right key is back, those are unreadable. So it is refused at boot.
import { IsNull, Not, type DataSource } from 'typeorm';

import { ENVELOPE_HEADER_BYTES, parseEnvelopeHeader } from '../crypto/envelope-layout';
import { CryptoError } from '../crypto/errors';
import { Keyring } from '../crypto/keyring';
import { MASTER_KEY_ENV, PREVIOUS_MASTER_KEYS_ENV } from '../crypto/master-key';
import { ChunkKeyEntity } from '../entities/chunk-key.entity';
import { CurrentMasterKeyEntity } from '../entities/current-master-key.entity';
import { ExportDestinationEntity } from '../entities/export-destination.entity';
import { LogSegmentEntity } from '../entities/log-segment.entity';
import { RetiredMasterKeyEntity } from '../entities/retired-master-key.entity';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { BlobStore } from './blob-store';
import { BlobNotFoundError } from './errors';

/**
 * @param blobs the raw (encrypted) blob store
 * @param source names where the key came from, for the message (never the key itself)
 * @throws CryptoError when data is stored and none of it is under a master key that the keyring holds (the current one
 *   or a previous one)
 */
export async function assertMasterKeyOpensStoredData(db: DataSource, blobs: BlobStore, keyring: Keyring, source: string): Promise<{ stored: boolean }> {
  // A rotation under way (a key named as previous at an earlier boot, not yet forgotten by rotate-master-key): what the
  // sample below finds is no proof, since the chunk keys are rewrapped as they are used and blobs under the old key stay.
  const retired = (await db.getRepository(RetiredMasterKeyEntity).find()).map((row) => row.keyId).filter((keyId) => !keyring.has(keyId));
  if (retired.length > 0) {
    throw new CryptoError(
      `${source} holds master key ${keyring.current.keyId}${describePrevious(keyring)}, but master key ${retired.join(', ')} was named in ` +
        `${PREVIOUS_MASTER_KEYS_ENV} at an earlier boot, and data may still be under it: name it there again, and remove it only ` +
        'once `snapgraph rotate-master-key` says nothing is under it (nothing was changed)',
    );
  }
  const found = new Set<string>();
  for (const entity of [ChunkKeyEntity, ExportDestinationEntity]) {
    const rows = await db
      .getRepository(entity)
      .createQueryBuilder('k')
      .select('DISTINCT k."masterKeyId"', 'masterKeyId')
      .getRawMany<{ masterKeyId: string }>();
    for (const { masterKeyId } of rows) if (masterKeyId) found.add(masterKeyId);
  }
  // Change logs are sealed under the master key too, and small stores may never have needed chunk keys. A few segments
  // will do (no ORDER BY: a scan of every row at each boot): one whose blob is gone or damaged tells no key.
  const segments = await db.getRepository(LogSegmentEntity).find({ select: { blobKey: true }, where: {}, take: SAMPLED_BLOBS });
  // The archives of the first release's snapshots (a blob each), all a deployment upgraded from it has stored until
  // its first base or shipped segment; a boot with another key sealed those under that key, and read none of these.
  const legacy = await db.getRepository(SnapshotEntity).find({ select: { blobKey: true }, where: { blobKey: Not(IsNull()) }, take: SAMPLED_BLOBS });
  for (const sample of [segments, legacy]) {
    for (const { blobKey } of sample) {
      const keyId = blobKey ? await headerKeyId(blobs, blobKey) : null;
      if (keyId) {
        found.add(keyId);
        break;
      }
    }
  }
  // Something is stored when its rows are, though no blob of the sample told its key: a sole server must not then take
  // another key as if nothing were (claimCurrentMasterKey's mayReplace), and the recorded key decides.
  const stored = found.size > 0 || segments.length > 0 || legacy.length > 0;
  // Refused only when nothing stored is under a configured key: where an earlier release served with a wrong key for a
  // while, the data is under both, and the right key must still boot.
  if (found.size === 0 || [...found].some((keyId) => keyring.has(keyId))) return { stored };
  throw new CryptoError(
    `${source} holds master key ${keyring.current.keyId}${describePrevious(keyring)}, ` +
      `but the stored data is encrypted under master key ${[...found].join(', ')}: start with the key the data was written with, ` +
      `or name it in ${PREVIOUS_MASTER_KEYS_ENV} beside the new one (nothing was changed)`,
  );
}

const CURRENT_SLOT = 'current';
/** Change-log segments (and first-release archives) whose headers the boot's check reads at most, until one tells a key. */
const SAMPLED_BLOBS = 5;

/**
 * Makes the keyring's current key the one the deployment's servers write under, or refuses the boot. The check of
 * stored data above goes by what is stored, and on a deployment that has stored nothing encrypted yet (no snapshot, no
 * change log) it lets any key boot: a replica given a key of its own served beside the others, each sealing its
 * change-log segments and chunk keys under its own key, unreadable to the others. The first boot records its key; a
 * boot that names the recorded key as a previous one moves the deployment to its own (a rotation, docs/operations.md), and
 * so does one with `mayReplace`: a sole server (SQLite metadata) when nothing encrypted is stored.
 * @throws CryptoError when the keyring does not hold the recorded key
 */
export async function claimCurrentMasterKey(
  db: DataSource,
  keyring: Keyring,
  source: string,
  { mayReplace = false }: { mayReplace?: boolean } = {},
): Promise<void> {
  const current = keyring.current.keyId;
  const recorded = db.getRepository(CurrentMasterKeyEntity);
  await db.createQueryBuilder().insert().into(CurrentMasterKeyEntity).values({ slot: CURRENT_SLOT, keyId: current, since: Date.now() }).orIgnore().execute();
  // A boot beside this one may move the row between the read and the update: looked at again then.
  for (let tries = 0; tries < 5; tries++) {
    const row = await recorded.findOneByOrFail({ slot: CURRENT_SLOT });
    if (row.keyId === current) return;
    // A sole server (no other could be writing under the recorded key) with nothing encrypted stored: a key file lost
    // before anything was written under it strands nothing, and refusing would leave the operator no way on.
    if (!keyring.has(row.keyId) && !mayReplace) {
      throw new CryptoError(
        `${source} holds master key ${current}${describePrevious(keyring)}, but this deployment's servers write under master key ` +
          `${row.keyId} (since ${new Date(row.since).toISOString()}): give every server the same master key; to move the ` +
          `deployment to this one, name master key ${row.keyId} in ${PREVIOUS_MASTER_KEYS_ENV} beside it (nothing was changed)`,
      );
    }
    const moved = await recorded.update({ slot: CURRENT_SLOT, keyId: row.keyId }, { keyId: current, since: Date.now() });
    if (moved.affected) return;
  }
  throw new CryptoError(`the master key this deployment writes under kept changing while ${source} was checked; boot again`);
}

/**
 * Refuses a rotation whose keyring does not hold the key the deployment's servers write under (recorded by
 * claimCurrentMasterKey): it would seal what is under its previous keys under a key no server has (a typo in the
 * variable, a key generated for the command), and once the command is run again with the servers' keys, that data
 * would not read. Naming the recorded key as a previous one moves the deployment to the keyring's current key.
 * @throws CryptoError naming both key ids
 */
export async function assertKeyringHoldsDeploymentKey(db: DataSource, keyring: Keyring): Promise<void> {
  const row = await db.getRepository(CurrentMasterKeyEntity).findOneBy({ slot: CURRENT_SLOT });
  if (!row || keyring.has(row.keyId)) return;
  throw new CryptoError(
    `master key ${keyring.current.keyId}${describePrevious(keyring)} was given, but this deployment's servers write under master key ` +
      `${row.keyId} (since ${new Date(row.since).toISOString()}): run this with the servers' ${MASTER_KEY_ENV} and ${PREVIOUS_MASTER_KEYS_ENV}; ` +
      `to move the deployment to master key ${keyring.current.keyId}, name master key ${row.keyId} in ${PREVIOUS_MASTER_KEYS_ENV} beside it (nothing was changed)`,
  );
}

/** Records the keyring's current key as the deployment's (a rotation moved everything to it). */
export async function recordCurrentMasterKey(db: DataSource, keyring: Keyring): Promise<void> {
  const current = keyring.current.keyId;
  const { affected } = await db.getRepository(CurrentMasterKeyEntity).update({ slot: CURRENT_SLOT }, { keyId: current, since: Date.now() });
  if (affected) return;
  await db.createQueryBuilder().insert().into(CurrentMasterKeyEntity).values({ slot: CURRENT_SLOT, keyId: current, since: Date.now() }).orIgnore().execute();
}

/**
 * Notes the keyring's previous keys as retired (a boot after the check above): until rotate-master-key has moved
 * everything off them and forgets them, a boot without them is refused.
 */
export async function recordRetiredMasterKeys(db: DataSource, keyring: Keyring): Promise<void> {
  const previous = keyring.keyIds.filter((keyId) => keyId !== keyring.current.keyId);
  if (previous.length === 0) return;
  const retiredAt = Date.now();
  await db.createQueryBuilder().insert().into(RetiredMasterKeyEntity).values(previous.map((keyId) => ({ keyId, retiredAt }))).orIgnore().execute();
}

function describePrevious(keyring: Keyring): string {
  const previous = keyring.keyIds.filter((keyId) => keyId !== keyring.current.keyId);
  return previous.length > 0 ? ` (and previous master key ${previous.join(', ')})` : '';
}

/** The master key id in a stored blob's header; null when the blob is gone or damaged (verification reports that). */
async function headerKeyId(blobs: BlobStore, key: string): Promise<string | null> {
  try {
    const parts: Buffer[] = [];
    for await (const part of await blobs.read(key, { start: 0, end: ENVELOPE_HEADER_BYTES })) parts.push(part as Buffer);
    return parseEnvelopeHeader(Buffer.concat(parts)).keyId;
  } catch (error) {
    if (error instanceof BlobNotFoundError || error instanceof CryptoError) return null;
    throw error;
  }
}
