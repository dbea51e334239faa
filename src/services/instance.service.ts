// Instances: creation by tier rules, lookup within a tenant, status and availability (always published), deletion.
import { randomUUID } from 'node:crypto';
import { In, IsNull, Not, type DataSource, type EntityManager, type Repository } from 'typeorm';
import type { AppConfig } from '../config/app-config';
import { startEpoch } from '../changelog/store-epochs';
import { beforeDatabaseTime, databaseTime } from '../entities/database-clock';
import { scheduleOf, TIERS, type Tier } from '../config/tiers';
import { type Availability, InstanceEntity, type InstanceStatus } from '../entities/instance.entity';
import { OperationEntity, RESTORE_KINDS } from '../entities/operation.entity';
import { type PrebuiltSelect, prebuiltSelect } from '../entities/prebuilt-select';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { badInput, conflict, instanceUnavailable, notFound } from '../errors/app-error';
import type { EventBus } from '../events/event-bus';
import type { GraphStore, GraphStoreProvider, WriteLimits } from '../graph/graph-store';
import type { EngineVersion, GraphStats } from '../graph/records';
import { restoreInProgressOn } from '../jobs/operation-queue';
import { nextSnapshotAt, scheduleGridDueAt } from '../scheduler/retention';
import { type Principal, requireRole } from './principal';

/** What a new instance gets when the input leaves memoryGB or engineVersion out (or null). */
export const DEFAULT_MEMORY_GB = 1;
export const DEFAULT_ENGINE_VERSION: EngineVersion = 'V5';

export interface InstanceInput {
  name: string;
  tier: Tier;
  /**
   * Null as absent: the schema's fields are nullable with a default, and an explicit null (what many clients send for
   * an unset variable) overrides a GraphQL default. Refused as `memoryGB null is not offered`, the input was valid.
   */
  memoryGB?: number | null;
  engineVersion?: EngineVersion | null;
}

/** An input as validateInput gives it back: trimmed, defaults filled in. */
export type ValidInstanceInput = Required<{ [K in keyof InstanceInput]: NonNullable<InstanceInput[K]> }>;

export interface ScheduleView {
  enabled: boolean;
  interval: string | null;
  retention: string | null;
  keepLatestOnly: boolean;
  nextSnapshotAt: number | null;
}

/** What randomUUID makes: the only instance ids there are. */
const INSTANCE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * What the metadata database cannot keep as given: PostgreSQL's text refuses NUL (the insert failed as an internal
 * error), and a lone UTF-16 surrogate has no UTF-8 form (it came back as U+FFFD, another name than the one answered).
 */
const UNSTORABLE_TEXT = /[\u0000\p{Cs}]/u;

export type StateChange = { status?: InstanceStatus; availability?: Availability; storeGeneration?: number; reason: string };

/** Called before an instance's row goes, so that owners of its other data (snapshots, blobs) clean up. */
export type InstanceRemovalHook = (instance: InstanceEntity) => Promise<void>;

/** CONFLICT while another operation owns the instance; INSTANCE_UNAVAILABLE when it is being deleted or has failed. */
export function assertAcceptsOperations(instance: Pick<InstanceEntity, 'id' | 'status'>): void {
  if (instance.status === 'RESTORING' || instance.status === 'CREATING') {
    throw conflict(`instance ${instance.id} is ${instance.status}: another operation is running on it; try again when it has finished`);
  }
  if (instance.status !== 'RUNNING') {
    throw instanceUnavailable(`instance ${instance.id} is ${instance.status}`);
  }
}

export class InstanceService {
  private readonly instances: Repository<InstanceEntity>;
  private readonly removalHooks: InstanceRemovalHook[] = [];
  /** Deletions this process is carrying out, which the recovery sweep leaves alone. */
  private readonly deleting = new Set<string>();
  /** The statement of list(), built on first use. */
  private listQuery: PrebuiltSelect<InstanceEntity> | null = null;

