// Depth and cost limits for a public endpoint (graphql-armor), as validation rules shared by HTTP and WebSocket:
// a query over a limit is refused before anything runs, with BAD_USER_INPUT and the limit in its extensions.
import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { type DocumentNode, GraphQLError, type GraphQLSchema, specifiedRules, validate, type ValidationContext, type ValidationRule } from 'graphql';

export interface QueryLimits {
  /** Deepest field nesting allowed (introspection's __schema is not counted). */
  maxDepth: number;
  /** graphql-armor cost: objects 2, scalars 1, ×1.5 per level, × a literal `first` argument. */
  maxCost: number;
}

type Limit = 'depth' | 'cost';

const ADVICE: Record<Limit, string> = {
  depth: 'ask for fewer nested fields, or split the query',
  cost: 'ask for fewer fields or smaller pages (first), or split the query',
};

/** graphql-armor reports "Syntax Error: Query depth limit of 10 exceeded, found 12."; clients get a plain sentence. */
const reportAs = (limit: Limit) => (context: ValidationContext | null, error: GraphQLError) => {
  const numbers = /limit of (\d+(?:\.\d+)?) exceeded, found (\d+(?:\.\d+)?)/.exec(error.message);
  const max = numbers ? Number(numbers[1]) : undefined;
  const found = numbers ? Math.ceil(Number(numbers[2])) : undefined;
  const message = numbers
    ? `the query's ${limit} is ${found}, over this server's limit of ${max}: ${ADVICE[limit]}`
    : `the query is over this server's ${limit} limit: ${ADVICE[limit]}`;
  context?.reportError(new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', limit, max, found } }));
};

/** The rules to add to graphql-js's own (Apollo `validationRules`). */
export function queryLimitRules(limits: QueryLimits): ValidationRule[] {
  // propagateOnRejection: false — a thrown error would escape validate() and become a 500; reported errors are 400s.
  const common = { exposeLimits: true, ignoreIntrospection: true, propagateOnRejection: false } as const;
  return [
    maxDepthRule({ ...common, n: limits.maxDepth, onReject: [reportAs('depth')] }) as ValidationRule,
    costLimitRule({ ...common, maxCost: limits.maxCost, onReject: [reportAs('cost')] }) as ValidationRule,
  ];
}

/** A `validate` for graphql-ws: the standard rules plus the limits. */
export function validateWithLimits(limits: QueryLimits): (schema: GraphQLSchema, document: DocumentNode) => ReadonlyArray<GraphQLError> {
  const rules = [...specifiedRules, ...queryLimitRules(limits)];
  return (schema, document) => validate(schema, document, rules);
}
