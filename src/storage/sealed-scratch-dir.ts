// A scratch directory for data that grows with a graph and must wait on disk for a moment: a neo4j-admin bundle's
// relationship files until every node is known, an export bundle's CSV bodies until their sizes are known. Its files
// are blobs in the envelope format (64 KiB chunks, AES-256-GCM) under a master key made for this directory alone and
// kept only in this process's memory: nothing of a tenant's graph is plaintext on disk, and what a crash leaves there
// can never be read. The directory is created private (0700) in the OS temp dir, and remove() deletes it.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createDecryptStream, createEncryptStream, DEFAULT_CHUNK_SIZE, Keyring, MasterKey, plaintextSize } from '../crypto';

export class SealedScratchDir {
  private readonly keyring = new Keyring(MasterKey.generate());

  private constructor(readonly path: string) {}

  /** A new private directory `<os temp dir>/<prefix>XXXXXX`. */
  static async create(prefix: string): Promise<SealedScratchDir> {
    return new SealedScratchDir(await mkdtemp(join(tmpdir(), prefix)));
  }

  /**
   * Writes the file `name` (replacing it): a Writable whose 'finish' comes once every byte is sealed and in the file,
   * so that it can be read back at once.
   */
  createWriteStream(name: string): Writable {
    const sealer = createEncryptStream(this.keyring);
    const file = createWriteStream(join(this.path, name), { mode: 0o600 });
    const written = finished(sealer.pipe(file));
    const writable = new Writable({
      highWaterMark: DEFAULT_CHUNK_SIZE,
      write(chunk: Buffer, _encoding, callback) {
        if (sealer.write(chunk)) callback();
        else sealer.once('drain', () => callback());
      },
      final(callback) {
        sealer.end();
        written.then(() => callback(), callback);
      },
      destroy(error, callback) {
        sealer.destroy();
        file.destroy();
        callback(error);
      },
    });
    // A file that cannot be written (a full disk) fails the writer, whose next write would otherwise wait for ever.
    written.catch((error: Error) => writable.destroy(error));
    sealer.on('error', (error) => writable.destroy(error));
    return writable;
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