  constructor(
    private readonly db: DataSource,
    private readonly config: AppConfig,
    private readonly stores: GraphStoreProvider,
    private readonly events: EventBus,
  ) {
    this.instances = db.getRepository(InstanceEntity);
  }

  onRemove(hook: InstanceRemovalHook): void {
    this.removalHooks.push(hook);
  }

  /** Checks an input against the tier rules; throws BAD_USER_INPUT naming the problem. */
  validateInput(input: InstanceInput): ValidInstanceInput {
    const name = input.name.trim();
    if (name.length === 0 || name.length > 100) throw badInput('name must be 1-100 characters');
    if (UNSTORABLE_TEXT.test(name)) throw badInput('name must be well-formed Unicode without NUL characters');
    if (!TIERS.includes(input.tier)) throw badInput(`tier must be one of ${TIERS.join(', ')}`);
    const sizes = this.config.tiers[input.tier].memoryGB;
    const memoryGB = input.memoryGB ?? DEFAULT_MEMORY_GB;
    if (!sizes.includes(memoryGB)) {
      throw badInput(`memoryGB ${memoryGB} is not offered on ${input.tier}; choose one of ${sizes.join(', ')}`);
    }
    const engineVersion = input.engineVersion ?? DEFAULT_ENGINE_VERSION;
    if (engineVersion !== 'V4' && engineVersion !== 'V5') throw badInput('engineVersion must be V4 or V5');
    return { name, tier: input.tier, memoryGB, engineVersion };
  }

  /** Inserts the instance (through `manager` when given, to share a transaction with what must go with it). */
  async create(
    principal: Principal,
    input: InstanceInput,
    origin: { status: InstanceStatus; sourceSnapshotId: string | null } = { status: 'RUNNING', sourceSnapshotId: null },
    manager: EntityManager = this.db.manager,
  ): Promise<InstanceEntity> {
    requireRole(principal, 'MEMBER', 'creating an instance');
    const valid = this.validateInput(input);
    const createdAt = Date.now();
    const instance = Object.assign(new InstanceEntity(), {
      id: randomUUID(),
      tenantId: principal.tenantId,
      name: valid.name,
      tier: valid.tier,
      memoryGB: valid.memoryGB,
      storageGB: 2 * valid.memoryGB,
      engineVersion: valid.engineVersion,
      status: origin.status,
      availability: origin.status === 'RUNNING' ? 'AVAILABLE' : 'UNAVAILABLE',
      sourceSnapshotId: origin.sourceSnapshotId,
      storeGeneration: 1,
      createdAt,
      lastScheduledAt: null,
      nextScheduledAt: scheduleGridDueAt(scheduleOf(this.config.tiers[valid.tier]), null, createdAt),
      deletionClaimedAt: null,
    } satisfies InstanceEntity);
    if (origin.status !== 'RUNNING') {
      await manager.insert(InstanceEntity, instance);
      return instance;
    }
    try {
      await this.stores.create(instance.id, instance.storeGeneration);
      const { epoch } = await this.stores.use(instance.id, instance.storeGeneration, (store) => store.position());
      // The row and its history go in together: a row left without them (the database failing in between) listed a
      // RUNNING instance whose store the clean-up below had removed, every read and write of it an internal error.
      await manager.transaction(async (inTransaction) => {
        await inTransaction.insert(InstanceEntity, instance);
        // Its history starts empty: every write from here on is in its change log.
        await startEpoch(inTransaction, instance, epoch, { anchor: 'EMPTY' }, instance.createdAt);
      });
    } catch (error) {
      // A store nobody will ever reference (a full disk, typically) must not stay behind.
      await this.stores.removeGenerations(instance.id).catch(() => undefined);
      throw error;
    }
    return instance;
  }

