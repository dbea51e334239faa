// /uploads: a resumable upload endpoint (the tus 1.0 protocol, through @tus/server) for restore files of any size,
// beyond the GraphQL upload limit. `snapgraph restore-file` is its client.
//
// Every request needs `Authorization: Bearer <key>` of an ADMIN key. Creation metadata names the restore
// (`instanceId`, `confirm` = RESTORE, `filename`), which is checked before anything is stored. An upload belongs to
// the tenant that created it: other tenants get 404. Its bytes are checked (UploadService's checkFile) as they arrive
// when every one of them arrives on this replica (upload-receivers.ts); otherwise its file is read back through the same
// check when the last byte is in. Then the file goes to the blob store, the restore is queued (queueRestore, which
// looks at the instance again), and the response carries the operation id in the `Snapgraph-Operation-Id` header,
// whether that is a PATCH or the creating POST itself (creation-with-upload).
// X-HTTP-Method-Override is honoured on POST. Every refusal, tus's own protocol answers included, carries a
// GraphQL-style JSON body ({"errors":[{"message","extensions":{"code"}}]}) with a matching status.
//
// An upload's bytes are kept encrypted as they arrive (PartialBlobFile, under the master key), in SNAPGRAPH_UPLOAD_DIR,
// by default <data dir>/uploads, never in plaintext. Once checked, the complete file is moved into the blob store as it
// is (a rename; a copy across file systems). A blob store that cannot take it so (S3) is written while the bytes are
// checked instead, as with a multipart upload. An unfinished upload expires 24 h after its last byte came. Replicas
// that share the data dir share that directory too, which request writes an upload (upload-locks.ts), and which
// uploads are complete (upload-completions.ts): an upload started on one replica resumes on any other.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { pathExists } from '../../storage/durable-fs';
import { makePrivateDirectory } from '../../storage/private-data-dir';
import type { Socket } from 'node:net';
import { pipeline, type Readable, Transform } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileStore } from '@tus/file-store' with { 'resolution-mode': 'import' };
import type { Server, Upload } from '@tus/server' with { 'resolution-mode': 'import' };
import type { Request, RequestHandler, Response } from 'express';
import { GraphQLError } from 'graphql';
import type { App } from '../../app';
import { type AppConfig, ConfigError, uploadDirectory } from '../../config/app-config';
import { AppError, isAppError, unauthenticated } from '../../errors/app-error';
import { asStorageFull } from '../../errors/storage-full';
import type { Logger } from '../../logging/logger';
import { type Principal, requireRole } from '../../services/principal';
import type { KeyConnections } from '../key-connections';
import { type CheckedFile, type ReceivedFile, REVOKED_UPLOAD } from '../../services/upload.service';
import { CryptoError, encryptedSize } from '../../crypto';
import { type PartialBlobFile, PartialBlobOffsetError } from '../../storage/partial-blob-file';
import { type ErrorExposure, formatError } from '../format-error';
import { errorBody, JSON_CONTENT_TYPE } from './error-body';
import { type Completion, UploadCompletions } from './upload-completions';
import { OPERATION_ID_HEADER, UPLOADS_PATH } from './upload-endpoint';
import { UploadLocker } from './upload-locks';
import { UploadReceivers } from './upload-receivers';

export const UPLOAD_EXPIRY_MS = 24 * 3600_000;
const SWEEP_INTERVAL_MS = 3600_000;
/** How long a request waits for another one writing the same upload to let go (upload-locks.ts) before it hears 423. */
const LOCK_TIMEOUT_MS = 30_000;
const TUS_VERSION = '1.0.0';

const STATUS_OF_CODE: Record<string, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  BAD_USER_INPUT: 400,
  CONFIRMATION_REQUIRED: 400,
  CONFLICT: 409,
  INSTANCE_UNAVAILABLE: 409,
  FILE_TOO_LARGE: 413,
  INVALID_BACKUP_FILE: 422,
  INCOMPATIBLE_VERSION: 422,
  CAPACITY_EXCEEDED: 422,
  STORAGE_FULL: 507,
};

/** Thrown from tus hooks: @tus/server answers with this status and body. */
interface TusRefusal {
  status_code: number;
  body: string;
}

function isTusRefusal(error: unknown): error is TusRefusal {
  return typeof error === 'object' && error !== null && 'status_code' in error && 'body' in error;
}

/**
 * The instance cannot take a restore now, but may later: another operation runs on it (CONFLICT), or it is not
 * RUNNING (INSTANCE_UNAVAILABLE). A complete upload that meets this is kept for its client's retry.
 */
function isInstanceBusy(error: unknown): boolean {
  return isAppError(error) && (error.code === 'CONFLICT' || error.code === 'INSTANCE_UNAVAILABLE') && !(error instanceof IncompleteUploadError);
}

/** The upload's file holds fewer bytes than the upload (a write raced from another replica): it is sent again. */
class IncompleteUploadError extends AppError {
  constructor(kept: number, sizeBytes: number) {
    super('CONFLICT', `the upload's file holds ${kept} of its ${sizeBytes} bytes; upload the file again`);
  }
}

/**
 * Where earlier versions kept partial uploads by default, in plaintext: <os tmpdir>/snapgraph-uploads-<hash of the data
 * dir>. Removed at boot (their clients start those uploads again).
 */
function legacyUploadDirectory(dataDir: string): string {
  return join(tmpdir(), `snapgraph-uploads-${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`);
}

/** A request to /uploads while it is handled: whether its key's revocation cut it off, and what it began meanwhile. */
interface HandledRequest {
  cutOff: boolean;
  /** The body its write is taking in (a PATCH, or a POST with the first bytes). */
  body?: Readable;
  /** The upload it created (a POST). */
  created?: string;
  /** The upload it found room for (a POST), promised that room until its record is written or the request ends. */
  promised?: string;
}

