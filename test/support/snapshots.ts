// Snapshots, operations, export downloads and file uploads as a client drives them, and what they leave on disk.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  allNodes,
  allRelationships,
  createNodes,
  createRelationships,
  expectData,
  gql,
  type GqlResult,
  type GraphQLErrorJson,
  type NodeJson,
  type RelationshipJson,
} from './graphql';
import { encodeArchive } from '../../src/archive';
import type { GraphRecord } from '../../src/graph/records';
import type { TestServer } from './server';
import { eventually, within } from './wait';
import type { ExecutionResult, Subscription } from './ws';

type ServerLike = Pick<TestServer, 'graphqlUrl' | 'adminKey'>;

export const STATS_FIELDS = 'nodeCount relationshipCount labels { name count } relationshipTypes { name count } storeSizeBytes';
export const SNAPSHOT_FIELDS = `id instanceId profile status createdAt completedAt expiresAt description sizeBytes sha256 addedBytes verifiedAt
  exportable format engineVersion error contents { ${STATS_FIELDS} }`;
export const UPDATE_NODES = `mutation ($instanceId: ID!, $nodes: [NodeUpdateInput!]!) { updateNodes(instanceId: $instanceId, nodes: $nodes) { id } }`;
export const OPERATION_FIELDS = `id kind status phase progress bytesDone bytesTotal instanceId snapshotId
  error { code message } createdAt startedAt finishedAt attempt`;

export interface SnapshotJson {
  id: string;
  instanceId: string;
  profile: string;
  status: string;
  createdAt: string;
  completedAt: string | null;
  expiresAt: string | null;
  description: string | null;
  sizeBytes: number | null;
  sha256: string | null;
  addedBytes: number | null;
  verifiedAt: string | null;
  exportable: boolean;
  format: string;
  engineVersion: string;
  error: string | null;
  contents: {
    nodeCount: number;
    relationshipCount: number;
    labels: { name: string; count: number }[];
    relationshipTypes: { name: string; count: number }[];
    storeSizeBytes: number;
  } | null;
  removed?: boolean;
}

export interface OperationJson {
  id: string;
  kind: string;
  status: string;
  phase: string | null;
  progress: number;
  bytesDone: number;
  bytesTotal: number | null;
  instanceId: string;
  snapshotId: string | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  attempt: number;
}

export const CREATE_SNAPSHOT = `mutation ($instanceId: ID!, $description: String) {
  createSnapshot(instanceId: $instanceId, description: $description) { ${SNAPSHOT_FIELDS} }
}`;
export const RESTORE_SNAPSHOT = `mutation ($snapshotId: ID!, $confirm: String!, $instanceId: ID) {
  restoreSnapshot(snapshotId: $snapshotId, confirm: $confirm, instanceId: $instanceId) { ${OPERATION_FIELDS} }
}`;
export const EXPORT_SNAPSHOT = `mutation ($id: ID!) { exportSnapshot(id: $id) { url fileName expiresAt sizeBytes sha256 } }`;
export const RESTORE_FROM_FILE = `mutation ($instanceId: ID!, $file: Upload!, $confirm: String!) {
  restoreFromFile(instanceId: $instanceId, file: $file, confirm: $confirm) { ${OPERATION_FIELDS} }
}`;

export const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** createSnapshot, returning the snapshot as the mutation answered (PENDING or IN_PROGRESS). */
export async function requestSnapshot(
  server: ServerLike,
  instanceId: string,
  { description, key = server.adminKey }: { description?: string; key?: string } = {},
): Promise<SnapshotJson> {
  return expectData(await gql<{ createSnapshot: SnapshotJson }>(server, CREATE_SNAPSHOT, { instanceId, description }, key)).createSnapshot;
}

export async function snapshotById(server: ServerLike, id: string, key = server.adminKey): Promise<SnapshotJson | null> {
  return expectData(await gql(server, `query ($id: ID!) { snapshot(id: $id) { ${SNAPSHOT_FIELDS} } }`, { id }, key)).snapshot;
}

/** Polls until the snapshot is COMPLETED or FAILED; returns it as it then is. */
export function settledSnapshot(server: ServerLike, id: string, key = server.adminKey, timeoutMs = 30_000): Promise<SnapshotJson> {
  return eventually(
    async () => {
      const snapshot = await snapshotById(server, id, key);
      return snapshot && (snapshot.status === 'COMPLETED' || snapshot.status === 'FAILED') ? snapshot : undefined;
    },
    { timeoutMs, intervalMs: 25, what: `snapshot ${id} to settle` },
  );
}

