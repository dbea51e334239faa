// GET/HEAD /exports/<token>: streams a snapshot's archive to whoever holds the link, with resumable Range requests.
import { pipeline } from 'node:stream/promises';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from '../../logging/logger';
import type { Metrics } from '../../observability/metrics';
import { heapGrowth } from '../../runtime/heap-growth';
import { isAppError } from '../../errors/app-error';
import { asciiFileName, DownloadRefused, REVOKED_LINK, type ExportService } from '../../services/export.service';
import type { KeyConnections } from '../key-connections';
import { sendError } from './error-body';

type RangeRequest = { start: number; end: number } | 'unsatisfiable' | null;

/** One `bytes=` range (multiple ranges are answered with the whole file, as RFC 9110 allows). */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== '' && Number(match[2]) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * `attachment` with the file's name (RFC 6266): an ASCII name as it is; any other also in `filename*` (UTF-8, RFC 8187),
 * which browsers prefer, after an ASCII `filename` for the clients that know only that (`curl -OJ`).
 */
export function contentDisposition(fileName: string): string {
  const ascii = asciiFileName(fileName);
  if (ascii === fileName) return `attachment; filename="${fileName}"`;
  // encodeURIComponent leaves these, which RFC 8187's attr-char does not allow.
  const encoded = encodeURIComponent(fileName).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

// The URL holds the token: nothing here logs req.url or the token, only the snapshot id.
export function exportDownloadHandler(
  exports: ExportService,
  keyConnections: Pick<KeyConnections, 'addDownload'>,
  logger: Logger,
  metrics: Metrics,
): RequestHandler {
  return async (req: Request, res: Response) => {
    const token = String(req.params.token ?? '');
    let download;
    try {
      download = await exports.resolve(token);
    } catch (error) {
      if (error instanceof DownloadRefused) return void sendError(res, error.status, error.code, error.message);
      throw error;
    }
    const { sizeBytes, sha256, fileName } = download;
    const etag = `"${sha256}"`;
    // A Range only applies to the same bytes the client started with.
    const ifRange = req.headers['if-range'];
    const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, sizeBytes);
    if (range === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${sizeBytes}`);
      return void sendError(res, 416, 'BAD_USER_INPUT', `the range is outside the file (${sizeBytes} bytes)`);
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? sizeBytes - 1;
    // The file's headers, given once it can be sent: a refusal after this (the snapshot deleted while its copy was
    // produced) carried the range, ETag and file name of a file it did not send.
    const answerWithFile = () => {
      if (range) res.status(206).setHeader('Content-Range', `bytes ${start}-${end}/${sizeBytes}`);
      res.setHeader('Accept-Ranges', 'bytes');
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', 'private, no-store');
      res.setHeader('Content-Type', download.contentType);
      res.setHeader('Content-Disposition', contentDisposition(fileName));
      res.setHeader('Content-Length', String(Math.max(0, end - start + 1)));
    };
    if (req.method === 'HEAD' || sizeBytes === 0) {
      answerWithFile();
      res.end();
      return;
    }
    let body;
    try {
      body = await download.open({ start, end: end + 1 });
    } catch (error) {
      // Deleted while its copy was being produced for this download (BackupService.forgetExport).
      if (isAppError(error) && error.code === 'NOT_FOUND') {
        return void sendError(res, 404, 'NOT_FOUND', 'the snapshot of this export link no longer exists');
      }
      logger.error({ err: error, snapshotId: download.snapshot.id }, 'export download could not open the archive');
      return void sendError(res, 500, 'INTERNAL_SERVER_ERROR', 'the archive cannot be read; try again or contact the operator');
    }
    // The link's key revoked since resolve() looked it up: refused as resolve() would now. Under way, the download is
    // cut off at the revocation (KeyConnections).
    if (download.apiKeyId !== null && !keyConnections.addDownload(download.apiKeyId, res)) {
      body.destroy();
      return void sendError(res, 403, 'FORBIDDEN', REVOKED_LINK);
    }
    answerWithFile();
    try {
      // Counted as the bytes pass, without a stream stage of its own between the file and the socket.
      body.on('data', (chunk: Buffer) => metrics.bytesExported.inc(chunk.length));
      await heapGrowth.whileStreamingBulk(() => pipeline(body, res));
      logger.info({ snapshotId: download.snapshot.id, bytes: end - start + 1, partial: Boolean(range) }, 'export downloaded');
    } catch (error) {
      // A client that goes away mid-download is normal; a damaged blob is not.
      if (!res.writableEnded && (error as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
        logger.error({ err: error, snapshotId: download.snapshot.id }, 'export download failed');
      }
      res.destroy();
    }
  };
}
