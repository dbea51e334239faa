// Multipart GraphQL requests (the GraphQL multipart request spec), through graphql-upload with explicit limits.
// Checked before a byte of the file is buffered: the CSRF preflight header and the API key. Whatever the outcome,
// the answer leaves only once the whole request has been read (the rest of a refused file is discarded): an answer
// sent while the client is still sending makes the connection close under it, and the client sees a reset instead
// of the error.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { AppConfig } from '../../config/app-config';

type ProcessRequest = (
  req: Request,
  res: Response,
  options: { maxFileSize: number; maxFiles: number; maxFieldSize: number },
) => Promise<unknown>;

const PREFLIGHT_HEADERS = ['apollo-require-preflight', 'x-apollo-operation-name'];

export async function createUploadMiddleware(
  config: AppConfig,
  isAuthorized: (authorization: unknown) => Promise<boolean>,
): Promise<RequestHandler> {
  // graphql-upload is ESM-only.
  const { default: processRequest } = (await import('graphql-upload/processRequest.mjs')) as { default: ProcessRequest };
  const refuse = (res: Response, status: number, code: string, message: string) =>
    res.status(status).json({ errors: [{ message, extensions: { code } }] });

  return async (req: Request, res: Response, next: NextFunction) => {
    // The header test first: req.is() parses the media type, a cost every JSON request would pay.
    if (!/multipart/i.test(req.headers['content-type'] ?? '') || !req.is('multipart/form-data')) return next();
    answerAfterRequestEnds(req, res);
    if (!PREFLIGHT_HEADERS.some((header) => req.headers[header])) {
      // Same rule as Apollo's CSRF prevention, applied before the body is read.
      return refuse(
        res,
        400,
        'BAD_USER_INPUT',
        'This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). ' +
          'Send a non-empty `Apollo-Require-Preflight` header with multipart requests.',
      );
    }
    if (!(await isAuthorized(req.headers.authorization))) {
      return refuse(res, 401, 'UNAUTHENTICATED', 'a valid API key is required (Authorization: Bearer <key>)');
    }
    try {
      req.body = await processRequest(req, res, {
        maxFileSize: config.maxUploadBytes,
        maxFiles: 1,
        maxFieldSize: 10 * 1024 * 1024,
      });
      next();
    } catch (error) {
      const status = (error as { status?: number }).status ?? 400;
      // graphql-upload stopped parsing and resumed the request: what is left is read and dropped.
      refuse(res, status, status === 413 ? 'FILE_TOO_LARGE' : 'BAD_USER_INPUT', (error as Error).message);
    }
  };
}

/** Holds the response (Apollo's and ours both end with res.send or res.end) until the request has been read. */
function answerAfterRequestEnds(req: Request, res: Response): void {
  const ended = new Promise<void>((resolve) => {
    if (req.readableEnded) return resolve();
    req.once('end', () => resolve());
    req.once('close', () => resolve());
  });
  const { send, end } = res;
  res.send = (...args: Parameters<Response['send']>) => {
    // Unread, the rest of the body would never end: drained (a no-op while a parser is reading it).
    if (!req.readableEnded && req.readableFlowing !== true) req.resume();
    void ended.then(() => {
      res.send = send;
      res.send(...args);
    });
    return res;
  };
  res.end = ((...args: Parameters<Response['end']>) => {
    if (!req.readableEnded && req.readableFlowing !== true) req.resume();
    void ended.then(() => {
      res.end = end;
      (res.end as (...a: unknown[]) => Response)(...args);
    });
    return res;
  }) as Response['end'];
}