/** createSnapshot and wait until it is COMPLETED (asserted). */
export async function takeSnapshot(
  server: ServerLike,
  instanceId: string,
  { description, key = server.adminKey }: { description?: string; key?: string } = {},
): Promise<SnapshotJson> {
  const requested = await requestSnapshot(server, instanceId, { description, key });
  const settled = await settledSnapshot(server, requested.id, key);
  assert.equal(settled.status, 'COMPLETED', `snapshot ${settled.id} failed: ${settled.error}${serverErrors(server)}`);
  await idle(server, instanceId, key);
  return settled;
}

/** The server's last error lines, for a failure whose answer says only "see the server log" (a test server's). */
function serverErrors(server: ServerLike): string {
  if (!('logLines' in server) || typeof server.logLines !== 'function') return '';
  const errors = (server as TestServer)
    .logLines()
    .filter((line) => typeof line.level === 'number' && line.level >= 50)
    .slice(-3)
    .map((line) => `${String(line.msg)}: ${JSON.stringify((line.err as { stack?: string } | undefined)?.stack ?? line.err ?? null)}`);
  return errors.length ? `\nthe server's last errors:\n${errors.join('\n')}` : '';
}

/**
 * Waits until the instance has no operation running or queued. A snapshot is COMPLETED a moment before its
 * operation ends (retention runs in between), and the next operation is refused (CONFLICT) until then.
 */
export function idle(server: ServerLike, instanceId: string, key = server.adminKey): Promise<true> {
  return eventually(
    async () => {
      const { instance } = expectData(
        await gql(server, `query ($id: ID!) { instance(id: $id) { currentOperation { id } } }`, { id: instanceId }, key),
      );
      return instance.currentOperation === null;
    },
    { timeoutMs: 30_000, intervalMs: 25, what: `instance ${instanceId} to be idle` },
  );
}

export async function operationById(server: ServerLike, id: string, key = server.adminKey): Promise<OperationJson | null> {
  return expectData(await gql(server, `query ($id: ID!) { operation(id: $id) { ${OPERATION_FIELDS} } }`, { id }, key)).operation;
}

/** Polls until the operation is SUCCEEDED, FAILED or CANCELLED; returns it as it then is. */
export function settledOperation(server: ServerLike, id: string, key = server.adminKey, timeoutMs = 60_000): Promise<OperationJson> {
  return eventually(
    async () => {
      const operation = await operationById(server, id, key);
      return operation && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(operation.status) ? operation : undefined;
    },
    { timeoutMs, intervalMs: 25, what: `operation ${id} to finish` },
  );
}

/** restoreSnapshot and wait until the operation has finished; returns the finished operation. */
export async function restoreAndWait(
  server: ServerLike,
  snapshotId: string,
  instanceId?: string,
): Promise<OperationJson> {
  const { restoreSnapshot } = expectData(
    await gql<{ restoreSnapshot: OperationJson }>(server, RESTORE_SNAPSHOT, { snapshotId, confirm: 'RESTORE', instanceId }),
  );
  return settledOperation(server, restoreSnapshot.id);
}

