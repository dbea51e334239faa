// GraphQL over HTTP as a client sends it, and assertions on the contract's error codes.
import assert from 'node:assert/strict';
import type { TestServer } from './server';

export interface GraphQLErrorJson {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; stacktrace?: unknown; [key: string]: unknown };
  [key: string]: unknown;
}

export interface GqlResult<TData = any> {
  status: number;
  data: TData | null | undefined;
  errors: GraphQLErrorJson[] | undefined;
  /** The raw response body (also when it is not JSON). */
  text: string;
}

type ServerLike = Pick<TestServer, 'graphqlUrl' | 'adminKey'>;

/**
 * POSTs one GraphQL operation. `key` defaults to the server's bootstrap ADMIN key; pass null to send no
 * Authorization header.
 */
export function gql<TData = any>(
  server: ServerLike,
  query: string,
  variables?: Record<string, unknown>,
  key: string | null = server.adminKey,
): Promise<GqlResult<TData>> {
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  return post<TData>(server, { query, variables }, headers);
}

/** POSTs any body with any headers to /graphql (malformed headers, raw JSON). */
export async function post<TData = any>(
  server: Pick<TestServer, 'graphqlUrl'>,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<GqlResult<TData>> {
  const response = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json: { data?: TData | null; errors?: GraphQLErrorJson[] } = {};
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: callers look at status and text.
  }
  return { status: response.status, data: json.data, errors: json.errors, text };
}

/**
 * Asserts the operation succeeded without errors and returns its data. `why`, when given, says what errors would most
 * likely mean (a test that must catch an operation running: "it finished first").
 */
export function expectData<TData>(result: GqlResult<TData>, why?: string): TData {
  assert.equal(
    result.errors,
    undefined,
    `${why ? `${why}\n` : ''}expected no errors, got (HTTP ${result.status}):\n${JSON.stringify(result.errors, null, 2)}`,
  );
  assert.ok(result.data, `expected data, got HTTP ${result.status}: ${result.text.slice(0, 2000)}`);
  return result.data;
}

/** Asserts the result carries an error with this extensions.code (and, by default, no data was written). */
export function expectCode(result: GqlResult, code: string): GraphQLErrorJson {
  const codes = (result.errors ?? []).map((error) => error.extensions?.code);
  const error = result.errors?.find((candidate) => candidate.extensions?.code === code);
  assert.ok(
    error,
    `expected an error with code ${code}, got ${codes.length > 0 ? codes.join(', ') : 'no errors'} ` +
      `(HTTP ${result.status}):\n${JSON.stringify(result.errors ?? result.data, null, 2)}`,
  );
  return error;
}

export interface NewApiKey {
  id: string;
  name: string;
  role: string;
  secret: string;
}

/** createApiKey as an ADMIN of the key's tenant. */
export async function createKey(
  server: ServerLike,
  adminKey: string,
  role: 'ADMIN' | 'MEMBER' | 'VIEWER',
  name = `${role.toLowerCase()}-key`,
): Promise<NewApiKey> {
  const result = await gql<{ createApiKey: NewApiKey }>(
    server,
    `mutation ($name: String!, $role: Role!) { createApiKey(name: $name, role: $role) { id name role secret } }`,
    { name, role },
    adminKey,
  );
  return expectData(result).createApiKey;
}

export interface InstanceSummary {
  id: string;
  name: string;
  tier: string;
  memoryGB: number;
  storageGB: number;
  engineVersion: string;
  status: string;
  availability: string;
  createdAt: string;
}

const INSTANCE_FIELDS = 'id name tier memoryGB storageGB engineVersion status availability createdAt';

export async function createInstance(
  server: ServerLike,
  input: { name?: string; tier?: string; memoryGB?: number; engineVersion?: string } = {},
  key: string = server.adminKey,
): Promise<InstanceSummary> {
  const result = await gql<{ createInstance: InstanceSummary }>(
    server,
    `mutation ($input: CreateInstanceInput!) { createInstance(input: $input) { ${INSTANCE_FIELDS} } }`,
    { input: { name: 'test-instance', tier: 'PROFESSIONAL', ...input } },
    key,
  );
  return expectData(result).createInstance;
}

export interface NodeJson {
  id: string;
  labels: string[];
  properties: Record<string, unknown>;
}
export interface RelationshipJson {
  id: string;
  type: string;
  startNodeId: string;
  endNodeId: string;
  properties: Record<string, unknown>;
}

