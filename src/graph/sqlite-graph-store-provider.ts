// Opens, caches and removes the SQLite stores of instances under <dataDir>/instances/<instanceId>/.
//
// Replicas share that directory (docs/replicas.md): another process may remove a generation (a restore it ran swapped
// in a new one) or put a new file at a generation's path. A cached store is therefore checked against the file at its
// path (device and inode) whenever its instance is used, and closed once the file it has open is no longer there, so
// no replica keeps serving, or holding open, a store another one removed.
import { access, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { type GraphLoader, type GraphStore, type GraphStoreProvider, type MaterialiseOptions, StoreMissingError, type WriteLimits } from './graph-store';
import type { DeltaBatch, GraphStats } from './records';
import { SqliteGraphLoader, SqliteGraphStore, removeStoreFiles } from './sqlite-graph-store';
import { materialiseStore } from './sqlite-materialiser';

interface OpenStore {
  store: Promise<SqliteGraphStore>;
  /** The file opened (`<dev>:<ino>`, or 'gone' when it was removed as it opened), once it is open. */
  identity: string | null;
  users: number;
  /** Closed once its last user is done; `replaced` too when its file is no longer the one at its path. */
  retired: boolean;
  replaced: boolean;
  closed: boolean;
}

const INSTANCE_ID = /^[0-9a-f-]{36}$/;

const exists = (path: string) => access(path).then(() => true, () => false);

/** `<dev>:<ino>` of the file at path, or null when there is none. */
export const fileIdentity = (path: string): Promise<string | null> =>
  stat(path).then((stats) => `${stats.dev}:${stats.ino}`, () => null);

export class SqliteGraphStoreProvider implements GraphStoreProvider {
  private readonly open = new Map<string, OpenStore>();

  private check: (instanceId: string, store: GraphStore) => Promise<void> = async () => undefined;

  constructor(private readonly rootDir: string) {}

  onOpen(check: (instanceId: string, store: GraphStore) => Promise<void>): void {
    this.check = check;
  }

  use<T>(instanceId: string, generation: number, fn: (store: GraphStore) => Promise<T>): Promise<T> {
    return this.withOpen(instanceId, generation, false, fn);
  }

  private async withOpen<T>(instanceId: string, generation: number, create: boolean, fn: (store: GraphStore) => Promise<T>): Promise<T> {
    const key = this.fileOf(instanceId, generation);
    await this.retireReplaced(instanceId);
    // Looked up and, when missing, put in the cache with no await between: every request that finds the store not open
    // (the first ones after a restart, or those a deletion or a restore's swap made wait while it closed the store)
    // shares one opening. Each opened its own store, and their writers' schema checks (BEGIN IMMEDIATE) waited on one
    // another in SQLite's busy handler: the waiting ones held every thread of libuv's pool, so the one that held the
    // lock could not go on, and every request of the process waited out the busy timeout or failed SQLITE_BUSY.
    let entry = this.open.get(key);
    if (!entry || entry.replaced) entry = this.startOpening(instanceId, generation, key, create);
    entry.users += 1;
    try {
      return await fn(await entry.store);
    } finally {
      entry.users -= 1;
      if (entry.retired && entry.users === 0) await this.closeEntry(key, entry);
    }
  }

  /** A cache entry for the store at key, put in the cache at once; it is taken out again if the store fails to open. */
  private startOpening(instanceId: string, generation: number, key: string, create: boolean): OpenStore {
    const opened: OpenStore = { store: Promise.resolve(null as never), identity: null, users: 0, retired: false, replaced: false, closed: false };
    opened.store = (async () => {
      if (!create && !(await exists(key))) throw new StoreMissingError(instanceId, generation);
      const store = await SqliteGraphStore.open(key, { create });
      // The file as opened, taken at once: the check below waits for the metadata database, and a file another
      // replica's restore removed meanwhile was measured as none, so its store was never retired. Gone already, it
      // is retired at the next look.
      opened.identity = (await fileIdentity(key)) ?? 'gone';
      try {
        await this.check(instanceId, store);
      } catch (error) {
        await store.close().catch(() => undefined);
        throw error;
      }
      return store;
    })();
    this.open.set(key, opened);
    opened.store.catch(() => {
      if (this.open.get(key) === opened) this.open.delete(key);
    });
    return opened;
  }

  /** Retires the instance's cached stores whose file was removed or replaced (by another process) since they opened it. */
  private retireReplaced(instanceId: string): Promise<void> {
    return this.retireChangedUnder(this.dirOf(instanceId) + '/');
  }

  /**
   * Closes every cached store whose file another process removed or replaced, whatever its instance. A use of an
   * instance does this for that instance's stores (retireReplaced); a store this process never uses again (its instance
   * deleted by another replica) stayed open otherwise, its deleted files' disk space and descriptors held until the
   * process ended. Run periodically beside other replicas.
   */
  retireRemoved(): Promise<void> {
    return this.retireChangedUnder('');
  }

  /** Retires the cached stores under `prefix` whose file is no longer the one they opened. */
  private async retireChangedUnder(prefix: string): Promise<void> {
    for (const [key, entry] of [...this.open]) {
      if (!key.startsWith(prefix) || entry.retired || entry.identity === null) continue;
      if ((await fileIdentity(key)) === entry.identity) continue;
      entry.replaced = true;
      await this.retire(key, entry);
    }
  }

  async create(instanceId: string, generation: number): Promise<void> {
    await mkdir(this.dirOf(instanceId), { recursive: true });
    await this.withOpen(instanceId, generation, true, async () => undefined);
  }

  async createLoader(instanceId: string, generation: number, limits: WriteLimits): Promise<GraphLoader> {
    await mkdir(this.dirOf(instanceId), { recursive: true });
    const path = this.fileOf(instanceId, generation);
    await removeStoreFiles(path);
    return SqliteGraphLoader.create(path, limits, () => removeStoreFiles(path));
  }

  async materialise(
    instanceId: string,
    generation: number,
    base: Readable | null,
    deltas: AsyncIterable<DeltaBatch>,
    expected: GraphStats | null,
    options: MaterialiseOptions = {},
  ): Promise<GraphStats> {
    await mkdir(this.dirOf(instanceId), { recursive: true });
    const path = this.fileOf(instanceId, generation);
    if (this.open.has(path)) throw new Error(`generation ${generation} of instance ${instanceId} is in use`);
    return materialiseStore(path, base, deltas, expected, options);
  }

  async removeGenerations(instanceId: string, keep?: number): Promise<void> {
    if (keep === undefined) {
      const dir = this.dirOf(instanceId);
      await this.retireFiles(dir, () => true);
      // Retried: a store being opened meanwhile (background work that had not seen the deletion yet) adds files.
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
      await this.retireFiles(dir, () => true);
      return;
    }
    const keepName = `graph-${keep}.sqlite`;
    await this.removeFiles(instanceId, (name) => !name.startsWith(keepName));
  }

  async removeGenerationsBefore(instanceId: string, generation: number): Promise<void> {
    await this.removeFiles(instanceId, (name) => {
      const found = GENERATION_FILE.exec(name);
      return found !== null && Number(found[1]) < generation;
    });
  }

  async removeGeneration(instanceId: string, generation: number): Promise<void> {
    const name = `graph-${generation}.sqlite`;
    await this.removeFiles(instanceId, (file) => file.startsWith(name));
  }

  /** Closes the instance's cached stores whose file name is `doomed`, then deletes every such file of its directory. */
  private async removeFiles(instanceId: string, doomed: (name: string) => boolean): Promise<void> {
    const dir = this.dirOf(instanceId);
    await this.retireFiles(dir, doomed);
    const names = await readdir(dir).catch(() => [] as string[]);
    await Promise.all(names.filter(doomed).map((name) => rm(join(dir, name), { force: true })));
    await this.retireFiles(dir, doomed);
  }

  /**
   * Retires the cached stores of dir whose file name is `doomed`. Called before the files go and again after: a request
   * that had found the instance just before could open the store in between, and on a sole process nothing else would
   * ever close that store on its removed file (its descriptors and disk space held until a restart).
   */
  private async retireFiles(dir: string, doomed: (name: string) => boolean): Promise<void> {
    for (const [key, entry] of this.open) {
      if (key.startsWith(dir + '/') && doomed(key.slice(dir.length + 1))) await this.retire(key, entry);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.open].map(([key, entry]) => this.closeEntry(key, entry)));
  }

  /**
   * Removes the stores of every id not in `owned`, and returns those ids: scratch copies (an export's, a
   * verification's) a crash left behind, each as large as its snapshot and the graph in plaintext. At boot; beside
   * other processes on the data dir (which may be building one), with `untouchedForMs`: only the stores none of whose
   * files changed for that long.
   */
  async removeUnowned(owned: ReadonlySet<string>, { untouchedForMs = 0 }: { untouchedForMs?: number } = {}): Promise<string[]> {
    const names = await readdir(this.rootDir).catch(() => [] as string[]);
    const cutoff = Date.now() - untouchedForMs;
    const unowned: string[] = [];
    for (const name of names) {
      if (!INSTANCE_ID.test(name) || owned.has(name)) continue;
      if (untouchedForMs > 0 && (await lastChanged(join(this.rootDir, name))) > cutoff) continue;
      unowned.push(name);
    }
    for (const id of unowned) await this.removeGenerations(id);
    return unowned;
  }

  private async retire(key: string, entry: OpenStore): Promise<void> {
    entry.retired = true;
    if (entry.users === 0) await this.closeEntry(key, entry);
  }

  private async closeEntry(key: string, entry: OpenStore): Promise<void> {
    if (entry.closed) return;
    entry.closed = true;
    if (this.open.get(key) === entry) this.open.delete(key);
    // A store that failed to open has nothing to close: its users were given that failure.
    const store = await entry.store.catch(() => null);
    await store?.close().catch(() => undefined);
  }

  private dirOf(instanceId: string): string {
    if (!INSTANCE_ID.test(instanceId)) throw new Error(`not an instance id: ${instanceId}`);
    return join(this.rootDir, instanceId);
  }

  private fileOf(instanceId: string, generation: number): string {
    return join(this.dirOf(instanceId), `graph-${generation}.sqlite`);
  }
}

/** A store generation's file, or one of SQLite's beside it (`-wal`, `-shm`, ...): its generation. */
const GENERATION_FILE = /^graph-(\d+)\.sqlite/;

/** When a directory's newest file last changed (the directory's own time when it holds none); 0 when it is gone. */
export async function lastChanged(dir: string): Promise<number> {
  const own = await stat(dir).catch(() => null);
  if (!own) return 0;
  let newest = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    newest = Math.max(newest, (await stat(join(dir, name)).catch(() => null))?.mtimeMs ?? 0);
  }
  return newest || own.mtimeMs;
}