/** The express handler to mount at UPLOADS_PATH. Starts the hourly sweep of expired partial uploads. */
export async function createTusUploads(
  { config, logger, services }: Pick<App, 'config' | 'logger' | 'services'>,
  keyConnections: Pick<KeyConnections, 'addUpload'>,
): Promise<RequestHandler> {
  const directory = uploadDirectory(config);
  await preparePrivateDirectory(directory);
  await removeLegacyUploads(config, logger);
  // Both packages are ESM-only.
  const { Server: TusServer, ERRORS: tusErrors, Upload: TusUpload, MemoryLocker } = await import('@tus/server');
  const { FileStore } = await import('@tus/file-store');
  // A check keeps nothing (the bytes are kept by the upload's file), except when it stores them as well (S3).
  const receivers = new UploadReceivers<CheckedFile | ReceivedFile>({
    discard: (received) => ('key' in received ? services.uploads.discard(received) : Promise.resolve()),
    // Once the last byte is in, what is left of the check is bounded (what is in flight to it).
    finishTimeoutMs: config.idleTimeoutMs,
  });
  /**
   * The request whose handling is under way, for its cut-off at its key's revocation (KeyConnections.addUpload):
   * @tus/server hands the store a body without its request, so each request is handled inside its own state
   * (AsyncLocalStorage). A cut-off request stops writing at once, one cut off before its write never begins it, and the
   * upload a cut-off creation (POST) made is removed once the request is done with it: its client, answered with the
   * refusal instead of the upload's Location, can neither resume nor end it.
   */
  const handling = new AsyncLocalStorage<HandledRequest>();
  /**
   * tus's FileStore (its metadata files, expiry and offsets), with each upload's bytes kept in a PartialBlobFile,
   * encrypted as they arrive, and also handed to the upload's receiver (upload-receivers.ts).
   */
  class EncryptedFileStore extends FileStore {
    /** Finished uploads of this process whose file is in the blob store now, until their record goes. */
    readonly kept = new Set<string>();

    constructor(options: ConstructorParameters<typeof FileStore>[0]) {
      super(options);
      // An upload declares its length when it is created, where the room for it is checked (onUploadCreate): one whose
      // length came later could send bytes without end meanwhile.
      this.extensions = this.extensions.filter((extension) => extension !== 'creation-defer-length');
    }

    /**
     * The upload's file, opened as `tenantId`'s (the tenant in its record): its data key is bound to that tenant's
     * upload blob, so a file copied over another upload's does not open. `undefined` for its size, age or removal.
     */
    fileOf(id: string, tenantId: string | undefined): PartialBlobFile {
      if (uploadIdOf(id) !== id) throw tusErrors.FILE_NOT_FOUND;
      return services.uploads.partialFile(join(directory, id), tenantId, id);
    }

    override async create(upload: Upload): Promise<Upload> {
      const request = handling.getStore();
      if (request?.cutOff) throw tusErrors.ABORTED;
      const file = this.fileOf(upload.id, upload.metadata?.tenantId ?? undefined);
      // Another replica sharing the directory may have just removed it (an empty one, at its boot's sweep).
      await mkdir(directory, { recursive: true, mode: 0o700 });
      try {
        if (request) request.created = upload.id;
        await file.create();
        await this.configstore.set(upload.id, upload);
      } catch (error) {
        await file.remove().catch(() => undefined);
        throw error;
      } finally {
        room.release(upload.id); // its record counts it now (unwrittenBytes), or it is gone
      }
      upload.storage = { type: 'file', path: file.path };
      return upload;
    }

    /**
     * The writes under way, by upload. @tus/server answers a PATCH whose body runs past the upload's length (413) as
     * soon as it sees the excess, and lets go of its lock, while this write still appends what came before: a HEAD
     * then answered an offset that was still moving, and a PATCH from there raced the write. The lock waits for it
     * (UploadLocker's `settled`).
     */
    readonly #writing = new Map<string, Promise<number>>();

    /** Resolves once no write of upload `id` is under way (whatever its outcome). */
    async settled(id: string): Promise<void> {
      for (let writing = this.#writing.get(id); writing; writing = this.#writing.get(id)) await writing.catch(() => undefined);
    }

    override write(body: Readable, id: string, offset: number): Promise<number> {
      const writing = this.#write(body, id, offset);
      this.#writing.set(id, writing);
      const forget = () => {
        if (this.#writing.get(id) === writing) this.#writing.delete(id);
      };
      writing.then(forget, forget);
      return writing;
    }

    async #write(body: Readable, id: string, offset: number): Promise<number> {
      const request = handling.getStore();
      if (request) {
        if (request.cutOff) throw tusErrors.ABORTED;
        request.body = body;
      }
      // Its tenant names the blob the file is bound to; a record gone since the PATCH began is an upload gone (opened
      // without its name, the file would not open, and be taken for a damaged one).
      const record = await this.configstore.get(id);
      if (!record) throw tusErrors.FILE_NO_LONGER_EXISTS;
      const receiving = receivers.receive(id, offset, body);
      const written = await this.fileOf(id, record.metadata?.tenantId ?? undefined)
        .append(offset, receiving.body)
        .catch(async (error: unknown) => {
          receiving.settle(null);
          throw await this.#asTusError(id, error);
        });
      receiving.settle(written.size);
      // What came is kept; the client resumes from there (a HEAD tells it where).
      if (written.interrupted) throw tusErrors.FILE_WRITE_ERROR;
      return written.size;
    }

    /**
     * The upload as @tus/server sees it, with `creation_date` the time its last byte came: every expiry @tus/server
     * works out counts from creation_date (the answers of PATCH and HEAD, Upload-Expires), and an upload whose bytes
     * still come (a slow multi-GiB one over a poor link) must not expire a day after it began.
     */
    override async getUpload(id: string): Promise<Upload> {
      const record = await this.configstore.get(id);
      if (!record) throw tusErrors.FILE_NOT_FOUND;
      const file = this.fileOf(id, undefined);
      const offset = await file.size().catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' && this.kept.has(id) && record.size !== undefined) return record.size;
        throw error.code === 'ENOENT' ? tusErrors.FILE_NO_LONGER_EXISTS : error;
      });
      const lastWritten = await file.lastWritten().catch(() => null);
      const creation_date = lastWritten === null ? record.creation_date : new Date(lastWritten).toISOString();
      return new TusUpload({ ...record, offset, creation_date, storage: { type: 'file', path: file.path } });
    }

    /** Removes the uploads whose last byte came over the expiry period ago (FileStore's own counts from creation). */
    override async deleteExpired(): Promise<number> {
      let removed = 0;
      for (const id of (await this.configstore.list?.()) ?? []) {
        const lastWritten = await this.fileOf(id, undefined).lastWritten().catch(() => null);
        if (lastWritten !== null && Date.now() - lastWritten > this.getExpiration()) {
          await this.remove(id);
          removed += 1;
        }
      }
      return removed;
    }

    /** A terminated, expired or finished upload: its file (if not moved into the blob store) and its receiver go. */
    override async remove(id: string): Promise<void> {
      receivers.abandon(id);
      await this.fileOf(id, undefined).remove();
      await this.configstore.delete(id).catch(() => undefined);
      this.kept.delete(id);
    }

    /**
     * A write that lost a race (another replica wrote at that offset, or removed the upload) is a tus conflict or gone;
     * an upload that cannot be read any more (a damaged file, a master key no longer configured) is removed and gone.
     * Anything else (a full disk) is the server's, for onResponseError.
     */
    async #asTusError(id: string, error: unknown): Promise<unknown> {
      if (error instanceof PartialBlobOffsetError) return tusErrors.INVALID_OFFSET;
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return tusErrors.FILE_NO_LONGER_EXISTS;
      if (error instanceof CryptoError) {
        logger.warn({ uploadId: id, err: error }, 'removed a partial upload that cannot be read; its client starts again');
        await this.remove(id).catch(() => undefined);
        return tusErrors.FILE_NO_LONGER_EXISTS;
      }
      return error;
    }

    /** An upload is never served back (tus GET): its file is encrypted, and it is moved away once complete. */
    override read(): never {
      throw tusErrors.FILE_NOT_FOUND;
    }
  }
  const datastore = new EncryptedFileStore({ directory, expirationPeriodInMilliseconds: UPLOAD_EXPIRY_MS });
  const room = new UploadRoom(directory, datastore);
  // One request at a time writes an upload, across the replicas that share the directory too.
  const locker = new UploadLocker(directory, new MemoryLocker({ acquireLockTimeout: LOCK_TIMEOUT_MS }), LOCK_TIMEOUT_MS, tusErrors.ERR_LOCK_TIMEOUT, (id) =>
    datastore.settled(id),
  );
  // Keyed by the node request, which @tus/server exposes to its hooks as req.runtime.node.req.
  const principals = new WeakMap<object, Principal>();
  // Work to do once a request's response is sent, keyed like principals: @tus/server still reads a finished upload's
  // record while it answers the request that finished it (the creating POST of a creation-with-upload does).
  const afterResponse = new WeakMap<object, (() => Promise<unknown>)[]>();
  const completions = await UploadCompletions.open(config.dataDir, UPLOAD_EXPIRY_MS);
  const principalOf = (req: HookRequest): Principal => {
    const principal = req.runtime?.node?.req && principals.get(req.runtime.node.req);
    if (!principal) throw refusal(unauthenticated(), { debugErrors: config.debugErrors }); // unreachable: the front handler authenticated
    return principal;
  };

  /**
   * Completes an upload whose every byte is in: checks the file (unless it was checked as it came), keeps it, queues
   * its restore, once whichever replica and request asks (UploadCompletions); resolves with the operation id, or
   * rejects with the answer (a TusRefusal), which requests waiting on the same completion in this process share.
   * - Refused (the file, or the request looked at again): the upload goes; the client starts again and hears why.
   * - The instance cannot take the restore now (CONFLICT: another operation runs on it; INSTANCE_UNAVAILABLE): the
   *   upload stays, complete, its file given back if the blob store had taken it, and the answer is 423 with that
   *   code: a verified file is not sent again because a snapshot was running. The client's retry (a HEAD) queues it.
   * - Failed for the server's own reasons (a full disk, a bucket or database error): the upload stays, complete, its
   *   file given back if the blob store had taken it, and the client's retry completes it (a HEAD does, see the front
   *   handler): a multi-GiB upload is not sent again for that. Unless a restore from it was queued all the same (a
   *   commit whose answer was lost), or the file cannot be given back: then the upload goes.
   * `nodeReq`: the request it answers, whose socket waits without the idle timeout meanwhile.
   */
  const finishUpload = async (principal: Principal, upload: Upload, nodeReq: NodeRequest | undefined): Promise<string> => {
    const instanceId = upload.metadata?.instanceId ?? '';
    const confirm = upload.metadata?.confirm ?? '';
    const forget = () => datastore.remove(upload.id).catch(() => undefined);
    // Received as it came: only ending the check is left, and queueing the restore (looked at again, for this
    // request's key). Else the file is read back and checked now.
    let checked: 'as received' | 'not read back (the instance is busy)' | 'read back' = 'as received';
    const file = datastore.fileOf(upload.id, principal.tenantId);
    /** Queues the restore of the checked file: `adopted` when the blob store took the upload's file itself. */
    const queue = async (received: ReceivedFile, adopted: boolean) => {
      try {
        return (await services.uploads.requestRestore(principal, instanceId, confirm, received)).id;
      } catch (error) {
        // The server's own trouble: the restore may have been queued all the same (a commit whose answer was lost),
        // and then it is the answer. Not known (the database still away): the file is left where it is, which the
        // collection of uploads no operation names removes later, and the upload goes.
        const serverFault = refusal(error, { debugErrors: config.debugErrors }).status_code >= 500;
        const queued = serverFault ? await services.uploads.restoreQueuedFrom(instanceId, received.key).catch(() => undefined) : null;
        if (typeof queued === 'string') return queued;
        if (queued === undefined) throw error;
        // Given back, the file is the upload's again: it stays. A copy the check made (S3) goes either way (a later
        // completion reads the file back).
        const keep = adopted && (isInstanceBusy(error) || serverFault);
        const given = keep ? await services.uploads.releasePartialFile(received.key, file).then(() => true, () => false) : false;
        if (given) datastore.kept.delete(upload.id);
        else await services.uploads.discard(received);
        throw error;
      }
    };
    const restore = async () => {
      const sizeBytes = upload.size ?? upload.offset;
      let verdict = await receivers.finish(upload.id, sizeBytes);
      // Unless the receiver stored its own copy (S3), the upload's file is what is read back or moved in. It must hold
      // every byte: when they all went to this replica's check, those are the bytes checked (a write racing from
      // another replica would have changed the count).
      if (verdict === null || !('key' in verdict)) {
        const kept = await file.complete();
        if (kept !== sizeBytes) throw new IncompleteUploadError(kept, sizeBytes);
      }
      if (verdict === null) {
        checked = 'not read back (the instance is busy)';
        await services.uploads.assertTakesRestoreNow(principal, instanceId);
        checked = 'read back';
        verdict = await checkWithoutStalling(config.idleTimeoutMs, (watch) =>
          services.uploads.checkResumableFile(principal, instanceId, watch(file.read()), confirm),
        );
      }
      if ('key' in verdict) return queue(verdict, false);
      // Checked: only now is it moved into the blob store (until then a replica taking over finds it here).
      const key = await services.uploads.adoptPartialFile(principal.tenantId, upload.id, file);
      datastore.kept.add(upload.id);
      return queue({ key, ...verdict }, true);
    };
    // What becomes of the upload is settled before the completion ends, so that every request waiting on it hears
    // the same answer, and a HEAD that comes after it finds the upload kept or gone.
    const restoreOrRefuse = () =>
      restore().catch(async (error: unknown) => {
        const answer = refusal(error, { debugErrors: config.debugErrors });
        if (isInstanceBusy(error) && !datastore.kept.has(upload.id)) {
          logger.info({ uploadId: upload.id, code: (error as AppError).code, checked }, 'restore upload kept: its instance cannot take the restore now; the client retries');
          throw { ...answer, status_code: 423 } satisfies TusRefusal;
        }
        if (answer.status_code < 500) {
          logger.info({ uploadId: upload.id, code: isAppError(error) ? error.code : null }, 'restore upload refused');
          await forget();
        } else if (datastore.kept.has(upload.id)) {
          logger.error({ err: error, uploadId: upload.id }, 'restore upload failed');
          await forget();
        } else {
          logger.error({ err: error, uploadId: upload.id }, 'restore upload failed; it is kept, complete, for the client to finish again');
        }
        throw answer;
      });
    const verified = withoutIdleTimeout(nodeReq?.socket, () => completions.run(upload.id, principal.tenantId, upload.size ?? upload.offset, restoreOrRefuse));
    // Finished without this replica's receiver (another replica verifies it, or already has): it goes.
    verified.finally(() => receivers.abandon(upload.id)).catch(() => undefined);
    const operationId = await verified.catch((error: unknown) => {
      // Another replica's completion, refused there or abandoned (UploadCompletions), is this request's refusal too.
      throw isTusRefusal(error) ? error : refusal(error, { debugErrors: config.debugErrors });
    });
    // Kept in the blob store: its record goes once the answer is sent (@tus/server reads it while it answers).
    if (nodeReq) afterResponse.set(nodeReq, [...(afterResponse.get(nodeReq) ?? []), forget]);
    else await forget();
    logger.info({ uploadId: upload.id, operationId, sizeBytes: upload.size, checked }, 'restore upload received');
    return operationId;
  };

  /**
   * The caller's upload when every byte of it is in and it has not expired: one that completions.find knows nothing of
   * (its completion failed, or the server stopped before its restore was queued). A completion that some replica
   * starts meanwhile is the one finishUpload waits for (UploadCompletions.run).
   */
  const unfinishedUpload = async (id: string, principal: Principal): Promise<Upload | null> => {
    const upload = await datastore.getUpload(id).catch(() => null);
    if (!upload || upload.metadata?.tenantId !== principal.tenantId || upload.size === undefined || upload.offset !== upload.size) return null;
    if (upload.creation_date && Date.parse(upload.creation_date) + UPLOAD_EXPIRY_MS < Date.now()) return null;
    // Moved into the blob store by this process: its restore is queued, or failing that the upload goes.
    return datastore.kept.has(id) ? null : upload;
  };

  /**
   * The completion a HEAD or PATCH on a complete upload waits for: the one some replica runs or ran (UploadCompletions),
   * or, for a HEAD, one started now (`startedHere`) for an upload whose completion failed or could not queue its
   * restore yet (its client retries with a HEAD, sees every byte in, and takes that answer as the end).
   */
  const completionOf = async (id: string, principal: Principal, nodeReq: Request): Promise<(Completion & { startedHere: boolean }) | undefined> => {
    const completed = await completions.find(id, principal.tenantId);
    if (completed) return { ...completed, startedHere: false };
    const unfinished = nodeReq.method === 'HEAD' ? await unfinishedUpload(id, principal) : null;
    if (!unfinished) return undefined;
    const operationId = finishUpload(principal, unfinished, nodeReq);
    operationId.catch(() => undefined);
    return { tenantId: principal.tenantId, sizeBytes: unfinished.size!, operationId, startedHere: true };
  };

  /**
   * HEAD or PATCH on a completed upload: the whole file is here; the answer (once verified) names the operation. A
   * completion that fails says so: the upload is kept when the server failed (5xx) or its instance is busy (423), and
   * the client retries; a refused one is gone (404, and the client starts over), though the request that started the
   * completion hears why. Another replica's completion that ended without an operation tells only that (its marker is
   * gone): whether the upload went with it or was kept (its instance busy, its server in trouble), the upload itself
   * says, and a HEAD asks it (`again`: a kept one is completed here, and answered as that completion is).
   */
  const answerOfCompletion = async (
    method: string,
    completed: Completion & { startedHere: boolean },
    again?: () => Promise<(Completion & { startedHere: boolean }) | undefined>,
  ): Promise<TusAnswer> => {
    try {
      const operationId = await completed.operationId;
      return {
        status: method === 'HEAD' ? 200 : 204,
        headers: {
          'Tus-Resumable': TUS_VERSION,
          'Upload-Offset': String(completed.sizeBytes),
          'Upload-Length': String(completed.sizeBytes),
          'Cache-Control': 'no-store',
          [OPERATION_ID_HEADER]: operationId,
        },
        body: '',
      };
    } catch (error) {
      const answer = isTusRefusal(error) ? error : refusal(error, { debugErrors: config.debugErrors });
      const kept = answer.status_code >= 500 || answer.status_code === 423;
      if (!kept && !completed.startedHere && again) {
        const retried = await again().catch(() => undefined);
        if (retried?.startedHere) return answerOfCompletion(method, retried);
      }
      return refusalAnswer(kept || completed.startedHere ? answer : notFoundRefusal());
    }
  };

  const tus: Server = new TusServer({
    path: UPLOADS_PATH,
    datastore,
    locker,
    relativeLocation: true, // resolved by clients against the URL they used (works behind proxies)
    exposedHeaders: [OPERATION_ID_HEADER],
    // CORS is decided in one place (http/cors.ts, SNAPGRAPH_CORS_ORIGINS); without this tus would allow any origin.
    allowedOrigins: (origin) => config.corsOrigins.includes(origin),
    disableTerminationForFinishedUploads: true,

    /** Every request on an existing upload: only the creating tenant sees it (404 for everyone else). */
    onIncomingRequest: async (req, id) => {
      const principal = principalOf(req);
      try {
        requireRole(principal, 'ADMIN', 'uploading a file to restore');
      } catch (error) {
        throw refusal(error, { debugErrors: config.debugErrors });
      }
      if (req.method === 'POST') return;
      const upload = await datastore.getUpload(id).catch(() => null);
      if (upload?.metadata?.tenantId !== principal.tenantId) throw notFoundRefusal();
    },

    /** Before anything is stored: the same checks as restoreFromFile that need no file (role, confirm, instance). */
    onUploadCreate: async (req, upload) => {
      const principal = principalOf(req);
      const { instanceId, confirm, filename } = upload.metadata ?? {};
      try {
        if (!instanceId) throw badMetadata();
        await services.uploads.authorize(principal, instanceId, confirm ?? '');
        await room.promise(upload.id, upload.size ?? 0);
        const request = handling.getStore();
        if (request) request.promised = upload.id;
      } catch (error) {
        throw refusal(error, { debugErrors: config.debugErrors });
      }
      logger.info({ uploadId: upload.id, instanceId, filename, sizeBytes: upload.size }, 'restore upload created');
      receivers.expect(upload.id, (input) => services.uploads.checkResumableFile(principal, instanceId, input, confirm ?? ''));
      return { metadata: { instanceId, confirm: confirm ?? '', filename: filename ?? null, tenantId: principal.tenantId } };
    },

    /** The last byte arrived: check the file (unless it was checked as it came), keep it, queue the restore. */
    onUploadFinish: async (req, upload) => {
      const operationId = await finishUpload(principalOf(req), upload, req.runtime?.node?.req);
      return { headers: { [OPERATION_ID_HEADER]: operationId } };
    },

    onResponseError: (_req, error) => {
      if ('status_code' in error) return undefined; // a tus protocol answer or one of ours
      // Its write stopped by its key's revocation, and answered then (the answer made here goes nowhere).
      if (handling.getStore()?.cutOff) return undefined;
      logger.error({ err: error }, 'upload request failed');
      // What fails here is storing the partial upload itself; the client resumes once space returns.
      return refusal(asStorageFull(error, 'uploads') ?? error, { debugErrors: config.debugErrors });
    },
  });
  answerCompletedHeadsWithTheirOperation(tus, async (req) => {
    const nodeReq = req.runtime?.node?.req as Request | undefined;
    const principal = nodeReq && principals.get(nodeReq);
    const id = uploadIdOf(new URL(req.url).pathname.slice(UPLOADS_PATH.length));
    const completed = nodeReq && principal && id ? await completionOf(id, principal, nodeReq) : undefined;
    return completed && withoutIdleTimeout(nodeReq?.socket, () => answerOfCompletion('HEAD', completed, () => completionOf(id!, principal!, nodeReq!)));
  });
  answerRefusalsAsJson(tus);
  expireFromTheLastByte(tus);

  await sweepAtBoot(tus, datastore, completions, logger);
  await locker.sweep();
  const sweep = setInterval(() => {
    Promise.all([tus.cleanUpExpiredUploads(), completions.sweep(), locker.sweep()]).then(
      ([removed]) => removed > 0 && logger.info({ removed }, 'removed expired partial uploads'),
      (error) => logger.error({ err: error }, 'could not remove expired partial uploads'),
    );
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return async (req: Request, res: Response) => {
    const handled: HandledRequest = { cutOff: false };
    try {
      const id = uploadIdOf(req.path);
      if (id === null) return void sendRefusal(res, notFoundRefusal());
      const override = overriddenMethod(req);
      if (override === null) return void sendRefusal(res, badOverrideRefusal());
      req.method = override;
      if (req.method !== 'OPTIONS') {
        const secret = bearerSecret(req.headers.authorization);
        const principal = secret ? await services.tenants.authenticate(secret) : null;
        if (!principal) {
          res.setHeader('WWW-Authenticate', 'Bearer');
          return void sendRefusal(res, refusal(unauthenticated(), { debugErrors: config.debugErrors }));
        }
        principals.set(req, principal);
        // A write under way when its key is revoked is refused at once, it stops (the bytes it wrote are kept, as a broken
        // connection's are), and its connection is closed.
        if (req.method === 'PATCH' || req.method === 'POST') {
          const revoked = () => refusal(unauthenticated(REVOKED_UPLOAD), { debugErrors: config.debugErrors });
          const cutOff = () => {
            handled.cutOff = true;
            handled.body?.destroy(new Error(REVOKED_UPLOAD));
            sendRefusal(res, revoked());
          };
          if (!keyConnections.addUpload(principal.apiKeyId, req, res, cutOff)) return void sendRefusal(res, revoked());
        }
        // Uploads are an ADMIN's, and speak tus 1.0: anything else is for @tus/server (and onIncomingRequest) to refuse.
        const ours = principal.role === 'ADMIN' && req.headers['tus-resumable'] === TUS_VERSION;
        const completed = ours && id && (req.method === 'HEAD' || req.method === 'PATCH') ? await completionOf(id, principal, req) : undefined;
        if (completed) {
          req.resume(); // a repeated final PATCH carries no new bytes
          return void sendAnswer(res, await withoutIdleTimeout(req.socket, () => answerOfCompletion(req.method, completed, () => completionOf(id, principal, req))));
        }
      }
      if (handled.cutOff) return;
      req.url = req.originalUrl; // @tus/server routes on the full path
      await handling.run(handled, () => tus.handle(req, res));
    } catch (error) {
      // Cut off (its key revoked): answered, and its connection about to close; @tus/server's own answer came too late.
      if (handled.cutOff) return;
      logger.error({ err: error }, 'upload request failed');
      if (!res.headersSent) sendRefusal(res, refusal(error, { debugErrors: config.debugErrors }));
      else res.destroy();
    } finally {
      if (handled.promised !== undefined) room.release(handled.promised);
      const { created } = handled;
      if (created !== undefined && handled.cutOff) {
        await datastore.settled(created);
        await datastore.remove(created).catch((error: unknown) => logger.warn({ err: error, uploadId: created }, 'could not remove an upload whose creation was cut off'));
      }
      for (const work of afterResponse.get(req) ?? []) await work().catch(() => undefined);
    }
  };
}

const TUS_METHODS = new Set(['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * The method the request stands for: X-HTTP-Method-Override (which @tus/server advertises, for clients that can only
 * send GET and POST) names it on a POST; null when it names something that is not a tus method.
 */
function overriddenMethod(req: Request): string | null {
  const override = req.headers['x-http-method-override'];
  if (typeof override !== 'string' || req.method !== 'POST') return req.method;
  const method = override.trim().toUpperCase();
  return TUS_METHODS.has(method) ? method : null;
}

/**
 * Lets `change` replace each answer @tus/server gives (`handler`, web Request in, web Response out, is what handle()
 * calls; it is private in the typings only).
 */
function changeAnswers(tus: Server, change: (req: globalThis.Request, response: globalThis.Response) => Promise<globalThis.Response>): void {
  const server = tus as unknown as { handler(req: globalThis.Request): Promise<globalThis.Response> };
  const answer = server.handler.bind(tus);
  server.handler = async (req) => change(req, await answer(req));
}

/**
 * @tus/server answers protocol errors itself, as text/plain (and sends our JSON refusals as text/plain too). Every
 * refusal leaves here as the one JSON shape of every endpoint, with Content-Type application/json; an unsupported
 * or missing Tus-Resumable is 412 with the version this server speaks (tus 1.0: "Tus-Version").
 */
function answerRefusalsAsJson(tus: Server): void {
  changeAnswers(tus, async (req, response) => {
    if (response.status < 400) return response;
    const text = await response.text();
    const headers = new Headers(response.headers);
    let status = response.status;
    let body = text;
    if (!isErrorBody(text)) {
      status = protocolStatus(req, status, text);
      body = errorBody(TUS_PROTOCOL_CODES[status] ?? (status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_USER_INPUT'), text.trim() || 'refused');
    }
    if (status === 412) headers.set('Tus-Version', TUS_VERSION);
    headers.set('Content-Type', JSON_CONTENT_TYPE);
    headers.set('Content-Length', String(Buffer.byteLength(body)));
    headers.set('Cache-Control', 'no-store');
    return new globalThis.Response(body, { status, headers });
  });
}

/**
 * A PATCH's Upload-Expires counts from the bytes it brought: @tus/server works it out from the upload as it was before
 * them (see EncryptedFileStore.getUpload).
 */
function expireFromTheLastByte(tus: Server): void {
  changeAnswers(tus, async (req, response) => {
    if (req.method === 'PATCH' && response.headers.has('upload-expires')) {
      response.headers.set('Upload-Expires', new Date(Date.now() + UPLOAD_EXPIRY_MS).toUTCString());
    }
    return response;
  });
}

/** tus's status for a protocol error, corrected where the tus 1.0 protocol says otherwise. */
function protocolStatus(req: globalThis.Request, status: number, text: string): number {
  const version = req.headers.get('tus-resumable');
  if (req.method !== 'OPTIONS' && req.method !== 'GET' && version !== TUS_VERSION) return 412; // @tus/server says 400
  if (/content-type/i.test(text)) return 415; // @tus/server says 400 or 403
  if (status === 403) return 400; // @tus/server's 403s are malformed requests, not a lack of permission
  if (status === 501) return 400; // an extension not offered here (creation-defer-length): the client's to change
  return status;
}

const TUS_PROTOCOL_CODES: Record<number, string> = {
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  410: 'NOT_FOUND',
  413: 'FILE_TOO_LARGE',
  423: 'CONFLICT',
};

function isErrorBody(text: string): boolean {
  try {
    return Array.isArray((JSON.parse(text) as { errors?: unknown }).errors);
  } catch {
    return false;
  }
}

/** What @tus/server passes its hooks: a web Request carrying the node request it came from. */
/** The node request under a tus hook's request (the key of `principals` and `afterResponse`). */
type NodeRequest = { socket?: Socket };
type HookRequest = { runtime?: { node?: { req?: NodeRequest } } };

/**
 * The client waits in silence while the server verifies a whole archive (minutes for a large file): that silence is
 * the server at work, not an idle client, so the idle timeout (SNAPGRAPH_IDLE_TIMEOUT_MS) is paused meanwhile.
 */
async function withoutIdleTimeout<T>(socket: Socket | undefined, work: () => Promise<T>): Promise<T> {
  const timeout = socket?.timeout ?? 0;
  socket?.setTimeout(0);
  try {
    return await work();
  } finally {
    if (socket && !socket.destroyed && timeout > 0) socket.setTimeout(timeout);
  }
}

/**
 * Runs a check of a stored file that reads it through `watch`. The client's idle timeout is paused meanwhile, so this
 * one bounds the work instead: reading the file must make progress at least every `stallTimeoutMs`, else the check
 * fails (and the read ends) rather than waiting forever.
 */
async function checkWithoutStalling<T>(stallTimeoutMs: number, check: (watch: (stored: Readable) => Readable) => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onStall: (error: Error) => void = () => undefined;
  const stalled = new Promise<never>((_, reject) => (onStall = reject));
  const watched = new Transform({
    transform(chunk, _encoding, done) {
      arm();
      done(null, chunk);
    },
  });
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const error = new Error(`checking the upload made no progress for ${stallTimeoutMs} ms`);
      watched.destroy(error);
      onStall(error);
    }, stallTimeoutMs);
  };
  const watch = (stored: Readable) => {
    // pipeline ends the read (its file descriptor, its S3 request) whichever side ends first.
    pipeline(stored, watched, () => undefined);
    // Read to its end: what is left (a bucket write's last parts) is bounded by its own timeouts, not by this one.
    watched.once('end', () => clearTimeout(timer));
    return watched;
  };
  arm();
  try {
    return await Promise.race([check(watch), stalled]);
  } finally {
    clearTimeout(timer);
    watched.destroy();
  }
}

/** An answer the front handler sends itself, or that replaces @tus/server's. */
interface TusAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function refusalAnswer({ status_code, body }: TusRefusal): TusAnswer {
  return { status: status_code, headers: { 'Tus-Resumable': TUS_VERSION, 'Cache-Control': 'no-store', 'Content-Type': JSON_CONTENT_TYPE }, body };
}

function sendAnswer(res: Response, { status, headers, body }: TusAnswer): void {
  res.status(status).set(headers);
  if (body) res.send(body);
  else res.end();
}

/**
 * A HEAD that came while the last byte was being written passed the front handler's look for a completion, waited
 * for the upload's lock, and would be answered by @tus/server with every byte in and no operation: a client takes
 * that as the end of the upload, without the operation its restore runs as. Such a HEAD waits for the completion
 * instead (`completedAnswer`, which starts it if no request has yet), and is answered with its operation, or why not.
 */
function answerCompletedHeadsWithTheirOperation(tus: Server, completedAnswer: (req: globalThis.Request & HookRequest) => Promise<TusAnswer | undefined>): void {
  changeAnswers(tus, async (req, response) => {
    const length = response.headers.get('upload-length');
    if (req.method !== 'HEAD' || response.status !== 200 || length === null || response.headers.get('upload-offset') !== length) return response;
    const completed = await completedAnswer(req as globalThis.Request & HookRequest);
    if (!completed) return response;
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(completed.headers)) headers.set(name, value);
    return new globalThis.Response(completed.body || null, { status: completed.status, headers });
  });
}

