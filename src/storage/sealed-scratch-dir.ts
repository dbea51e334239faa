// A scratch directory for data that grows with a graph and must wait on disk for a moment: a neo4j-admin bundle's
// relationship files until every node is known, an export bundle's CSV bodies until their sizes are known. Its files
// are blobs in the envelope format (64 KiB chunks, AES-256-GCM) under a master key made for this directory alone and
// kept only in this process's memory: nothing of a tenant's graph is plaintext on disk, and what a crash leaves there
// can never be read. The directory is created private (0700) in the OS temp dir, and remove() deletes it.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
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

export class SealedScratchDir {
  private readonly keyring = new Keyring(MasterKey.generate());

  private constructor(readonly path: string) {}

  /** A new private directory `<os temp dir>/<prefix>XXXXXX`. */
  static async create(prefix: string): Promise<SealedScratchDir> {
    return new SealedScratchDir(await mkdtemp(join(tmpdir(), prefix)));
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
