// Answers to queries that read nothing but a tenant's instances and snapshots, kept until one of those rows changes.
//
// Dashboards poll the same few queries (the instance list, snapshot history); each answer is a GraphQL execution and
// database reads that, between two changes, give the same result every time. A query qualifies when every field it
// selects is marked @ReadsVersionedRows: its value is a function of the caller's tenant's rows in the versioned tables
// (instances, snapshots), the caller's API key and the field's arguments, nothing else (no instance store, no blob,
// no clock, no other table). Its answer is kept under the caller's key id, the operation, the query and the
// variables, with the tenant's data version read before it was executed (entities/tenant-data-version.ts: triggers
// give the tenant a new version with every change to those rows, in the same transaction, whoever commits it). It is
// given again only while the version is still that one, so an answer is never older than the last commit, on any
// replica: a kept answer is the answer executing would give.
//
// Every check before execution still runs for every request: authentication (a revoked key is refused before the
// cache is looked at), validation, limits and cost. Mutations, subscriptions, answers with errors and queries with any
// field not marked never touch the cache.
import { type ApolloServerPlugin, HeaderMap } from '@apollo/server';
import {
  type DocumentNode,
  type FormattedExecutionResult,
  type FragmentDefinitionNode,
  getNamedType,
  type GraphQLObjectType,
  type GraphQLSchema,
  isObjectType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { Extensions } from 'type-graphql';
import type { TenantDataVersion } from '../entities/tenant-data-version';
import type { ApiContext } from './context';

const READS_VERSIONED_ROWS = 'readsVersionedRows';

/**
 * Marks a field (or a query) whose value is a function of the caller's tenant's rows in the versioned tables (instances
 * and snapshots: migration 1766500000000), the caller's API key and the field's arguments alone, so that an answer made
 * only of such fields may be kept until one of those rows changes. A field that reads anything else (an instance's
 * store, another table, the blob store, the time, another service) must not have it; a field that comes to read
 * another table needs that table's changes counted in the tenant's data version first (a migration adding it to the
 * triggers). A field of a type reached through an unmarked field is never looked at, so marking a shared type's field
 * (PageInfo, GraphStats) is safe.
 */
export const ReadsVersionedRows = () => Extensions({ [READS_VERSIONED_ROWS]: true });

/** Whether the operation is a query that selects only fields marked @ReadsVersionedRows (and __typename). */
export function readsVersionedRowsOnly(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode): boolean {
  const root = schema.getQueryType();
  if (operation.operation !== 'query' || !root) return false;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  return selectsMarkedOnly(schema, root, operation.selectionSet, fragments);
}

function selectsMarkedOnly(schema: GraphQLSchema, type: GraphQLObjectType, selectionSet: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>): boolean {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value === '__typename') continue;
      const field = type.getFields()[selection.name.value];
      if (field?.extensions[READS_VERSIONED_ROWS] !== true) return false;
      if (!selection.selectionSet) continue;
      // Lists and non-nulls of an object type; an interface or a union is not worth proving field by field.
      const named = getNamedType(field.type);
      if (!isObjectType(named) || !selectsMarkedOnly(schema, named, selection.selectionSet, fragments)) return false;
    } else {
      const fragment = selection.kind === Kind.INLINE_FRAGMENT ? selection : fragments.get(selection.name.value);
      if (!fragment) return false;
      // A fragment on the type itself applies in full; one on an interface or union it belongs to is refused rather
      // than reasoned about.
      const condition = fragment.typeCondition ? schema.getType(fragment.typeCondition.name.value) : type;
      if (condition !== type || !selectsMarkedOnly(schema, type, fragment.selectionSet, fragments)) return false;
    }
  }
  return true;
}

export interface ResponseCacheLimits {
  /** Answers kept, at most. */
  maxEntries: number;
  /** Bytes of kept answers (as JSON), at most. */
  maxBytes: number;
  /** An answer larger than this (as JSON) is not kept. */
  maxEntryBytes: number;
}

export const RESPONSE_CACHE_LIMITS: ResponseCacheLimits = { maxEntries: 1_000, maxBytes: 16 * 1024 * 1024, maxEntryBytes: 256 * 1024 };