/**
 * At boot: unreadable partial uploads go (plaintext ones an earlier version kept, or damage), then the records of
 * uploads whose file is gone (moved into the blob store just before the server stopped), then expired ones. A complete
 * upload whose restore was not queued (the server stopped, or its completion failed) stays: its client's next HEAD
 * finishes it (see the front handler), until it expires.
 */
async function sweepAtBoot(tus: Server, datastore: FileStore, completions: UploadCompletions, logger: Logger): Promise<void> {
  let removed = 0;
  const ids = new Set(((await datastore.configstore.list?.()) ?? []) as string[]);
  for (const id of ids) {
    const upload = await datastore.getUpload(id).catch((error: unknown) => (error instanceof CryptoError ? 'unreadable' : null));
    // Not a partial blob: a plaintext file an earlier version kept (in a configured SNAPGRAPH_UPLOAD_DIR), or damage.
    if (upload === 'unreadable') {
      logger.warn({ uploadId: id }, 'removed a partial upload that is not encrypted (kept by an earlier version) or is damaged; its client starts again');
      await datastore.remove(id).catch(() => undefined);
      removed += 1;
    }
  }
  for (const name of await readdir(datastore.directory)) {
    const id = name.endsWith('.json') ? name.slice(0, -'.json'.length) : null;
    // Whether its file is gone is asked of the directory now, not of the listing above: another replica sharing it may
    // have created an upload since (its file first, then its record), and that one is not stale.
    if (id && !(await pathExists(join(datastore.directory, id))) && !(await completions.inProgress(id))) {
      await datastore.remove(id).catch(() => undefined);
      removed += 1;
    }
  }
  removed += await tus.cleanUpExpiredUploads();
  if (removed > 0) logger.info({ removed }, 'removed stale partial uploads');
}

