// Limits that keep one request from taking the server down, shared by HTTP and WebSocket. They run in order of
// cost, each bounding the work of the next: the document's size in bytes, then its tokens (graphql-js stops parsing
// at the limit), then a linear walk counting fields and aliases with fragments expanded; only then graphql's
// validation, whose rules include quadratic ones (overlapping fields) and the depth limit; and last, once the
// variables are known, the cost. A query over a limit is refused before anything runs, with BAD_USER_INPUT and
// `extensions: { limit, max, found }`.
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import {
  type DocumentNode,
  type FragmentDefinitionNode,
  getNamedType,
  type GraphQLResolveInfo,
  getOperationAST,
  GraphQLError,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLSchema,
  isCompositeType,
  isInputObjectType,
  isInputType,
  isListType,
  isNonNullType,
  isInterfaceType,
  isObjectType,
  Kind,
  NoSchemaIntrospectionCustomRule,
  type OperationDefinitionNode,
  parse,
  type SelectionSetNode,
  typeFromAST,
  specifiedRules,
  validate,
  type ValidationContext,
  type ValidationRule,
  type ValueNode,
} from 'graphql';
import { MAX_BATCH } from '../services/graph.service';

export interface QueryLimits {
  /** Largest query text, in UTF-8 bytes. */
  maxBytes: number;
  /** Most lexical tokens in the query text. */
  maxTokens: number;
  /** Most field selections, counting each fragment once per place it is spread. */
  maxFields: number;
  /** Most aliased fields, counted the same way. */
  maxAliases: number;
  /** Deepest field nesting allowed (introspection's __schema is not counted). */
  maxDepth: number;
  /** Objects 2, scalars 1, ×1.5 per level, × first/last (literal, variable or the argument's default). */
  maxCost: number;
}

export type Limit = 'bytes' | 'tokens' | 'fields' | 'aliases' | 'depth' | 'cost' | 'items';

const ADVICE: Record<Limit, string> = {
  bytes: 'send a shorter query (large inputs belong in variables)',
  tokens: 'send a shorter query (large inputs belong in variables)',
  fields: 'ask for fewer fields, or split the query',
  aliases: 'use fewer aliases, or split the query',
  depth: 'ask for fewer nested fields, or split the query',
  cost: 'ask for fewer fields or smaller pages (first), or split the query',
  items: 'send the list in batches',
};

/** The refusal of a query over one limit. `found` is omitted when counting stopped at the limit (tokens). */
export function limitError(limit: Limit, max: number, found?: number): GraphQLError {
  const message =
    found === undefined
      ? `the query has more ${limit} than this server's limit of ${max}: ${ADVICE[limit]}`
      : `the query's ${limit} is ${found}, over this server's limit of ${max}: ${ADVICE[limit]}`;
  return new GraphQLError(message, {
    extensions: { code: 'BAD_USER_INPUT', limit, max, ...(found === undefined ? {} : { found }), http: { status: 400 } },
  });
}

export type CheckedDocument =
  | { document: DocumentNode; refusal?: undefined; syntaxError?: undefined }
  | { refusal: GraphQLError; document?: undefined; syntaxError?: undefined }
  | { syntaxError: GraphQLError; document?: undefined; refusal?: undefined };

/** Size, tokens, fields and aliases: everything that can be checked in time linear in the text. */
export function parseWithinLimits(source: string, limits: QueryLimits): CheckedDocument {
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > limits.maxBytes) return { refusal: limitError('bytes', limits.maxBytes, bytes) };
  let document: DocumentNode;
  try {
    document = parse(source, { maxTokens: limits.maxTokens });
  } catch (error) {
    if (!(error instanceof GraphQLError)) throw error;
    // graphql-js 16 spells it "more that"; later versions may not.
    if (/Document contains more tha[nt] \d+ tokens/.test(error.message)) return { refusal: limitError('tokens', limits.maxTokens) };
    return { syntaxError: new GraphQLError(error.message, { nodes: error.nodes, source: error.source, positions: error.positions, extensions: { code: 'BAD_USER_INPUT' } }) };
  }
  const { fields, aliases } = measure(document);
  if (fields > limits.maxFields) return { refusal: limitError('fields', limits.maxFields, fields) };
  if (aliases > limits.maxAliases) return { refusal: limitError('aliases', limits.maxAliases, aliases) };
  return { document };
}

interface Size {
  fields: number;
  aliases: number;
}

/**
 * Field selections and aliases of every operation and fragment (validation visits them all), each fragment expanded
 * where it is spread, so that `{ ...F ...F }` counts F twice. Memoized per fragment: linear in the text however the
 * fragments nest; a cycle counts nothing (validation refuses it).
 */
