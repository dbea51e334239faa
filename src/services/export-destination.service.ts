// Export destinations: a tenant's own S3-compatible buckets that snapshots' archives are copied to, on request or as
// soon as a snapshot of a chosen instance completes. Their keys are sealed under the master key and never leave.
import { createHash, randomUUID } from 'node:crypto';
import { pipeline, Readable, Transform } from 'node:stream';
import { Equal, In, IsNull, MoreThan, type DataSource, type EntityManager, type Repository } from 'typeorm';
import { archiveExtension } from '../archive';
import type { Keyring } from '../crypto/keyring';
import { ExportDestinationEntity } from '../entities/export-destination.entity';
import { OperationEntity } from '../entities/operation.entity';
import type { SnapshotEntity } from '../entities/snapshot.entity';
import { AppError, badInput, conflict, isAppError, notFound } from '../errors/app-error';
import type { Compensation, JobContext, OperationHandler, OperationResult } from '../jobs/operation-handler';
import { insertOperation } from '../jobs/operation-queue';
import type { Logger } from '../logging/logger';
import type { S3BlobStore } from '../storage/s3-blob-store';
import { assertPublicEndpoint } from '../storage/public-addresses';
import { describeS3Error, s3Status } from '../storage/s3-errors';
import { formatS3Url, parseS3Url } from '../storage/s3-location';
import { exportFileName } from './export.service';
import type { InstanceService } from './instance.service';
import { holdOperationInputs } from './operation-inputs';
import { type Principal, requireRole } from './principal';
import type { SnapshotService, WorkAnnouncer } from './snapshot.service';

export interface ExportDestinationInput {
  name: string;
  url: string;
  endpoint?: string | null;
  region?: string | null;
  accessKeyId: string;
  secretAccessKey: string;
  autoExportInstanceIds?: string[] | null;
}

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** What an EXPORT operation's params hold. */
interface ExportParams {
  destinationId: string;
  /** Queued because a snapshot completed (these are retried after a failure), not by exportSnapshotTo. */
  auto: boolean;
  /** 0 for the first try; the n-th retry of a failed automatic export has n. */
  retry: number;
  /** The multipart upload of the attempt running (with its object's name): aborted if the attempt ends without it. */
  write?: { fileName: string; uploadId: string };
  /** On a failed automatic export: why it is not retried although retries remain (its snapshot is gone). */
  notRetried?: string;
}

/**
 * The longest answer read from a destination's endpoint (the tenant's to choose): S3's answers to what an export sends
 * (a PUT, a part, a multipart upload's start and completion, a HEAD, a DELETE, its errors) are a few KiB.
 */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** How long registering a destination waits for its probe object to be written. */
const PROBE_MS = 60_000;

/** Retries of one failed automatic export before it is left FAILED (lastError says why). */
export const MAX_EXPORT_RETRIES = 6;
const MAX_RETRY_DELAY_MS = 3_600_000;
/** Failed exports older than this are not looked at again (all retries are due long before). */
const RETRY_HORIZON_MS = 24 * 3_600_000;
/** Failed exports looked at per query of the retry sweep. */
const RETRY_PAGE = 500;

const credentialsAad = (tenantId: string, destinationId: string) => Buffer.from(`snapgraph export destination\0${tenantId}\0${destinationId}`);

/** The credentials sealed under the keyring's current key, bound to their destination. */
export function sealCredentials(
  destination: Pick<ExportDestinationEntity, 'tenantId' | 'id'>,
  credentials: Credentials,
  keyring: Keyring,
): Pick<ExportDestinationEntity, 'masterKeyId' | 'sealedCredentials'> {
  const key = keyring.current;
  const sealed = key.seal(Buffer.from(JSON.stringify(credentials)), credentialsAad(destination.tenantId, destination.id));
  return { masterKeyId: key.keyId, sealedCredentials: sealed.toString('base64') };
}

/**
 * The destination's credentials sealed again, under the keyring's current key (`snapgraph rotate-master-key`); null when
 * they do not authenticate under the key they name.
 * @throws UnknownKeyError when that key is not in the keyring
 */