/**
 * The room uploads being created take on their volume. Checked one creation at a time, and promised to each from its
 * check until its record is written (then unwrittenBytes counts it): checked side by side, two creations that each
 * fitted but not together both read the volume before either was written, and were both taken. One process's
 * creations; replicas sharing a directory may still both take one each at the same moment.
 */
class UploadRoom {
  private readonly promised = new Map<string, number>();
  private checking: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly directory: string,
    private readonly datastore: { directory: string; getUpload(id: string): Promise<Upload> },
  ) {}

  /** STORAGE_FULL unless an upload of `sizeBytes` fits beside the others (assertRoomFor); if it does, promised to `id`. */
  promise(id: string, sizeBytes: number): Promise<void> {
    const check = this.checking.then(async () => {
      let reserved = await unwrittenBytes(this.datastore);
      for (const bytes of this.promised.values()) reserved += bytes;
      await assertRoomFor(this.directory, sizeBytes, reserved);
      this.promised.set(id, encryptedSize(sizeBytes));
    });
    this.checking = check.catch(() => undefined);
    return check;
  }

  release(id: string): void {
    this.promised.delete(id);
  }
}

/**
 * STORAGE_FULL unless the volume of partial uploads has room for an upload of `sizeBytes` (as it is kept, encrypted)
 * besides what the unfinished uploads still need (`reservedBytes`), checked when it is created: an upload of any size
 * is taken where it fits, and one that cannot fit is refused before its client sends hours of bytes that would fill
 * the volume (for every other upload too, and, on the data dir's volume, for every instance) and be refused at the
 * end. Counted against the free space alone, two uploads that each fitted were both taken, and filled it together.
 */
