// Uploaded files (.backup, .dump, an APOC export or another foreign graph file, or a .tar holding one): checked while
// they are stored encrypted, then restored through the same pipeline as a snapshot.
import { randomUUID } from 'node:crypto';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { type ArchiveHeader, isArchiveError } from '../archive';
import { ArchiveVerifier } from '../archive/archive-verifier';
import { heapGrowth } from '../runtime/heap-growth';
import { type GraphFileCensus, takeCensus } from '../graph-files/graph-file-census';
import type { GraphFileFormat, GraphFileKind } from '../graph-files/graph-file-format';
import type { InstanceEntity } from '../entities/instance.entity';
import type { OperationEntity } from '../entities/operation.entity';
import { AppError, isAppError, unauthenticated } from '../errors/app-error';
import { asStorageFull } from '../errors/storage-full';
import type { Metrics } from '../observability/metrics';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { PartialBlobFile } from '../storage/partial-blob-file';
import { assertAcceptsOperations, type InstanceService } from './instance.service';
import { type Principal, requireRole } from './principal';
import { assertConfirmed, type RestoreService } from './restore.service';
import type { TenantService } from './tenant.service';
import { unwrapUploadedFile } from './uploaded-file';

/**
 * The refusal of a file whose API key was revoked while it was uploaded: at its end, or at once, where the request
 * under way is cut off at the revocation (KeyConnections).
 */
export const REVOKED_UPLOAD = 'the API key was revoked while the file was uploaded; nothing was restored';

/** A checked upload: a Snapgraph archive (its verified header), or a foreign graph file (its format and census). */
export interface CheckedFile {
  /** Bytes of the file (of the one file inside, when it came in a tar). */
  sizeBytes: number;
  content: { kind: 'ARCHIVE'; header: ArchiveHeader } | { kind: GraphFileKind; census: GraphFileCensus };
  /** The file came inside a tar. */
  inTar: boolean;
}

/** A checked upload stored encrypted as `key`: the file itself, or (`inTar`) the tar it came in, as it came. */
export type ReceivedFile = CheckedFile & { key: string };

/** Throws the refusal when an archive's header, read before the rest of it, shows that it cannot be restored. */
type HeaderCheck = (header: ArchiveHeader) => void;

export class UploadService {
  constructor(
    private readonly instances: InstanceService,
    private readonly restores: RestoreService,
    private readonly tenants: TenantService,
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
    const instance = await this.admit(principal, instanceId, input, confirm);
    return this.receive(principal.tenantId, input, this.headerCheckFor(instance));
  }

  /**
   * Checks the file, once the request is allowed, storing nothing (see checkResumableFile).
   */
  async checkFile(principal: Principal, instanceId: string, input: Readable, confirm: string): Promise<CheckedFile> {
    const instance = await this.admit(principal, instanceId, input, confirm);
    return this.examine(input, { checkHeader: this.headerCheckFor(instance) });
  }

  /** authorize(), for a request whose body is `input`: a refused one is discarded, so the connection can finish. */
  private admit(principal: Principal, instanceId: string, input: Readable, confirm: string): Promise<InstanceEntity> {
    return this.authorize(principal, instanceId, confirm).catch((error) => {
      input.resume();
      throw error;
    });
  }

  /**
   * The refusal of an archive that cannot be restored into `instance` (its engine version, its counts over the tier's
   * limits), given as soon as its header is read: the one the restore's own check gives once the file is all in
   * (requestRestoreFromFile, which still decides: the header is only a claim), without reading the rest of a file that
   * may take gigabytes.
   */
  private headerCheckFor(instance: InstanceEntity): HeaderCheck {
    return (header) => this.restores.assertArchiveMayFit(header, instance);
  }

  /**
   * A resumable upload's file at `path`: its bytes kept encrypted as they arrive, never plaintext on disk, and bound to
   * the blob it becomes (adoptPartialFile), so that it opens as that tenant's upload only. `tenantId` undefined: for
   * what needs no key (its size, its removal).
   */
  partialFile(path: string, tenantId: string | undefined, uploadId: string): PartialBlobFile {
    const name = tenantId === undefined ? undefined : resumableUploadKey(tenantId, uploadId);
    return new PartialBlobFile(path, this.blobs.keyring, { name, bindName: this.blobs.bindsNames });
  }

