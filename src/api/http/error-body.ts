// The one refusal shape of every HTTP endpoint (/graphql, /uploads, export links): a GraphQL-style JSON body.
import type { Response } from 'express';
import type { ErrorCode } from '../../errors/app-error';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** {"errors":[{"message","extensions":{"code"}}]} */
export function errorBody(code: ErrorCode | string, message: string): string {
  return JSON.stringify({ errors: [{ message, extensions: { code } }] });
}

export function sendError(res: Response, status: number, code: ErrorCode, message: string): void {
  res.status(status).set({ 'Content-Type': JSON_CONTENT_TYPE, 'Cache-Control': 'no-store' }).send(errorBody(code, message));
}
