// Snapshots end to end (issue 3): on-demand capture, consistency under concurrent writes, history and its cursors,
// events, deletion, tenancy, operations, encryption at rest, clean failures and a crash in the middle of a snapshot.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openArchive } from '../../src/archive';
import {
  archiveOf,
  type Connection,
  CREATE_SNAPSHOT,
  createInstance,
  createKey,
  createNodes,
  createRelationships,
  createTenant,
  expectCode,
  expectData,
  filesUnder,
  fillInstance,
  gql,
  idle,
  instanceState,
  listening,
  type NewTenant,
  OPERATION_FIELDS,
  type OperationJson,
  operationById,
  payloads,
  requestSnapshot,
  RESTORE_SNAPSHOT,
  restoreAndWait,
  serverPerSuite,
  settledOperation,
  settledSnapshot,
  sha256Of,
  SNAPSHOT_FIELDS,
  snapshotById,
  type SnapshotJson,
  statsOf,
  subscribe,
  subscriptionErrors,
  takeSnapshot,
  touchEveryNode,
  tempBlobs,
  type TestServer,
} from '../support';

const SNAPSHOTS_PAGE = `query ($instanceId: ID!, $first: Int, $after: String, $filter: SnapshotFilter) {
  snapshots(instanceId: $instanceId, first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id createdAt profile status } }
  }
}`;
const SNAPSHOT_UPDATED = `subscription ($instanceId: ID) { snapshotUpdated(instanceId: $instanceId) { ${SNAPSHOT_FIELDS} removed instance { id name } } }`;
const OPERATION_PROGRESS = `subscription ($id: ID!) { operationProgress(operationId: $id) { ${OPERATION_FIELDS} } }`;
const DELETE_SNAPSHOT = `mutation ($id: ID!) { deleteSnapshot(id: $id) }`;

type SnapshotRow = { id: string; createdAt: string; profile: string; status: string };

async function snapshotPage(
  server: TestServer,
  instanceId: string,
  variables: { first?: number; after?: string | null; filter?: Record<string, unknown> } = {},
): Promise<Connection<SnapshotRow>> {
  return expectData(await gql(server, SNAPSHOTS_PAGE, { instanceId, ...variables })).snapshots;
}

/** Pages through the whole (filtered) history with `first`, asserting each page's cursors and totals. */
async function wholeHistory(server: TestServer, instanceId: string, filter?: Record<string, unknown>, first = 7): Promise<SnapshotRow[]> {
  const rows: SnapshotRow[] = [];
  for (let after: string | null = null; ; ) {
    const page = await snapshotPage(server, instanceId, { first, after, filter });
    assertPageShape(page, after);
    rows.push(...page.edges.map((edge) => edge.node));
    assert.equal(rows.length <= page.totalCount, true);
    if (!page.pageInfo.hasNextPage) {
      assert.equal(rows.length, page.totalCount);
      return rows;
    }
    after = page.pageInfo.endCursor;
  }
}

function assertPageShape(page: Connection<SnapshotRow>, after: string | null): void {
  assert.equal(page.pageInfo.hasPreviousPage, after !== null);
  assert.equal(page.pageInfo.startCursor, page.edges[0]?.cursor ?? null);
  assert.equal(page.pageInfo.endCursor, page.edges.at(-1)?.cursor ?? null);
}

/** Newest first: createdAt descending (ties by id descending, an order the API keeps stable). */
function assertNewestFirst(rows: SnapshotRow[]): void {
  for (let i = 1; i < rows.length; i++) {
    const [newer, older] = [rows[i - 1], rows[i]];
    assert.ok(
      Date.parse(newer.createdAt) > Date.parse(older.createdAt) || (newer.createdAt === older.createdAt && newer.id > older.id),
      `not newest first at ${i}: ${JSON.stringify([newer, older])}`,
    );
  }
}

const ids = (rows: { id: string }[]) => rows.map((row) => row.id);