  /**
   * A resumable upload's check. Where the blob store takes files as they are (on this file system), the check alone:
   * the upload's file is then moved in (adoptPartialFile). Otherwise (S3) the file is stored as it is checked
   * (receiveFile), which moving it would copy anyway.
   */
  checkResumableFile(principal: Principal, instanceId: string, input: Readable, confirm: string): Promise<CheckedFile | ReceivedFile> {
    return this.blobs.adoptsFiles ? this.checkFile(principal, instanceId, input, confirm) : this.receiveFile(principal, instanceId, input, confirm);
  }

  /** Keeps a resumable upload's completed file as the tenant's upload blob, as it is (moved, not written again). */
  async adoptPartialFile(tenantId: string, uploadId: string, file: PartialBlobFile): Promise<string> {
    const key = resumableUploadKey(tenantId, uploadId);
    await this.blobs.adopt(key, file.path);
    return key;
  }

  /** Gives a file adoptPartialFile took back to the resumable upload's `file`: its restore was not queued after all. */
  releasePartialFile(key: string, file: PartialBlobFile): Promise<void> {
    return this.blobs.release(key, file.path);
  }

  /** The id of a restore of the instance from the received file `key` that is queued or running (see RestoreService). */
  restoreQueuedFrom(instanceId: string, key: string): Promise<string | null> {
    return this.restores.restoreQueuedFrom(instanceId, key);
  }

  /**
   * Whether the instance takes a restore now (CONFLICT while another operation runs on it), asked before a complete
   * resumable upload is read back and checked: a client waiting for a busy instance retries every few seconds, and a
   * multi-GiB file is not read, checked (and on S3 stored) again each time.
   */
  async assertTakesRestoreNow(principal: Principal, instanceId: string): Promise<void> {
    await this.restores.assertTakesRestoreNow(await this.instances.require(principal, instanceId));
  }

  /**
   * Queues the restore of a received file, looking at the request again: a large file takes minutes to arrive (a
   * resumable one, hours), and meanwhile its key may have been revoked, or the instance deleted or become busy. A
   * refused file is deleted.
   */
  async queueRestore(principal: Principal, instanceId: string, confirm: string, received: ReceivedFile): Promise<OperationEntity> {
    try {
      return await this.requestRestore(principal, instanceId, confirm, received);
    } catch (error) {
      await this.discard(received);
      throw error;
    }
  }

  /**
   * queueRestore, leaving a refused file to the caller: a resumable upload keeps its file when the instance only
   * cannot take the restore now (another operation runs on it), for its client's retry to queue it then.
   */
  async requestRestore(principal: Principal, instanceId: string, confirm: string, received: ReceivedFile): Promise<OperationEntity> {
    // The key was checked when the request began, before its file arrived: one revoked since restores nothing, and one
    // whose role changed since (in the database) restores only if its role now allows it.
    const role = (await this.tenants.activeKeyRoles([principal.apiKeyId])).get(principal.apiKeyId);
    if (role === undefined) throw unauthenticated(REVOKED_UPLOAD);
    const now = { ...principal, role };
    const instance = await this.authorize(now, instanceId, confirm);
    return this.restores.requestRestoreFromFile(now, instance, received);
  }

  /** Deletes a received file whose restore will not be queued; a failure to delete is not the answer (the refusal is). */
  discard(received: Pick<ReceivedFile, 'key'>): Promise<void> {
    return this.blobs.delete(received.key).catch(() => undefined);
  }

