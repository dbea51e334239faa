// The upload state file of `snapgraph restore-file` ($XDG_STATE_HOME/snapgraph/uploads.json): the addresses of its
// resumable uploads, in the shape tus-js-client's FileUrlStorage wrote ({"tus::<fingerprint>::<id>": upload}), so
// that the uploads an earlier release saved are resumed.
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type * as tus from 'tus-js-client';
import { removeLeftTemps, replaceFile } from '../storage/durable-fs';
import { releasePidLock, takePidLock } from './pid-lock';

/** How long a change waits for another snapgraph's (a change takes milliseconds). */
const LOCK_WAIT_MS = 10_000;
const LOCK_RETRY_MS = 25;

type Uploads = Record<string, tus.PreviousUpload>;

/**
 * tus-js-client's FileUrlStorage truncated the file and wrote it again in place: a write that failed part-way (a full
 * disk) or a process that died in it lost every saved upload of every file, and left the file damaged. Here a change
 * is written to a temporary file beside it (0600), synced and renamed over it, whole or not at all, under a lock file
 * naming the process that holds it (`<dir>/uploads.lock`; one whose process is gone is taken over), so that two
 * commands at once do not lose each other's change. Reads need no lock: the file is always whole.
 */
export class UploadStateFile implements tus.UrlStorage {
  readonly #lock: string;

  constructor(readonly path: string) {
    this.#lock = join(dirname(path), `${basename(path, '.json')}.lock`);
  }

  findAllUploads(): Promise<tus.PreviousUpload[]> {
    return this.#find('tus::');
  }

  findUploadsByFingerprint(fingerprint: string): Promise<tus.PreviousUpload[]> {
    return this.#find(`tus::${fingerprint}::`);
  }

  async removeUpload(urlStorageKey: string): Promise<void> {
    await this.#change((uploads) => Object.hasOwn(uploads, urlStorageKey) && delete uploads[urlStorageKey]);
  }

  async addUpload(fingerprint: string, upload: tus.PreviousUpload): Promise<string> {
    const key = `tus::${fingerprint}::${randomInt(1e12)}`;
    await this.#change((uploads) => {
      uploads[key] = upload;
      return true;
    });
    return key;
  }

  async #find(prefix: string): Promise<tus.PreviousUpload[]> {
    const uploads = await this.#read();
    return Object.entries(uploads)
      .filter(([key]) => key.startsWith(prefix))
      .map(([key, upload]) => ({ ...upload, urlStorageKey: key }));
  }

  /** The saved uploads; none when there is no file. A file that is not a JSON object of them is an error. */
  async #read(): Promise<Uploads> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw error;
    }
    if (text.trim() === '') return {};
    const uploads: unknown = JSON.parse(text);
    if (typeof uploads !== 'object' || uploads === null || Array.isArray(uploads)) throw new Error('not a JSON object of uploads');
    return uploads as Uploads;
  }

  /** Applies `edit` to the file's uploads and writes them, unless `edit` says that nothing changed. */
  async #change(edit: (uploads: Uploads) => boolean): Promise<void> {
    const unlock = await this.#takeLock();
    try {
      // Replacements are made under the lock only: every temp file there now is one a killed snapgraph left.
      await removeLeftTemps(this.path);
      const uploads = await this.#read();
      if (edit(uploads)) await replaceFile(this.path, JSON.stringify(uploads));
    } finally {
      await unlock();
    }
  }

  /** Takes the lock file, waiting for another snapgraph's change; returns its release. */
  async #takeLock(): Promise<() => Promise<void>> {
    const gives = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      const holder = await takePidLock(this.#lock);
      if (holder === true) return () => releasePidLock(this.#lock);
      if (Date.now() >= gives) {
        throw new Error(`${this.#lock} is held by ${holder === 'unnamed' ? 'another process' : `process ${holder}`} (if no snapgraph runs, remove it)`);
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
    }
  }
}
