// A GraphQL request refused before Apollo saw it (a query over a limit, a body that is not JSON or too large):
// answered the way Apollo answers, a JSON body `{"errors":[…]}` with a code, never an HTML page.
import type { Request, Response } from 'express';
import type { GraphQLError } from 'graphql';
import { type ErrorExposure, formatError } from '../format-error';

const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json';

export function sendGraphQLRefusal(req: Request, res: Response, status: number, errors: GraphQLError[], exposure: ErrorExposure): void {
  // The GraphQL-over-HTTP media type when the client prefers it, as Apollo does; plain JSON otherwise.
  const type = req.accepts(['application/json', GRAPHQL_RESPONSE_JSON]) === GRAPHQL_RESPONSE_JSON ? GRAPHQL_RESPONSE_JSON : 'application/json';
  const body = { errors: errors.map((error) => formatError(error.toJSON(), exposure)) };
  res.status(status).type(`${type}; charset=utf-8`).send(JSON.stringify(body));
}