  /**
   * Deletes in two steps, so that no replica removes data an operation still uses, and none leaves an instance claimed
   * for good:
   * 1. Claim: the instance DESTROYING, `deletionClaimedAt` the time. From here on new operations on it are refused: a
   *    request queuing one holds the row in its transaction (holdOperationInputs), so it either went in before the
   *    claim, and is found by the look below, or sees the claim and is refused.
   * 2. Look for operations on its data. None: commit (UNAVAILABLE, `deletionClaimedAt` null) and remove the data, which
   *    from then on only goes forward, on whichever replica. Some: give the claim back (CONFLICT).
   * A claim lasts as long as the look, a couple of queries. One older than an operation lease was left by a replica
   * that died or lost the database in between (its giving back failed too): any replica's deletion sweep then looks in
   * its place and commits and finishes the deletion once no operation uses the data (none can start meanwhile). Left
   * alone, the instance stayed DESTROYING, and every deletion of it was refused with CONFLICT, for good.
   */
  async remove(principal: Principal, id: string): Promise<void> {
    requireRole(principal, 'ADMIN', 'deleting an instance');
    const instance = await this.require(principal, id);
    // Claimed from the status read, the one a refused claim gives back: claimed from either RUNNING or FAILED, a restore
    // (or creation) that ended between the read and the claim was given back its RESTORING (CREATING), and the instance
    // stayed so with nothing running on it, refusing every operation and deletion for good.
    const claimable = instance.status === 'RUNNING' || instance.status === 'FAILED';
    const claimed = claimable
      ? await this.instances.update({ id, status: instance.status }, { status: 'DESTROYING', deletionClaimedAt: databaseTime(this.db) })
      : { affected: 0 };
    if (!claimed.affected) {
      const current = await this.reload(id);
      if (!current) throw notFound('instance', id);
      throw conflict(`instance ${id} is ${current.status}; delete it when that has finished`);
    }
    const previousStatus = instance.status;
    instance.status = 'DESTROYING';
    this.deleting.add(id);
    try {
      let busy: boolean;
      try {
        busy = await this.hasWorkOnItsData(id);
      } catch (error) {
        // A deletion that cannot look (the database away) gives its claim back; failing that, the sweep takes it.
        await this.giveClaimBack(id, previousStatus).catch(() => undefined);
        throw error;
      }
      if (busy) {
        await this.giveClaimBack(id, previousStatus);
        throw conflict(`instance ${id} has an operation in progress, or one that reads its snapshots or history; delete it when the operation ends`);
      }
      // Committed here or, when this deletion stalled for a lease, by a sweep meanwhile: the steps after can be repeated.
      await this.commitDeletion(instance);
      await this.finishDeletion(instance);
    } finally {
      this.deleting.delete(id);
    }
  }

  /**
   * Only a claim still pending: the operation found may have moved the instance on meanwhile (a restore's RESTORING),
   * and a sweep may have committed a claim that outlived its lease.
   */
  private async giveClaimBack(id: string, previousStatus: InstanceStatus): Promise<void> {
    await this.instances.update({ id, status: 'DESTROYING', deletionClaimedAt: Not(IsNull()) }, { status: previousStatus, deletionClaimedAt: null });
  }

  /** Step 2 of a deletion (see remove), unless another replica has committed it; whether this call did. */
  private async commitDeletion(instance: InstanceEntity): Promise<boolean> {
    const previous = instance.availability;
    const committed = await this.instances.update(
      { id: instance.id, status: 'DESTROYING', deletionClaimedAt: Not(IsNull()) },
      { availability: 'UNAVAILABLE', deletionClaimedAt: null },
    );
    if (!committed.affected) return false;
    Object.assign(instance, { availability: 'UNAVAILABLE', deletionClaimedAt: null });
    this.announceAvailability(instance, previous, 'instance deleted');
    return true;
  }

