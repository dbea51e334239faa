// The HTTP half of the query limits: checked on the parsed body, before Apollo parses and validates the query, so
// that a document built to make validation slow (a field repeated thousands of times) never reaches it.
import { parse as parseUrl } from 'node:url';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { GraphQLError } from 'graphql';
import { parseWithinLimits, type QueryLimits } from '../query-limits';

/**
 * Clients send the same few queries again and again: the verdict on a query text is kept (the limits never change
 * while the server runs), for this many texts of at most REMEMBERED_LENGTH characters, the oldest forgotten first.
 */
const REMEMBERED_QUERIES = 500;
const REMEMBERED_LENGTH = 8 * 1024;

export function queryGuard(limits: QueryLimits, refuse: (req: Request, res: Response, error: GraphQLError) => void): RequestHandler {
  const verdicts = new Map<string, GraphQLError | null>();
  const verdictOn = (source: string): GraphQLError | null => {
    const known = verdicts.get(source);
    if (known !== undefined) return known;
    // A plain syntax error goes on: Apollo answers it as it answers every malformed request.
    const refusal = parseWithinLimits(source, limits).refusal ?? null;
    if (source.length <= REMEMBERED_LENGTH) {
      if (verdicts.size >= REMEMBERED_QUERIES) verdicts.delete(verdicts.keys().next().value!);
      verdicts.set(source, refusal);
    }
    return refusal;
  };
  return (req: Request, res: Response, next: NextFunction) => {
    const source = querySource(req);
    if (source === undefined) return next();
    const refusal = verdictOn(source);
    if (refusal) return refuse(req, res, refusal);
    next();
  };
}

/**
 * The query text Apollo will run. A GET's is read from the URL as Apollo reads it (every parameter; one `query`, else
 * Apollo refuses the request), never from express's req.query, which stops at the URL's first 1,000 parameters: a
 * query behind 1,000 others went past every check here and was validated whatever its size.
 */
function querySource(req: Request): string | undefined {
  if (req.method === 'GET') {
    // The same search string as Apollo's express integration takes (its `url.parse`: up to a `#`, if any).
    const queries = new URLSearchParams(parseUrl(req.url).search ?? '').getAll('query');
    return queries.length === 1 ? queries[0] : undefined;
  }
  const body = req.body as { query?: unknown } | undefined;
  return body && typeof body === 'object' && typeof body.query === 'string' ? body.query : undefined;
}
