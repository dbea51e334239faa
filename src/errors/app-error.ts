// Every error a client can see: a GraphQLError whose extensions.code is one of the contract's codes.
import { GraphQLError } from 'graphql';

/** Every code a client can see in extensions.code: the contract's (listed at the end of test/contract/contract.graphql), STORAGE_FULL and DESTINATION_UNAVAILABLE. */
export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'BAD_USER_INPUT',
  'CONFIRMATION_REQUIRED',
  'CONFLICT',
  'INSTANCE_UNAVAILABLE',
  'SNAPSHOT_NOT_READY',
  'CAPACITY_EXCEEDED',
  'INVALID_BACKUP_FILE',
  'FILE_TOO_LARGE',
  'INCOMPATIBLE_VERSION',
  'OUT_OF_RESTORE_WINDOW',
  'STORAGE_FULL',
  /** An export destination (a tenant's own bucket) refused or could not be reached: its message says what it answered. */
  'DESTINATION_UNAVAILABLE',
  'INTERNAL_SERVER_ERROR',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  FILE_TOO_LARGE: 413,
};

export class AppError extends GraphQLError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    const status = HTTP_STATUS[code];
    super(message, {
      extensions: { code, ...details, ...(status ? { http: { status } } : {}) },
    });
    this.code = code;
  }
}

export const unauthenticated = (message = 'a valid API key is required (Authorization: Bearer <key>)') =>
  new AppError('UNAUTHENTICATED', message);
export const forbidden = (message: string) => new AppError('FORBIDDEN', message);
export const notFound = (what: string, id: string) => new AppError('NOT_FOUND', `${what} ${id} not found`);
export const badInput = (message: string) => new AppError('BAD_USER_INPUT', message);
export const conflict = (message: string) => new AppError('CONFLICT', message);
export const capacityExceeded = (message: string) => new AppError('CAPACITY_EXCEEDED', message);
export const instanceUnavailable = (message: string) => new AppError('INSTANCE_UNAVAILABLE', message);

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}