  /**
   * Whether an operation is queued or running on the instance, or on another instance from its data: a restore or a
   * creation from one of its snapshots, or from a moment of its history. A deletion removed that data under them, and
   * they failed (NOT_FOUND), where deleteSnapshot refuses to remove a snapshot an operation uses.
   */
  private async hasWorkOnItsData(id: string): Promise<boolean> {
    const active = In(['QUEUED', 'RUNNING']);
    const snapshotIds = (await this.db.getRepository(SnapshotEntity).find({ select: { id: true }, where: { instanceId: id } })).map((s) => s.id);
    return this.db.getRepository(OperationEntity).exists({
      where: [
        { instanceId: id, status: active },
        { sourceInstanceId: id, status: active },
        ...(snapshotIds.length > 0 ? [{ snapshotId: In(snapshotIds), status: active }] : []),
      ],
    });
  }

  /**
   * Finishes deletions a replica left half done (see remove): those committed, and those claimed more than an operation
   * lease ago, once no operation uses the instance's data. Every step of a committed deletion can be repeated, so this
   * is safe to run while another replica deletes the same instance. `all`: every claim, however young (only when this
   * is the sole process: elsewhere, a young claim may be about to be given back).
   */
  async finishInterruptedDeletions(all: boolean): Promise<number> {
    const destroying = { status: 'DESTROYING' as const };
    const stuck = await this.instances.find({
      where: all ? destroying : [{ ...destroying, deletionClaimedAt: IsNull() }, { ...destroying, deletionClaimedAt: beforeDatabaseTime(this.db, -this.config.operationLeaseMs) }],
    });
    let finished = 0;
    for (const instance of stuck) {
      if (this.deleting.has(instance.id)) continue;
      this.deleting.add(instance.id);
      try {
        if (instance.deletionClaimedAt !== null && ((await this.hasWorkOnItsData(instance.id)) || !(await this.commitDeletion(instance)))) continue;
        await this.finishDeletion(instance);
        finished++;
      } finally {
        this.deleting.delete(instance.id);
      }
    }
    return finished;
  }

  /** Snapshots (each row before its blob, so none is ever listed without its data), then the stores, then the row. */
  private async finishDeletion(instance: InstanceEntity): Promise<void> {
    for (const hook of this.removalHooks) await hook(instance);
    await this.stores.removeGenerations(instance.id);
    await this.instances.delete({ id: instance.id });
  }

  /** The tenant's instances, oldest first: one prebuilt statement (the busiest list). */
  async list(principal: Principal): Promise<InstanceEntity[]> {
    this.listQuery ??= prebuiltSelect(this.db, InstanceEntity, { where: ['tenantId'], orderBy: ['createdAt', 'id'] });
    return this.listQuery(principal.tenantId);
  }

  /** The instance, or null when it is missing or another tenant's (the two are indistinguishable). */
  async find(principal: Principal, id: string): Promise<InstanceEntity | null> {
    // Every instance id is a UUID (create): any other text names none and is not sent to the database, where
    // PostgreSQL refuses text holding NUL (the lookup of a missing instance failed as INTERNAL_SERVER_ERROR).
    if (!INSTANCE_ID.test(id)) return null;
    return this.instances.findOne({ where: { id, tenantId: principal.tenantId } });
  }

  async require(principal: Principal, id: string): Promise<InstanceEntity> {
    const instance = await this.find(principal, id);
    if (!instance) throw notFound('instance', id);
    return instance;
  }

  /** Fresh from the database, for code that holds an instance across awaits. */
  async reload(id: string): Promise<InstanceEntity | null> {
    return this.instances.findOne({ where: { id } });
  }

  /** The instances whose store is in use (their change logs ship). */
  async runningIds(): Promise<string[]> {
    const rows = await this.instances.find({ select: { id: true }, where: { status: In(['RUNNING', 'RESTORING']) } });
    return rows.map((row) => row.id);
  }

  /** How far back a point-in-time restore of the instance reaches (its tier's pointInTimeWindow); null: not at all. */
  restoreWindowMs(instance: Pick<InstanceEntity, 'tier'>): number | null {
    return scheduleOf(this.config.tiers[instance.tier]).pointInTimeWindowMs;
  }