describe('snapshots', () => {
  const suite = serverPerSuite();
  let tenantId: string;

  before(async () => {
    tenantId = expectData(await gql(suite.server, `{ viewer { tenantId } }`)).viewer.tenantId;
  });

  describe('createSnapshot', () => {
    it('ends its operation in the same step as the snapshot completes: the next operation never meets CONFLICT', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'back-to-back', tier: 'FREE' });
      await createNodes(server, instance.id, [{ labels: ['Person'] }]);
      for (let round = 0; round < 5; round++) {
        const requested = await requestSnapshot(server, instance.id);
        for (let seen = requested; seen.status !== 'COMPLETED'; ) {
          assert.notEqual(seen.status, 'FAILED', seen.error ?? undefined);
          seen = (await snapshotById(server, requested.id))!;
        }
        // Polled as tightly as a client can: the moment it reads COMPLETED, the instance is free.
        expectData(await gql(server, CREATE_SNAPSHOT, { instanceId: instance.id }));
        await idle(server, instance.id);
      }
    });

    it('returns at once as PENDING or IN_PROGRESS, ON_DEMAND, and completes with the facts of its archive', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'facts', tier: 'PROFESSIONAL', engineVersion: 'V5' });
      const nodes = await createNodes(server, instance.id, [
        { labels: ['Person'], properties: { name: 'Ada' } },
        { labels: ['Person', 'Admin'], properties: { name: 'Grace' } },
        { labels: [] },
      ]);
      await createRelationships(server, instance.id, [{ type: 'KNOWS', startNodeId: nodes[0].id, endNodeId: nodes[1].id }]);
      const statsAtTheTime = await statsOf(server, instance.id);

      const before = Date.now();
      const requested = await requestSnapshot(server, instance.id, { description: 'before the migration' });
      assert.ok(['PENDING', 'IN_PROGRESS'].includes(requested.status), requested.status);
      assert.equal(requested.profile, 'ON_DEMAND');
      assert.equal(requested.instanceId, instance.id);
      assert.equal(requested.description, 'before the migration');
      assert.equal(requested.completedAt, null);
      assert.equal(requested.contents, null);
      assert.equal(requested.sha256, null);
      assert.equal(requested.exportable, false);
      assert.ok(Math.abs(Date.parse(requested.createdAt) - before) < 5_000);

      const completed = await settledSnapshot(server, requested.id);
      assert.equal(completed.status, 'COMPLETED', completed.error ?? undefined);
      assert.equal(completed.error, null);
      assert.equal(completed.createdAt, requested.createdAt);
      assert.ok(Date.parse(completed.completedAt!) >= Date.parse(completed.createdAt));
      assert.equal(completed.exportable, true);
      assert.equal(completed.format, 'BACKUP');
      assert.equal(completed.engineVersion, 'V5');
      assert.deepEqual(completed.contents, statsAtTheTime);

      // The export archive is produced at the first export (archiveOf checks its sha256 against the link's): the
      // snapshot then records its size and hash, which never change again; its header holds the same stats.
      const archive = await archiveOf(server, completed.id);
      const exported = (await snapshotById(server, completed.id))!;
      assert.equal(exported.sizeBytes, archive.length);
      assert.equal(exported.sha256, sha256Of(archive));
      const header = await openArchive(Readable.from([archive])).header;
      assert.deepEqual(header.stats, statsAtTheTime);
      assert.equal(header.engineVersion, 'V5');
      assert.equal(header.sourceInstanceId, instance.id);
    });

    it('of a V4 instance is a DUMP with engine V4', async () => {
      const instance = await createInstance(suite.server, { name: 'legacy', tier: 'PROFESSIONAL', engineVersion: 'V4' });
      await createNodes(suite.server, instance.id, [{ labels: ['Old'] }]);
      const snapshot = await takeSnapshot(suite.server, instance.id);
      assert.equal(snapshot.format, 'DUMP');
      assert.equal(snapshot.engineVersion, 'V4');
      assert.equal(snapshot.contents!.nodeCount, 1);
    });

    it('captures a count the instance really had while 1,000 nodes are written concurrently, and every write succeeds', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'busy', tier: 'PROFESSIONAL' });
      await createNodes(server, instance.id, Array.from({ length: 200 }, (_, i) => ({ labels: ['Base'], properties: { i } })));
      const BATCH = 50;
      const batches = Array.from({ length: 20 }, (_, b) =>
        Array.from({ length: BATCH }, (_, i) => ({ labels: ['Batch'], properties: { b, i, text: 'x'.repeat(200) } })),
      );

      // Four writers, each sending its batches one after another; the snapshot is requested after the first lands.
      let landed = 0;
      const writers = Array.from({ length: 4 }, async (_, lane) => {
        for (let b = lane; b < batches.length; b += 4) {
          await createNodes(server, instance.id, batches[b]);
          landed += 1;
        }
      });
      while (landed === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      const landedWhenRequested = landed;
      const requested = await requestSnapshot(server, instance.id);
      await Promise.all(writers);
      const snapshot = await settledSnapshot(server, requested.id);

      assert.equal(snapshot.status, 'COMPLETED', snapshot.error ?? undefined);
      assert.ok(landedWhenRequested < batches.length, 'the writes had finished before the snapshot was requested');
      const captured = snapshot.contents!.nodeCount - 200;
      assert.ok(captured >= 0 && captured <= 1000 && captured % BATCH === 0, `captured ${captured} batch nodes: a batch was split`);
      assert.ok(captured / BATCH >= landedWhenRequested, 'writes acknowledged before the snapshot was requested are missing');
      const batchLabel = snapshot.contents!.labels.find((label) => label.name === 'Batch')?.count ?? 0;
      assert.equal(batchLabel, captured, 'the label counts disagree with the node count');
      assert.equal((await statsOf(server, instance.id)).nodeCount, 1200, 'a write during the snapshot was lost');

      // The records in the archive are exactly the counted ones (the reader checks counts against the header).
      let records = 0;
      for await (const batch of openArchive(Readable.from([await archiveOf(server, snapshot.id)])).records()) records += batch.length;
      assert.equal(records, snapshot.contents!.nodeCount);
    });
  });

  describe('history', () => {
    let instanceId: string;
    let history: SnapshotJson[]; // newest first

    before(async function () {
      this.timeout(60_000);
      instanceId = (await createInstance(suite.server, { name: 'history', tier: 'PROFESSIONAL' })).id;
      await createNodes(suite.server, instanceId, [{ labels: ['Tiny'] }]);
      const taken: SnapshotJson[] = [];
      for (let i = 0; i < 30; i++) taken.push(await takeSnapshot(suite.server, instanceId, { description: `#${i}` }));
      history = taken.reverse();
    });

    it('pages newest first with first/after, covering every snapshot exactly once, with totalCount', async () => {
      for (const first of [1, 7, 30, 50]) {
        const rows = await wholeHistory(suite.server, instanceId, undefined, first);
        assert.deepEqual(ids(rows), ids(history), `first: ${first}`);
        assertNewestFirst(rows);
      }
      const page = await snapshotPage(suite.server, instanceId, { first: 0 });
      assert.deepEqual({ totalCount: page.totalCount, edges: page.edges }, { totalCount: 30, edges: [] });
    });

    it('serves `first: null` as the default page of 20, as nodes and relationships do and the cost counts it', async () => {
      // Clients send null for a page size left unset; `first: Int = 20` then read null, refused as out of range.
      const query = `query ($id: ID!, $first: Int) {
        snapshots(instanceId: $id, first: $first) { edges { node { id } } }
        instance(id: $id) { snapshots(first: $first) { edges { node { id } } } }
        operations(instanceId: $id, first: $first) { edges { node { id } } }
      }`;
      const data = expectData(await gql(suite.server, query, { id: instanceId, first: null }));
      assert.deepEqual(data.snapshots.edges.map((edge: { node: { id: string } }) => edge.node.id), ids(history).slice(0, 20));
      assert.deepEqual(data.instance.snapshots.edges, data.snapshots.edges);
      assert.equal(data.operations.edges.length, 20);
    });

    it('Instance.snapshots gives the same pages', async () => {
      const query = `query ($id: ID!, $after: String) {
        instance(id: $id) { snapshots(first: 12, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }
      }`;
      const seen: string[] = [];
      for (let after: string | null = null; ; ) {
        const { snapshots }: { snapshots: Connection<{ id: string }> } = expectData(await gql(suite.server, query, { id: instanceId, after })).instance;
        assert.equal(snapshots.totalCount, 30);
        seen.push(...snapshots.edges.map((edge: { node: { id: string } }) => edge.node.id));
        if (!snapshots.pageInfo.hasNextPage) break;
        after = snapshots.pageInfo.endCursor;
      }
      assert.deepEqual(seen, ids(history));
    });

    it('keeps cursors correct while new snapshots arrive in the middle of the pagination', async () => {
      const first = await snapshotPage(suite.server, instanceId, { first: 10 });
      const arrived = [await takeSnapshot(suite.server, instanceId), await takeSnapshot(suite.server, instanceId)];
      const second = await snapshotPage(suite.server, instanceId, { first: 10, after: first.pageInfo.endCursor });
      const third = await snapshotPage(suite.server, instanceId, { first: 10, after: second.pageInfo.endCursor });
      assert.equal(second.totalCount, 32);
      assert.equal(third.pageInfo.hasNextPage, false);
      assert.deepEqual([...first.edges, ...second.edges, ...third.edges].map((edge) => edge.node.id), ids(history));
      // The newcomers are at the head of a fresh first page.
      const newestFirst = [...arrived].reverse();
      const fresh = await snapshotPage(suite.server, instanceId, { first: 2 });
      assert.deepEqual(ids(fresh.edges.map((edge) => edge.node)), ids(newestFirst));
      history.unshift(...newestFirst);
    });

    it('refuses a malformed cursor as BAD_USER_INPUT', async () => {
      expectCode(await gql(suite.server, SNAPSHOTS_PAGE, { instanceId, after: 'not-a-cursor' }), 'BAD_USER_INPUT');
    });

    // The connections disagreed: snapshots and operations took `after: ""` for no cursor, nodes and relationships
    // refused it; a client that sent "" for an unset cursor got a first page from one and an error from the other.
    const CONNECTIONS = {
      snapshots: `query ($id: ID!, $first: Int, $after: String) { page: snapshots(instanceId: $id, first: $first, after: $after) { PAGE } }`,
      'Instance.snapshots': `query ($id: ID!, $first: Int, $after: String) { instance(id: $id) { page: snapshots(first: $first, after: $after) { PAGE } } }`,
      operations: `query ($id: ID!, $first: Int, $after: String) { page: operations(instanceId: $id, first: $first, after: $after) { PAGE } }`,
      nodes: `query ($id: ID!, $first: Int, $after: String) { page: nodes(instanceId: $id, first: $first, after: $after) { PAGE } }`,
      relationships: `query ($id: ID!, $first: Int, $after: String) { page: relationships(instanceId: $id, first: $first, after: $after) { PAGE } }`,
    };
    const PAGE_FIELDS = 'totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor }';
    type Page = Pick<Connection<unknown>, 'totalCount' | 'pageInfo'> & { edges: { cursor: string }[] };
    const pageOf = async (name: keyof typeof CONNECTIONS, id: string, variables: { first?: number; after?: string }, key = suite.server.adminKey): Promise<Page> => {
      const data = expectData(await gql(suite.server, CONNECTIONS[name].replace('PAGE', PAGE_FIELDS), { id, ...variables }, key));
      return name === 'Instance.snapshots' ? data.instance.page : data.page;
    };

    it('answers `first: 0` on every connection with an empty page whose hasNextPage says whether anything follows', async () => {
      const pairs = (await createInstance(suite.server, { name: 'one of each' })).id;
      const [a, b] = await createNodes(suite.server, pairs, [{ labels: ['A'] }, { labels: ['B'] }]);
      await createRelationships(suite.server, pairs, [{ type: 'R', startNodeId: a.id, endNodeId: b.id }]);
      await takeSnapshot(suite.server, pairs);
      for (const name of Object.keys(CONNECTIONS) as (keyof typeof CONNECTIONS)[]) {
        const whole = await pageOf(name, pairs, { first: 500 });
        assert.ok(whole.edges.length > 0, `${name}: nothing to page over`);
        const empty = await pageOf(name, pairs, { first: 0 });
        assert.deepEqual(
          { edges: empty.edges, pageInfo: empty.pageInfo, totalCount: empty.totalCount },
          { edges: [], pageInfo: { hasNextPage: true, hasPreviousPage: false, startCursor: null, endCursor: null }, totalCount: whole.totalCount },
          `${name}: first: 0`,
        );
        const last = whole.edges[whole.edges.length - 1].cursor;
        const afterLast = await pageOf(name, pairs, { first: 0, after: last });
        assert.deepEqual(afterLast.edges, [], `${name}: first: 0 after the last item`);
        assert.equal(afterLast.pageInfo.hasNextPage, false, `${name}: first: 0 after the last item has a next page`);
        const beforeLast = await pageOf(name, pairs, { first: 0, after: whole.edges.length > 1 ? whole.edges[0].cursor : undefined });
        assert.equal(beforeLast.pageInfo.hasNextPage, true, `${name}: first: 0 before the last item has no next page`);
      }
    });

    it('refuses `after: ""` as BAD_USER_INPUT on every connection, as any other cursor it never issued', async () => {
      for (const name of Object.keys(CONNECTIONS) as (keyof typeof CONNECTIONS)[]) {
        const error = expectCode(await gql(suite.server, CONNECTIONS[name].replace('PAGE', PAGE_FIELDS), { id: instanceId, first: 5, after: '' }), 'BAD_USER_INPUT');
        assert.match(error.message, /not a valid cursor/, name);
      }
    });

    // A cursor held only a position ([createdAt, id], or a node's id): one of another instance, another tenant's or
    // another connection (a snapshot's in operations) was taken for a position in this list, a silently wrong page.
    it('refuses on every connection a cursor of another connection, another instance or another tenant, saying so', async () => {
      const filled = async (name: string, key = suite.server.adminKey) => {
        const id = (await createInstance(suite.server, { name }, key)).id;
        const [a, b] = await createNodes(suite.server, id, [{ labels: ['A'] }, { labels: ['B'] }], key);
        await createRelationships(suite.server, id, [{ type: 'R', startNodeId: a.id, endNodeId: b.id }], key);
        await takeSnapshot(suite.server, id, { key });
        return id;
      };
      const other = await createTenant(suite.server, 'cursor-thief');
      const [here, elsewhere, theirs] = [await filled('cursors here'), await filled('cursors elsewhere'), await filled('theirs', other.apiKey)];
      const names = Object.keys(CONNECTIONS) as (keyof typeof CONNECTIONS)[];
      const cursorOf = async (name: keyof typeof CONNECTIONS, id: string, key?: string) => (await pageOf(name, id, { first: 1 }, key)).edges[0].cursor;
      for (const name of names) {
        const foreign = [
          [`${name} of another instance`, await cursorOf(name, elsewhere)],
          [`${name} of another tenant`, await cursorOf(name, theirs, other.apiKey)],
          ...(await Promise.all(names.filter((list) => list.replace('Instance.', '') !== name.replace('Instance.', '')).map(async (list) => [`${list}`, await cursorOf(list, here)]))),
        ];
        for (const [whose, after] of foreign) {
          const error = expectCode(await gql(suite.server, CONNECTIONS[name].replace('PAGE', PAGE_FIELDS), { id: here, first: 5, after }), 'BAD_USER_INPUT');
          assert.match(error.message, /is a cursor of another list/, `${name}, a cursor of ${whose}`);
        }
        // Query.snapshots and Instance.snapshots are one list.
        const own = await cursorOf(name, here);
        for (const same of names.filter((list) => list.replace('Instance.', '') === name.replace('Instance.', ''))) {
          expectData(await gql(suite.server, CONNECTIONS[same].replace('PAGE', PAGE_FIELDS), { id: here, first: 5, after: own }));
        }
      }
    });

    it('filters by from and to, inclusive at the exact createdAt', async () => {
      const newer = history[5];
      const older = history[15];
      const expected = history.filter(
        (s) => Date.parse(s.createdAt) >= Date.parse(older.createdAt) && Date.parse(s.createdAt) <= Date.parse(newer.createdAt),
      );
      const between = await wholeHistory(suite.server, instanceId, { from: older.createdAt, to: newer.createdAt });
      assert.deepEqual(ids(between), ids(expected));
      assert.ok(ids(between).includes(newer.id) && ids(between).includes(older.id), 'a bound is exclusive');

      const fromOnly = await wholeHistory(suite.server, instanceId, { from: newer.createdAt });
      assert.deepEqual(ids(fromOnly), ids(history.filter((s) => Date.parse(s.createdAt) >= Date.parse(newer.createdAt))));
      const toOnly = await wholeHistory(suite.server, instanceId, { to: older.createdAt });
      assert.deepEqual(ids(toOnly), ids(history.filter((s) => Date.parse(s.createdAt) <= Date.parse(older.createdAt))));
      const exact = await wholeHistory(suite.server, instanceId, { from: older.createdAt, to: older.createdAt });
      assert.ok(ids(exact).includes(older.id));

      const beforeAll = await snapshotPage(suite.server, instanceId, { filter: { to: '2001-01-01T00:00:00.000Z' } });
      assert.deepEqual({ totalCount: beforeAll.totalCount, edges: beforeAll.edges }, { totalCount: 0, edges: [] });
      expectCode(await gql(suite.server, SNAPSHOTS_PAGE, { instanceId, filter: { from: 'yesterday' } }), 'BAD_USER_INPUT');
    });

    it('filters by profile and status, combined with AND', async () => {
      // A restore adds a PRE_RESTORE snapshot to the history.
      const restore = await restoreAndWait(suite.server, history[0].id);
      assert.equal(restore.status, 'SUCCEEDED', JSON.stringify(restore.error));

      const preRestore = await wholeHistory(suite.server, instanceId, { profile: 'PRE_RESTORE' });
      assert.equal(preRestore.length, 1);
      assert.equal(preRestore[0].status, 'COMPLETED');
      const onDemand = await wholeHistory(suite.server, instanceId, { profile: 'ON_DEMAND' });
      assert.deepEqual(ids(onDemand), ids(history));
      assert.equal((await wholeHistory(suite.server, instanceId, { status: 'COMPLETED' })).length, history.length + 1);
      assert.equal((await wholeHistory(suite.server, instanceId, { status: 'FAILED' })).length, 0);
      assert.equal((await wholeHistory(suite.server, instanceId, { profile: 'SCHEDULED' })).length, 0);
      const combined = await wholeHistory(suite.server, instanceId, { profile: 'ON_DEMAND', status: 'COMPLETED', from: history[3].createdAt });
      assert.deepEqual(ids(combined), ids(history.slice(0, 4)));
    });
  });

  describe('snapshotUpdated', () => {
    it("streams created and status-changed snapshots for one instance or all, and never another tenant's", async () => {
      const server = suite.server;
      const [a, b] = [await createInstance(server, { name: 'a' }), await createInstance(server, { name: 'b' })];
      const other = await createTenant(server, 'events-bystander');
      const theirInstance = await createInstance(server, { name: 'theirs' }, other.apiKey);
      const oneInstance = subscribe(server, server.adminKey, SNAPSHOT_UPDATED, { instanceId: a.id });
      const allInstances = subscribe(server, server.adminKey, SNAPSHOT_UPDATED);
      const bystander = subscribe(server, other.apiKey, SNAPSHOT_UPDATED);
      await listening(oneInstance, allInstances, bystander);

      // A few rounds, one instance after the other, so that events of both are in flight to several subscribers.
      const ofA: SnapshotJson[] = [];
      const ofB: SnapshotJson[] = [];
      for (let round = 0; round < 3; round++) {
        ofA.push(await takeSnapshot(server, a.id));
        ofB.push(await takeSnapshot(server, b.id));
      }
      const lastOfB = ofB.at(-1)!.id;
      await allInstances.waitFor((result) => result.data?.snapshotUpdated.id === lastOfB && result.data.snapshotUpdated.status === 'COMPLETED');
      await oneInstance.waitFor((result) => result.data?.snapshotUpdated.id === ofA.at(-1)!.id && result.data.snapshotUpdated.status === 'COMPLETED');

      const lifecycle = (events: SnapshotJson[], snapshots: SnapshotJson[]) =>
        snapshots.map((snapshot) => [snapshot.id, events.filter((e) => e.id === snapshot.id).map((e) => e.status)]);
      const expected = (snapshots: SnapshotJson[]) => snapshots.map((snapshot) => [snapshot.id, ['PENDING', 'IN_PROGRESS', 'COMPLETED']]);
      const one = payloads<SnapshotJson>(oneInstance, 'snapshotUpdated');
      assert.deepEqual(lifecycle(one, ofA), expected(ofA));
      assert.equal(one.length, 9, 'events of another instance arrived');
      assert.equal(one[0].profile, 'ON_DEMAND');
      assert.ok(one.every((e) => e.removed === false));
      // The last event carries what a query then returns.
      const { removed: _removed, instance: _instance, ...lastEvent } = one[2] as SnapshotJson & { instance?: unknown };
      assert.deepEqual(lastEvent, ofA[0]);
      assert.ok(one.every((e) => (e as { instance?: { id: string } }).instance?.id === a.id));

      const all = payloads<SnapshotJson>(allInstances, 'snapshotUpdated');
      assert.deepEqual(lifecycle(all, [...ofA, ...ofB]), expected([...ofA, ...ofB]));
      assert.equal(all.length, 18);

      // The bystander's stream works: its own snapshot is the first thing it sees.
      const theirs = await takeSnapshot(server, theirInstance.id, { key: other.apiKey });
      await bystander.waitFor((result) => result.data?.snapshotUpdated.status === 'COMPLETED');
      assert.ok(payloads<SnapshotJson>(bystander, 'snapshotUpdated').every((e) => e.id === theirs.id));
      assert.ok(payloads<SnapshotJson>(allInstances, 'snapshotUpdated').every((e) => e.id !== theirs.id));
    });
  });

  describe('deleteSnapshot', () => {
    it('is for ADMINs only: MEMBER and VIEWER are FORBIDDEN and the snapshot stays', async () => {
      const instance = await createInstance(suite.server, { name: 'keep' });
      const snapshot = await takeSnapshot(suite.server, instance.id);
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const key = await createKey(suite.server, suite.server.adminKey, role);
        expectCode(await gql(suite.server, DELETE_SNAPSHOT, { id: snapshot.id }, key.secret), 'FORBIDDEN');
      }
      assert.equal((await snapshotById(suite.server, snapshot.id))?.status, 'COMPLETED');
      assert.ok((await archiveOf(suite.server, snapshot.id)).length > 0, 'its data is still there');
    });

    it('removes the row and announces the removal; the other snapshot keeps its data', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'drop' });
      const [kept, dropped] = [await takeSnapshot(server, instance.id), await takeSnapshot(server, instance.id)];
      const events = subscribe(server, server.adminKey, SNAPSHOT_UPDATED, { instanceId: instance.id });
      await listening(events);

      assert.equal(expectData(await gql(server, DELETE_SNAPSHOT, { id: dropped.id })).deleteSnapshot, true);

      const { data } = await events.next(5_000);
      assert.equal(data.snapshotUpdated.id, dropped.id);
      assert.equal(data.snapshotUpdated.removed, true);
      assert.equal(await snapshotById(server, dropped.id), null);
      assert.deepEqual(ids((await snapshotPage(server, instance.id)).edges.map((edge) => edge.node)), [kept.id]);
      assert.ok((await archiveOf(server, kept.id)).length > 0, 'the other snapshot lost its data');
      expectCode(await gql(server, DELETE_SNAPSHOT, { id: dropped.id }), 'NOT_FOUND');
    });
  });

  describe('operations', () => {
    it('records every snapshot as an operation: operation, operations (newest first) and Instance.currentOperation', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'ops' });
      const [first, second] = [await takeSnapshot(server, instance.id), await takeSnapshot(server, instance.id)];
      const query = `query ($id: ID!, $first: Int, $after: String) {
        operations(instanceId: $id, first: $first, after: $after) {
          totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ${OPERATION_FIELDS} snapshot { id } instance { id } } }
        }
      }`;
      const page = expectData(await gql(server, query, { id: instance.id, first: 1 })).operations;
      assert.equal(page.totalCount, 2);
      assert.equal(page.pageInfo.hasNextPage, true);
      const rest = expectData(await gql(server, query, { id: instance.id, first: 5, after: page.pageInfo.endCursor })).operations;
      assert.equal(rest.pageInfo.hasNextPage, false);
      const operations = [...page.edges, ...rest.edges].map((edge: { node: OperationJson & { snapshot: { id: string } } }) => edge.node);
      assert.deepEqual(operations.map((op) => op.snapshot.id), [second.id, first.id]);
      for (const operation of operations) {
        assert.equal(operation.kind, 'SNAPSHOT');
        assert.equal(operation.status, 'SUCCEEDED');
        assert.equal(operation.progress, 1);
        assert.equal(operation.error, null);
        assert.equal(operation.instanceId, instance.id);
        assert.ok(Date.parse(operation.createdAt) <= Date.parse(operation.startedAt!));
        assert.ok(Date.parse(operation.startedAt!) <= Date.parse(operation.finishedAt!));
        assert.deepEqual(await operationById(server, operation.id), withoutRelations(operation));
      }
      assert.equal((await instanceState(server, instance.id)).currentOperation, null);
    });

    it('operationProgress of a finished operation emits its final state, then completes', async () => {
      const instance = await createInstance(suite.server, { name: 'late' });
      const snapshot = await takeSnapshot(suite.server, instance.id);
      const { operations } = expectData(
        await gql(suite.server, `query ($id: ID!) { operations(instanceId: $id) { edges { node { id } } } }`, { id: instance.id }),
      );
      const progress = subscribe(suite.server, suite.server.adminKey, OPERATION_PROGRESS, { id: operations.edges[0].node.id });
      await progress.complete;
      const events = payloads<OperationJson>(progress, 'operationProgress');
      assert.equal(events.length, 1);
      assert.deepEqual([events[0].status, events[0].progress, events[0].snapshotId], ['SUCCEEDED', 1, snapshot.id]);
    });
  });

  describe('another tenant', () => {
    let other: NewTenant;
    let instanceId: string;
    let snapshot: SnapshotJson;
    let operationId: string;

    before(async () => {
      other = await createTenant(suite.server, 'snapshot-snoop');
      instanceId = (await createInstance(suite.server, { name: 'private' })).id;
      snapshot = await takeSnapshot(suite.server, instanceId);
      operationId = expectData(
        await gql(suite.server, `query ($id: ID!) { operations(instanceId: $id) { edges { node { id } } } }`, { id: instanceId }),
      ).operations.edges[0].node.id;
    });

    it('sees null for snapshot(id) and operation(id)', async () => {
      assert.equal(await snapshotById(suite.server, snapshot.id, other.apiKey), null);
      assert.equal(await operationById(suite.server, operationId, other.apiKey), null);
    });

    it('gets NOT_FOUND from snapshots, operations, createSnapshot, deleteSnapshot, exportSnapshot and restoreSnapshot', async () => {
      const server = suite.server;
      const key = other.apiKey;
      expectCode(await gql(server, SNAPSHOTS_PAGE, { instanceId }, key), 'NOT_FOUND');
      expectCode(await gql(server, `query ($id: ID!) { operations(instanceId: $id) { totalCount } }`, { id: instanceId }, key), 'NOT_FOUND');
      expectCode(await gql(server, CREATE_SNAPSHOT, { instanceId }, key), 'NOT_FOUND');
      expectCode(await gql(server, DELETE_SNAPSHOT, { id: snapshot.id }, key), 'NOT_FOUND');
      expectCode(await gql(server, `mutation ($id: ID!) { exportSnapshot(id: $id) { url } }`, { id: snapshot.id }, key), 'NOT_FOUND');
      expectCode(await gql(server, RESTORE_SNAPSHOT, { snapshotId: snapshot.id, confirm: 'RESTORE' }, key), 'NOT_FOUND');
      // Nothing happened to it.
      assert.deepEqual(await snapshotById(server, snapshot.id), snapshot);
      assert.equal((await snapshotPage(server, instanceId)).totalCount, 1);
    });

    it('cannot subscribe to its snapshots or follow its operations', async () => {
      const snapshots = subscribe(suite.server, other.apiKey, SNAPSHOT_UPDATED, { instanceId });
      assert.equal((await subscriptionErrors(snapshots))[0].extensions?.code, 'NOT_FOUND');
      const progress = subscribe(suite.server, other.apiKey, OPERATION_PROGRESS, { id: operationId });
      assert.equal((await subscriptionErrors(progress))[0].extensions?.code, 'NOT_FOUND');
    });
  });

  describe('encryption at rest', () => {
    it('no file under the data dir holds archive bytes or property values in the clear', async () => {
      const server = suite.server;
      const canary = `canary-${randomBytes(16).toString('hex')}`;
      const instance = await createInstance(server, { name: 'secrets' });
      await createNodes(
        server,
        instance.id,
        Array.from({ length: 300 }, (_, i) => ({ labels: ['Secret'], properties: { canary, i, noise: randomBytes(24).toString('base64') } })),
      );
      const snapshot = await takeSnapshot(server, instance.id);
      const archive = await archiveOf(server, snapshot.id);
      assert.ok(archive.length > 1024);
      // The start (magic and header), the middle of the body and the end (the digest).
      const windows = [0, Math.floor(archive.length / 2), archive.length - 64].map((offset) => archive.subarray(offset, offset + 64));

      const files = filesUnder(server.dataDir);
      const blobs = files.filter((path) => path.startsWith(join(server.dataDir, 'blobs')));
      // The snapshot's data: its change log (a small new instance has no base yet), in segments.
      assert.ok(blobs.some((path) => path.startsWith(join(server.dataDir, 'blobs', 'tenants', tenantId, 'log', instance.id))), 'no change-log segment was written');
      for (const path of files) {
        const content = readFileSync(path);
        for (const window of windows) assert.equal(content.includes(window), false, `${path} holds archive bytes in the clear`);
      }
      for (const path of blobs) assert.equal(readFileSync(path).includes(canary), false, `${path} holds a property value in the clear`);
    });
  });

  describe('a failed snapshot', () => {
    it('ends FAILED with an error, leaves the instance AVAILABLE and no partial blob, and the next one works', async () => {
      const server = suite.server;
      const tenant = await createTenant(server, 'unlucky');
      const instance = await createInstance(server, { name: 'unlucky' }, tenant.apiKey);
      // The tests run as root, so permissions would not stop the server: a file where the directory must go does.
      // In place before the write, so that its change log cannot be shipped, by the snapshot or before it.
      const tenantBlobs = join(server.dataDir, 'blobs', 'tenants', tenant.tenantId);
      mkdirSync(tenantBlobs, { recursive: true });
      writeFileSync(join(tenantBlobs, 'log'), 'in the way');
      await createNodes(server, instance.id, [{ labels: ['Still'] }], tenant.apiKey);
      const events = subscribe(server, tenant.apiKey, SNAPSHOT_UPDATED, { instanceId: instance.id });
      await listening(events);

      const requested = await requestSnapshot(server, instance.id, { key: tenant.apiKey });
      const failed = await settledSnapshot(server, requested.id, tenant.apiKey);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.error ?? '', /\S/);
      assert.deepEqual([failed.sizeBytes, failed.sha256, failed.exportable, failed.contents], [null, null, false, null]);
      const last = await events.waitFor((result) => result.data?.snapshotUpdated.status === 'FAILED', 5_000);
      assert.equal(last.data.snapshotUpdated.error, failed.error);

      const { operations } = expectData(
        await gql(server, `query ($id: ID!) { operations(instanceId: $id) { edges { node { ${OPERATION_FIELDS} } } } }`, { id: instance.id }, tenant.apiKey),
      );
      const operation: OperationJson = operations.edges[0].node;
      assert.equal(operation.status, 'FAILED');
      assert.match(operation.error?.code ?? '', /\S/);
      assert.ok(operation.progress < 1);

      const { instance: after } = expectData(
        await gql(server, `query ($id: ID!) { instance(id: $id) { status availability currentOperation { id } } }`, { id: instance.id }, tenant.apiKey),
      );
      assert.deepEqual(after, { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
      await createNodes(server, instance.id, [{ labels: ['After'] }], tenant.apiKey);
      assert.deepEqual(filesUnder(tenantBlobs), [join(tenantBlobs, 'log')], 'a partial blob was left');
      assert.deepEqual(tempBlobs(server.dataDir), []);

      const failedOnly = expectData(
        await gql(server, SNAPSHOTS_PAGE, { instanceId: instance.id, filter: { status: 'FAILED' } }, tenant.apiKey),
      ).snapshots;
      assert.deepEqual(failedOnly.edges.map((edge: { node: SnapshotRow }) => edge.node.id), [failed.id]);
      expectCode(await gql(server, `mutation ($id: ID!) { exportSnapshot(id: $id) { url } }`, { id: failed.id }, tenant.apiKey), 'SNAPSHOT_NOT_READY');
      expectCode(await gql(server, RESTORE_SNAPSHOT, { snapshotId: failed.id, confirm: 'RESTORE' }, tenant.apiKey), 'SNAPSHOT_NOT_READY');

      rmSync(join(tenantBlobs, 'log'));
      await idle(server, instance.id, tenant.apiKey);
      const next = await settledSnapshot(server, (await requestSnapshot(server, instance.id, { key: tenant.apiKey })).id, tenant.apiKey);
      assert.equal(next.status, 'COMPLETED', next.error ?? undefined);
      assert.equal(next.contents!.nodeCount, 2);
    });
  });
});