export async function operationCount(server: ServerLike, instanceId: string): Promise<number> {
  return expectData(await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 0) { totalCount } }`, { id: instanceId }))
    .operations.totalCount;
}

export async function instanceState(
  server: ServerLike,
  instanceId: string,
): Promise<{ status: string; availability: string; currentOperation: { id: string; kind: string; status: string } | null }> {
  const { instance } = expectData(
    await gql(server, `query ($id: ID!) { instance(id: $id) { status availability currentOperation { id kind status } } }`, {
      id: instanceId,
    }),
  );
  assert.ok(instance, `instance ${instanceId} is not visible`);
  return instance;
}

export interface Graph {
  nodes: NodeJson[];
  relationships: RelationshipJson[];
}

/** Every node and relationship of the instance, in id order. */
export async function graphOf(server: ServerLike, instanceId: string): Promise<Graph> {
  return { nodes: await allNodes(server, instanceId), relationships: await allRelationships(server, instanceId) };
}

/**
 * Writes `nodes` nodes and `relationships` relationships in batches, `lanes` requests at a time (a large instance
 * for tests that need a snapshot or a restore to take a while). Node i has label `L<i % 3>` and a padded string.
 */
export async function fillInstance(
  server: ServerLike,
  instanceId: string,
  { nodes, relationships, batch = 10_000, lanes = 2 }: { nodes: number; relationships: number; batch?: number; lanes?: number },
): Promise<void> {
  const nodeBatches: (() => Promise<unknown>)[] = [];
  for (let start = 0; start < nodes; start += batch) {
    const size = Math.min(batch, nodes - start);
    nodeBatches.push(() =>
      createNodes(
        server,
        instanceId,
        Array.from({ length: size }, (_, i) => ({
          labels: [`L${(start + i) % 3}`],
          properties: { n: start + i, name: `node-${start + i}`, pad: `${start + i}`.padStart(40, '~'), even: (start + i) % 2 === 0 },
        })),
      ),
    );
  }
  await inLanes(nodeBatches, lanes);
  const { nodes: page } = expectData(await gql(server, `query ($id: ID!) { nodes(instanceId: $id, first: 1) { edges { node { id } } } }`, { id: instanceId }));
  const firstId = Number(page.edges[0]?.node.id ?? 1);
  const relationshipBatches: (() => Promise<unknown>)[] = [];
  for (let start = 0; start < relationships; start += batch) {
    const size = Math.min(batch, relationships - start);
    relationshipBatches.push(() =>
      createRelationships(
        server,
        instanceId,
        Array.from({ length: size }, (_, i) => {
          const k = start + i;
          return {
            type: k % 2 === 0 ? 'NEXT' : 'LINKS',
            startNodeId: String(firstId + (k % nodes)),
            endNodeId: String(firstId + ((k * 7919 + 13) % nodes)),
            properties: { k, weight: (k % 100) / 10 },
          };
        }),
      ),
    );
  }
  await inLanes(relationshipBatches, lanes);
}

/**
 * The archive of the graph fillInstance writes (ids from 1), built here with the archive writer: for tests that only
 * need such an archive to upload, without filling, snapshotting and exporting an instance through a server first.
 */
export async function generatedArchive({ nodes, relationships }: { nodes: number; relationships: number }): Promise<Buffer> {
  const nodeLabel = (i: number) => `L${i % 3}`;
  const relationshipType = (k: number) => (k % 2 === 0 ? 'NEXT' : 'LINKS');
  const tally = (count: number, nameOf: (i: number) => string) => {
    const counts = new Map<string, number>();
    for (let i = 0; i < count; i++) counts.set(nameOf(i), (counts.get(nameOf(i)) ?? 0) + 1);
    return [...counts].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, count]) => ({ name, count }));
  };
  function* records(): Generator<GraphRecord[]> {
    const BATCH = 5_000;
    for (let start = 0; start < nodes; start += BATCH) {
      yield Array.from({ length: Math.min(BATCH, nodes - start) }, (_, j): GraphRecord => {
        const i = start + j;
        return { kind: 'node', node: { id: String(i + 1), labels: [nodeLabel(i)], properties: { n: i, name: `node-${i}`, pad: `${i}`.padStart(40, '~'), even: i % 2 === 0 } } };
      });
    }
    for (let start = 0; start < relationships; start += BATCH) {
      yield Array.from({ length: Math.min(BATCH, relationships - start) }, (_, j): GraphRecord => {
        const k = start + j;
        const relationship = { id: String(k + 1), type: relationshipType(k), startNodeId: String(1 + (k % nodes)), endNodeId: String(1 + ((k * 7919 + 13) % nodes)) };
        return { kind: 'relationship', relationship: { ...relationship, properties: { k, weight: (k % 100) / 10 } } };
      });
    }
  }
  const stats = { nodeCount: nodes, relationshipCount: relationships, labels: tally(nodes, nodeLabel), relationshipTypes: tally(relationships, relationshipType), storeSizeBytes: 0 };
  const header = { engineVersion: 'V5' as const, sourceInstanceId: 'generated', sourceInstanceName: 'generated', capturedAt: new Date().toISOString(), stats };
  const chunks: Buffer[] = [];
  for await (const chunk of encodeArchive(header, records())) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function inLanes(tasks: (() => Promise<unknown>)[], lanes: number): Promise<void> {
  const queue = [...tasks];
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let task = queue.shift(); task; task = queue.shift()) await task();
    }),
  );
}

export interface ExportLinkJson {
  url: string;
  fileName: string;
  expiresAt: string;
  sizeBytes: number;
  sha256: string;
}

export async function exportLink(server: ServerLike, snapshotId: string, key = server.adminKey): Promise<ExportLinkJson> {
  return expectData(await gql<{ exportSnapshot: ExportLinkJson }>(server, EXPORT_SNAPSHOT, { id: snapshotId }, key)).exportSnapshot;
}

export interface DownloadResult {
  status: number;
  headers: Headers;
  body: Buffer;
}

/** GET (or HEAD) an export URL with no credentials, as a browser or curl would. */
export async function download(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<DownloadResult> {
  const response = await fetch(url, { method, headers });
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** The snapshot's export archive bytes (exported and downloaded; the sha256 is checked). */
export async function archiveOf(server: ServerLike, snapshotId: string): Promise<Buffer> {
  const link = await exportLink(server, snapshotId);
  const { status, body } = await download(link.url);
  assert.equal(status, 200);
  assert.equal(sha256Of(body), link.sha256);
  return body;
}

/**
 * restoreFromFile as a real multipart request (GraphQL multipart request spec: operations, map, then the file),
 * with the `Apollo-Require-Preflight` header unless `preflight` is false.
 */
export async function uploadFile(
  server: ServerLike,
  {
    instanceId,
    file,
    fileName = 'graph.backup',
    confirm = 'RESTORE',
    key = server.adminKey,
    preflight = true,
  }: { instanceId: string; file: Buffer; fileName?: string; confirm?: string; key?: string | null; preflight?: boolean },
): Promise<GqlResult<{ restoreFromFile: OperationJson }>> {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: RESTORE_FROM_FILE, variables: { instanceId, file: null, confirm } }));
  form.append('map', JSON.stringify({ 0: ['variables.file'] }));
  form.append('0', new Blob([file], { type: 'application/octet-stream' }), fileName);
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (preflight) headers['apollo-require-preflight'] = 'true';
  const response = await fetch(server.graphqlUrl, { method: 'POST', headers, body: form });
  const text = await response.text();
  let json: { data?: { restoreFromFile: OperationJson } | null; errors?: GraphQLErrorJson[] } = {};
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: callers look at status and text.
  }
  return { status: response.status, data: json.data, errors: json.errors, text };
}

/** Every regular file under `dir`, recursively (absolute paths). */
export function filesUnder(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : entry.isFile() ? [path] : [];
  });
}

/** The blob file that holds a snapshot (see blobKeyOf in the snapshot service). */
/** The tenant's chunk packs (where snapshots are stored), oldest first. */
export const packsOf = (dataDir: string, tenantId: string) =>
  filesUnder(join(dataDir, 'blobs', 'tenants', tenantId, 'chunks', 'packs'))
    .filter((path) => !/\.tmp-/.test(path))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);

/** An instance's change-log segment blobs, oldest first (their names begin with their first seqs). */
export const logSegmentsOf = (dataDir: string, tenantId: string, instanceId: string) =>
  filesUnder(join(dataDir, 'blobs', 'tenants', tenantId, 'log', instanceId))
    .filter((path) => path.endsWith('.seg'))
    .sort();

/** Uploads being received or kept for a restore, for every tenant. */
export const uploadBlobs = (dataDir: string) => filesUnder(join(dataDir, 'blobs', 'tenants')).filter((path) => /\/uploads\//.test(path));

/** Temp files of blob writes (`<name>.tmp-<random>`). */
export const tempBlobs = (dataDir: string) => filesUnder(join(dataDir, 'blobs')).filter((path) => /\.tmp-/.test(path));

/** The store files of an instance (`graph-<generation>.sqlite` and its -wal/-shm). */
export const storeFiles = (dataDir: string, instanceId: string) =>
  filesUnder(join(dataDir, 'instances', instanceId)).map((path) => path.slice(path.lastIndexOf('/') + 1)).sort();

/** The store generations present for an instance. */
export const storeGenerations = (dataDir: string, instanceId: string) => [
  ...new Set(storeFiles(dataDir, instanceId).map((name) => /^graph-(\d+)\.sqlite/.exec(name)?.[1] ?? name)),
];

/** The data of every result of a subscription so far, under its one root field. */
export function payloads<T>(subscription: Subscription, field: string): T[] {
  return subscription.results.map((result: ExecutionResult) => {
    assert.equal(result.errors, undefined, `subscription error: ${JSON.stringify(result.errors)}`);
    return result.data[field] as T;
  });
}

/** The GraphQL errors a subscription ended with (from an error result or its rejection). */
export async function subscriptionErrors(subscription: Subscription, timeoutMs = 5_000): Promise<GraphQLErrorJson[]> {
  const ended = await within(
    subscription.complete.then(
      () => null,
      (error: Error & { graphQLErrors?: GraphQLErrorJson[] }) => error,
    ),
    timeoutMs,
    'the refusal of the subscription',
  );
  const errors = ended?.graphQLErrors ?? subscription.results.find((result) => result.errors)?.errors;
  assert.ok(errors, `expected the subscription to fail, got ${ended ? ended.message : JSON.stringify(subscription.results)}`);
  assert.equal(subscription.results.some((result) => result.data), false, 'the subscription delivered data before failing');
  return errors as GraphQLErrorJson[];
}

/** The server starts a subscription a moment after the connection is acknowledged. */
export async function listening(...subscriptions: Subscription[]): Promise<void> {
  await Promise.all(subscriptions.map((subscription) => subscription.connected));
  await new Promise((resolve) => setTimeout(resolve, 250));
}

const STATUS_ORDER = ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];

/**
 * What restoreProgress/operationProgress promise: the current state first, status never moving back, progress and
 * bytesDone never decreasing, and the stream ends on `finalStatus` (progress 1 when SUCCEEDED).
 */
export function assertProgressSequence(states: OperationJson[], finalStatus: 'SUCCEEDED' | 'FAILED' | 'CANCELLED'): void {
  assert.ok(states.length > 0, 'no progress events');
  const rank = (status: string) => Math.min(STATUS_ORDER.indexOf(status), 2);
  for (let i = 1; i < states.length; i++) {
    const [before, after] = [states[i - 1], states[i]];
    assert.equal(after.id, states[0].id, `event ${i} is about another operation`);
    assert.ok(rank(after.status) >= rank(before.status), `status went back at event ${i}: ${before.status} → ${after.status}`);
    assert.ok(after.progress >= before.progress, `progress went back at event ${i}: ${before.progress} → ${after.progress}`);
    assert.ok(after.bytesDone >= before.bytesDone, `bytesDone went back at event ${i}`);
  }
  for (const state of states.slice(0, -1)) assert.ok(['QUEUED', 'RUNNING'].includes(state.status), `ended early on ${state.status}`);
  const last = states.at(-1)!;
  assert.equal(last.status, finalStatus, JSON.stringify(last.error));
  if (finalStatus === 'SUCCEEDED') {
    assert.equal(last.progress, 1);
    assert.equal(last.error, null);
  } else {
    assert.match(last.error?.code ?? '', /^[A-Z_]+$/);
  }
  assert.ok(last.finishedAt);
}

/** Rewrites the properties of the instance's `count` nodes (ids are consecutive from the first). */
export async function touchEveryNode(server: ServerLike, instanceId: string, count: number, { noteBytes = 0 } = {}): Promise<void> {
  const { nodes: page } = expectData(await gql(server, `query ($id: ID!) { nodes(instanceId: $id, first: 1) { edges { node { id } } } }`, { id: instanceId }));
  const firstId = Number(page.edges[0].node.id);
  // An incompressible note of `noteBytes` per node makes the change log (and whatever ships it) that much larger.
  const note = () => (noteBytes > 0 ? { note: randomBytes(Math.ceil(noteBytes / 2)).toString('hex').slice(0, noteBytes) } : {});
  for (let start = 0; start < count; start += 10_000) {
    const nodes = Array.from({ length: Math.min(10_000, count - start) }, (_, i) => ({ id: String(firstId + start + i), properties: { touched: start + i, ...note() } }));
    expectData(await gql(server, UPDATE_NODES, { instanceId, nodes }));
  }
}

const RESTORE_WINDOW = `query ($id: ID!) { instance(id: $id) { restoreWindow { earliest latest reason } } }`;

export interface RestoreWindow {
  earliest: number;
  latest: number;
  reason: string | null;
}

export async function restoreWindowOf(server: ServerLike, instanceId: string, key = server.adminKey): Promise<RestoreWindow | null> {
  const { instance } = expectData(await gql(server, RESTORE_WINDOW, { id: instanceId }, key));
  assert.ok(instance, `instance ${instanceId} is not visible`);
  const window = instance.restoreWindow;
  return window && { earliest: Date.parse(window.earliest), latest: Date.parse(window.latest), reason: window.reason };
}

/** Waits until every write acknowledged up to `moment` is restorable (restoreWindow.latest has passed it). */
export function restorableThrough(server: ServerLike, instanceId: string, moment: number, timeoutMs = 15_000): Promise<RestoreWindow> {
  return eventually(
    async () => {
      const window = await restoreWindowOf(server, instanceId);
      return window !== null && window.latest >= moment ? window : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `restoreWindow.latest of ${instanceId} to reach ${new Date(moment).toISOString()}` },
  );
}
