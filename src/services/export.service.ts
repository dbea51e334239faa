// Export links: an unguessable, expiring URL that streams a snapshot's archive without other credentials.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { IsNull, LessThan, Not, type DataSource, type Repository } from 'typeorm';
import { archiveExtension } from '../archive';
import type { AppConfig } from '../config/app-config';
import { ExportTokenEntity } from '../entities/export-token.entity';
import type { SnapshotEntity } from '../entities/snapshot.entity';
import { AppError, type ErrorCode, isAppError } from '../errors/app-error';
import type { InstanceService } from './instance.service';
import { holdSnapshotForReading } from './operation-inputs';
import { type Principal, requireRole } from './principal';
import type { SnapshotService } from './snapshot.service';
import type { TenantService } from './tenant.service';
import type { BackupService } from './backup.service';
import type { GraphFileFormat, GraphFileKind } from '../graph-files/graph-file-format';
import { GRAPH_FILE_FORMATS, graphFileFormat } from '../graph-files/graph-file-formats';
import { TEMP_FILE_MARKER } from '../storage/blob-store';

export const EXPORT_PATH = '/exports';

export interface ExportLink {
  url: string;
  fileName: string;
  expiresAt: number;
  sizeBytes: number;
  sha256: string;
}

export type ExportFormat = 'ARCHIVE' | GraphFileKind;

export interface Download {
  snapshot: SnapshotEntity;
  /** The key that created the link (null: one made without a key): its revocation ends a download under way. */
  apiKeyId: string | null;
  fileName: string;
  contentType: string;
  sizeBytes: number;
  sha256: string;
  open(range?: { start: number; end: number }): Promise<Readable>;
}

/** Why a link whose key was revoked does not work. */
export const REVOKED_LINK = 'the API key that created this export link was revoked; ask for a new link with another key';

/** Why a link does not work: unknown (404), its key revoked (403) or expired (410). */
export class DownloadRefused extends Error {
  constructor(
    readonly status: 403 | 404 | 410,
    message: string,
  ) {
    super(message);
  }

