// Point-in-time restore as a property, through the real services in this process (createApp: real stores, change log,
// bases, restores): a seeded random sequence of writes, each recorded with the exact commit time its store gave it,
// bases and snapshots taken at random points, restores over the instance itself (new epochs), and a clock stepped
// back; then restores to random moments (a write's commit time, 1 ms before it, between writes, across segment
// boundaries and across those restores) must give exactly the graph recorded for that moment. PITR_SEED replays a run.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type App, createApp } from '../../src/app';
import { loadConfig } from '../../src/config/app-config';
import type { OperationEntity } from '../../src/entities/operation.entity';
import type { NodeRecord, RelationshipRecord } from '../../src/graph/records';
import { LogSegmentEntity } from '../../src/entities/log-segment.entity';
import { createLogger } from '../../src/logging/logger';
import type { Principal } from '../../src/services/principal';
import { seeded } from '../support/seeded-random';
import { logSegmentsOf, packsOf } from '../support/snapshots';
import { eventually } from '../support/wait';


interface Graph {
  nodes: NodeRecord[];
  relationships: RelationshipRecord[];
}

/**
 * What the instance held from `at` on: a write's commit time (known once its entry is shipped: the write is entry `seq`
 * of store epoch `epoch`), or the start of a restored store's history.
 */
interface Moment {
  at: number;
  epoch?: number;
  seq?: number;
  what: string;
  graph: Graph;
}

