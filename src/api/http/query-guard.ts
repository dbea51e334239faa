// The HTTP half of the query limits: checked on the parsed body, before Apollo parses and validates the query, so
// that a document built to make validation slow (a field repeated thousands of times) never reaches it.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { GraphQLError } from 'graphql';
import { parseWithinLimits, type QueryLimits } from '../query-limits';

export function queryGuard(limits: QueryLimits, refuse: (req: Request, res: Response, error: GraphQLError) => void): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const source = querySource(req);
    if (source === undefined) return next();
    const { refusal } = parseWithinLimits(source, limits);
    // A plain syntax error goes on: Apollo answers it as it answers every malformed request.
    if (refusal) return refuse(req, res, refusal);
    next();
  };
}

function querySource(req: Request): string | undefined {
  if (req.method === 'GET') return typeof req.query.query === 'string' ? req.query.query : undefined;
  const body = req.body as { query?: unknown } | undefined;
  return body && typeof body === 'object' && typeof body.query === 'string' ? body.query : undefined;
}