async function assertRoomFor(directory: string, sizeBytes: number, reservedBytes: number): Promise<void> {
  const volume = await statfs(directory).catch(() => null);
  if (!volume || encryptedSize(sizeBytes) + reservedBytes <= volume.bavail * volume.bsize) return;
  const others = reservedBytes > 0 ? `, besides the ${reservedBytes} bytes the unfinished uploads still need,` : '';
  throw new AppError(
    'STORAGE_FULL',
    `the upload's ${sizeBytes} bytes do not fit${others} in the space left on the volume of partial uploads (SNAPGRAPH_UPLOAD_DIR): nothing was stored. Free space on it (or ask the operator to), then try again.`,
  );
}

/**
 * What the unfinished uploads of the directory still need on its volume: their bytes not yet written, encrypted. Only
 * those whose last byte (or creation) is at most RESERVATION_IDLE_MS old: an upload whose client went away, or one
 * created and never sent (any tenant's ADMIN could), does not keep every tenant's next upload out until it expires.
 */
async function unwrittenBytes(datastore: { directory: string; getUpload(id: string): Promise<Upload> }, now = Date.now()): Promise<number> {
  let total = 0;
  for (const name of await readdir(datastore.directory).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    const upload = await datastore.getUpload(name.slice(0, -'.json'.length)).catch(() => null);
    if (upload?.size === undefined || upload.size <= upload.offset) continue;
    if (!upload.creation_date || Date.parse(upload.creation_date) < now - RESERVATION_IDLE_MS) continue;
    total += encryptedSize(upload.size) - encryptedSize(upload.offset);
  }
  return total;
}

