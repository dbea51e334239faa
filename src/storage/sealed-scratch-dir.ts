// A scratch directory for data that grows with a graph and must wait on disk for a moment: a neo4j-admin bundle's
// relationship files until every node is known, an export bundle's CSV bodies until their sizes are known. Its files
// are blobs in the envelope format (64 KiB chunks, AES-256-GCM) under a master key made for this directory alone and
// kept only in this process's memory: nothing of a tenant's graph is plaintext on disk, and what a crash leaves there
// can never be read. The directory is created private (0700) in the OS temp dir, and remove() deletes it; one a crash
// left there is removed by the next boot once it is a day old (removeStaleScratchDirs).
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecryptStream, createEncryptStream, DEFAULT_CHUNK_SIZE, Keyring, MasterKey, plaintextSize } from '../crypto';

/** One scratch file being written. Its promises always settle: a failure of the file, whenever it happens, rejects the next of them. */
export interface ScratchWriter {
  /** Resolves once `data` is taken (at once, or once the file has caught up). */
  write(data: string | Buffer): Promise<void>;
  /** Resolves once every byte is sealed and in the file, which can then be read back. */
  end(): Promise<void>;
  /** Stops writing (the file is left incomplete; remove() deletes it). */
  destroy(): void;
}

/** Every scratch directory's name begins with this, so that those a crash left can be found. */
const SCRATCH_PREFIX = 'snapgraph-scratch-';
/** A scratch directory lives as long as one export or restore reads a graph: one untouched for a day is a crash's. */
const STALE_AFTER_MS = 24 * 3600_000;

export class SealedScratchDir {
  private readonly keyring = new Keyring(MasterKey.generate());

  private constructor(readonly path: string) {}

  /** A new private directory `<os temp dir>/snapgraph-scratch-<name>XXXXXX`. */
  static async create(name: string): Promise<SealedScratchDir> {
    return new SealedScratchDir(await mkdtemp(join(tmpdir(), `${SCRATCH_PREFIX}${name}`)));
  }

  /** Writes the file `name` (replacing it); see ScratchWriter. */
  createWriter(name: string): ScratchWriter {
    const sealer = createEncryptStream(this.keyring);
    // Either stream's failure ends both, and is kept: the next write or end() rejects with it, whenever it came.
    const written = pipeline(sealer, createWriteStream(join(this.path, name), { mode: 0o600 }));
    let failure: unknown = null;
    written.catch((error: unknown) => (failure ??= error));
    return {
      async write(data) {
        if (failure) throw failure;
        if (sealer.write(data)) return;
        await Promise.race([once(sealer, 'drain'), written]);
      },
      async end() {
        if (failure) throw failure;
        sealer.end();
        await written;
      },
      destroy() {
        sealer.destroy();
      },
    };
  }

  /** The file's plaintext, each chunk authenticated before its bytes are given out. */
  createReadStream(name: string): Readable {
    const file = createReadStream(join(this.path, name), { highWaterMark: 1024 * 1024 });
    const opener = createDecryptStream(this.keyring);
    file.on('error', (error) => opener.destroy(error));
    opener.on('close', () => file.destroy());
    return file.pipe(opener);
  }

  /** Plaintext bytes of the file `name`, once written. */
  async size(name: string): Promise<number> {
    return plaintextSize((await stat(join(this.path, name))).size, DEFAULT_CHUNK_SIZE);
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}

/**
 * Removes the scratch directories a crash left (a kill -9 during an export of a large graph leaves files as large as
 * it: sealed under a key that died with the process, so unreadable, but taking space): this user's, untouched for a
 * day, so that another process's (another server on the machine) under way is never one. Returns how many went.
 */
export async function removeStaleScratchDirs(parent = tmpdir(), now = Date.now()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(SCRATCH_PREFIX)) continue;
    const path = join(parent, name);
    const stats = await lstat(path).catch(() => null);
    if (!stats?.isDirectory() || (process.getuid && stats.uid !== process.getuid()) || now - stats.mtimeMs < STALE_AFTER_MS) continue;
    await rm(path, { recursive: true, force: true });
    removed += 1;
  }
  return removed;
}