export function resealCredentials(
  destination: Pick<ExportDestinationEntity, 'tenantId' | 'id' | 'masterKeyId' | 'sealedCredentials'>,
  keyring: Keyring,
): Pick<ExportDestinationEntity, 'masterKeyId' | 'sealedCredentials'> | null {
  const aad = credentialsAad(destination.tenantId, destination.id);
  const opened = keyring.get(destination.masterKeyId).unseal(Buffer.from(destination.sealedCredentials, 'base64'), aad);
  if (!opened) return null;
  try {
    return { masterKeyId: keyring.current.keyId, sealedCredentials: keyring.current.seal(opened, aad).toString('base64') };
  } finally {
    opened.fill(0);
  }
}

export class ExportDestinationService {
  private readonly destinations: Repository<ExportDestinationEntity>;
  private readonly operations: Repository<OperationEntity>;

  constructor(
    private readonly db: DataSource,
    private readonly keyring: Keyring,
    private readonly instances: InstanceService,
    private readonly snapshots: SnapshotService,
    private readonly announceWork: WorkAnnouncer,
    private readonly options: { retryBaseMs: number; allowPrivateAddresses: boolean },
  ) {
    this.destinations = db.getRepository(ExportDestinationEntity);
    this.operations = db.getRepository(OperationEntity);
  }

