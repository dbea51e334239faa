// A driver's error reaches us wrapped: in Error.cause, TypeORM's driverError, GraphQLError's originalError, or among an
// AggregateError's errors. What an error is (a full disk, text a database refuses) is asked of the whole chain.

const WRAPPED = ['cause', 'driverError', 'originalError'] as const;
const MAX_DEPTH = 8;

/** Whether the error, or one it wraps, passes `test`. */
export function anyInChain(error: unknown, test: (error: { code?: unknown; message?: unknown }) => boolean, depth = 0): boolean {
  if (error === null || typeof error !== 'object' || depth > MAX_DEPTH) return false;
  if (test(error)) return true;
  if (error instanceof AggregateError && error.errors.some((inner) => anyInChain(inner, test, depth + 1))) return true;
  return WRAPPED.some((key) => anyInChain((error as Record<string, unknown>)[key], test, depth + 1));
}
