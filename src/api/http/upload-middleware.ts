// Multipart GraphQL requests (the GraphQL multipart request spec, see multipart-request.ts), with explicit limits.
// Checked before a byte of the file is buffered: the CSRF preflight header and the API key. Whatever the outcome,
// the answer leaves only once the whole request has been read (the rest of a refused file is discarded): an answer
// sent while the client is still sending makes the connection close under it, and the client sees a reset instead
// of the error. One exception: the key revoked while its file is sent, which ends the upload at once (KeyConnections).
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { AppConfig } from '../../config/app-config';
import { AppError } from '../../errors/app-error';
import { REVOKED_UPLOAD } from '../../services/upload.service';
import type { KeyConnections } from '../key-connections';
import { MultipartError, readMultipartRequest } from './multipart-request';

const PREFLIGHT_HEADERS = ['apollo-require-preflight', 'x-apollo-operation-name'];

/**
 * How a refused request is answered and logged: by the server, as every request refused before Apollo sees it is
 * (X-Request-Id echoed, one log line under it, the JSON error body).
 */
export type UploadRefusal = (req: Request, res: Response, status: number, code: string, message: string) => void;

export function createUploadMiddleware(
  config: AppConfig,
  /**
   * The id of the key the request acts for, null for a key refused; throws when the key could not be checked (the
   * request then fails as the server's error).
   */
  apiKeyOf: (authorization: unknown) => Promise<string | null>,
  keyConnections: Pick<KeyConnections, 'addUpload'>,
  answerRefusal: UploadRefusal,
): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const refuse = (status: number, code: string, message: string) => answerRefusal(req, res, status, code, message);
    // The header test first: req.is() parses the media type, a cost every JSON request would pay.
    if (!/multipart/i.test(req.headers['content-type'] ?? '') || !req.is('multipart/form-data')) return next();
    let discardBody: () => void = () => req.resume();
    const answer = answerAfterRequestEnds(req, res, () => discardBody());
    if (!PREFLIGHT_HEADERS.some((header) => req.headers[header])) {
      // Same rule as Apollo's CSRF prevention, applied before the body is read.
      return refuse(
        400,
        'BAD_USER_INPUT',
        'This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). ' +
          'Send a non-empty `Apollo-Require-Preflight` header with multipart requests.',
      );
    }
    let apiKeyId: string | null;
    try {
      apiKeyId = await apiKeyOf(req.headers.authorization);
    } catch (error) {
      return next(error);
    }
    if (apiKeyId === null) return refuse(401, 'UNAUTHENTICATED', 'a valid API key is required (Authorization: Bearer <key>)');
    // Revoked while the file comes: nothing more is read (the file being stored fails, and what was stored of it goes),
    // and the refusal leaves at once; the connection then closes (KeyConnections).
    const revoked = new AbortController();
    const cutOff = () => {
      revoked.abort(new AppError('UNAUTHENTICATED', REVOKED_UPLOAD));
      answer.now(() => refuse(401, 'UNAUTHENTICATED', REVOKED_UPLOAD));
    };
    if (!keyConnections.addUpload(apiKeyId, req, res, cutOff)) return refuse(401, 'UNAUTHENTICATED', REVOKED_UPLOAD);
    try {
      const multipart = await readMultipartRequest(req, { maxFileSize: config.maxUploadBytes, maxFiles: 1, maxFieldSize: 10 * 1024 * 1024 }, revoked.signal);
      // The parser reads the request now: what nobody read of the file is dropped through it.
      discardBody = () => multipart.discard();
      req.body = multipart.operations;
      next();
    } catch (error) {
      // Cut off: answered already.
      if (revoked.signal.aborted) return;
      // Parsing stopped: what is left of the request is read and dropped before the answer leaves. A refusal carries its
      // status and code (MultipartError); anything else stopped reading a malformed body.
      if (error instanceof MultipartError) refuse(error.status, error.code, error.message);
      else refuse(400, 'BAD_USER_INPUT', (error as Error).message);
    }
  };
}

/**
 * Holds the response (Apollo's and ours both end with res.send or res.end) until the request has been read; when the
 * answer is ready, what is left unread is discarded. now() answers at once instead, with what it is given; any answer
 * made after that (the resolver's, reading a file that failed) is dropped.
 */
function answerAfterRequestEnds(req: Request, res: Response, discardBody: () => void): { now(answer: () => void): void } {
  const ended = new Promise<void>((resolve) => {
    if (req.readableEnded) return resolve();
    req.once('end', () => resolve());
    req.once('close', () => resolve());
  });
  const { send, end } = res;
  let answeredNow = false;
  res.send = (...args: Parameters<Response['send']>) => {
    // Unread, the rest of the body would never end: drained.
    if (!req.readableEnded) discardBody();
    void ended.then(() => {
      if (answeredNow) return;
      res.send = send;
      res.send(...args);
    });
    return res;
  };
  res.end = ((...args: Parameters<Response['end']>) => {
    if (!req.readableEnded) discardBody();
    void ended.then(() => {
      if (answeredNow) return;
      res.end = end;
      (res.end as (...a: unknown[]) => Response)(...args);
    });
    return res;
  }) as Response['end'];
  return {
    now(answer) {
      answeredNow = true;
      res.send = send;
      res.end = end;
      answer();
      // The response is sent: what the resolver's answer sets and writes later (Apollo's headers, then its body) is
      // dropped, instead of throwing ERR_HTTP_HEADERS_SENT into express, whose error handler would reset the connection
      // before the client read the refusal.
      res.setHeader = (() => res) as unknown as Response['setHeader'];
      res.send = () => res;
      res.write = (() => true) as unknown as Response['write'];
      res.end = (() => res) as unknown as Response['end'];
    },
  };
}