  /** Every tenant's instances counted by availability (operator metrics). */
  async countByAvailability(): Promise<Partial<Record<Availability, number>>> {
    const rows = await this.instances
      .createQueryBuilder('i')
      .select('i.availability', 'availability')
      .addSelect('COUNT(*)', 'count')
      .groupBy('i.availability')
      .getRawMany<{ availability: Availability; count: string | number }>();
    return Object.fromEntries(rows.map((row) => [row.availability, Number(row.count)]));
  }

  /**
   * A store generation for a restore attempt's new store that no attempt of any operation on the instance has taken:
   * above its current one and above every shadowGeneration its restores recorded (an attempt records its own with its
   * params, fenced by its lease, before it writes a file, so one that outlived its lease takes none). Numbered
   * storeGeneration + attempt, the attempts of two restores took the same one: an attempt that outlived its lease, its
   * store removed under it and its restore ended by another replica, removed the file of the next restore's when it
   * stopped at last, by then perhaps the instance's data.
   */
  async nextStoreGeneration(instance: Pick<InstanceEntity, 'id' | 'storeGeneration'>): Promise<number> {
    const restores = await this.db
      .getRepository(OperationEntity)
      .find({ select: { id: true, params: true }, where: { instanceId: instance.id, kind: In([...RESTORE_KINDS]) } });
    let highest = instance.storeGeneration;
    for (const { params } of restores) {
      const taken = (params as { shadowGeneration?: unknown } | null)?.shadowGeneration;
      if (typeof taken === 'number') highest = Math.max(highest, taken);
    }
    return highest + 1;
  }

  /**
   * The only way status and availability change: the row is updated and, when availability moved,
   * an InstanceAvailabilityEvent is published in the same step, so queries and events agree.
   */
  async setState(
    instance: InstanceEntity,
    change: StateChange,
  ): Promise<InstanceEntity> {
    const announce = await this.setStateIn(this.db.manager, instance, change);
    announce();
    return instance;
  }

  /**
   * setState inside a transaction: the row changes with it, and the returned function publishes the event, to be
   * called once the transaction has committed (an event must never announce a change that was rolled back).
   */
  async setStateIn(manager: EntityManager, instance: InstanceEntity, change: StateChange): Promise<() => void> {
    const previous = instance.availability;
    const patch: Partial<InstanceEntity> = {};
    if (change.status !== undefined) patch.status = change.status;
    if (change.availability !== undefined) patch.availability = change.availability;
    if (change.storeGeneration !== undefined) patch.storeGeneration = change.storeGeneration;
    await manager.update(InstanceEntity, { id: instance.id }, patch);
    Object.assign(instance, patch);
    return () => this.announceAvailability(instance, previous, change.reason);
  }

  /** Publishes the instance's availability, when it is not `previous`. */
  private announceAvailability(instance: InstanceEntity, previous: Availability, reason: string): void {
    if (instance.availability === previous) return;
    this.events.pubSub.publish('instance.availability', instance.tenantId, {
      tenantId: instance.tenantId,
      instanceId: instance.id,
      availability: instance.availability,
      previousAvailability: previous,
      status: instance.status,
      reason,
      at: new Date().toISOString(),
    });
  }

  /** Runs fn on the instance's current store (the generation its row points at). */
  withStore<T>(instance: InstanceEntity, fn: (store: GraphStore) => Promise<T>): Promise<T> {
    return this.stores.use(instance.id, instance.storeGeneration, fn);
  }

