// /uploads: a resumable upload endpoint (the tus 1.0 protocol, through @tus/server) for restore files of any size,
// beyond the GraphQL upload limit. `snapgraph restore-file` is its client.
//
// Every request needs `Authorization: Bearer <key>` of an ADMIN key. Creation metadata names the restore
// (`instanceId`, `confirm` = RESTORE, `filename`), which is checked before anything is stored. An upload belongs to
// the tenant that created it: other tenants get 404. When the last byte arrives, the file is streamed through
// UploadService.restoreFromFile (verified, stored encrypted, restore queued) and deleted; the response carries the
// operation id in the `Snapgraph-Operation-Id` header. Refusals carry a GraphQL-style JSON body
// ({"errors":[{"message","extensions":{"code"}}]}) with a matching HTTP status.
//
// Partial uploads are plain archive bytes, so they live OUTSIDE the data dir: SNAPGRAPH_UPLOAD_DIR, by default
// <os tmpdir>/snapgraph-uploads-<hash of the data dir>, a 0700 directory. Uploads left unfinished for 24 h expire.
import { createHash } from 'node:crypto';
import { rmdirSync } from 'node:fs';
import { chmod, lstat, mkdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
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
import { formatError } from '../format-error';

export const UPLOADS_PATH = '/uploads';
export const OPERATION_ID_HEADER = 'Snapgraph-Operation-Id';
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
  const datastore = new FileStore({ directory, expirationPeriodInMilliseconds: UPLOAD_EXPIRY_MS });
  // Keyed by the node request, which @tus/server exposes to its hooks as req.runtime.node.req.
  const principals = new WeakMap<object, Principal>();
  const completions = new Completions();
  const principalOf = (req: HookRequest): Principal => {
    const principal = req.runtime?.node?.req && principals.get(req.runtime.node.req);
    if (!principal) throw refusal(unauthenticated(), config.production); // unreachable: the front handler authenticated
    return principal;
  };

  const tus: Server = new TusServer({
    path: UPLOADS_PATH,
    datastore,
    relativeLocation: true, // resolved by clients against the URL they used (works behind proxies)
    exposedHeaders: [OPERATION_ID_HEADER],
    disableTerminationForFinishedUploads: true,

    /** Every request on an existing upload: only the creating tenant sees it (404 for everyone else). */
    onIncomingRequest: async (req, id) => {
      const principal = principalOf(req);
      try {
        requireRole(principal, 'ADMIN', 'uploading a file to restore');
      } catch (error) {
        throw refusal(error, config.production);
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
        throw refusal(error, config.production);
      }
      logger.info({ uploadId: upload.id, instanceId, filename, sizeBytes: upload.size }, 'restore upload created');
      return { metadata: { instanceId, confirm: confirm ?? '', filename: filename ?? null, tenantId: principal.tenantId } };
    },

    /** The last byte arrived: verify and store the file, queue the restore, delete the plain copy. */
    onUploadFinish: async (req, upload) => {
      const principal = principalOf(req);
      const restore = () => restoreFromUpload(services, datastore, principal, upload);
      const verified = withoutIdleTimeout(req.runtime?.node?.req?.socket, () => completions.run(upload, principal.tenantId, restore));
      const operationId = await verified.catch((error) => {
        if (isAppError(error)) logger.info({ uploadId: upload.id, code: error.code }, 'restore upload refused');
        else logger.error({ err: error, uploadId: upload.id }, 'restore upload failed');
        throw refusal(error, config.production);
      });
      logger.info({ uploadId: upload.id, operationId, sizeBytes: upload.size }, 'restore upload received');
      return { headers: { [OPERATION_ID_HEADER]: operationId } };
    },

    onResponseError: (_req, error) => {
      if ('status_code' in error) return undefined; // a tus protocol answer or one of ours
      logger.error({ err: error }, 'upload request failed');
      // What fails here is storing the partial upload itself; the client resumes once space returns.
      return refusal(asStorageFull(error, 'uploads') ?? error, config.production);
    },
  });

  await sweepAtBoot(tus, datastore, logger);
  const sweep = setInterval(() => {
    tus.cleanUpExpiredUploads().then(
      (removed) => removed > 0 && logger.info({ removed }, 'removed expired partial uploads'),
      (error) => logger.error({ err: error }, 'could not remove expired partial uploads'),
    );
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return async (req: Request, res: Response) => {
    try {
      const id = uploadIdOf(req.path);
      if (id === null) return void sendRefusal(res, notFoundRefusal());
      if (req.method !== 'OPTIONS') {
        const secret = bearerSecret(req.headers.authorization);
        const principal = secret ? await services.tenants.authenticate(secret) : null;
        if (!principal) {
          res.setHeader('WWW-Authenticate', 'Bearer');
          return void sendRefusal(res, refusal(unauthenticated(), config.production));
        }
        principals.set(req, principal);
        const completed = id ? completions.find(id, principal.tenantId) : undefined;
        if (completed && (req.method === 'HEAD' || req.method === 'PATCH')) {
          return void (await withoutIdleTimeout(req.socket, () => answerCompleted(req, res, completed)));
        }
      }
      req.url = req.originalUrl; // @tus/server routes on the full path
      await tus.handle(req, res);
    } catch (error) {
      logger.error({ err: error }, 'upload request failed');
      if (!res.headersSent) sendRefusal(res, refusal(error, config.production));
      else res.destroy();
    }
  };
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

async function restoreFromUpload(services: Services, datastore: FileStore, principal: Principal, upload: Upload): Promise<string> {
  const { instanceId, confirm } = upload.metadata ?? {};
  try {
    const operation = await services.uploads.restoreFromFile(principal, instanceId ?? '', datastore.read(upload.id), confirm ?? '');
    return operation.id;
  } finally {
    // Verified and stored encrypted, or refused: either way the plain copy goes.
    await datastore.remove(upload.id).catch(() => undefined);
  }
}

interface Completion {
  tenantId: string;
  sizeBytes: number;
  at: number;
  operationId: Promise<string>;
}

/**
 * Uploads whose last byte arrived: a client that lost the final response (Ctrl-C while the server verified the file)
 * and resumes gets the same operation id instead of uploading the file again, and a repeated final PATCH never starts
 * a second restore. Kept in memory for UPLOAD_EXPIRY_MS; a refused file is forgotten at once.
 */
class Completions {
  private readonly byId = new Map<string, Completion>();

  run(upload: Upload, tenantId: string, restore: () => Promise<string>): Promise<string> {
    const now = Date.now();
    for (const [id, completion] of this.byId) if (now - completion.at > UPLOAD_EXPIRY_MS) this.byId.delete(id);
    const existing = this.byId.get(upload.id);
    if (existing) return existing.operationId;
    const operationId = restore();
    this.byId.set(upload.id, { tenantId, sizeBytes: upload.size ?? upload.offset, at: now, operationId });
    operationId.catch(() => this.byId.delete(upload.id));
    return operationId;
  }

  find(id: string, tenantId: string): Completion | undefined {
    const completion = this.byId.get(id);
    return completion?.tenantId === tenantId ? completion : undefined;
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

/** At boot nothing is in flight: complete uploads whose restore never started (the server stopped) go, then expired ones. */
async function sweepAtBoot(tus: Server, datastore: FileStore, logger: Logger): Promise<void> {
  let removed = 0;
  for (const id of (await datastore.configstore.list?.()) ?? []) {
    const upload = await datastore.getUpload(id).catch(() => null);
    if (upload && upload.size !== undefined && upload.offset === upload.size) {
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

const notFoundRefusal = (): TusRefusal => ({
  status_code: 404,
  body: errorBody('NOT_FOUND', 'no such upload (it finished, expired, or belongs to another tenant)'),
});

/** Any error as a tus answer: the contract's code in a GraphQL-style body, with a matching HTTP status. */
function refusal(error: unknown, production: boolean): TusRefusal {
  const graphQLError =
    error instanceof GraphQLError
      ? error
      : new GraphQLError(error instanceof Error ? error.message : String(error), { originalError: error as Error });
  const { message, extensions } = formatError(graphQLError.toJSON(), production, error);
  const code = String(extensions?.code);
  return { status_code: STATUS_OF_CODE[code] ?? 500, body: errorBody(code, message) };
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ message, extensions: { code } }] });
}

function sendRefusal(res: Response, { status_code, body }: TusRefusal): void {
  res
    .status(status_code)
    .set({ 'Tus-Resumable': TUS_VERSION, 'Cache-Control': 'no-store', 'Content-Type': 'application/json; charset=utf-8' })
    .send(body);
}
