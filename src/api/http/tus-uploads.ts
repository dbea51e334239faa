// /uploads: a resumable upload endpoint (the tus 1.0 protocol, through @tus/server) for restore files of any size,
// beyond the GraphQL upload limit. `snapgraph restore-file` is its client.
//
// Every request needs `Authorization: Bearer <key>` of an ADMIN key. Creation metadata names the restore
// (`instanceId`, `confirm` = RESTORE, `filename`), which is checked before anything is stored. An upload belongs to
// the tenant that created it: other tenants get 404. Its bytes are checked and stored encrypted (UploadService's
// receiveFile) as they arrive when every one of them arrives on this replica (upload-receivers.ts); otherwise the
// partial file is read back through the same check when the last byte is in. Then the restore is queued (queueRestore,
// which looks at the instance again), the partial file deleted, and the response carries the operation id in the
// `Snapgraph-Operation-Id` header, whether that is a PATCH or the creating POST itself (creation-with-upload).
// X-HTTP-Method-Override is honoured on POST. Every refusal, tus's own protocol answers included, carries a
// GraphQL-style JSON body ({"errors":[{"message","extensions":{"code"}}]}) with a matching status.
//
// Partial uploads are plain archive bytes, so they live OUTSIDE the data dir: SNAPGRAPH_UPLOAD_DIR, by default
// <os tmpdir>/snapgraph-uploads-<hash of the data dir>, a 0700 directory. Uploads left unfinished for 24 h expire.
// Replicas that share the data dir share that directory too (on one host the default is the same for all of them), and
// which uploads are complete (upload-completions.ts): an upload started on one replica resumes on any other.
import { createHash } from 'node:crypto';
import { rmdirSync } from 'node:fs';
import { chmod, lstat, mkdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { pipeline, type Readable, Transform } from 'node:stream';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { FileStore } from '@tus/file-store' with { 'resolution-mode': 'import' };
import type { Server, Upload } from '@tus/server' with { 'resolution-mode': 'import' };
import type { Request, RequestHandler, Response } from 'express';
import { GraphQLError } from 'graphql';
import type { App } from '../../app';
import { type AppConfig, ConfigError } from '../../config/app-config';
import { isAppError, unauthenticated } from '../../errors/app-error';
import { asStorageFull } from '../../errors/storage-full';
import type { Logger } from '../../logging/logger';
import { type Principal, requireRole } from '../../services/principal';
import type { Services } from '../../services/services';
import type { ReceivedFile } from '../../services/upload.service';
import { type ErrorExposure, formatError } from '../format-error';
import { errorBody, JSON_CONTENT_TYPE } from './error-body';
import { type Completion, UploadCompletions } from './upload-completions';
import { OPERATION_ID_HEADER, UPLOADS_PATH } from './upload-endpoint';
import { UploadReceivers } from './upload-receivers';

export const UPLOAD_EXPIRY_MS = 24 * 3600_000;
const SWEEP_INTERVAL_MS = 3600_000;
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

/** Where partial uploads are kept: SNAPGRAPH_UPLOAD_DIR, or a per-data-dir folder in the OS temp dir. */
export function uploadDirectory(config: Pick<AppConfig, 'dataDir' | 'uploadDir'>): string {
  const dir =
    config.uploadDir ??
    join(tmpdir(), `snapgraph-uploads-${createHash('sha256').update(config.dataDir).digest('hex').slice(0, 16)}`);
  const inside = relative(config.dataDir, dir);
  if (inside === '' || (!inside.startsWith('..') && !isAbsolute(inside))) {
    throw new ConfigError([
      `SNAPGRAPH_UPLOAD_DIR: ${dir} is inside SNAPGRAPH_DATA_DIR; partial uploads are unencrypted and must be kept elsewhere`,
    ]);
  }
  return dir;
}

/** The express handler to mount at UPLOADS_PATH. Starts the hourly sweep of expired partial uploads. */
export async function createTusUploads({ config, logger, services }: Pick<App, 'config' | 'logger' | 'services'>): Promise<RequestHandler> {
  const directory = uploadDirectory(config);
  await preparePrivateDirectory(directory);
  // Both packages are ESM-only.
  const { Server: TusServer } = await import('@tus/server');
  const { FileStore } = await import('@tus/file-store');
  const receivers = new UploadReceivers<ReceivedFile>({
    discard: (received) => services.uploads.discard(received),
    // Once the last byte is in, what is left of the check is bounded (what is in flight to it, and the blob's fsync).
    finishTimeoutMs: config.idleTimeoutMs,
  });
  /** The partial file, and each write's bytes also to the upload's receiver (upload-receivers.ts). */
  class ReceivingFileStore extends FileStore {
    override async write(body: Readable, id: string, offset: number): Promise<number> {
      const receiving = receivers.receive(id, offset, body);
      const end = await super.write(receiving.body, id, offset).catch((error: unknown) => {
        receiving.settle(null);
        throw error;
      });
      receiving.settle(end);
      return end;
    }

    /** A terminated or expired upload: its receiver goes with it. */
    override async remove(id: string): Promise<void> {
      receivers.abandon(id);
      return super.remove(id);
    }
  }
  const datastore = new ReceivingFileStore({ directory, expirationPeriodInMilliseconds: UPLOAD_EXPIRY_MS });
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

  const tus: Server = new TusServer({
    path: UPLOADS_PATH,
    datastore,
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
      } catch (error) {
        throw refusal(error, { debugErrors: config.debugErrors });
      }
      logger.info({ uploadId: upload.id, instanceId, filename, sizeBytes: upload.size }, 'restore upload created');
      receivers.expect(upload.id, (input) => services.uploads.receiveFile(principal, instanceId, input, confirm ?? ''));
      return { metadata: { instanceId, confirm: confirm ?? '', filename: filename ?? null, tenantId: principal.tenantId } };
    },

    /** The last byte arrived: verify and store the file, queue the restore, delete the plain copy. */
    onUploadFinish: async (req, upload) => {
      const principal = principalOf(req);
      const nodeReq = req.runtime?.node?.req;
      const removePlainCopy = () => datastore.remove(upload.id).catch(() => undefined);
      // Received as it came: only ending the check is left, and queueing the restore (looked at again, for this
      // request's key). Else the file is read back and checked now.
      let checked: 'as received' | 'read back' = 'as received';
      const restore = async () => {
        const received = await receivers.finish(upload.id, upload.size ?? upload.offset);
        if (received !== null) {
          const { instanceId, confirm } = upload.metadata ?? {};
          return (await services.uploads.queueRestore(principal, instanceId ?? '', confirm ?? '', received)).id;
        }
        checked = 'read back';
        return restoreFromUpload(services, datastore, principal, upload, config.idleTimeoutMs);
      };
      const verified = withoutIdleTimeout(nodeReq?.socket, () => completions.run(upload.id, principal.tenantId, upload.size ?? upload.offset, restore));
      // Finished without this replica's receiver (another replica verifies it, or already has): it goes.
      verified.finally(() => receivers.abandon(upload.id)).catch(() => undefined);
      const operationId = await verified.catch(async (error) => {
        if (isAppError(error)) logger.info({ uploadId: upload.id, code: error.code }, 'restore upload refused');
        else logger.error({ err: error, uploadId: upload.id }, 'restore upload failed');
        await removePlainCopy();
        throw refusal(error, { debugErrors: config.debugErrors });
      });
      // Verified and stored encrypted: the plain copy goes once the answer is sent.
      if (nodeReq) afterResponse.set(nodeReq, [...(afterResponse.get(nodeReq) ?? []), removePlainCopy]);
      else await removePlainCopy();
      logger.info({ uploadId: upload.id, operationId, sizeBytes: upload.size, checked }, 'restore upload received');
      return { headers: { [OPERATION_ID_HEADER]: operationId } };
    },

    onResponseError: (_req, error) => {
      if ('status_code' in error) return undefined; // a tus protocol answer or one of ours
      logger.error({ err: error }, 'upload request failed');
      // What fails here is storing the partial upload itself; the client resumes once space returns.
      return refusal(asStorageFull(error, 'uploads') ?? error, { debugErrors: config.debugErrors });
    },
  });
  answerRefusalsAsJson(tus);

  await sweepAtBoot(tus, datastore, completions, logger);
  const sweep = setInterval(() => {
    Promise.all([tus.cleanUpExpiredUploads(), completions.sweep()]).then(
      ([removed]) => removed > 0 && logger.info({ removed }, 'removed expired partial uploads'),
      (error) => logger.error({ err: error }, 'could not remove expired partial uploads'),
    );
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return async (req: Request, res: Response) => {
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
        const completed = id ? await completions.find(id, principal.tenantId) : undefined;
        if (completed && (req.method === 'HEAD' || req.method === 'PATCH')) {
          return void (await withoutIdleTimeout(req.socket, () => answerCompleted(req, res, completed)));
        }
      }
      req.url = req.originalUrl; // @tus/server routes on the full path
      await tus.handle(req, res);
    } catch (error) {
      logger.error({ err: error }, 'upload request failed');
      if (!res.headersSent) sendRefusal(res, refusal(error, { debugErrors: config.debugErrors }));
      else res.destroy();
    } finally {
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
 * @tus/server answers protocol errors itself, as text/plain (and sends our JSON refusals as text/plain too). Every
 * refusal leaves here as the one JSON shape of every endpoint, with Content-Type application/json; an unsupported
 * or missing Tus-Resumable is 412 with the version this server speaks (tus 1.0: "Tus-Version").
 */
function answerRefusalsAsJson(tus: Server): void {
  // `handler` (web Request in, web Response out) is what handle() calls; it is private in the typings only.
  const server = tus as unknown as { handler(req: globalThis.Request): Promise<globalThis.Response> };
  const answer = server.handler.bind(tus);
  server.handler = async (req) => {
    const response = await answer(req);
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
  };
}

/** tus's status for a protocol error, corrected where the tus 1.0 protocol says otherwise. */
function protocolStatus(req: globalThis.Request, status: number, text: string): number {
  const version = req.headers.get('tus-resumable');
  if (req.method !== 'OPTIONS' && req.method !== 'GET' && version !== TUS_VERSION) return 412; // @tus/server says 400
  if (/content-type/i.test(text)) return 415; // @tus/server says 400 or 403
  if (status === 403) return 400; // @tus/server's 403s are malformed requests, not a lack of permission
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
type HookRequest = { runtime?: { node?: { req?: { socket?: Socket } } } };

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
 * Verifies and stores the file, and queues its restore. The client's idle timeout is paused meanwhile, so this one
 * bounds the work instead: reading the file from local disk, storing and recording it must make progress at least
 * every `stallTimeoutMs`, else the upload fails (and its file descriptor is closed) rather than waiting forever.
 */
async function restoreFromUpload(
  services: Services,
  datastore: FileStore,
  principal: Principal,
  upload: Upload,
  stallTimeoutMs: number,
): Promise<string> {
  const { instanceId, confirm } = upload.metadata ?? {};
  let timer: NodeJS.Timeout | undefined;
  let onStall: (error: Error) => void = () => undefined;
  const stalled = new Promise<never>((_, reject) => (onStall = reject));
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const error = new Error(`verifying the upload made no progress for ${stallTimeoutMs} ms`);
      file.destroy(error);
      onStall(error);
    }, stallTimeoutMs);
  };
  const file = new Transform({
    transform(chunk, _encoding, done) {
      arm();
      done(null, chunk);
    },
  });
  // pipeline closes the file (its descriptor) whichever side ends first.
  pipeline(datastore.read(upload.id), file, () => undefined);
  arm();
  try {
    const operation = await Promise.race([services.uploads.restoreFromFile(principal, instanceId ?? '', file, confirm ?? ''), stalled]);
    return operation.id;
  } finally {
    clearTimeout(timer);
    file.destroy();
  }
}