const ADMIN_TOKEN = 'sg_property_admin_token_0123456789';
const iso = (ms: number) => new Date(ms).toISOString();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('point-in-time restore as a property', function () {
  this.timeout(60_000);
  const seed = Number(process.env.PITR_SEED ?? 20261206);
  const note = `(PITR_SEED=${seed})`;
  const realNow = Date.now;
  /** How far this process's clock is behind the real one (a clock stepped back). */
  let behindMs = 0;
  /** A clock standing still (null: it runs): several writes then commit in one millisecond. */
  let frozenAt: number | null = null;
  let dir: string;
  let app: App;
  let principal: Principal;

  before(async () => {
    Date.now = () => frozenAt ?? realNow() - behindMs;
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-pitr-property-'));
    const config = loadConfig({
      SNAPGRAPH_DATA_DIR: dir,
      SNAPGRAPH_BOOTSTRAP_TOKEN: ADMIN_TOKEN,
      // Shipped soon after each write, in small segments: a moment's replay crosses many of them.
      SNAPGRAPH_LOG_SHIP_DELAY_MS: '20',
      SNAPGRAPH_LOG_SHIP_INTERVAL_MS: '100',
      SNAPGRAPH_LOG_SEGMENT_BYTES: '600',
      SNAPGRAPH_CHUNK_WORKERS: '0',
    });
    app = await createApp(config, createLogger('silent'));
    principal = (await app.services.tenants.authenticate(ADMIN_TOKEN))!;
  });

  after(async () => {
    await app?.close();
    Date.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  });

  const reload = async (id: string) => (await app.services.instances.reload(id))!;

  async function graphOf(instanceId: string): Promise<Graph> {
    const all = async <T extends { id: string }>(page: (after?: string) => Promise<{ items: T[]; hasNextPage: boolean }>) => {
      const items: T[] = [];
      for (let after: string | undefined; ; ) {
        const got = await page(after);
        items.push(...got.items);
        if (!got.hasNextPage) return items;
        after = got.items.at(-1)!.id;
      }
    };
    const { graph } = app.services;
    return {
      nodes: await all((after) => graph.nodes(principal, instanceId, undefined, 1000, after)),
      relationships: await all((after) => graph.relationships(principal, instanceId, undefined, 1000, after)),
    };
  }

  async function settled(id: string): Promise<OperationEntity> {
    return eventually(
      async () => {
        const operation = await app.services.operations.find(principal, id);
        return operation && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(operation.status) ? operation : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 10, what: `operation ${id} to end` },
    );
  }

  /** Waits until the window offers `at`. */
  async function restorable(instanceId: string, at: number): Promise<{ earliest: number; latest: number }> {
    return eventually(
      async () => {
        const instance = await reload(instanceId);
        const window = await app.services.changeLog.restoreWindow(instance, app.services.instances.restoreWindowMs(instance));
        return window && window.latest >= at ? window : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 10, what: `the window of ${instanceId} to reach ${iso(at)}` },
    );
  }

  async function restoreToPoint(sourceId: string, at: number, targetId: string): Promise<OperationEntity> {
    const started = await app.services.restores.requestRestoreToPointInTime(principal, sourceId, new Date(at), 'RESTORE', targetId);
    return settled(started.id);
  }

  /**
   * A random writer keeping the recorded timeline of the instance. Each small write is one change-log entry, the next
   * seq of the current epoch: its commit time is read from the shipped log (commitTimes) rather than from the store
   * after each write, which would move the store's readAt past it and keep the next write out of its millisecond.
   */
  class Writer {
    nodes = new Map<string, NodeRecord>();
    relationships = new Map<string, RelationshipRecord>();
    readonly timeline: Moment[] = [];
    private epoch = 0;
    private seq = 0;

    constructor(
      readonly instanceId: string,
      private readonly random: () => number,
    ) {}

    /** Starts the timeline at the instance's current epoch (its creation, or a restore over it). */
    async start(what: string, graph: Graph): Promise<void> {
      const [epoch] = await app.services.changeLog.epochsOf(this.instanceId);
      this.epoch = epoch.epoch;
      this.seq = 0;
      this.reset(epoch.startedAt, what, graph);
    }

    /** Fills in the commit times of the writes so far, once the change log has shipped them. */
    async commitTimes(): Promise<void> {
      const pending = this.timeline.filter((moment) => moment.seq !== undefined && moment.at === -1);
      for (const epochNumber of new Set(pending.map((moment) => moment.epoch!))) {
        const newest = Math.max(...pending.filter((moment) => moment.epoch === epochNumber).map((moment) => moment.seq!));
        const epoch = await eventually(
          async () => {
            const row = await app.services.changeLog.epoch(epochNumber);
            return row && row.shippedSeq >= newest ? row : undefined;
          },
          { intervalMs: 10, what: `epoch ${epochNumber} shipped through seq ${newest}` },
        );
        const times = new Map<number, number>();
        for await (const entry of app.services.changeLog.entries(epoch, 0, { seq: newest })) times.set(entry.seq, entry.at);
        for (const moment of pending.filter((candidate) => candidate.epoch === epochNumber)) moment.at = times.get(moment.seq!)!;
      }
    }

    graph(): Graph {
      const byId = (a: { id: string }, b: { id: string }) => Number(a.id) - Number(b.id);
      return structuredClone({ nodes: [...this.nodes.values()].sort(byId), relationships: [...this.relationships.values()].sort(byId) });
    }

    /** The instance holds `graph` from `at` on (a restore over it). */
    reset(at: number, what: string, graph: Graph): void {
      this.nodes = new Map(structuredClone(graph.nodes).map((node) => [node.id, node]));
      this.relationships = new Map(structuredClone(graph.relationships).map((relationship) => [relationship.id, relationship]));
      this.timeline.push({ at, what, graph: this.graph() });
    }

    /** What the instance held at `at`: the last moment recorded at or before it. */
    at(at: number): Moment | null {
      let found: Moment | null = null;
      for (const moment of this.timeline) if (moment.at <= at) found = moment;
      return found;
    }

    private pick<T>(items: T[]): T {
      return items[Math.floor(this.random() * items.length)];
    }

    private some<T>(items: T[], most: number): T[] {
      return [...new Set(Array.from({ length: 1 + Math.floor(this.random() * Math.min(most, items.length)) }, () => this.pick(items)))];
    }

    private properties(): Record<string, unknown> {
      const properties: Record<string, unknown> = { n: Math.floor(this.random() * 1e6), word: this.pick(['a', 'bb', 'ccc', 'é', '"q"']) };
      if (this.random() < 0.3) properties.list = [this.random() < 0.5, Math.round(this.random() * 1e3) / 10];
      if (this.random() < 0.2) properties.nested = { inner: { x: this.pick([null, 1, 'y']) } };
      return properties;
    }

    private labels(): string[] {
      return this.some(['Person', 'Movie', 'City', 'Tag'], 3);
    }

    async write(): Promise<Moment> {
      const { graph } = app.services;
      const ids = [...this.nodes.keys()];
      const roll = this.random();
      let what: string;
      if (ids.length < 4 || roll < 0.3) {
        const input = Array.from({ length: 1 + Math.floor(this.random() * 6) }, () => ({ labels: this.labels(), properties: this.properties() }));
        const created = await graph.createNodes(principal, this.instanceId, input);
        created.forEach((node) => this.nodes.set(node.id, node));
        what = `createNodes ×${input.length}`;
      } else if (roll < 0.55) {
        const input = Array.from({ length: 1 + Math.floor(this.random() * 6) }, () => ({
          type: this.pick(['KNOWS', 'IN']),
          startNodeId: this.pick(ids),
          endNodeId: this.pick(ids),
          properties: this.properties(),
        }));
        const created = await graph.createRelationships(principal, this.instanceId, input);
        created.forEach((relationship) => this.relationships.set(relationship.id, relationship));
        what = `createRelationships ×${input.length}`;
      } else if (roll < 0.85) {
        const input = this.some(ids, 5).map((id) => {
          const change = this.random();
          return { id, ...(change < 0.7 ? { properties: this.properties() } : {}), ...(change > 0.5 ? { labels: this.labels() } : {}) };
        });
        for (const node of (await graph.updateNodes(principal, this.instanceId, input)).nodes) this.nodes.set(node.id, node);
        what = `updateNodes ×${input.length}`;
      } else {
        const doomed = new Set(this.some(ids, 2));
        assert.equal(await graph.deleteNodes(principal, this.instanceId, [...doomed]), doomed.size);
        for (const id of doomed) this.nodes.delete(id);
        for (const [id, relationship] of this.relationships) {
          if (doomed.has(relationship.startNodeId) || doomed.has(relationship.endNodeId)) this.relationships.delete(id);
        }
        what = `deleteNodes ×${doomed.size}`;
      }
      this.seq += 1;
      const moment = { at: -1, epoch: this.epoch, seq: this.seq, what, graph: this.graph() };
      this.timeline.push(moment);
      return moment;
    }
  }

  /**
   * Restores the writer's instance at each moment over `target` (or into a new instance) and compares with its timeline.
   * Each restore over the target starts a history of it, recorded in `target`'s own timeline.
   */
  async function check(writer: Writer, moments: { at: number; why: string }[], target: Writer, random: () => number): Promise<string[]> {
    const targetId = target.instanceId;
    const failures: string[] = [];
    for (const { at, why } of moments) {
      const expected = writer.at(at);
      if (!expected) continue;
      let got: Graph;
      if (random() < 0.2) {
        const created = await app.services.restores.requestCreateFromPointInTime(principal, writer.instanceId, new Date(at), { name: `at-${at}`, tier: 'PROFESSIONAL' });
        const operation = await settled((await app.services.operations.list(principal, created.id, 1, null)).items[0].id);
        if (operation.status !== 'SUCCEEDED') {
          failures.push(`create from ${iso(at)} (${why}): ${operation.status} ${operation.errorCode} ${operation.errorMessage}`);
          continue;
        }
        got = await graphOf(created.id);
        await app.services.instances.remove(principal, created.id);
      } else {
        const operation = await restoreToPoint(writer.instanceId, at, targetId);
        if (operation.status !== 'SUCCEEDED') {
          failures.push(`restore to ${iso(at)} (${why}): ${operation.status} ${operation.errorCode} ${operation.errorMessage}`);
          continue;
        }
        got = await graphOf(targetId);
        await target.start(`restored to ${iso(at)} of ${writer.instanceId}`, expected.graph);
      }
      if (!isSame(got, expected.graph)) {
        const counts = (graph: Graph) => `${graph.nodes.length} nodes, ${graph.relationships.length} relationships`;
        failures.push(`${iso(at)} (${why}; expected the state after "${expected.what}" at ${iso(expected.at)}): got ${counts(got)}, expected ${counts(expected.graph)}`);
      }
    }
    return failures;
  }

  const isSame = (a: Graph, b: Graph) => {
    try {
      assert.deepStrictEqual(a, b);
      return true;
    } catch {
      return false;
    }
  };

  it('gives exactly the recorded graph at commit times, 1 ms before them and between them, across bases, segments, restores and a clock stepped back', async () => {
    const random = seeded(seed);
    const source = await app.services.instances.create(principal, { name: 'property', tier: 'PROFESSIONAL' });
    const target = new Writer((await app.services.instances.create(principal, { name: 'scratch', tier: 'PROFESSIONAL' })).id, random);
    await target.start('creation', { nodes: [], relationships: [] });
    const writer = new Writer(source.id, random);
    await writer.start('creation', { nodes: [], relationships: [] });
    const restoresAt: number[] = [];
    const taken: { id: string; graph: Graph }[] = [];
    for (let step = 0; step < 60; step++) {
      const roll = random();
      if (step === 45 && taken.length > 0) {
        // A snapshot restored over the instance: its store is anchored on the snapshot's position on the log.
        const snapshot = taken[Math.floor(random() * taken.length)];
        const started = await app.services.restores.requestRestore(principal, snapshot.id, 'RESTORE', source.id);
        const operation = await settled(started.id);
        assert.equal(operation.status, 'SUCCEEDED', `restore of a snapshot: ${operation.errorMessage}`);
        await writer.start(`restore of snapshot ${snapshot.id}`, snapshot.graph);
        restoresAt.push(writer.timeline.at(-1)!.at);
      } else if (step === 20 || step === 45) {
        // A restore over the instance itself: a new store, whose history starts where the old one's ended.
        await writer.commitTimes();
        const past = writer.timeline[1 + Math.floor(random() * (writer.timeline.length - 1))];
        const at = random() < 0.5 ? past.at : past.at + Math.floor(random() * 3);
        await restorable(source.id, at);
        const operation = await restoreToPoint(source.id, at, source.id);
        assert.equal(operation.status, 'SUCCEEDED', `restore over itself: ${operation.errorMessage}`);
        await writer.start(`restore over itself to ${iso(at)}`, writer.at(at)!.graph);
        restoresAt.push(writer.timeline.at(-1)!.at);
      } else if (step === 10 || step === 30) {
        // Writes committed in one millisecond.
        frozenAt = Date.now();
        for (let i = 0; i < 4; i++) await writer.write();
        frozenAt = null;
      } else if (step === 35) {
        // The clock stepped back (an NTP correction) for the rest of the run, a restore over the instance included: commit
        // times stay where they were until it catches up.
        behindMs = 3_000;
      } else if (roll < 0.06) {
        await app.services.backups.takeBase(await reload(source.id));
      } else if (roll < 0.1) {
        const snapshot = await app.services.snapshots.requestSnapshot(principal, source.id, null);
        await eventually(async () => ((await app.services.snapshots.byId(snapshot.id))?.status === 'COMPLETED' ? true : undefined), { intervalMs: 10, what: 'the snapshot' });
        taken.push({ id: snapshot.id, graph: writer.graph() });
      } else {
        await writer.write();
        if (random() < 0.2) await sleep(1 + Math.floor(random() * 4));
      }
    }
    assert.deepEqual(await graphOf(source.id), writer.graph(), 'the timeline does not match the live instance: a test bug');
    await writer.commitTimes();
    const last = writer.timeline.at(-1)!;
    const window = await restorable(source.id, last.at);

    const moments: { at: number; why: string }[] = [];
    const recorded = writer.timeline.filter((moment) => moment.at >= window.earliest);
    for (let i = 0; i < 8; i++) {
      const moment = recorded[Math.floor(random() * recorded.length)];
      const kind = random();
      if (kind < 0.35) moments.push({ at: moment.at, why: `at the commit of ${moment.what}` });
      else if (kind < 0.7 && moment.at - 1 >= window.earliest) moments.push({ at: moment.at - 1, why: `1 ms before ${moment.what}` });
      else moments.push({ at: moment.at + Math.floor(random() * 4), why: `just after ${moment.what}` });
    }
    // Writes that share a commit time (the same millisecond, or the clock behind): all of them or none.
    const shared = writer.timeline.filter((moment, i) => i > 0 && writer.timeline[i - 1].at === moment.at);
    assert.ok(shared.length > 0, 'no two writes shared a commit time');
    const group = shared[Math.floor(random() * shared.length)];
    moments.push({ at: group.at, why: `a commit time several writes share (${group.what})` }, { at: group.at - 1, why: 'just before a shared commit time' });
    // Each side of a segment boundary, and of each restore over the instance.
    const segments = await app.db.getRepository(LogSegmentEntity).find({ where: { instanceId: source.id }, order: { firstSeq: 'ASC' } });
    assert.ok(segments.length > 5, `only ${segments.length} segments`);
    for (const segment of [segments[Math.floor(segments.length / 2)], segments.at(-1)!]) {
      moments.push({ at: segment.firstAt, why: `the first commit of a segment` }, { at: segment.firstAt - 1, why: 'just before a segment' }, { at: segment.lastAt, why: 'the last commit of a segment' });
    }
    for (const started of restoresAt) moments.push({ at: started, why: 'the start of a restored history' }, { at: started - 1, why: 'just before a restore' });
    moments.push({ at: window.latest, why: 'latest' });
    // A moment just after the last write may be past the latest the window offered then.
    await restorable(source.id, Math.max(...moments.map((moment) => moment.at)));
    const failures = await check(writer, moments, target, random);
    const timeline = writer.timeline.map((moment) => `${iso(moment.at)} ${moment.what}`).join('\n');
    assert.deepEqual(failures, [], `${failures.length} of ${moments.length} restores were not exact ${note}\n${timeline}`);
    assert.deepEqual(await graphOf(source.id), writer.graph(), 'the restores changed their source');

    // The scratch instance's own history is a chain of restores: each of its stores was built from a moment of the
    // source (anchored there, with no base of its own), and a moment of it is built through that anchor.
    const scratchMoments = target.timeline.slice(1).filter(() => random() < 0.3).flatMap((moment) => [
      { at: moment.at, why: `the start of ${moment.what}` },
      { at: moment.at - 1, why: `just before ${moment.what}` },
    ]);
    await restorable(target.instanceId, target.timeline.at(-1)!.at);
    const other = new Writer((await app.services.instances.create(principal, { name: 'scratch-of-scratch', tier: 'PROFESSIONAL' })).id, random);
    await other.start('creation', { nodes: [], relationships: [] });
    const scratchFailures = await check(target, scratchMoments, other, random);
    assert.deepEqual(scratchFailures, [], `${scratchFailures.length} of ${scratchMoments.length} restores of the scratch instance were not exact ${note}`);
  });

  /** Ways a segment's blob can be damaged: each must fail the restore that needs it, never give another graph. */
  const damages: [string, (path: string, other: string) => void][] = [
    ['a flipped bit', (path) => {
      const bytes = readFileSync(path);
      bytes[bytes.length - 20] ^= 0x01;
      writeFileSync(path, bytes);
    }],
    ['a truncation', (path) => writeFileSync(path, readFileSync(path).subarray(0, Math.floor(readFileSync(path).length / 2)))],
    ['its loss', (path) => rmSync(path)],
    ['another segment of the same log in its place', (path, other) => writeFileSync(path, readFileSync(other))],
  ];
  for (const [damage, inflict] of damages) {
    it(`fails a restore that needs a segment damaged by ${damage} with INVALID_BACKUP_FILE naming it, the target unchanged`, async () => {
      const random = seeded(seed + 1);
      const source = await app.services.instances.create(principal, { name: 'damaged', tier: 'PROFESSIONAL' });
      const target = await app.services.instances.create(principal, { name: 'kept', tier: 'PROFESSIONAL' });
      const writer = new Writer(source.id, random);
      await writer.start('creation', { nodes: [], relationships: [] });
      for (let i = 0; i < 12; i++) await writer.write();
      await writer.commitTimes();
      await restorable(source.id, writer.timeline.at(-1)!.at);
      const segments = logSegmentsOf(dir, source.tenantId, source.id);
      assert.ok(segments.length > 3, `only ${segments.length} segments`);
      const middle = Math.floor(segments.length / 2);
      inflict(segments[middle], segments[middle - 1]);
      const firstSeq = Number(/\/(\d+)(?:-[0-9a-f]{16})?\.seg$/.exec(segments[middle])![1]);
      await new Writer(target.id, random).write();
      const targetGraph = await graphOf(target.id);
      const operation = await restoreToPoint(source.id, writer.timeline.at(-1)!.at, target.id);
      assert.equal(operation.status, 'FAILED');
      assert.equal(operation.errorCode, 'INVALID_BACKUP_FILE', `${operation.errorMessage}`);
      assert.match(operation.errorMessage ?? '', new RegExp(`segment ${firstSeq}\\b`));
      assert.deepEqual(await graphOf(target.id), targetGraph);
    });
  }

  it('takes a base of a restored store whose anchor needs a damaged segment, after which its moments restore again', async () => {
    const random = seeded(seed + 2);
    const source = await app.services.instances.create(principal, { name: 'anchored-on-damage', tier: 'PROFESSIONAL' });
    const target = await app.services.instances.create(principal, { name: 'kept-too', tier: 'PROFESSIONAL' });
    const writer = new Writer(source.id, random);
    await writer.start('creation', { nodes: [], relationships: [] });
    for (let i = 0; i < 12; i++) await writer.write();
    await writer.commitTimes();
    // Restored over itself to its last write: the new store is anchored on that moment of the old one (no base of
    // either), so every moment of the new store is built from the old store's log.
    const undone = writer.timeline.at(-1)!;
    await restorable(source.id, undone.at);
    assert.equal((await restoreToPoint(source.id, undone.at, source.id)).status, 'SUCCEEDED');
    await writer.start('restore over itself', undone.graph);
    for (let i = 0; i < 3; i++) await writer.write();
    await writer.commitTimes();
    await restorable(source.id, writer.timeline.at(-1)!.at);
    const [current, old] = await app.services.changeLog.epochsOf(source.id);
    const segments = logSegmentsOf(dir, source.tenantId, source.id).filter((path) => path.includes(`/${old.epoch}/`));
    const damaged = segments[Math.floor(segments.length / 2)];
    const bytes = readFileSync(damaged);
    bytes[bytes.length - 20] ^= 0x01;
    writeFileSync(damaged, bytes);

    const failed = await restoreToPoint(source.id, writer.timeline.at(-1)!.at, target.id);
    assert.equal(failed.errorCode, 'INVALID_BACKUP_FILE', `${failed.status} ${failed.errorMessage}`);
    // The current store is whole: a base of it brings its moments back from that base on, and the window says so.
    const window = await eventually(
      async () => {
        const instance = await reload(source.id);
        const seen = await app.services.changeLog.restoreWindow(instance, app.services.instances.restoreWindowMs(instance));
        return seen && seen.earliest > current.startedAt ? seen : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 20, what: 'the window to start after the restored store\'s start, which cannot be built' },
    );
    assert.match(window.reason ?? '', /damaged|segment/);
    const operation = await restoreToPoint(source.id, window.latest, target.id);
    assert.equal(operation.status, 'SUCCEEDED', `${operation.errorCode} ${operation.errorMessage}`);
    assert.deepEqual(await graphOf(target.id), writer.graph());
  });

  for (const [restores, foundBy] of [[1, 'a verification'], [2, 'a verification'], [1, 'a restore'], [2, 'a restore']] as const) {
    it(`takes a base of a store restored ${restores === 1 ? 'from' : 'twice over, first from'} a moment whose base ${foundBy} found damaged, and the window starts at it`, async () => {
      const random = seeded(seed + 3 + restores);
      const source = await app.services.instances.create(principal, { name: `on-a-damaged-base-${restores}-${foundBy}`, tier: 'PROFESSIONAL' });
      const target = await app.services.instances.create(principal, { name: `kept-${restores}-${foundBy}`, tier: 'PROFESSIONAL' });
      const writer = new Writer(source.id, random);
      await writer.start('creation', { nodes: [], relationships: [] });
      for (let i = 0; i < 12; i++) await writer.write();
      const packsBefore = new Set(packsOf(dir, source.tenantId));
      const base = await app.services.backups.takeBase(await reload(source.id));
      assert.ok(base, 'no base taken');
      const basePacks = packsOf(dir, source.tenantId).filter((path) => !packsBefore.has(path));
      assert.ok(basePacks.length > 0, 'no pack of the base on disk');
      // A snapshot on that base (a position on the log after it), then writes after it.
      const requested = await app.services.snapshots.requestSnapshot(principal, source.id, null);
      const snapshot = await eventually(async () => {
        const seen = await app.services.snapshots.byId(requested.id);
        return seen?.status === 'COMPLETED' ? seen : undefined;
      }, { intervalMs: 10, what: 'the snapshot' });
      for (let i = 0; i < 3; i++) await writer.write();
      await writer.commitTimes();
      // Each restore over itself to its last write: the new store is anchored on that moment of the one before (no base
      // of its own yet), so every moment of it is built from the first store's base.
      for (let i = 0; i < restores; i++) {
        const undone = writer.timeline.at(-1)!;
        await restorable(source.id, undone.at);
        assert.equal((await restoreToPoint(source.id, undone.at, source.id)).status, 'SUCCEEDED');
        await writer.start(`restore over itself ${i + 1}`, undone.graph);
        for (let j = 0; j < 2; j++) await writer.write();
        await writer.commitTimes();
      }
      await restorable(source.id, writer.timeline.at(-1)!.at);
      const [current] = await app.services.changeLog.epochsOf(source.id);
      for (const path of basePacks) {
        const bytes = readFileSync(path);
        bytes[Math.floor(bytes.length / 3)] ^= 0x20;
        writeFileSync(path, bytes);
      }
      const found =
        foundBy === 'a verification'
          ? await settled((await app.services.verify.requestVerify(principal, snapshot.id)).id)
          : await restoreToPoint(source.id, writer.timeline.at(-1)!.at, target.id);
      assert.equal(found.errorCode, 'INVALID_BACKUP_FILE', `${found.status} ${found.errorMessage}`);

      // The current store is whole: a base of it brings its moments back from that base on, and the window says so.
      const window = await eventually(
        async () => {
          const instance = await reload(source.id);
          const seen = await app.services.changeLog.restoreWindow(instance, app.services.instances.restoreWindowMs(instance));
          return seen && seen.earliest > current.startedAt ? seen : undefined;
        },
        { timeoutMs: 5_000, intervalMs: 20, what: "the window to start after the restored store's start, which cannot be built" },
      );
      assert.match(window.reason ?? '', /damaged/);
      for (const at of [window.earliest, window.latest]) {
        const operation = await restoreToPoint(source.id, at, target.id);
        assert.equal(operation.status, 'SUCCEEDED', `${iso(at)}: ${operation.errorCode} ${operation.errorMessage}`);
        assert.deepEqual(await graphOf(target.id), writer.at(at)!.graph);
      }
    });
  }

  it('starts the window of a store after its base a verification found damaged, at the base taken after it', async () => {
    const random = seeded(seed + 6);
    const source = await app.services.instances.create(principal, { name: 'own-damaged-base', tier: 'PROFESSIONAL' });
    const target = await app.services.instances.create(principal, { name: 'kept-own', tier: 'PROFESSIONAL' });
    const writer = new Writer(source.id, random);
    await writer.start('creation', { nodes: [], relationships: [] });
    for (let i = 0; i < 12; i++) await writer.write();
    const packsBefore = new Set(packsOf(dir, source.tenantId));
    const base = (await app.services.backups.takeBase(await reload(source.id)))!;
    const basePacks = packsOf(dir, source.tenantId).filter((path) => !packsBefore.has(path));
    const requested = await app.services.snapshots.requestSnapshot(principal, source.id, null);
    await eventually(async () => ((await app.services.snapshots.byId(requested.id))?.status === 'COMPLETED' ? true : undefined), { intervalMs: 10, what: 'the snapshot' });
    for (let i = 0; i < 3; i++) await writer.write();
    await writer.commitTimes();
    await restorable(source.id, writer.timeline.at(-1)!.at);
    for (const path of basePacks) {
      const bytes = readFileSync(path);
      bytes[Math.floor(bytes.length / 3)] ^= 0x20;
      writeFileSync(path, bytes);
    }
    const verified = await settled((await app.services.verify.requestVerify(principal, requested.id)).id);
    assert.equal(verified.errorCode, 'INVALID_BACKUP_FILE', `${verified.status} ${verified.errorMessage}`);
    const window = await eventually(
      async () => {
        const instance = await reload(source.id);
        const seen = await app.services.changeLog.restoreWindow(instance, app.services.instances.restoreWindowMs(instance));
        return seen && seen.earliest > base.at! ? seen : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 20, what: 'the window to start after the damaged base' },
    );
    for (const at of [window.earliest, window.latest]) {
      const operation = await restoreToPoint(source.id, at, target.id);
      assert.equal(operation.status, 'SUCCEEDED', `${iso(at)}: ${operation.errorCode} ${operation.errorMessage}`);
      assert.deepEqual(await graphOf(target.id), writer.at(at)!.graph);
    }
  });
});