export function measure(document: DocumentNode): Size {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const sizes = new Map<string, Size | 'visiting'>();
  const ofFragment = (name: string): Size => {
    const known = sizes.get(name);
    if (known === 'visiting') return { fields: 0, aliases: 0 };
    if (known) return known;
    const fragment = fragments.get(name);
    if (!fragment) return { fields: 0, aliases: 0 };
    sizes.set(name, 'visiting');
    const size = ofSelections(fragment.selectionSet);
    sizes.set(name, size);
    return size;
  };
  const ofSelections = (selectionSet: SelectionSetNode | undefined): Size => {
    const total = { fields: 0, aliases: 0 };
    for (const selection of selectionSet?.selections ?? []) {
      let part: Size;
      if (selection.kind === Kind.FIELD) {
        const inner = ofSelections(selection.selectionSet);
        part = { fields: inner.fields + 1, aliases: inner.aliases + (selection.alias ? 1 : 0) };
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        part = ofSelections(selection.selectionSet);
      } else {
        part = ofFragment(selection.name.value);
      }
      total.fields += part.fields;
      total.aliases += part.aliases;
    }
    return total;
  };
  const total = { fields: 0, aliases: 0 };
  for (const definition of document.definitions) {
    let part: Size | null = null;
    if (definition.kind === Kind.OPERATION_DEFINITION) part = ofSelections(definition.selectionSet);
    else if (definition.kind === Kind.FRAGMENT_DEFINITION) part = ofFragment(definition.name.value);
    if (part) {
      total.fields += part.fields;
      total.aliases += part.aliases;
    }
  }
  return total;
}

/** graphql-armor reports "Syntax Error: Query depth limit of 10 exceeded, found 12."; clients get a plain sentence. */
const reportDepth = (context: ValidationContext | null, error: GraphQLError) => {
  const numbers = /limit of (\d+) exceeded, found (\d+)/.exec(error.message);
  const refusal = numbers ? limitError('depth', Number(numbers[1]), Number(numbers[2])) : new GraphQLError(error.message);
  context?.reportError(refusal);
};

/** The rules to add to graphql-js's own: the depth limit, and no introspection when it is switched off. */
export function queryValidationRules(limits: QueryLimits, { introspection }: { introspection: boolean }): ValidationRule[] {
  return [
    // propagateOnRejection: false — a thrown error would escape validate() and become a 500; reported errors are 400s.
    maxDepthRule({ n: limits.maxDepth, exposeLimits: true, ignoreIntrospection: true, propagateOnRejection: false, onReject: [reportDepth] }) as ValidationRule,
    ...(introspection ? [] : [NoSchemaIntrospectionCustomRule]),
  ];
}

/** graphql-js's rules plus ours, for transports that validate themselves (WebSocket). */
export function validateWithLimits(schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits, options: { introspection: boolean }): readonly GraphQLError[] {
  return validate(schema, document, [...specifiedRules, ...queryValidationRules(limits, options)]);
}

const OBJECT_COST = 2;
const SCALAR_COST = 1;
const DEPTH_FACTOR = 1.5;
const PAGE_ARGUMENTS = new Set(['first', 'last']);

/**
 * Items a list in the variables may hold: the largest write batch (MAX_BATCH), and all of them together a hundred
 * times that (a full batch of nodes with many labels each). Checked on the variables as sent, walking them by their
 * types (a list inside an input object too: a node's labels), before graphql-js converts them: the batch's own check came after, and a 60 MiB body of 4.5 million tiny
 * items was converted whole first, holding the event loop (and every other request) for 10 s and 1.2 GB of heap.
 */
export const MAX_LIST_VARIABLE_ITEMS = MAX_BATCH;
export const MAX_VARIABLE_ITEMS = 100 * MAX_BATCH;

/** The refusal of an operation whose variables (as sent) hold a list over those bounds, or null. */
export function listVariableRefusal(
  schema: GraphQLSchema,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown> | null | undefined,
): GraphQLError | null {
  let total = 0;
  /** `what` says what holds the `found` items, verb and all. */
  const refusal = (what: string, found: number, max: number) =>
    new GraphQLError(`${what}, over this server's limit of ${max}: send it in batches`, {
      extensions: { code: 'BAD_USER_INPUT', limit: 'items', max, found, http: { status: 400 } },
    });
  const walk = (type: GraphQLInputType, value: unknown, where: string): GraphQLError | null => {
    if (value === null || value === undefined) return null;
    if (isNonNullType(type)) return walk(type.ofType, value, where);
    if (isListType(type)) {
      if (!Array.isArray(value)) return walk(type.ofType, value, where); // one item, taken as a list of one
      if (value.length > MAX_LIST_VARIABLE_ITEMS) return refusal(`the list ${where} holds ${value.length} items`, value.length, MAX_LIST_VARIABLE_ITEMS);
      total += value.length;
      if (total > MAX_VARIABLE_ITEMS) return refusal(`the lists of the variables hold ${total} items together (at least)`, total, MAX_VARIABLE_ITEMS);
      for (const item of value) {
        const refused = walk(type.ofType, item, where);
        if (refused) return refused;
      }
      return null;
    }
    if (isInputObjectType(type) && typeof value === 'object') {
      for (const [name, field] of Object.entries(type.getFields())) {
        const refused = Object.hasOwn(value, name) ? walk(field.type, (value as Record<string, unknown>)[name], `${where}.${name}`) : null;
        if (refused) return refused;
      }
    }
    return null;
  };
  for (const definition of operation.variableDefinitions ?? []) {
    const type = typeFromAST(schema, definition.type);
    if (!type || !isInputType(type)) continue;
    const refused = walk(type, variables?.[definition.variable.name.value], `$${definition.variable.name.value}`);
    if (refused) return refused;
  }
  return null;
}

