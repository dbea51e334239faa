// Multipart GraphQL requests (the GraphQL multipart request spec), through graphql-upload with explicit limits.
// Checked before a byte of the file is buffered: the CSRF preflight header and the API key.
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
    if (!req.is('multipart/form-data')) return next();
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
      refuse(res, status, status === 413 ? 'FILE_TOO_LARGE' : 'BAD_USER_INPUT', (error as Error).message);
    }
  };
}