  get code(): ErrorCode {
    return this.status === 403 ? 'FORBIDDEN' : 'NOT_FOUND';
  }
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export class ExportService {
  private readonly tokens: Repository<ExportTokenEntity>;

  constructor(
    private readonly db: DataSource,
    private readonly config: AppConfig,
    private readonly instances: InstanceService,
    private readonly snapshots: SnapshotService,
    private readonly tenants: TenantService,
    private readonly backups: BackupService,
  ) {
    this.tokens = db.getRepository(ExportTokenEntity);
  }

  /** A link to the snapshot as an archive (format ARCHIVE) or as a foreign graph file (exportSnapshotAs). */
  async createLink(principal: Principal, snapshotId: string, origin: string, format: ExportFormat = 'ARCHIVE'): Promise<ExportLink> {
    requireRole(principal, 'MEMBER', 'exporting a snapshot');
    const fileFormat = format === 'ARCHIVE' ? null : writableFormat(format);
    const found = await this.snapshots.require(principal, snapshotId);
    const snapshot = fileFormat ? found : await this.snapshots.prepareExport(found);
    if (snapshot.status !== 'COMPLETED' || (!fileFormat && (snapshot.sizeBytes === null || snapshot.sha256 === null))) {
      throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${snapshot.id} is ${snapshot.status}; only COMPLETED snapshots can be exported`);
    }
    const instance = await this.instances.find(principal, snapshot.instanceId);
    const instanceName = instance?.name ?? snapshot.instanceId;
    const file = fileFormat
      ? await this.backups.prepareGraphFileExport(snapshot, instanceName, fileFormat, await this.producedBefore(snapshot.id, format))
      : { sizeBytes: snapshot.sizeBytes!, sha256: snapshot.sha256! };
    const extension = fileFormat ? fileFormat.extension : archiveExtension(snapshot.engineVersion);
    const fileName = exportFileName(instanceName, snapshot.createdAt, extension);
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = now + this.config.exportUrlTtlMs;
    try {
      // The link goes in with the snapshot held: a deletion, or retention's (which keeps a snapshot with a valid link),
      // either sees the link or is seen. Inserted, then looked for, a link made while a sweep's removal was not yet
      // committed found the row, and was handed out for a snapshot gone a moment later.
      await this.db.transaction(async (manager) => {
        await holdSnapshotForReading(manager, snapshot.id);
        await manager.insert(ExportTokenEntity, {
          id: randomUUID(),
          tenantId: principal.tenantId,
          snapshotId: snapshot.id,
          apiKeyId: principal.apiKeyId,
          tokenHash: hashToken(token),
          fileName,
          format,
          sizeBytes: fileFormat ? file.sizeBytes : null,
          sha256: fileFormat ? file.sha256 : null,
          createdAt: now,
          expiresAt,
        });
      });
    } catch (error) {
      // Deleted meanwhile (deleteSnapshot does not wait for an export, which may take minutes to produce its file):
      // the copy produced after the deletion removed the snapshot's would stay with it.
      if (isAppError(error) && error.code === 'NOT_FOUND') await this.backups.forgetExport(snapshot);
      throw error;
    }
    await this.tokens.delete({ expiresAt: LessThan(now - 24 * 3600_000) });
    const base = (this.config.publicUrl ?? origin).replace(/\/+$/, '');
    return { url: `${base}${EXPORT_PATH}/${token}`, fileName, expiresAt, ...file };
  }

  /** The size and sha256 an earlier link recorded for the snapshot in this foreign format (the file is deterministic). */
  private async producedBefore(snapshotId: string, format: ExportFormat): Promise<{ sizeBytes: number; sha256: string } | undefined> {
    const earlier = await this.tokens.findOne({ where: { snapshotId, format, sha256: Not(IsNull()) }, order: { createdAt: 'DESC' } });
    return earlier && earlier.sizeBytes !== null && earlier.sha256 !== null ? { sizeBytes: earlier.sizeBytes, sha256: earlier.sha256 } : undefined;
  }

  /** The download behind a token; DownloadRefused(404) when unknown or the snapshot is gone, (410) when expired. */
  async resolve(token: string): Promise<Download> {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(token)) throw new DownloadRefused(404, 'no such export link');
    const link = await this.tokens.findOne({ where: { tokenHash: hashToken(token) } });
    if (!link) throw new DownloadRefused(404, 'no such export link');
    if (link.expiresAt <= Date.now()) throw new DownloadRefused(410, 'this export link has expired; ask for a new one with exportSnapshot');
    if (link.apiKeyId !== null && !(await this.tenants.isActiveKey(link.apiKeyId))) {
      throw new DownloadRefused(403, REVOKED_LINK);
    }
    const snapshot = await this.snapshots.byId(link.snapshotId);
    if (!snapshot || snapshot.tenantId !== link.tenantId || snapshot.status !== 'COMPLETED') {
      throw new DownloadRefused(404, 'the snapshot of this export link no longer exists');
    }
    const fileFormat = link.format === 'ARCHIVE' ? null : graphFileFormat(link.format);
    if (fileFormat && link.sha256 !== null && link.sizeBytes !== null) {
      const produced = { sizeBytes: link.sizeBytes, sha256: link.sha256 };
      const instanceName = (await this.instances.reload(snapshot.instanceId))?.name ?? snapshot.instanceId;
      return {
        snapshot,
        apiKeyId: link.apiKeyId,
        fileName: link.fileName,
        contentType: fileFormat.contentType,
        ...produced,
        open: (range) => this.backups.openGraphFileExport(snapshot, instanceName, fileFormat, produced, range),
      };
    }
    return {
      snapshot,
      apiKeyId: link.apiKeyId,
      fileName: link.fileName,
      contentType: 'application/octet-stream',
      sizeBytes: snapshot.sizeBytes ?? 0,
      sha256: snapshot.sha256 ?? '',
      open: (range) => this.snapshots.openArchive(snapshot, range),
    };
  }
}

/** The format to export as, or BAD_USER_INPUT when Snapgraph cannot write it (yet). */
function writableFormat(format: Exclude<ExportFormat, 'ARCHIVE'>): GraphFileFormat {
  const found = graphFileFormat(format);
  if (!found?.write) {
    const writable = GRAPH_FILE_FORMATS.filter((candidate) => candidate.write).map((candidate) => candidate.kind);
    throw new AppError('BAD_USER_INPUT', `exporting as ${format} is not available in this release; export as ${['ARCHIVE', ...writable].join(', ')}`);
  }
  return found;
}

/** The longest an export file's name may take of the instance's name, in characters and in UTF-8 bytes. */
const NAME_CHARS = 100;
const NAME_BYTES = 150;

/**
 * `<instance-name>-<YYYY-MM-DDTHH-MM-SSZ><extension>` (.backup, .dump, .json, …): the instance's name in whatever script
 * it is written, with what a file system or a shell may not take in a name (separators, spaces, punctuation, symbols,
 * control characters) made `-`, and at most NAME_BYTES of it (file systems allow 255 bytes a name; a character of a
 * CJK script takes 3). A name of none of that is `instance`. (The name was made ASCII: `日本語` became `instance`, so
 * instances named in one script other than Latin all exported under one name.) `letters: 'ascii'`: only ASCII's
 * (accents stripped), where a name must be ASCII (an export destination's object key, as blob keys are).
 */
export function exportFileName(instanceName: string, createdAt: number, extension: string, letters: 'any' | 'ascii' = 'any'): string {
  let kept = '';
  let bytes = 0;
  for (const character of Array.from(fileNameSafe(instanceName, letters)).slice(0, NAME_CHARS)) {
    bytes += Buffer.byteLength(character);
    if (bytes > NAME_BYTES) break;
    kept += character;
  }
  const safeName = kept.replace(/[-.]+$/, '') || 'instance';
  const stamp = new Date(createdAt).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-');
  const fileName = `${safeName}-${stamp}${extension}`;
  // A blob key may not hold the marker of a temp file: an instance named "orders.tmp-2" (or "x.tmp", before the stamp's
  // dash) failed every export to a bucket.
  return letters === 'ascii' ? fileName.split(TEMP_FILE_MARKER).join('-tmp-') : fileName;
}

/**
 * An export file's name in ASCII, for what takes nothing else (Content-Disposition's plain `filename`): letters
 * stripped of their accents, every other character outside ASCII's letters, digits, `.`, `_` and `-` made `-`.
 */
export function asciiFileName(fileName: string): string {
  return fileNameSafe(fileName, 'ascii') || 'export';
}

/** `text` with what a file name may not hold made `-` (runs of it one), none leading: letters of any script, or ASCII's. */
function fileNameSafe(text: string, letters: 'any' | 'ascii'): string {
  const replaced =
    letters === 'ascii'
      ? text.normalize('NFKD').replace(/[^A-Za-z0-9._-]+/g, '-')
      : text.normalize('NFC').replace(/[^\p{L}\p{M}\p{N}._-]+/gu, '-');
  return replaced.replace(/-{2,}/g, '-').replace(/^[-.]+/, '');
}