/** HEAD or PATCH on a completed upload: the whole file is here; answer (after verification) with the operation. */
async function answerCompleted(req: Request, res: Response, completed: Completion): Promise<void> {
  req.resume(); // a repeated final PATCH carries no new bytes
  let operationId: string;
  try {
    operationId = await completed.operationId;
  } catch {
    return void sendRefusal(res, notFoundRefusal()); // refused and deleted: the client starts over and hears why
  }
  res
    .status(req.method === 'HEAD' ? 200 : 204)
    .set({
      'Tus-Resumable': TUS_VERSION,
      'Upload-Offset': String(completed.sizeBytes),
      'Upload-Length': String(completed.sizeBytes),
      'Cache-Control': 'no-store',
      [OPERATION_ID_HEADER]: operationId,
    })
    .end();
}

/**
 * At boot nothing of this process is in flight: complete uploads whose restore never started (the server stopped) go,
 * unless another replica is verifying them now, then expired ones.
 */
async function sweepAtBoot(tus: Server, datastore: FileStore, completions: UploadCompletions, logger: Logger): Promise<void> {
  let removed = 0;
  for (const id of (await datastore.configstore.list?.()) ?? []) {
    const upload = await datastore.getUpload(id).catch(() => null);
    if (upload && upload.size !== undefined && upload.offset === upload.size && !(await completions.inProgress(id))) {
      await datastore.remove(id).catch(() => undefined);
      removed += 1;
    }
  }
  removed += await tus.cleanUpExpiredUploads();
  if (removed > 0) logger.info({ removed }, 'removed stale partial uploads');
}

async function preparePrivateDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Leave no empty folder in the temp dir; one holding partial uploads stays for their resumption after a restart.
  process.once('exit', () => {
    try {
      rmdirSync(dir);
    } catch {
      // not empty, or already gone
    }
  });
  const stats = await lstat(dir);
  // A predictable name in a shared temp dir: refuse one that someone else made (or a symlink to elsewhere).
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