interface Entry {
  version: string;
  result: FormattedExecutionResult;
  bytes: number;
}

/** Kept answers, least recently used first out, bounded in count and bytes. */
export class ResponseCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(private readonly limits: ResponseCacheLimits = RESPONSE_CACHE_LIMITS) {}

  get size(): number {
    return this.entries.size;
  }

  /** The answer kept under `key` at `version`; an answer kept at another version is dropped. */
  get(key: string, version: string): FormattedExecutionResult | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.remove(key, entry);
    if (entry.version !== version) return undefined;
    this.entries.set(key, entry); // most recently used last
    this.bytes += entry.bytes;
    return entry.result;
  }

  set(key: string, version: string, result: FormattedExecutionResult): void {
    const bytes = key.length + JSON.stringify(result).length;
    const previous = this.entries.get(key);
    if (previous) this.remove(key, previous);
    if (bytes > this.limits.maxEntryBytes) return;
    this.entries.set(key, { version, result, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= this.limits.maxEntries && this.bytes <= this.limits.maxBytes) break;
      this.remove(oldest, entry);
    }
  }

  private remove(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }
}

/**
 * What an answer is kept under: the key, the operation, the query and the values of the variables it declares (the
 * others change nothing in the answer; a client sending them along would only fill the cache). Null when the values
 * cannot be written down: nested deeper than JSON.stringify's stack allows, they are refused by execution as the
 * client's error, never turned into an internal one here.
 */
function keyOf(apiKeyId: string, operation: OperationDefinitionNode, queryHash: string | undefined, variables: Record<string, unknown> | undefined): string | null {
  // One left out and one given as null are told apart: a default applies to the first only.
  const values: Record<string, unknown> = {};
  for (const { variable } of operation.variableDefinitions ?? []) {
    if (variables && Object.hasOwn(variables, variable.name.value)) values[variable.name.value] = variables[variable.name.value];
  }
  try {
    return JSON.stringify([apiKeyId, operation.name?.value ?? null, queryHash, values]);
  } catch {
    return null;
  }
}

export interface ResponseCacheCounters {
  inc(labels: { outcome: 'hit' | 'miss' }): void;
}

/** The Apollo plugin: answers from `cache` before execution, and keeps what execution answered. */
export function responseCachePlugin(cache: ResponseCache, versionOf: TenantDataVersion, counter: ResponseCacheCounters): ApolloServerPlugin<ApiContext> {
  // Apollo keeps each query's parsed document, so the same query text comes back with the same operation node. The
  // answer is kept by that node, never by anything else the client sent (an operation name matching nothing is
  // refused by Apollo after this hook, and a memo of such names would grow with them).
  const qualifies = new WeakMap<OperationDefinitionNode, boolean>();
  const qualifiesToKeep = (schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode): boolean => {
    let answer = qualifies.get(operation);
    if (answer === undefined) qualifies.set(operation, (answer = readsVersionedRowsOnly(schema, document, operation)));
    return answer;
  };

  return {
    async requestDidStart() {
      let pending: { key: string; version: string } | null = null;
      return {
        async responseForOperation({ schema, document, operation, request, queryHash, contextValue }) {
          const principal = contextValue.principal;
          if (!principal || !operation || !qualifiesToKeep(schema, document, operation)) return null;
          const current = await versionOf(principal.tenantId);
          if (current === null) return null;
          const key = keyOf(principal.apiKeyId, operation, queryHash, request.variables);
          if (key === null) return null;
          const kept = cache.get(key, current);
          if (kept) {
            counter.inc({ outcome: 'hit' });
            return { http: { status: undefined, headers: new HeaderMap() }, body: { kind: 'single', singleResult: kept } };
          }
          counter.inc({ outcome: 'miss' });
          pending = { key, version: current };
          return null;
        },
        async willSendResponse({ response }) {
          if (!pending || response.body.kind !== 'single') return;
          const result = response.body.singleResult;
          if (!result.errors && result.data && (response.http.status ?? 200) === 200) cache.set(pending.key, pending.version, result);
        },
      };
    },
  };
}