export const CREATE_NODES = `mutation ($instanceId: ID!, $nodes: [NodeInput!]!) {
  createNodes(instanceId: $instanceId, nodes: $nodes) { id labels properties }
}`;
export const CREATE_RELATIONSHIPS = `mutation ($instanceId: ID!, $relationships: [RelationshipInput!]!) {
  createRelationships(instanceId: $instanceId, relationships: $relationships) { id type startNodeId endNodeId properties }
}`;
export const DELETE_NODES = `mutation ($instanceId: ID!, $ids: [ID!]!) { deleteNodes(instanceId: $instanceId, ids: $ids) }`;
export const NODES_PAGE = `query ($instanceId: ID!, $label: String, $first: Int, $after: String) {
  nodes(instanceId: $instanceId, label: $label, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id labels properties } }
  }
}`;
export const RELATIONSHIPS_PAGE = `query ($instanceId: ID!, $type: String, $first: Int, $after: String) {
  relationships(instanceId: $instanceId, type: $type, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id type startNodeId endNodeId properties } }
  }
}`;
export const INSTANCE_STATS = `query ($id: ID!) {
  instance(id: $id) {
    stats { nodeCount relationshipCount labels { name count } relationshipTypes { name count } storeSizeBytes }
  }
}`;

export async function createNodes(
  server: ServerLike,
  instanceId: string,
  nodes: { labels: string[]; properties?: Record<string, unknown> }[],
  key: string = server.adminKey,
): Promise<NodeJson[]> {
  return expectData(await gql<{ createNodes: NodeJson[] }>(server, CREATE_NODES, { instanceId, nodes }, key)).createNodes;
}

export async function createRelationships(
  server: ServerLike,
  instanceId: string,
  relationships: { type: string; startNodeId: string; endNodeId: string; properties?: Record<string, unknown> }[],
  key: string = server.adminKey,
): Promise<RelationshipJson[]> {
  return expectData(
    await gql<{ createRelationships: RelationshipJson[] }>(server, CREATE_RELATIONSHIPS, { instanceId, relationships }, key),
  ).createRelationships;
}

export interface GraphStatsJson {
  nodeCount: number;
  relationshipCount: number;
  labels: { name: string; count: number }[];
  relationshipTypes: { name: string; count: number }[];
  storeSizeBytes: number;
}

export async function statsOf(server: ServerLike, instanceId: string, key: string = server.adminKey): Promise<GraphStatsJson> {
  const data = expectData(await gql<{ instance: { stats: GraphStatsJson } | null }>(server, INSTANCE_STATS, { id: instanceId }, key));
  assert.ok(data.instance, `instance ${instanceId} is not visible to this key`);
  return data.instance.stats;
}

/** Pages through every node (optionally of one label) with `first`/`after`; returns them in order. */
export async function allNodes(
  server: ServerLike,
  instanceId: string,
  { label, pageSize = 1000, key = server.adminKey }: { label?: string; pageSize?: number; key?: string } = {},
): Promise<NodeJson[]> {
  const nodes: NodeJson[] = [];
  for (let after: string | null = null; ; ) {
    const page: { nodes: Connection<NodeJson> } = expectData(
      await gql(server, NODES_PAGE, { instanceId, label, first: pageSize, after }, key),
    );
    nodes.push(...page.nodes.edges.map((edge) => edge.node));
    if (!page.nodes.pageInfo.hasNextPage) return nodes;
    after = page.nodes.pageInfo.endCursor;
  }
}

export async function allRelationships(
  server: ServerLike,
  instanceId: string,
  { type, pageSize = 1000, key = server.adminKey }: { type?: string; pageSize?: number; key?: string } = {},
): Promise<RelationshipJson[]> {
  const relationships: RelationshipJson[] = [];
  for (let after: string | null = null; ; ) {
    const page: { relationships: Connection<RelationshipJson> } = expectData(
      await gql(server, RELATIONSHIPS_PAGE, { instanceId, type, first: pageSize, after }, key),
    );
    relationships.push(...page.relationships.edges.map((edge) => edge.node));
    if (!page.relationships.pageInfo.hasNextPage) return relationships;
    after = page.relationships.pageInfo.endCursor;
  }
}

export interface Connection<T> {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  edges: { cursor: string; node: T }[];
}
