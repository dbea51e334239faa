// What graphql-ws does with a `subscribe` message before it runs: the same limits as HTTP, in the same order
// (size, tokens, fields and aliases, then validation, then the cost with the variables). Every refusal is an
// `error` message for that operation alone, with BAD_USER_INPUT: the socket and its other subscriptions live on.
import { type ExecutionArgs, getOperationAST, getVariableValues, GraphQLError, type GraphQLSchema } from 'graphql';
import type { SubscribePayload } from 'graphql-ws';
import { costRefusal, listVariableRefusal, parseWithinLimits, type QueryLimits, validateWithLimits } from './query-limits';

export type WebSocketOperationCheck = (payload: SubscribePayload) => ExecutionArgs | GraphQLError[];

// Thousands of dashboards subscribe with the same document and variables; parsing and validating each costs more
// than everything else a subscription does, so accepted operations are remembered (only small ones: the cache is
// bounded in bytes as well as in entries). graphql-js never changes a document, so executions can share one.
const CACHED_OPERATIONS = 256;
const MAX_CACHED_KEY_LENGTH = 8_192;

export function checkWebSocketOperation(schema: GraphQLSchema, limits: QueryLimits, options: { introspection: boolean }): WebSocketOperationCheck {
  const check = checkOperation(schema, limits, options);
  const accepted = new Map<string, ExecutionArgs>();
  return (payload) => {
    const key = keyOf(payload);
    const known = key === null ? undefined : accepted.get(key);
    if (known) {
      accepted.delete(key!);
      accepted.set(key!, known); // most recently used last
      return { ...known };
    }
    const checked = check(payload);
    if (!Array.isArray(checked) && key !== null && key.length <= MAX_CACHED_KEY_LENGTH) {
      accepted.set(key, checked);
      if (accepted.size > CACHED_OPERATIONS) accepted.delete(accepted.keys().next().value!);
    }
    return Array.isArray(checked) ? checked : { ...checked };
  };
}

/**
 * What an accepted operation is remembered under; null when its variables cannot be written down (nested deeper than
 * JSON.stringify's stack allows, which JSON.parse read without trouble): such an operation is checked as any other,
 * never remembered. Thrown here, the RangeError closed the whole socket (4500) with graphql-ws's stack trace on stderr.
 */
function keyOf(payload: SubscribePayload): string | null {
  try {
    return JSON.stringify([payload.query, payload.operationName ?? null, payload.variables ?? null]);
  } catch {
    return null;
  }
}

function checkOperation(schema: GraphQLSchema, limits: QueryLimits, options: { introspection: boolean }): WebSocketOperationCheck {
  return (payload) => {
    const checked = parseWithinLimits(payload.query, limits);
    if (!checked.document) return [checked.refusal ?? checked.syntaxError];
    const { document } = checked;
    const invalid = validateWithLimits(schema, document, limits, options);
    if (invalid.length > 0) return invalid.map(asBadUserInput);
    const operation = getOperationAST(document, payload.operationName);
    if (!operation) {
      const message = payload.operationName
        ? `the document has no operation named "${payload.operationName}"`
        : 'the document has several operations: name the one to run (operationName)';
      return [new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } })];
    }
    const tooLong = listVariableRefusal(schema, operation, payload.variables);
    if (tooLong) return [tooLong];
    const variables = getVariableValues(schema, operation.variableDefinitions ?? [], payload.variables ?? {});
    if (variables.errors) return variables.errors.map(asBadUserInput);
    const tooCostly = costRefusal(schema, document, payload.operationName, variables.coerced, limits);
    if (tooCostly) return [tooCostly];
    return { schema, document, operationName: payload.operationName, variableValues: variables.coerced };
  };
}

/** graphql-js's own validation and coercion errors carry no code; they are the client's input at fault. */
function asBadUserInput(error: GraphQLError): GraphQLError {
  if (error.extensions.code) return error;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: { ...error.extensions, code: 'BAD_USER_INPUT' },
  });
}