  /**
   * Runs a read on the instance's store. A restore's swap (by this process or another replica) removes the store it
   * replaced at once, under the reads that found the instance just before it: SQLite fails them (an I/O error, a file
   * it cannot open). Such a read is answered by `again`, with the instance as it is now, on the store that replaced it.
   * So is a read whose instance a deletion took meanwhile (its stores go before its row), with the instance as
   * DESTROYING: answered as a read after the deletion is, not as an internal error.
   */
  async readStore<T>(
    instance: InstanceEntity,
    fn: (store: GraphStore) => Promise<T>,
    again: (current: InstanceEntity) => Promise<T>,
  ): Promise<T> {
    try {
      return await this.withStore(instance, fn);
    } catch (error) {
      const current = await this.movedOn(instance);
      if (!current) throw error;
      return again(current);
    }
  }

  /**
   * After a use of the instance's store failed: the instance as it now is when a restore's swap or a deletion has
   * taken that store away meanwhile (a deleted one as DESTROYING and UNAVAILABLE), else null (the failure is the store's).
   */
  async movedOn(instance: InstanceEntity): Promise<InstanceEntity | null> {
    const current = await this.reload(instance.id);
    if (!current) return Object.assign(new InstanceEntity(), instance, { status: 'DESTROYING', availability: 'UNAVAILABLE' });
    if (current.storeGeneration !== instance.storeGeneration) return current;
    return current.status === 'DESTROYING' && instance.status !== 'DESTROYING' ? current : null;
  }

  /**
   * Lifts a restore's write fence that no restore holds any more (its compensation could not lift it: a full disk, a
   * busy store; or an earlier version swallowed that), so that an instance shown AVAILABLE takes writes again. Only
   * when no restore of the instance is queued or running, and only the fence of `owner`: a restore fences the store
   * after its operation is in, so one starting meanwhile has a fence of its own, which stays. Whether it was lifted.
   */
  async liftStaleWriteFence(instance: InstanceEntity, owner: string): Promise<boolean> {
    if (await this.db.getRepository(OperationEntity).existsBy(restoreInProgressOn([instance.id]))) return false;
    // Only on the store the instance uses now. A restore that swapped in a new store since the caller read the instance
    // (its write queued, or its process stalled, meanwhile) keeps its fence in the store it replaced, which is deleted a
    // moment after its swap: a write let through there was acknowledged and lost. Refused, it is tried again on the new one.
    if ((await this.reload(instance.id))?.storeGeneration !== instance.storeGeneration) return false;
    await this.withStore(instance, (store) => store.thawWrites(owner));
    return true;
  }

  stats(instance: InstanceEntity): Promise<GraphStats> {
    // A CREATING instance has no store until its data is in; a FAILED or DESTROYING one may have none left.
    if (instance.status !== 'RUNNING' && instance.status !== 'RESTORING') {
      return Promise.resolve({ nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0 });
    }
    return this.readStore(instance, (store) => store.stats(), (current) => this.stats(current));
  }

  capacityBytes(instance: Pick<InstanceEntity, 'storageGB'>): number {
    return instance.storageGB * this.config.bytesPerStorageGB;
  }

  limitsOf(instance: Pick<InstanceEntity, 'tier' | 'storageGB'>): WriteLimits {
    const policy = this.config.tiers[instance.tier];
    return { maxNodes: policy.maxNodes, maxRelationships: policy.maxRelationships, maxBytes: this.capacityBytes(instance) };
  }

  schedule(instance: InstanceEntity, now = Date.now()): ScheduleView {
    const policy = this.config.tiers[instance.tier];
    const schedule = scheduleOf(policy);
    return {
      enabled: schedule.intervalMs !== null,
      interval: schedule.intervalMs === null ? null : policy.snapshotInterval,
      retention: schedule.keepLatestOnly ? null : policy.retention,
      keepLatestOnly: schedule.keepLatestOnly,
      // The scheduler never snapshots an instance whose creation failed or that is being deleted: nothing is due.
      nextSnapshotAt:
        instance.status === 'FAILED' || instance.status === 'DESTROYING'
          ? null
          : nextSnapshotAt(schedule, instance.lastScheduledAt, instance.createdAt, now),
    };
  }
}
