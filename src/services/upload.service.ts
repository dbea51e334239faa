// Uploaded files (.backup, .dump, an APOC export or another foreign graph file, or a .tar holding one): checked while
// they are stored encrypted, then restored through the same pipeline as a snapshot.
import { randomUUID } from 'node:crypto';
import { peekStream as peek } from '../archive/stream-peek';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { type ArchiveHeader, extractArchiveFromTar, isArchiveError, SNIFF_LENGTH, sniffFileType } from '../archive';
import { ArchiveVerifier } from '../archive/archive-verifier';
import { heapGrowth } from '../runtime/heap-growth';
import { type GraphFileCensus, takeCensus } from '../graph-files/graph-file-census';
import type { GraphFileFormat, GraphFileKind } from '../graph-files/graph-file-format';
import { detectGraphFileFormat } from '../graph-files/graph-file-formats';
import type { OperationEntity } from '../entities/operation.entity';
import { AppError, isAppError } from '../errors/app-error';
import { asStorageFull } from '../errors/storage-full';
import type { Metrics } from '../observability/metrics';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { assertAcceptsOperations, type InstanceService } from './instance.service';
import { type Principal, requireRole } from './principal';
import { assertConfirmed, type RestoreService } from './restore.service';

/** A stored upload: a Snapgraph archive (its verified header), or a foreign graph file (its format and census). */
export interface ReceivedFile {
  key: string;
  sizeBytes: number;
  content: { kind: 'ARCHIVE'; header: ArchiveHeader } | { kind: GraphFileKind; census: GraphFileCensus };
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
    return this.queueRestore(principal, instanceId, confirm, await this.receiveFile(principal, instanceId, input, confirm));
  }

  /** Checks and stores the file, once the request is allowed; queueRestore then queues its restore. */
  async receiveFile(principal: Principal, instanceId: string, input: Readable, confirm: string): Promise<ReceivedFile> {
    await this.authorize(principal, instanceId, confirm).catch((error) => {
      input.resume(); // discard the body so the connection can finish
      throw error;
    });
    return this.receive(principal.tenantId, input);
  }

  /**
   * Queues the restore of a received file, looking at the request again: a large file takes minutes to arrive (a
   * resumable one, hours), and the instance may have been deleted or become busy meanwhile. A refused file is deleted.
   */
  async queueRestore(principal: Principal, instanceId: string, confirm: string, received: ReceivedFile): Promise<OperationEntity> {
    try {
      const instance = await this.authorize(principal, instanceId, confirm);
      return await this.restores.requestRestoreFromFile(principal, instance, received);
    } catch (error) {
      await this.discard(received);
      throw error;
    }
  }

  /** Deletes a received file whose restore will not be queued; a failure to delete is not the answer (the refusal is). */
  discard(received: ReceivedFile): Promise<void> {
    return this.blobs.delete(received.key).catch(() => undefined);
  }

  /**
   * Stores the file encrypted while reading it through once: an archive's header, every frame, counts and digest
   * (checked on a worker thread as the bytes arrive: the event loop only encrypts and writes); a foreign graph file's
   * every record (its format and the graph's rules; repeated ids and relationships naming missing nodes are found by the
   * restore's load). Anything unreadable is INVALID_BACKUP_FILE, and nothing is left behind.
   */
  private async receive(tenantId: string, input: Readable): Promise<ReceivedFile> {
    const key = `tenants/${tenantId}/uploads/${randomUUID()}.blob`;
    let archive: Readable | null = null;
    let checker: Checker | null = null;
    const toStore = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
    let stored: Promise<{ storedBytes: number; plainBytes: number }> | null = null;
    try {
      const unwrapped = await this.unwrap(input);
      archive = unwrapped.stream;
      const { sink, content } = (checker = startCheck(unwrapped.format));
      archive.on('error', (error) => {
        toStore.destroy(error);
        sink.destroy(error);
      });
      // A verdict of damage stops the upload at once.
      sink.on('error', (error) => archive?.destroy(error));
      archive.pipe(toStore);
      archive.pipe(sink);
      const writing = this.blobs.write(key, toStore);
      stored = writing; // for the clean-up below
      // A write that fails (a full disk) stops the upload at once, rather than after the whole body was read and checked;
      // its error, the first, is the one answered.
      writing.catch((error: unknown) => archive?.destroy(error as Error));
      const finish = async () => {
        const [checked, written] = await Promise.all([content, writing]);
        return { checked, plainBytes: written.plainBytes };
      };
      // An archive only streams through this thread (its check is on a worker): bulk bytes (see HeapGrowth).
      const { checked, plainBytes } = await (unwrapped.format === null ? heapGrowth.whileStreamingBulk(finish) : finish());
      this.metrics.bytesUploaded.inc(plainBytes);
      // What follows the file in the input (entries of a tar after its archive) is not needed: let it run out.
      input.resume();
      return { key, sizeBytes: plainBytes, content: checked };
    } catch (error) {
      input.destroy();
      archive?.destroy();
      checker?.sink.destroy();
      // End the blob write too (a premature close fails it), and let it remove its temp file before the key is
      // deleted: otherwise a write still running would leave its temp file, or rename a whole blob into place after.
      toStore.destroy();
      await stored?.catch(() => undefined);
      await this.blobs.delete(key).catch(() => undefined);
      throw this.describe(error);
    }
  }

  /**
   * The file inside the upload and its format (null: a Snapgraph archive, or something the archive reader will name):
   * the upload itself, or the one archive or graph file inside a tar.
   */
  private async unwrap(input: Readable): Promise<{ stream: Readable; format: GraphFileFormat | null }> {
    const { head, stream } = await peek(input, SNIFF_LENGTH);
    if (head.length === 0) throw new AppError('INVALID_BACKUP_FILE', 'the file is empty: it is neither a Snapgraph archive nor a graph file');
    const type = sniffFileType(head);
    if (type === 'snapgraph-archive') return { stream, format: null };
    const format = detectGraphFileFormat(head);
    if (format || type !== 'tar') return { stream, format: format ?? null };
    const inner = await peek(await extractArchiveFromTar(stream, (entryHead) => detectGraphFileFormat(entryHead) !== undefined), SNIFF_LENGTH);
    return { stream: inner.stream, format: sniffFileType(inner.head) === 'snapgraph-archive' ? null : detectGraphFileFormat(inner.head) ?? null };
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

/** Where an upload's bytes go to be checked, and the verdict: what it holds, or the first damage. */
interface Checker {
  sink: Writable;
  content: Promise<ReceivedFile['content']>;
}

/**
 * The full check of what the upload holds. An archive: ArchiveReader.verify() on a worker thread (CPU work in
 * JavaScript, kept off the event loop): frame CRCs, every record parsed and checked against the rules, counts, SHA-256.
 * Its restore relies on that (it only counts the records again: RECORD_RULES_EDITION), so it must stay the full check.
 * A foreign graph file: every record through its format's reader.
 */
function startCheck(format: GraphFileFormat | null): Checker {
  if (!format) {
    const verifier = new ArchiveVerifier();
    return { sink: verifier, content: verifier.result.then((header) => ({ kind: 'ARCHIVE' as const, header })) };
  }
  const bytes = new PassThrough({ highWaterMark: 1024 * 1024 });
  return { sink: bytes, content: takeCensus(format.open(bytes)).then((census) => ({ kind: format.kind, census })) };
}
