// What graphql-ws does with a `subscribe` message before it runs: the same limits as HTTP, in the same order
// (size, tokens, fields and aliases, then validation, then the cost with the variables). Every refusal is an
// `error` message for that operation alone, with BAD_USER_INPUT: the socket and its other subscriptions live on.
import { type ExecutionArgs, getOperationAST, getVariableValues, GraphQLError, type GraphQLSchema } from 'graphql';
import type { SubscribePayload } from 'graphql-ws';
import { costRefusal, parseWithinLimits, type QueryLimits, validateWithLimits } from './query-limits';

export type WebSocketOperationCheck = (payload: SubscribePayload) => ExecutionArgs | GraphQLError[];

export function checkWebSocketOperation(schema: GraphQLSchema, limits: QueryLimits, options: { introspection: boolean }): WebSocketOperationCheck {
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
