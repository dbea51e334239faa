// One server at a time on an embedded data dir: with SQLite metadata a server takes itself for the only process (it
// always leads the scheduler, fails every RUNNING operation at boot as a crash's orphan, removes every partial blob and
// scratch copy it finds), so a second one booted beside it would wreck the first one's work.
import { join } from 'node:path';
import Database from 'better-sqlite3';

export const EMBEDDED_LOCK_FILE = 'server.lock';

/**
 * Holds the data dir for this process until the returned function is called, or throws when another process holds it.
 * The hold is an exclusive SQLite lock (a POSIX lock the operating system drops when the process ends, however it
 * ends), so a crash leaves nothing to clean up. The CLI's commands that may run beside the server do not take it.
 */
export function holdEmbeddedDataDir(dataDir: string): () => Promise<void> {
  const lock = new Database(join(dataDir, EMBEDDED_LOCK_FILE), { timeout: 0 });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    lock.close();
    if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
    throw new Error(
      `the data dir ${dataDir} (SNAPGRAPH_DATA_DIR) is in use by another snapgraph server: with the embedded metadata database ` +
        'one server runs on a data dir at a time (stop the other one first; several servers need DATABASE_URL, see docs/replicas.md)',
    );
  }
  return async () => {
    lock.close();
  };
}