  async list(principal: Principal): Promise<ExportDestinationEntity[]> {
    requireRole(principal, 'ADMIN', 'listing export destinations');
    return this.destinations.find({ where: { tenantId: principal.tenantId }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  /** Checks the input and the credentials (a probe object is written and deleted), then stores them sealed. */
  async create(principal: Principal, input: ExportDestinationInput): Promise<ExportDestinationEntity> {
    requireRole(principal, 'ADMIN', 'adding an export destination');
    const credentials = checkCredentials(input);
    const destination = Object.assign(new ExportDestinationEntity(), {
      id: randomUUID(),
      tenantId: principal.tenantId,
      name: checkName(input.name),
      url: checked('url', () => atMost(MAX_URL_LENGTH, formatS3Url(parseS3Url(input.url)))),
      endpoint: checked('endpoint', () => checkEndpoint(input.endpoint, this.options.allowPrivateAddresses)),
      region: checked('region', () => checkRegion(input.region)),
      autoExportInstanceIds: await this.checkInstances(principal, input.autoExportInstanceIds ?? []),
      masterKeyId: '',
      sealedCredentials: '',
      createdAt: Date.now(),
      lastExportAt: null,
      lastError: null,
    } satisfies ExportDestinationEntity);
    await this.probe(destination, credentials);
    Object.assign(destination, this.seal(destination, credentials));
    await this.destinations.insert(destination);
    return destination;
  }

  /**
   * Deletes the destination and its keys, unless an export to it is queued or running (refused: CONFLICT): that one
   * would go on writing with the keys deleted, and one whose process died could no longer abort the multipart upload it
   * left in the bucket. The row goes first, then the look for such an export, in one transaction undone when it finds
   * one: a request queuing an export holds the row (holdOperationInputs), so whichever comes second refuses.
   */
  async remove(principal: Principal, id: string): Promise<boolean> {
    requireRole(principal, 'ADMIN', 'deleting an export destination');
    await this.db.transaction(async (manager) => {
      const { affected } = await manager.delete(ExportDestinationEntity, { id, tenantId: principal.tenantId });
      if (!affected) throw notFound('export destination', id);
      const exports = await manager.find(OperationEntity, {
        select: { id: true, status: true, params: true },
        where: { tenantId: principal.tenantId, kind: 'EXPORT', status: In(['QUEUED', 'RUNNING']) },
      });
      const writing = exports.find((operation) => (operation.params as ExportParams | null)?.destinationId === id);
      if (writing) {
        throw conflict(
          `export destination ${id} has an export ${writing.status.toLowerCase()} (operation ${writing.id}); cancel it (cancelOperation) or let it end, then delete the destination`,
        );
      }
    });
    return true;
  }

  /** Queues an EXPORT operation copying a COMPLETED snapshot's archive to one of the tenant's destinations. */
  async exportSnapshotTo(principal: Principal, snapshotId: string, destinationId: string): Promise<OperationEntity> {
    requireRole(principal, 'ADMIN', 'exporting a snapshot to a destination');
    const snapshot = await this.snapshots.require(principal, snapshotId);
    if (snapshot.status !== 'COMPLETED') {
      throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} is ${snapshot.status}; only COMPLETED snapshots can be exported`);
    }
    const destination = await this.destinations.findOne({ where: { id: destinationId, tenantId: principal.tenantId } });
    if (!destination) throw notFound('export destination', destinationId);
    const operation = await this.db.transaction(async (manager) => {
      // Checked again as the operation goes in: the snapshot, its instance or the destination may be being deleted.
      await holdOperationInputs(manager, { sourceInstanceId: snapshot.instanceId, snapshotId: snapshot.id, destinationId });
      return this.enqueue(manager, snapshot, { destinationId, auto: false, retry: 0 });
    });
    this.announceWork();
    return operation;
  }

  /**
   * Run in the transaction that records a snapshot COMPLETED: its automatic exports are queued with it or not at all,
   * each to a destination held as it goes in (one deleted meanwhile gets none, and the snapshot completes).
   */
  async enqueueAutoExports(snapshot: SnapshotEntity, manager: EntityManager): Promise<void> {
    // In id order, as rows of one table are held everywhere: two completions never wait for each other in a cycle.
    const destinations = await manager.find(ExportDestinationEntity, { where: { tenantId: snapshot.tenantId }, order: { id: 'ASC' } });
    for (const destination of destinations) {
      if (!destination.autoExportInstanceIds.includes(snapshot.instanceId)) continue;
      if ((await held(holdOperationInputs(manager, { destinationId: destination.id }))) !== true) continue;
      await this.enqueue(manager, snapshot, { destinationId: destination.id, auto: true, retry: 0 });
    }
  }

  /**
   * Queues the next try of every failed automatic export whose backoff (retryBaseMs, doubling, at most 1 h) has
   * passed, while its destination and snapshot remain. The retry's id is derived from the failed operation's, so
   * replicas sweeping at once queue it once. Returns how many were queued.
   *
   * Every failed export of the horizon is looked at, a page at a time, oldest first: after an outage the day's first
   * failures (exports retried to the end, exports asked for by hand, which are never retried) can be many more than a
   * page, and a retry due after them must not wait until they age out of the horizon.
   */
  async retryFailedAutoExports(now = Date.now()): Promise<number> {
    let count = 0;
    let after: Pick<OperationEntity, 'id' | 'finishedAt'> | undefined;
    for (;;) {
      const where = { kind: 'EXPORT' as const, status: 'FAILED' as const };
      const page = await this.operations.find({
        select: { id: true, snapshotId: true, params: true, finishedAt: true, errorCode: true, errorMessage: true },
        where: after
          ? [
              { ...where, finishedAt: MoreThan(after.finishedAt!) },
              { ...where, finishedAt: Equal(after.finishedAt!), id: MoreThan(after.id) },
            ]
          : { ...where, finishedAt: MoreThan(now - RETRY_HORIZON_MS) },
        order: { finishedAt: 'ASC', id: 'ASC' },
        take: RETRY_PAGE,
      });
      count += await this.retryDue(page, now);
      if (page.length < RETRY_PAGE) break;
      after = page[page.length - 1];
    }
    if (count > 0) this.announceWork();
    return count;
  }

  /** Queues the retries due among these failed exports, once each; returns how many were queued. */
  private async retryDue(failed: OperationEntity[], now: number): Promise<number> {
    const due = failed.filter((operation) => {
      const params = operation.params as ExportParams | null;
      return (
        params?.auto === true && !params.notRetried && params.retry < MAX_EXPORT_RETRIES && operation.finishedAt! + this.retryDelay(params.retry) <= now
      );
    });
    if (due.length === 0) return 0;
    const queued = new Set((await this.operations.find({ select: { id: true }, where: { id: In(due.map((op) => retryIdOf(op.id))) } })).map((op) => op.id));
    let count = 0;
    for (const operation of due.filter((op) => !queued.has(retryIdOf(op.id)))) {
      const params = operation.params as unknown as ExportParams;
      const snapshot = operation.snapshotId ? await this.snapshots.byId(operation.snapshotId) : null;
      const destination = await this.destinations.findOneBy({ id: params.destinationId });
      if (!destination) continue;
      if (!snapshot || snapshot.status !== 'COMPLETED') {
        await this.giveUp(operation, destination.id, snapshot ? `is ${snapshot.status}` : 'expired (or was deleted)');
        continue;
      }
      try {
        // Held as the retry goes in, as for any export (in the one order every writer takes them: instance, snapshot,
        // destination): what was read above may be being deleted. A destination gone has nobody to tell; a snapshot
        // gone (or no longer COMPLETED), its tenant is told; an instance being deleted may yet be given back (a
        // deletion refused for an operation on it): the next sweep looks again.
        const inputs = { sourceInstanceId: snapshot.instanceId, snapshotId: snapshot.id, destinationId: destination.id };
        const outcome = await this.db.transaction(async (manager) => {
          const hold = await held(holdOperationInputs(manager, inputs));
          if (hold === true) await this.enqueue(manager, snapshot, { ...params, write: undefined, retry: params.retry + 1 }, retryIdOf(operation.id));
          return hold;
        });
        if (outcome === true) count += 1;
        else if (outcome.code === 'SNAPSHOT_NOT_READY') await this.giveUp(operation, destination.id, `could no longer be read (${outcome.message})`);
        else if (outcome.code === 'NOT_FOUND' && (await this.destinations.existsBy({ id: destination.id }))) {
          await this.giveUp(operation, destination.id, 'expired (or was deleted)');
        }
      } catch (error) {
        // Another replica queued this retry first.
        if (!(isAppError(error) && error.code === 'CONFLICT')) throw error;
      }
    }
    return count;
  }

  /**
   * A failed automatic export whose snapshot went (retention expired it, or it was deleted; or it can no longer be
   * exported) before its retry was due:
   * it is not retried, and the tenant is told, in the destination's lastError and in the operation's message, that
   * this snapshot was never copied. Once: the operation's message is replaced only if it is still the one read, so
   * replicas sweeping at once (or the next sweep) record it once, and never over a later export's outcome again.
   */
  private async giveUp(operation: OperationEntity, destinationId: string, state: string): Promise<void> {
    const params = operation.params as unknown as ExportParams;
    const why = `snapshot ${operation.snapshotId} ${state} before its failed export could be retried: it was not copied`;
    const failure = `${operation.errorCode ?? 'FAILED'}: ${operation.errorMessage ?? ''}`;
    await this.db.transaction(async (manager) => {
      const { affected } = await manager.update(
        OperationEntity,
        { id: operation.id, status: 'FAILED', errorMessage: operation.errorMessage === null ? IsNull() : Equal(operation.errorMessage) },
        { errorMessage: `${why} (${failure})`.slice(0, 1000), params: { ...params, notRetried: why } },
      );
      if (affected) await manager.update(ExportDestinationEntity, { id: destinationId }, { lastError: `${why} (${failure})`.slice(0, 1000) });
    });
  }

  retryDelay(retry: number): number {
    return Math.min(MAX_RETRY_DELAY_MS, this.options.retryBaseMs * 2 ** retry);
  }

  byId(id: string): Promise<ExportDestinationEntity | null> {
    return this.destinations.findOneBy({ id });
  }

  /** The destination's bucket, with its unsealed keys (they live in the client only). */
  async openBucket(
    destination: ExportDestinationEntity,
    options?: { maxAttempts?: number; idleTimeoutMs?: number },
    credentials: Credentials = this.unseal(destination),
  ): Promise<{ bucket: S3BlobStore; scrub: (message: string) => string }> {
    // The AWS SDK is loaded when a destination is first used, not at every boot.
    const [{ createS3Client }, { S3BlobStore }] = await Promise.all([import('../storage/s3-client.js'), import('../storage/s3-blob-store.js')]);
    const publicOnly = !this.options.allowPrivateAddresses;
    // Registered before the operator refused private addresses, perhaps: an IP literal never reaches the lookup.
    if (publicOnly && destination.endpoint) {
      try {
        assertPublicEndpoint(destination.endpoint);
      } catch (error) {
        throw new AppError('DESTINATION_UNAVAILABLE', (error as Error).message);
      }
    }
    const client = createS3Client(
      { endpoint: destination.endpoint ?? undefined, region: destination.region ?? undefined, credentials },
      { ...options, publicOnly, maxAnswerBytes: MAX_ANSWER_BYTES, settingsOnly: true },
    );
    return { bucket: new S3BlobStore(client, parseS3Url(destination.url)), scrub: (message) => scrubSecrets(message, credentials) };
  }

  /** With the EXPORT operation's SUCCEEDED. */
  async recordExport(manager: EntityManager, destinationId: string, at: number): Promise<void> {
    await manager.update(ExportDestinationEntity, { id: destinationId }, { lastExportAt: at, lastError: null });
  }

  async recordFailure(destinationId: string, message: string): Promise<void> {
    await this.destinations.update({ id: destinationId }, { lastError: message.slice(0, 1000) });
  }

  private enqueue(manager: EntityManager, snapshot: SnapshotEntity, params: ExportParams, id?: string): Promise<OperationEntity> {
    return insertOperation(manager, {
      id,
      tenantId: snapshot.tenantId,
      instanceId: snapshot.instanceId,
      kind: 'EXPORT',
      snapshotId: snapshot.id,
      params: { ...params },
      bytesTotal: snapshot.sizeBytes,
    });
  }

  private async checkInstances(principal: Principal, ids: string[]): Promise<string[]> {
    const unique = [...new Set(ids)];
    if (unique.length > 100) throw badInput('autoExportInstanceIds may name at most 100 instances');
    for (const id of unique) await this.instances.require(principal, id);
    return unique;
  }

  /**
   * Writes and deletes a small object where exports will go: wrong keys, bucket or endpoint show here, not later. The
   * write is stopped after PROBE_MS (an endpoint trickling its answer held the request open); a probe object that could
   * not be deleted is named in the refusal, so that whoever reads it can remove it.
   */
  private async probe(destination: ExportDestinationEntity, credentials: Credentials): Promise<void> {
    const { bucket, scrub } = await this.openBucket(destination, { maxAttempts: 2, idleTimeoutMs: 15_000 }, credentials);
    const key = `snapgraph-probe-${randomUUID()}`;
    try {
      const probe = Readable.from([Buffer.from('Snapgraph checks that it may write here; this object is deleted at once.\n')]);
      const deleted = () => bucket.delete(key, { signal: AbortSignal.timeout(PROBE_MS) }).then(() => null, (error: unknown) => scrub(describeS3Error(error)));
      const written = await bucket.write(key, probe, { signal: AbortSignal.timeout(PROBE_MS) }).then(() => null, (error: unknown) => error);
      if (written) {
        // Stopped after the service stored it, perhaps (a deadline): it is deleted all the same, or named.
        const left = (await deleted()) === null ? '' : `; if it was stored, the object ${key} is left under its prefix`;
        throw badInput(`the destination ${destination.url} did not accept a probe object: ${scrub(describeS3Error(written))}${left}`);
      }
      const notDeleted = await deleted();
      if (notDeleted !== null) {
        throw badInput(
          `the destination ${destination.url} accepted a probe object but did not let it be deleted (the keys need s3:DeleteObject): ` +
            `${notDeleted}; the object ${key} is left under its prefix`,
        );
      }
    } finally {
      await bucket.destroy();
    }
  }

  private seal(destination: ExportDestinationEntity, credentials: Credentials): Pick<ExportDestinationEntity, 'masterKeyId' | 'sealedCredentials'> {
    return sealCredentials(destination, credentials, this.keyring);
  }

  private unseal(destination: ExportDestinationEntity): Credentials {
    const opened = this.keyring
      .get(destination.masterKeyId)
      .unseal(Buffer.from(destination.sealedCredentials, 'base64'), credentialsAad(destination.tenantId, destination.id));
    if (!opened) throw new AppError('INTERNAL_SERVER_ERROR', `the keys of export destination ${destination.id} do not decrypt`);
    return JSON.parse(opened.toString('utf8')) as Credentials;
  }
}

/**
 * Runs EXPORT: streams the snapshot's archive (the bytes its download serves) to `<prefix>/<fileName>` with its
 * sha256 in the object's metadata. The object appears whole or not at all, so a stopped export leaves nothing; it
 * appears only past the point of no return, so a cancel either comes first (nothing appears) or is refused.
 */
export class ExportOperationHandler implements OperationHandler {
  readonly kind = 'EXPORT' as const;

  constructor(
    private readonly destinations: ExportDestinationService,
    private readonly snapshots: SnapshotService,
    private readonly instances: InstanceService,
    private readonly log: Logger,
  ) {}

  async run(operation: OperationEntity, context: JobContext): Promise<OperationResult> {
    const params = operation.params as ExportParams | null;
    const destination = params ? await this.destinations.byId(params.destinationId) : null;
    if (!destination || destination.tenantId !== operation.tenantId) throw new AppError('NOT_FOUND', 'the export destination no longer exists');
    const found = operation.snapshotId ? await this.snapshots.byId(operation.snapshotId) : null;
    if (!found || found.status !== 'COMPLETED') throw new AppError('NOT_FOUND', `snapshot ${operation.snapshotId} no longer exists`);
    context.progress({ phase: 'uploading', bytesDone: 0 });
    const snapshot = await this.snapshots.prepareExport(found, context.signal);
    context.progress({ bytesTotal: snapshot.sizeBytes });
    const { bucket, scrub } = await this.destinations.openBucket(destination);
    try {
      const fileName = await this.objectNameOf(snapshot, (name) =>
        bucket.metadata(name, { signal: context.signal }).catch((error: unknown) => {
          context.signal.throwIfAborted();
          // Keys that may only write (docs/s3.md asks for no s3:GetObject): S3 answers 403 whether the object is there
          // or not. Not known, then: the write says whether the keys may write.
          if (s3Status(error) === 403) return undefined;
          throw new AppError('DESTINATION_UNAVAILABLE', `reading ${destination.url} failed: ${scrub(describeS3Error(error))}`);
        }),
      );
      const started = (uploadId: string) =>
        context.saveParams({ ...params!, write: { fileName, uploadId } } satisfies ExportParams).catch((error: unknown) => {
          throw new RecordingFailed(error);
        });
      await this.copy(snapshot, fileName, bucket, context, started).catch((error) => {
        context.signal.throwIfAborted();
        // Recording the upload failed (the database, a lost lease), or the archive could not be read (this server's
        // disk or bucket): not the destination's fault, nor its tenant's news.
        if (error instanceof RecordingFailed || error instanceof ArchiveReadFailed) throw error.cause;
        if (isAppError(error)) throw error;
        throw new AppError('DESTINATION_UNAVAILABLE', `copying to ${destination.url} failed: ${scrub(describeS3Error(error))}`);
      });
    } finally {
      await bucket.destroy();
    }
    const exportedAt = Date.now();
    return { commit: (manager) => this.destinations.recordExport(manager, destination.id, exportedAt) };
  }

  /**
   * The object's name: the snapshot's download fileName, unless another snapshot's copy has it or could have it, when
   * `<instance-name>-<stamp>-<snapshot id><extension>`. Names are the instance's name (made safe, so "prod db" and
   * "prod-db", or any two names in a script other than Latin, are one) and the second the snapshot began: snapshots
   * of several instances scheduled together, or two of one instance in a second, would otherwise overwrite each
   * other's copy in the tenant's bucket. Another snapshot of the tenant with the same fileName gives both the long name
   * (whichever is exported first: each exists before its export starts, so the later one always sees the other), and
   * so does an object already there holding other bytes (a deleted snapshot's copy, or the tenant's own file), and a
   * name whose object the keys may not look at (`metadataOf` answers undefined): what is there is not known.
   */
  private async objectNameOf(
    snapshot: SnapshotEntity,
    metadataOf: (name: string) => Promise<Record<string, string> | null | undefined>,
  ): Promise<string> {
    const extension = archiveExtension(snapshot.engineVersion);
    const nameOf = async (of: Pick<SnapshotEntity, 'instanceId' | 'createdAt'>) =>
      exportFileName((await this.instances.reload(of.instanceId))?.name ?? of.instanceId, of.createdAt, extension, 'ascii');
    const fileName = await nameOf(snapshot);
    const unique = fileName.slice(0, -extension.length) + `-${snapshot.id}${extension}`;
    for (const other of await this.snapshots.takenInSameSecond(snapshot)) {
      if (archiveExtension(other.engineVersion) === extension && (await nameOf(other)) === fileName) return unique;
    }
    const there = await metadataOf(fileName);
    if (there === undefined) return unique;
    return there === null || there.sha256 === snapshot.sha256 ? fileName : unique;
  }

  /**
   * Streams the archive into the bucket, counting progress and hashing what was sent; stops when the signal aborts.
   * Once every byte is sent, and before the object becomes visible, the bytes are checked against the snapshot's
   * sha256 and the operation enters its point of no return: a cancel that came first (even during the last part)
   * leaves nothing in the bucket, and once the object can appear nobody can cancel an export that has happened.
   */
  private async copy(
    snapshot: SnapshotEntity,
    fileName: string,
    bucket: S3BlobStore,
    context: JobContext,
    onMultipartStarted: (uploadId: string) => Promise<void>,
  ): Promise<void> {
    const hash = createHash('sha256');
    let bytesDone = 0;
    const counting = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        bytesDone += chunk.length;
        context.progress({ bytesDone });
        callback(null, chunk);
      },
    });
    const archive = await this.snapshots.openArchive(snapshot).catch((error: unknown) => {
      throw new ArchiveReadFailed(error);
    });
    // A failure of the archive's read: the write fails with it (its parts read from `source`), and so does the export.
    let readFailure: { error: unknown } | undefined;
    archive.once('error', (error) => (readFailure ??= { error }));
    // In a pipeline before the signal can destroy it: a Transform destroyed on its own emits an 'error' nobody hears.
    const source = pipeline(archive, counting, () => undefined);
    const stop = () => source.destroy(context.signal.reason as Error);
    if (context.signal.aborted) stop();
    context.signal.addEventListener('abort', stop, { once: true });
    const beforeCommit = async () => {
      const sha256 = hash.digest('hex');
      if (sha256 !== snapshot.sha256) {
        throw new AppError('INTERNAL_SERVER_ERROR', `the archive read back with sha256 ${sha256}, not the snapshot's ${snapshot.sha256}; nothing was copied`);
      }
      await context.enterPointOfNoReturn();
    };
    try {
      const metadata = { sha256: snapshot.sha256!, 'snapshot-id': snapshot.id };
      await bucket.write(fileName, source, { metadata, onMultipartStarted, beforeCommit, signal: context.signal });
    } catch (error) {
      if (readFailure && error === readFailure.error) throw new ArchiveReadFailed(error);
      throw error;
    } finally {
      context.signal.removeEventListener('abort', stop);
    }
  }

  /**
   * The object is whole or absent, but an attempt that died mid-write (its process killed) left its multipart upload in
   * the tenant's bucket, invisible and billed: it is aborted (a write that failed in a living process aborted its own,
   * and the abort then finds nothing). In the background, briefly: compensation (at boot, in a cancel request) never
   * waits on a tenant's endpoint. A final failure is what lastError shows.
   */
  async compensate(operation: OperationEntity, why: Compensation): Promise<void> {
    const params = operation.params as ExportParams | null;
    if (!params) return;
    if (params.write) {
      const write = params.write;
      void this.abortWrite(params.destinationId, write).catch((error: unknown) =>
        this.log.warn({ err: error, operationId: operation.id, uploadId: write.uploadId }, 'could not abort the multipart upload an interrupted export left'),
      );
    }
    if (why.retry || why.code === 'CANCELLED') return;
    await this.destinations.recordFailure(params.destinationId, `${why.code}: ${why.message}`);
  }

  private async abortWrite(destinationId: string, { fileName, uploadId }: NonNullable<ExportParams['write']>): Promise<void> {
    const destination = await this.destinations.byId(destinationId);
    if (!destination) return;
    const { bucket, scrub } = await this.destinations.openBucket(destination, { maxAttempts: 2, idleTimeoutMs: 15_000 });
    try {
      await bucket.abortWrite(fileName, uploadId);
    } catch (error) {
      // Logged: in a few words, never the SDK's error itself, which carries every field of the service's answer (an
      // InvalidAccessKeyId or SignatureDoesNotMatch repeats the tenant's access key id).
      throw new Error(scrub(describeS3Error(error)));
    } finally {
      await bucket.destroy();
    }
  }
}

/** An export's upload could not be recorded: the operation fails with that error, as the runner sees it. */
class RecordingFailed extends Error {
  constructor(override readonly cause: unknown) {
    super('could not record the multipart upload', { cause });
  }
}

/** The snapshot's archive could not be read here (this server's storage): the export fails with that error. */
class ArchiveReadFailed extends Error {
  constructor(override readonly cause: unknown) {
    super('could not read the archive', { cause });
  }
}

/**
 * Whether holdOperationInputs held what it was given: true, or its refusal (NOT_FOUND: a row is gone; CONFLICT: an
 * instance is being deleted; SNAPSHOT_NOT_READY).
 */
function held(holding: Promise<void>): Promise<true | AppError> {
  return holding.then(
    () => true as const,
    (error: unknown) => {
      if (!isAppError(error) || !['NOT_FOUND', 'CONFLICT', 'SNAPSHOT_NOT_READY'].includes(error.code)) throw error;
      return error;
    },
  );
}

/** The id of the retry of a failed export: the same for every replica that queues it. */
function retryIdOf(operationId: string): string {
  const hex = createHash('sha256').update(`export retry\0${operationId}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Removes the keys from a message, should a service ever echo them. */
function scrubSecrets(message: string, { accessKeyId, secretAccessKey }: Credentials): string {
  return message.split(secretAccessKey).join('***').split(accessKeyId).join('***');
}

function checked<T>(field: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw badInput(`${field} ${(error as Error).message}`);
  }
}

function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > 100) throw badInput('name must be 1 to 100 characters');
  return trimmed;
}

/**
 * What the row holds at most (export_destinations.url is a varchar(600), endpoint a varchar(500)): PostgreSQL refuses
 * a longer one, after the probe, as an internal error; SQLite would keep it. The prefix is checked name by name only.
 */
const MAX_URL_LENGTH = 600;
const MAX_ENDPOINT_LENGTH = 500;

function atMost(length: number, text: string): string {
  if (text.length > length) throw new Error(`must be at most ${length} characters`);
  return text;
}

function checkEndpoint(text: string | null | undefined, allowPrivateAddresses: boolean): string | null {
  if (!text?.trim()) return null;
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new Error('is not a URL');
  }
  if (!['http:', 'https:'].includes(url.protocol) || url.username || url.password || url.search || url.hash) {
    throw new Error('must be an http(s) URL without credentials, query or fragment');
  }
  const endpoint = atMost(MAX_ENDPOINT_LENGTH, url.toString().replace(/\/+$/, ''));
  if (!allowPrivateAddresses) assertPublicEndpoint(url.toString());
  return endpoint;
}

function checkRegion(text: string | null | undefined): string | null {
  if (!text?.trim()) return null;
  if (!/^[a-z0-9-]{1,64}$/.test(text.trim())) throw new Error('must be lowercase letters, digits and dashes (e.g. eu-west-1)');
  return text.trim();
}

/** Presence and length only: whether they work is what the probe finds out. Never echoed in a message. */
function checkCredentials(input: ExportDestinationInput): Credentials {
  for (const field of ['accessKeyId', 'secretAccessKey'] as const) {
    const value = input[field];
    if (typeof value !== 'string' || value.length < 1 || value.length > 256 || /\s/.test(value)) {
      throw badInput(`${field} must be 1 to 256 characters without whitespace`);
    }
  }
  return { accessKeyId: input.accessKeyId, secretAccessKey: input.secretAccessKey };
}
