// Uploaded archives (.backup, .dump, or a .tar holding one): verified end to end while they are stored
// encrypted, then restored through the same pipeline as a snapshot.
import { randomUUID } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { type ArchiveHeader, extractArchiveFromTar, isArchiveError, SNIFF_LENGTH, sniffFileType } from '../archive';
import { ArchiveVerifier } from '../archive/archive-verifier';
import type { OperationEntity } from '../entities/operation.entity';
import { AppError, isAppError } from '../errors/app-error';
import { asStorageFull } from '../errors/storage-full';
import type { Metrics } from '../observability/metrics';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { assertAcceptsOperations, type InstanceService } from './instance.service';
import { type Principal, requireRole } from './principal';
import { assertConfirmed, type RestoreService } from './restore.service';

export interface ReceivedArchive {
  key: string;
  sizeBytes: number;
  header: ArchiveHeader;
}

export class UploadService {
  constructor(
    private readonly instances: InstanceService,
    private readonly restores: RestoreService,
    private readonly blobs: EncryptedBlobStore,
    private readonly maxUploadBytes: number,
    private readonly metrics: Metrics,
  ) {}

  /** Checks everything that does not need the file, so a refused request never reads (or stores) it. */
  async authorize(principal: Principal, instanceId: string, confirm: string) {
    requireRole(principal, 'ADMIN', 'restoring from a file');
    assertConfirmed(confirm);
    const instance = await this.instances.require(principal, instanceId);
    assertAcceptsOperations(instance);
    return instance;
  }

  async restoreFromFile(principal: Principal, instanceId: string, input: Readable, confirm: string): Promise<OperationEntity> {
    const instance = await this.authorize(principal, instanceId, confirm).catch((error) => {
      input.resume(); // discard the body so the connection can finish
      throw error;
    });
    const received = await this.receive(principal.tenantId, input);
    try {
      return await this.restores.requestRestoreFromFile(principal, instance, received);
    } catch (error) {
      await this.blobs.delete(received.key);
      throw error;
    }
  }

  /**
   * Stores the archive encrypted while reading it through once: header, every frame, counts and digest, checked on a
   * worker thread as the bytes arrive (the event loop only encrypts and writes). Anything unreadable is
   * INVALID_BACKUP_FILE, and nothing is left behind.
   */
  private async receive(tenantId: string, input: Readable): Promise<ReceivedArchive> {
    const key = `tenants/${tenantId}/uploads/${randomUUID()}.blob`;
    let archive: Readable | null = null;
    const toStore = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
    const verifier = new ArchiveVerifier();
    let stored: Promise<{ storedBytes: number; plainBytes: number }> | null = null;
    try {
      archive = await this.unwrap(input);
      archive.on('error', (error) => {
        toStore.destroy(error);
        verifier.destroy(error);
      });
      // A verdict of damage stops the upload at once (the verifier is destroyed with it).
      verifier.on('error', (error) => archive?.destroy(error));
      archive.pipe(toStore);
      archive.pipe(verifier);
      stored = this.blobs.write(key, toStore);
      stored.catch(() => undefined);
      // The full check: frame CRCs, record tags and counts, SHA-256; it throws at the first damaged byte.
      const header = await verifier.result;
      const { plainBytes } = await stored;
      this.metrics.bytesUploaded.inc(plainBytes);
      return { key, sizeBytes: plainBytes, header };
    } catch (error) {
      input.destroy();
      archive?.destroy();
      verifier.destroy();
      // End the blob write too (a premature close fails it), and let it remove its temp file before the key is
      // deleted: otherwise a write still running would leave its temp file, or rename a whole blob into place after.
      toStore.destroy();
      await stored?.catch(() => undefined);
      await this.blobs.delete(key).catch(() => undefined);
      throw this.describe(error);
    }
  }

  /** The archive stream inside the upload: the upload itself, or the one archive inside a tar. */
  private async unwrap(input: Readable): Promise<Readable> {
    const { head, stream } = await peek(input, SNIFF_LENGTH);
    if (head.length === 0) throw new AppError('INVALID_BACKUP_FILE', 'the file is empty: it is not a Snapgraph archive');
    return sniffFileType(head) === 'tar' ? extractArchiveFromTar(stream) : stream;
  }

  private describe(error: unknown): unknown {
    if (isAppError(error)) return error;
    const storageFull = asStorageFull(error);
    if (storageFull) return storageFull;
    if (isArchiveError(error)) return new AppError('INVALID_BACKUP_FILE', error.message, { reason: error.code });
    const e = error as { status?: number; statusCode?: number; message?: string };
    if (e.status === 413 || e.statusCode === 413 || /exceeds the .* size limit/i.test(e.message ?? '')) {
      return new AppError('FILE_TOO_LARGE', `the file is larger than the upload limit of ${this.maxUploadBytes} bytes; use \`snapgraph restore-file\` for larger files`);
    }
    return error;
  }
}

/** The first `length` bytes (fewer if the stream is shorter), and a stream that reads everything from the start. */
async function peek(input: Readable, length: number): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  while (size < length) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { head: head.subarray(0, length), stream: Readable.from(replay(), { objectMode: false }) };
}