/** The refusal of an operation over the cost limit, or null. For a validated document. */
export function costRefusal(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
  limits: QueryLimits,
): GraphQLError | null {
  const operation = getOperationAST(document, operationName);
  if (!operation) return null;
  const cost = Math.ceil(operationCost(schema, document, operation, variables ?? {}));
  return cost > limits.maxCost ? limitError('cost', limits.maxCost, cost) : null;
}

/**
 * The refusal of an operation over the cost limit once a list without pages (Query.instances) has been read: counted
 * as one item before execution, it costs `size` times its items' fields, as a page does, wherever the operation selects
 * it (under every alias: each resolves on its own, and each holds the same items). For the list's resolver (ListCost),
 * with what it resolved to: a root field without arguments, whose length is the same wherever it is selected.
 */
export function listCostRefusal(info: GraphQLResolveInfo, size: number, maxCost: number): GraphQLError | null {
  const document: DocumentNode = { kind: Kind.DOCUMENT, definitions: [info.operation, ...Object.values(info.fragments)] };
  const sizes = new Map([[`${info.parentType.name}.${info.fieldName}`, size]]);
  const cost = Math.ceil(operationCost(info.schema, document, info.operation, info.variableValues, sizes));
  return cost > maxCost ? limitError('cost', maxCost, cost) : null;
}

/**
 * Objects 2, scalars 1, each level's fields ×1.5, and a list field's cost × its page size: `first` or `last` as
 * given (literally or in a variable), or the argument's default; or, for the fields named in `listSizes` (Type.field),
 * the number of items the list was found to hold. Fragments count as if written in place. Introspection (__schema,
 * __type) is free.
 */
export function operationCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown>,
  listSizes: ReadonlyMap<string, number> = new Map(),
): number {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const variableDefaults = new Map<string, ValueNode>();
  for (const definition of operation.variableDefinitions ?? []) {
    if (definition.defaultValue) variableDefaults.set(definition.variable.name.value, definition.defaultValue);
  }
  // 'default': what the resolver then serves is the argument's default: an explicit null (literal, or a variable given
  // as null), or a variable neither given nor defaulted (the argument counts as absent).
  const intOf = (value: ValueNode | undefined): number | 'default' | undefined => {
    if (!value) return undefined;
    if (value.kind === Kind.INT) return Number(value.value);
    if (value.kind === Kind.NULL) return 'default';
    if (value.kind === Kind.VARIABLE) {
      const given = variables[value.name.value];
      if (typeof given === 'number') return given;
      if (given === null) return 'default';
      if (given !== undefined) return undefined;
      const declared = variableDefaults.get(value.name.value);
      return declared ? intOf(declared) : 'default';
    }
    return undefined;
  };
  const pageSize = (field: GraphQLField<unknown, unknown> | undefined, node: { arguments?: readonly { name: { value: string }; value: ValueNode }[] }): number => {
    let size = 1;
    for (const name of PAGE_ARGUMENTS) {
      const given = node.arguments?.find((argument) => argument.name.value === name);
      const fallback = field?.args.find((argument) => argument.name === name)?.defaultValue;
      const asGiven = given ? intOf(given.value) : 'default';
      const value = asGiven === 'default' ? (typeof fallback === 'number' ? fallback : undefined) : asGiven;
      if (value !== undefined && Number.isFinite(value)) size = Math.max(size, value);
    }
    return size;
  };
  // A validated document has no fragment cycles; the guard keeps a bug from becoming a stack overflow.
  const spreading = new Set<string>();
  const childrenCost = (selectionSet: SelectionSetNode, parent: GraphQLNamedType | undefined): number => {
    let cost = 0;
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (name === '__schema' || name === '__type') continue;
        const field = parent && (isObjectType(parent) || isInterfaceType(parent)) ? parent.getFields()[name] : undefined;
        if (!selection.selectionSet) {
          cost += SCALAR_COST;
          continue;
        }
        const type = field ? getNamedType(field.type) : undefined;
        const size = (parent && listSizes.get(`${parent.name}.${name}`)) ?? pageSize(field, selection);
        cost += size * (OBJECT_COST + DEPTH_FACTOR * childrenCost(selection.selectionSet, type));
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const type = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
        cost += childrenCost(selection.selectionSet, type && isCompositeType(type) ? type : parent);
      } else {
        const fragment = fragments.get(selection.name.value);
        if (!fragment || spreading.has(fragment.name.value)) continue;
        spreading.add(fragment.name.value);
        const type = schema.getType(fragment.typeCondition.name.value);
        cost += childrenCost(fragment.selectionSet, type && isCompositeType(type) ? type : parent);
        spreading.delete(fragment.name.value);
      }
    }
    return cost;
  };
  return childrenCost(operation.selectionSet, schema.getRootType(operation.operation) ?? undefined);
}