/** The fields operation(id) returns (the list query asked for two more). */
function withoutRelations(operation: object): object {
  const { snapshot: _snapshot, instance: _instance, ...rest } = operation as Record<string, unknown>;
  return rest;
}

describe('a snapshot of a large instance', () => {
  // 60,000 nodes and 120,000 relationships whose change log ships only when a snapshot asks, in small segments: the
  // first snapshot ships all of it, and takes long enough to be seen running.
  const suite = serverPerSuite({
    env: {
      SNAPGRAPH_OPERATION_LEASE_MS: '1000',
      SNAPGRAPH_LOG_SHIP_DELAY_MS: '3600000',
      SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '3600000',
      SNAPGRAPH_LOG_SEGMENT_BYTES: '65536',
    },
  });
  let instanceId: string;

  before(async function () {
    this.timeout(120_000);
    instanceId = (await createInstance(suite.server, { name: 'large', tier: 'PROFESSIONAL', memoryGB: 4 })).id;
    await fillInstance(suite.server, instanceId, { nodes: 60_000, relationships: 120_000 });
  });

  it('refuses a second snapshot and its own deletion with CONFLICT while one runs, takes writes meanwhile, and reports progress', async () => {
    const server = suite.server;
    const events = subscribe(server, server.adminKey, SNAPSHOT_UPDATED, { instanceId });
    await listening(events);
    const statsBefore = await statsOf(server, instanceId);
    const requested = await requestSnapshot(server, instanceId);
    const { currentOperation } = await instanceState(server, instanceId);
    assert.ok(currentOperation, 'no currentOperation while the snapshot runs');
    assert.equal(currentOperation.kind, 'SNAPSHOT');
    assert.ok(['QUEUED', 'RUNNING'].includes(currentOperation.status));
    const progress = subscribe(server, server.adminKey, OPERATION_PROGRESS, { id: currentOperation.id });

    expectCode(await gql(server, CREATE_SNAPSHOT, { instanceId }), 'CONFLICT');
    expectCode(await gql(server, DELETE_SNAPSHOT, { id: requested.id }), 'CONFLICT');
    await events.waitFor((result) => result.data?.snapshotUpdated.status === 'IN_PROGRESS');
    const written = await createNodes(server, instanceId, [{ labels: ['DuringSnapshot'] }]);
    assert.equal(written.length, 1);
    assert.equal((await snapshotById(server, requested.id))?.status, 'IN_PROGRESS', 'the snapshot finished before the write');

    await progress.complete;
    const snapshot = await settledSnapshot(server, requested.id);
    assert.equal(snapshot.status, 'COMPLETED', snapshot.error ?? undefined);
    assert.deepEqual({ ...snapshot.contents, storeSizeBytes: 0 }, { ...statsBefore, storeSizeBytes: 0 }, 'the write leaked into the snapshot');

    const states = payloads<OperationJson>(progress, 'operationProgress');
    assert.ok(['QUEUED', 'RUNNING'].includes(states[0].status), `first event: ${states[0].status}`);
    assert.equal(states.at(-1)!.status, 'SUCCEEDED');
    assert.equal(states.at(-1)!.progress, 1);
    assert.ok(states.length >= 3, `only ${states.length} progress events`);
    for (let i = 1; i < states.length; i++) {
      assert.ok(states[i].progress >= states[i - 1].progress, `progress went back at event ${i}`);
      assert.ok(states[i].bytesDone >= states[i - 1].bytesDone, `bytesDone went back at event ${i}`);
    }
    assert.ok(states.some((state) => state.status === 'RUNNING' && state.progress > 0 && state.progress < 1), 'no intermediate progress');
    assert.equal((await instanceState(server, instanceId)).currentOperation, null);
  });

  it('takes the snapshot after a restart when the server is killed in the middle of it (attempt 2)', async function () {
    this.timeout(60_000);
    const server = suite.server;
    // The first test's snapshot took a base: give this one a long log to ship again, so that it is seen running.
    await touchEveryNode(server, instanceId, 60_000, { noteBytes: 256 });
    const events = subscribe(server, server.adminKey, SNAPSHOT_UPDATED, { instanceId });
    await listening(events);
    const statsBefore = await statsOf(server, instanceId);
    const requested = await requestSnapshot(server, instanceId);
    await events.waitFor((result) => result.data?.snapshotUpdated.status === 'IN_PROGRESS');
    await server.kill();
    await server.restart();

    const { operations } = expectData(
      await gql(server, `query ($id: ID!) { operations(instanceId: $id, first: 1) { edges { node { id } } } }`, { id: instanceId }),
    );
    const operation = await settledOperation(server, operations.edges[0].node.id);
    assert.equal(operation.snapshotId, requested.id);
    assert.equal(operation.status, 'SUCCEEDED', JSON.stringify(operation.error));
    assert.equal(operation.attempt, 2, 'the snapshot finished before the kill: make the instance larger');
    const snapshot = (await snapshotById(server, requested.id))!;
    assert.equal(snapshot.status, 'COMPLETED');
    assert.deepEqual({ ...snapshot.contents, storeSizeBytes: 0 }, { ...statsBefore, storeSizeBytes: 0 });
    assert.ok((await archiveOf(server, snapshot.id)).length > 0, 'the snapshot has no data');
    assert.deepEqual(await instanceState(server, instanceId), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
    assert.deepEqual(tempBlobs(server.dataDir), []);

    // And it works as before.
    await createNodes(server, instanceId, [{ labels: ['AfterCrash'] }]);
    const next = await settledSnapshot(server, (await requestSnapshot(server, instanceId)).id);
    assert.equal(next.status, 'COMPLETED', next.error ?? undefined);
  });
});