/** How long an unfinished upload that receives no byte keeps its room reserved (see unwrittenBytes). */
const RESERVATION_IDLE_MS = 10 * 60_000;


/** Partial uploads an earlier version kept in plaintext in the OS temp dir go, files and folder. */
async function removeLegacyUploads(config: Pick<AppConfig, 'dataDir' | 'uploadDir'>, logger: Logger): Promise<void> {
  if (config.uploadDir !== undefined) return;
  const legacy = legacyUploadDirectory(config.dataDir);
  const stats = await lstat(legacy).catch(() => null);
  if (!stats?.isDirectory() || (process.getuid && stats.uid !== process.getuid())) return;
  const names = await readdir(legacy);
  await rm(legacy, { recursive: true, force: true });
  logger.warn({ dir: legacy, files: names.length }, 'removed partial uploads an earlier version kept unencrypted; their clients start them again');
}

async function preparePrivateDirectory(dir: string): Promise<void> {
  await makePrivateDirectory(dir, 'SNAPGRAPH_UPLOAD_DIR');
  const stats = await lstat(dir);
  // Refuse one that someone else made (or a symlink to elsewhere).
  if (!stats.isDirectory() || (process.getuid && stats.uid !== process.getuid())) {
    throw new ConfigError([`SNAPGRAPH_UPLOAD_DIR: ${dir} is not a directory owned by this user`]);
  }
  await chmod(dir, 0o700);
}