  /**
   * Stores the file encrypted while it is checked (examine). Its blob holds the file itself, out of its tar if it came
   * in one. A refused file leaves nothing behind.
   */
  private async receive(tenantId: string, input: Readable, checkHeader: HeaderCheck): Promise<ReceivedFile> {
    const key = `tenants/${tenantId}/uploads/${randomUUID()}.blob`;
    try {
      const { sizeBytes, content } = await this.examine(input, { store: (file) => this.blobs.write(key, file), checkHeader });
      return { key, sizeBytes, content, inTar: false };
    } catch (error) {
      await this.blobs.delete(key).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads the file through once: checked (startCheck: an archive's header, every frame, counts and digest on a worker
   * thread as the bytes arrive, so the event loop only moves them; a foreign graph file's every record, against its
   * format and the graph's rules, while repeated ids and relationships naming missing nodes are found by the restore's
   * load) and, with `store`, stored meanwhile. Anything unreadable is INVALID_BACKUP_FILE; a store that fails stops the
   * reading at once, and its error (the first) is the one thrown. An archive's header goes through `checkHeader` as
   * soon as it is read: its refusal stops the reading there, and is the error thrown.
   */
  private async examine(
    input: Readable,
    { store, checkHeader }: { store?: (file: Readable) => Promise<unknown>; checkHeader?: HeaderCheck } = {},
  ): Promise<CheckedFile> {
    let file: Readable | null = null;
    let checker: Checker | null = null;
    const toStore = store ? new PassThrough({ highWaterMark: 4 * 1024 * 1024 }) : null;
    let storing: Promise<unknown> | null = null;
    /** The header's refusal, once it came. */
    const refused: { error?: unknown } = {};
    try {
      const unwrapped = await unwrapUploadedFile(input);
      file = unwrapped.stream;
      const { sink, content, header } = (checker = startCheck(unwrapped.format));
      if (checkHeader && header) {
        header.then((claimed) => {
          try {
            checkHeader(claimed);
          } catch (error) {
            refused.error = error;
            file?.destroy(error as Error);
          }
        }, () => undefined);
      }
      let sizeBytes = 0;
      file.on('data', (chunk: Buffer) => (sizeBytes += chunk.length));
      file.on('error', (error) => {
        toStore?.destroy(error);
        sink.destroy(error);
      });
      // A verdict of damage stops the upload at once.
      sink.on('error', (error) => file?.destroy(error));
      file.pipe(sink);
      if (store && toStore) {
        file.pipe(toStore);
        storing = store(toStore);
        storing.catch((error: unknown) => file?.destroy(error as Error));
      }
      const finish = () => Promise.all([content, storing]);
      // An archive only streams through this thread (its check is on a worker): bulk bytes (see HeapGrowth).
      const [checked] = await (unwrapped.format === null ? heapGrowth.whileStreamingBulk(finish) : finish());
      this.metrics.bytesUploaded.inc(sizeBytes);
      // What follows the file in the input (entries of a tar after its archive) is not needed: let it run out.
      input.resume();
      return { sizeBytes, content: checked, inTar: unwrapped.inTar };
    } catch (error) {
      input.destroy();
      file?.destroy();
      checker?.sink.destroy();
      // End the store too (a premature close fails it), and let it clean up before the caller removes what it kept:
      // otherwise a blob write still running would leave its temp file, or rename a whole blob into place after.
      toStore?.destroy();
      await storing?.catch(() => undefined);
      // The header's refusal stopped everything else: what the stopping made fail is not the answer.
      throw this.describe('error' in refused ? refused.error : error);
    }
  }

  private describe(error: unknown): unknown {
    // First: the multipart parser's own refusal of a file over the limit is an AppError too, without this advice.
    const e = error as { status?: number; statusCode?: number; message?: string };
    if (e.status === 413 || e.statusCode === 413 || /exceeds the .* size limit/i.test(e.message ?? '')) {
      return new AppError('FILE_TOO_LARGE', `the file is larger than the upload limit of ${this.maxUploadBytes} bytes; use \`snapgraph restore-file\` for larger files`);
    }
    if (isAppError(error)) return error;
    const storageFull = asStorageFull(error);
    if (storageFull) return storageFull;
    if (isArchiveError(error)) return new AppError('INVALID_BACKUP_FILE', error.message, { reason: error.code });
    return error;
  }
}

/** Where an upload's bytes go to be checked, and the verdict: what it holds, or the first damage. */
interface Checker {
  sink: Writable;
  content: Promise<ReceivedFile['content']>;
  /** An archive's header, as soon as it is read (ArchiveVerifier's `header`). */
  header?: Promise<ArchiveHeader>;
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
    return { sink: verifier, content: verifier.result.then((header) => ({ kind: 'ARCHIVE' as const, header })), header: verifier.header };
  }
  const bytes = new PassThrough({ highWaterMark: 1024 * 1024 });
  return { sink: bytes, content: takeCensus(format.open(bytes)).then((census) => ({ kind: format.kind, census })) };
}

/** The blob a resumable upload's file becomes once checked (and the name its data key is bound to from the start). */
const resumableUploadKey = (tenantId: string, uploadId: string) => `tenants/${tenantId}/uploads/tus-${uploadId}.blob`;
