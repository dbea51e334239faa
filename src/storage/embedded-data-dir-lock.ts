// One server at a time on an embedded data dir: with SQLite metadata a server takes itself for the only process (it
// always leads the scheduler, fails every RUNNING operation at boot as a crash's orphan, removes every partial blob and
// scratch copy it finds), so a second one booted beside it would wreck the first one's work.
import { join } from 'node:path';
import Database from 'better-sqlite3';

export const EMBEDDED_LOCK_FILE = 'server.lock';

/**
 * Holds the data dir for this process until the returned function is called, or throws when another process holds it.
 * The hold is an exclusive SQLite lock (a POSIX lock the operating system drops when the process ends, however it
 * ends), so a crash leaves nothing to clean up. `snapgraph rotate-master-key`, which must not run beside a server,
 * takes it too; the CLI's other commands may run beside the server and do not.
 * @throws DataDirInUseError when another process holds it.
 */
export function holdEmbeddedDataDir(dataDir: string): () => Promise<void> {
  const lock = new Database(join(dataDir, EMBEDDED_LOCK_FILE), { timeout: 0 });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    lock.close();
    if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
    throw new DataDirInUseError(dataDir);
  }
  return async () => {
    lock.close();
  };
}

/** Another process (a server, or a rotate-master-key run) holds the embedded data dir. */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `the data dir ${dataDir} (SNAPGRAPH_DATA_DIR) is in use by another snapgraph server (or a rotate-master-key run): with the ` +
        'embedded metadata database one server runs on a data dir at a time (stop the other one first; several servers need ' +
        'DATABASE_URL, see docs/replicas.md)',
    );
  }
}
