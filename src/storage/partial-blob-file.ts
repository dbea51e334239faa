// An encrypted blob written over many requests (a resumable upload), so that no byte of it is ever plaintext on disk.
// It is an envelope blob (crypto/envelope-layout.ts) grown in place a whole chunk at a time, with the bytes of the
// unfinished chunk (its tail) sealed in a file beside it:
//
//   <path>        the envelope header, then whole chunks 0..n-1 (none flagged final until complete())
//   <path>.tail   uint64be(n) ‖ sealTail(data key, n, the bytes after chunk n-1)
//
// complete() seals the tail as the final chunk: <path> is then an ordinary envelope blob, which a blob store takes
// as it is (EncryptedBlobStore.adopt: a rename on the same file system), so a finished upload is never copied. Its
// data key is bound to the name it will have there (envelope version 2), from its creation on: one upload's file
// copied over another's (another tenant's) does not open as that one, neither here nor once in the blob store.
//
// What a write received counts once it is in, even when the write stops midway (tus resumes from there). A crash can
// leave a torn chunk after the last whole one, or a tail of an earlier length: a tail counts only when it follows the
// last whole chunk, and a write starts by cutting what follows it, so the size told is always what is there, and a
// client resends the rest. The chunks are synced before the tail that follows them is renamed into place.
import { type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { finished, PassThrough, pipeline as pipe, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import {
  chunkOffset,
  ChunkSealer,
  CHUNK_TAG_BYTES,
  createDecryptStream,
  DEFAULT_CHUNK_SIZE,
  type EnvelopeHeader,
  ENVELOPE_HEADER_BYTES,
  newDataKey,
  openDataKey,
  openTail,
  parseEnvelopeHeader,
  sealChunk,
  SEALED_TAIL_OVERHEAD,
  sealTail,
} from '../crypto';
import type { Keyring } from '../crypto/keyring';
import { fsyncDirectory } from './durable-fs';

const TAIL_SUFFIX = '.tail';
const INDEX_BYTES = 8;
const WRITE_BUFFER_BYTES = 1024 * 1024;

/** A write at an offset other than the blob's size. */
export class PartialBlobOffsetError extends Error {
  constructor(
    readonly offset: number,
    readonly size: number,
  ) {
    super(`a write at offset ${offset} to a partial blob of ${size} bytes`);
    this.name = 'PartialBlobOffsetError';
  }
}

/** Whole chunks and the tail that follows them, as found on disk. */
interface Layout {
  header: EnvelopeHeader;
  wholeChunks: number;
  /** The sealed tail when it follows the last whole chunk; else nothing follows it yet. */
  sealedTail: Buffer | null;
}

export interface PartialBlobFileOptions {
  /**
   * The blob's key in the blob store it is made for: a file bound to it opens under that name only. Files created
   * without one, or by earlier releases, are bound to none, and open under any.
   */
  name?: string;
  /** Default true: create() binds the file to `name`; false writes an unbound one (SNAPGRAPH_BIND_BLOB_NAMES=false). */
  bindName?: boolean;
}

export class PartialBlobFile {
  readonly #name: string | undefined;
  readonly #bindName: boolean;

  constructor(
    readonly path: string,
    private readonly keyring: Keyring,
    { name, bindName = true }: PartialBlobFileOptions = {},
  ) {
    this.#name = name;
    this.#bindName = bindName;
  }

  /** An empty blob: its header (a new data key under the keyring's current key, bound to its name). Fails if `path` exists. */
  async create(chunkSize = DEFAULT_CHUNK_SIZE): Promise<void> {
    const { header } = newDataKey(this.keyring, chunkSize, this.#bindName ? this.#name : undefined);
    const file = await open(this.path, 'wx', 0o600);
    try {
      await file.writeFile(header);
      await file.sync();
    } finally {
      await file.close();
    }
    await fsyncDirectory(dirname(this.path));
  }

  /** Plaintext bytes held. @throws ENOENT when there is no such blob */
  async size(): Promise<number> {
    const file = await open(this.path, 'r');
    try {
      return sizeOf(await this.#layout(file));
    } finally {
      await file.close();
    }
  }

  /**
   * When a byte last came (ms since the epoch): the file's or its tail's last change, whichever is later (a write
   * that stays within one chunk changes only the tail). @throws ENOENT when there is no such blob
   */
  async lastWritten(): Promise<number> {
    const [file, tail] = await Promise.all([stat(this.path), stat(this.#tailPath).catch(() => null)]);
    return Math.max(file.mtimeMs, tail?.mtimeMs ?? 0);
  }

  /**
   * Appends `body` at `offset` (the blob's size): the new size. When `body` fails midway, what came of it is kept, and
   * `interrupted` is its error; when storing fails, that error is thrown.
   */
  async append(offset: number, body: Readable): Promise<{ size: number; interrupted: unknown }> {
    // Read from the start, while the file is opened (a busy thread pool can take long): a body that fails meanwhile
    // (the client went away) keeps what it brought, rather than losing what it held unread.
    const incoming = new PassThrough({ highWaterMark: WRITE_BUFFER_BYTES });
    let interrupted: unknown = null;
    finished(body, (error) => {
      if (!error) return;
      interrupted ??= error;
      incoming.end();
    });
    body.pipe(incoming);
    let opened;
    try {
      opened = await this.#openForWriting();
    } catch (error) {
      body.unpipe(incoming);
      incoming.destroy();
      throw error;
    }
    const { layout, rest, dataKey } = opened;
    const size = sizeOf(layout);
    if (offset !== size) {
      body.unpipe(incoming);
      incoming.destroy();
      throw new PartialBlobOffsetError(offset, size);
    }
    const sealer = new ChunkSealer(dataKey, layout.header.chunkSize, { firstIndex: layout.wholeChunks, final: false });
    // `flush`: closed only once synced, so the chunks are durable before the tail that follows them.
    const out = createWriteStream(this.path, { flags: 'r+', start: chunkOffset(layout.wholeChunks, layout.header.chunkSize), flush: true, highWaterMark: WRITE_BUFFER_BYTES });
    const stored = pipeline(sealer, out);
    stored.catch(() => undefined); // awaited below, after the body
    sealer.write(rest);
    const received = await feed(incoming, sealer);
    await stored;
    await this.#writeTail(sealer.chunkIndex, sealTail(dataKey, sealer.chunkIndex, sealer.rest ?? Buffer.alloc(0)));
    return { size: size + received.bytes, interrupted: interrupted ?? received.error };
  }

  /**
   * Seals the tail as the final chunk: the file is then a whole envelope blob of the returned plaintext size. It may
   * run again (a replica that takes over an unfinished completion) until the file has been moved.
   */
  async complete(): Promise<number> {
    const { layout, rest, dataKey } = await this.#openForWriting();
    const file = await open(this.path, 'r+');
    try {
      await writeFully(file, Buffer.concat(sealChunk(dataKey, layout.wholeChunks, rest, true)), chunkOffset(layout.wholeChunks, layout.header.chunkSize));
      await file.sync();
    } finally {
      await file.close();
    }
    return sizeOf(layout);
  }

  /** The plaintext of a completed blob; a damaged or truncated one fails the stream with a BlobIntegrityError. */
  read(): Readable {
    return pipe(createReadStream(this.path, { highWaterMark: WRITE_BUFFER_BYTES }), createDecryptStream(this.keyring, { name: this.#name }), () => undefined);
  }

  /** Removes the blob and its tail; idempotent. */
  async remove(): Promise<void> {
    await Promise.all([this.path, this.#tailPath, `${this.#tailPath}.tmp`].map((path) => rm(path, { force: true })));
  }

  get #tailPath(): string {
    return `${this.path}${TAIL_SUFFIX}`;
  }

  /** The layout, cut after the last whole chunk (a torn chunk, or a final one that a completion wrote), and the tail's bytes. */
  async #openForWriting(): Promise<{ layout: Layout; rest: Buffer; dataKey: KeyObject }> {
    const file = await open(this.path, 'r+');
    try {
      const layout = await this.#layout(file);
      await file.truncate(chunkOffset(layout.wholeChunks, layout.header.chunkSize));
      const dataKey = openDataKey(layout.header, this.keyring, this.#name);
      const rest = layout.sealedTail ? openTail(dataKey, layout.wholeChunks, layout.sealedTail) : Buffer.alloc(0);
      return { layout, rest, dataKey };
    } finally {
      await file.close();
    }
  }

  async #layout(file: FileHandle): Promise<Layout> {
    const bytes = Buffer.alloc(ENVELOPE_HEADER_BYTES);
    const { bytesRead } = await file.read(bytes, 0, ENVELOPE_HEADER_BYTES, 0);
    const header = parseEnvelopeHeader(bytes.subarray(0, bytesRead));
    const { size } = await file.stat();
    const wholeChunks = Math.floor((size - ENVELOPE_HEADER_BYTES) / (header.chunkSize + CHUNK_TAG_BYTES));
    const tail = await readFile(this.#tailPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    // A tail too short to be one is none (it fails to authenticate when opened, like any other damage).
    const follows = tail !== null && tail.length >= INDEX_BYTES + SEALED_TAIL_OVERHEAD && Number(tail.readBigUInt64BE(0)) === wholeChunks;
    return { header, wholeChunks, sealedTail: follows ? tail.subarray(INDEX_BYTES) : null };
  }

  /** Replaces the tail durably: written beside it, synced, renamed over it. */
  async #writeTail(index: number, sealed: Buffer): Promise<void> {
    const temp = `${this.#tailPath}.tmp`;
    const prefix = Buffer.alloc(INDEX_BYTES);
    prefix.writeBigUInt64BE(BigInt(index));
    const file = await open(temp, 'w', 0o600);
    try {
      await file.writeFile(Buffer.concat([prefix, sealed]));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, this.#tailPath);
    await fsyncDirectory(dirname(this.path));
  }

  toString(): string {
    return `PartialBlobFile(${basename(this.path)})`;
  }
}

async function writeFully(file: FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) done += (await file.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}

function sizeOf({ header, wholeChunks, sealedTail }: Layout): number {
  return wholeChunks * header.chunkSize + (sealedTail ? sealedTail.length - SEALED_TAIL_OVERHEAD : 0);
}

/**
 * Writes `body` into `sink` (with its backpressure) and ends it, also when `body` fails: what came is kept. Returns
 * the bytes written and `body`'s error, if any; a failure of the sink itself is the caller's to hear.
 */
async function feed(body: Readable, sink: ChunkSealer): Promise<{ bytes: number; error: unknown }> {
  let bytes = 0;
  let error: unknown = null;
  try {
    for await (const chunk of body) {
      if (sink.destroyed) break;
      bytes += (chunk as Buffer).length;
      if (!sink.write(chunk)) await drained(sink);
    }
  } catch (caught) {
    error = caught;
  }
  if (!sink.destroyed) sink.end();
  return { bytes, error };
}

/** Resolves when `sink` takes more, or has stopped (its error is heard where it is piped). */
function drained(sink: ChunkSealer): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sink.off('drain', done);
      sink.off('close', done);
      resolve();
    };
    sink.on('drain', done);
    sink.on('close', done);
  });
}