/** '' for the collection, the id for /<id>, null for anything deeper. */
function uploadIdOf(path: string): string | null {
  const match = /^\/?([A-Za-z0-9_-]{1,128})?\/?$/.exec(path);
  return match ? (match[1] ?? '') : null;
}

function bearerSecret(header: unknown): string | null {
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match ? match[1] : null;
}

const badMetadata = () =>
  new GraphQLError('Upload-Metadata must name the target instance (instanceId) and carry confirm RESTORE', {
    extensions: { code: 'BAD_USER_INPUT' },
  });

const badOverrideRefusal = (): TusRefusal => ({
  status_code: 400,
  body: errorBody('BAD_USER_INPUT', `X-HTTP-Method-Override must name one of ${[...TUS_METHODS].join(', ')}`),
});

const notFoundRefusal = (): TusRefusal => ({
  status_code: 404,
  body: errorBody('NOT_FOUND', 'no such upload (it finished, expired, or belongs to another tenant)'),
});

/** Any error as a tus answer: the contract's code in a GraphQL-style body, with a matching HTTP status. */
function refusal(error: unknown, exposure: ErrorExposure): TusRefusal {
  const graphQLError =
    error instanceof GraphQLError
      ? error
      : new GraphQLError(error instanceof Error ? error.message : String(error), { originalError: error as Error });
  const { message, extensions } = formatError(graphQLError.toJSON(), exposure, error);
  const code = String(extensions?.code);
  return { status_code: STATUS_OF_CODE[code] ?? 500, body: errorBody(code, message) };
}

function sendRefusal(res: Response, { status_code, body }: TusRefusal): void {
  res
    .status(status_code)
    .set({ 'Tus-Resumable': TUS_VERSION, 'Cache-Control': 'no-store', 'Content-Type': JSON_CONTENT_TYPE })
    .send(body);
}
