// `snapgraph rotate-master-key`: seals everything still under a key of SNAPGRAPH_PREVIOUS_MASTER_KEYS again under the
// current master key (SNAPGRAPH_MASTER_KEY or <data>/keys/master.key), on the server's metadata database and blob
// store, with the servers stopped. Run again after a crash, it finishes the work. See docs/operations.md.
import { existsSync } from 'node:fs';
import { type AppConfig, loadConfig } from '../config/app-config';
import { Keyring, loadMasterKey, loadPreviousMasterKeys, masterKeyPath, PREVIOUS_MASTER_KEYS_ENV } from '../crypto';
import { metadataDatabasePath } from '../entities/data-source';
import { createConfiguredBlobStore } from '../storage/configured-blob-store';
import { DataDirInUseError, holdEmbeddedDataDir } from '../storage/embedded-data-dir-lock';
import { rotateMasterKey } from '../storage/master-key-rotation';
import { CliError, UsageError } from './cli-error';
import { withMetadataDatabase } from './tenant-commands';

export async function rotateMasterKeyCommand(args: string[]): Promise<number> {
  if (args.length > 0) throw new UsageError('rotate-master-key takes no arguments: it is configured by the environment, as the server is');
  const config = loadConfig();
  // The current key must be the servers': one generated here would be no one's.
  if (config.masterKey === undefined && !existsSync(masterKeyPath(config.dataDir))) {
    throw new CliError(`no master key: set SNAPGRAPH_MASTER_KEY, or SNAPGRAPH_DATA_DIR to the data dir that holds keys/master.key`);
  }
  const { key } = await loadMasterKey({ dataDir: config.dataDir, envValue: config.masterKey });
  const keyring = new Keyring(key, loadPreviousMasterKeys(config.previousMasterKeys));
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const retired = keyring.keyIds.filter((keyId) => keyId !== key.keyId);
  say(`current master key ${key.keyId}; previous: ${retired.length > 0 ? retired.join(', ') : `none (${PREVIOUS_MASTER_KEYS_ENV} is empty)`}`);
  // Servers must not run meanwhile (one deleting a blob while it is rewritten would see it come back): on the
  // embedded database, the lock each server holds on its data dir tells, before anything is touched (the database's
  // migrations included); beside PostgreSQL, the operator does. No database there: withMetadataDatabase says so.
  const embedded = !config.databaseUrl && existsSync(metadataDatabasePath(config.dataDir));
  const releaseDataDir = embedded ? holdDataDir(config.dataDir) : async () => undefined;
  try {
    return await rotateOn(config, keyring, key.keyId, retired, say);
  } finally {
    await releaseDataDir();
  }
}

async function rotateOn(config: AppConfig, keyring: Keyring, keyId: string, retired: string[], say: (line: string) => void): Promise<number> {
  return withMetadataDatabase(config, { init: false, initOption: false }, async (db) => {
    const { store } = await createConfiguredBlobStore(config);
    await store.init?.();
    try {
      const counts = await rotateMasterKey(db, store, keyring, { progress: say });
      say(
        `sealed again under master key ${keyId}: ${counts.chunkKeys} tenant chunk key(s), ` +
          `${counts.destinations} export destination(s), ${counts.blobs} of ${counts.blobsChecked} blob(s)`,
      );
      const left = [...counts.underUnconfiguredKeys].map(([unconfigured, count]) => `${count} under master key ${unconfigured}`);
      for (const failure of counts.failed) process.stderr.write(`snapgraph: could not seal again ${failure}\n`);
      for (const item of counts.unconfigured) process.stderr.write(`snapgraph: under a master key that is not configured: ${item}\n`);
      if (left.length > 0) {
        throw new CliError(
          `still under a key that is not configured (each named above): ${left.join(', ')}; add it to ${PREVIOUS_MASTER_KEYS_ENV} and run this again ` +
            '(until then, that data does not read)',
        );
      }
      if (counts.failed.length > 0) throw new CliError(`${counts.failed.length} item(s) could not be sealed again (above); the rest is done`);
      say(
        retired.length > 0
          ? `nothing is under a previous key any more: ${PREVIOUS_MASTER_KEYS_ENV} can be emptied (keep a copy of the old keys with your backups of the data)`
          : 'everything is under the current master key',
      );
      return 0;
    } finally {
      await store.destroy?.();
    }
  });
}

function holdDataDir(dataDir: string): () => Promise<void> {
  try {
    return holdEmbeddedDataDir(dataDir);
  } catch (error) {
    if (!(error instanceof DataDirInUseError)) throw error;
    throw new CliError(`a snapgraph server runs on the data dir ${dataDir} (SNAPGRAPH_DATA_DIR): stop it first; nothing was changed`);
  }
}
