// The data plane: validated reads and writes of an instance's graph, refused while a restore owns it.
import { AppError, badInput, instanceUnavailable } from '../errors/app-error';
import { asStorageFull } from '../errors/storage-full';
import type { InstanceEntity } from '../entities/instance.entity';
import { MAX_NAME_LENGTH, MAX_PROPERTY_DEPTH, nameProblem } from '../graph/graph-rules';
import { type GraphStore, type NodeDraft, type NodeUpdate, type Page, type RelationshipDraft, type UpdatedNodes, WritesFencedError } from '../graph/graph-store';
import type { NodeRecord, PropertyMap, RelationshipRecord } from '../graph/records';
import type { Logger } from '../logging/logger';
import type { InstanceService } from './instance.service';
import { type Principal, requireRole } from './principal';

export const MAX_BATCH = 10_000;
export const MAX_PAGE = 1_000;


export interface NodeInputDraft {
  labels: string[];
  properties?: PropertyMap | null;
}
/** Null or absent labels or properties are kept as they are. */
export interface NodeUpdateInput {
  id: string;
  labels?: string[] | null;
  properties?: PropertyMap | null;
}
export interface RelationshipInputDraft {
  type: string;
  startNodeId: string;
  endNodeId: string;
  properties?: PropertyMap | null;
}

/** Told after every write that committed (the change log ships it). */
export interface WriteListener {
  notify(instance: InstanceEntity): void;
}

export class GraphService {
  constructor(
    private readonly instances: InstanceService,
    private readonly written: WriteListener,
    private readonly logger: Logger,
  ) {}

  async createNodes(principal: Principal, instanceId: string, inputs: NodeInputDraft[]): Promise<NodeRecord[]> {
    requireRole(principal, 'MEMBER', 'writing data');
    checkBatch(inputs.length);
    const drafts: NodeDraft[] = inputs.map((input) => ({
      labels: [...new Set(input.labels.map((label) => checkName(label, 'label')))],
      properties: checkProperties(input.properties ?? {}),
    }));
    return this.write(principal, instanceId, (store, instance) => store.createNodes(drafts, this.instances.limitsOf(instance)));
  }

  async createRelationships(
    principal: Principal,
    instanceId: string,
    inputs: RelationshipInputDraft[],
  ): Promise<RelationshipRecord[]> {
    requireRole(principal, 'MEMBER', 'writing data');
    checkBatch(inputs.length);
    const drafts: RelationshipDraft[] = inputs.map((input) => ({
      type: checkName(input.type, 'relationship type'),
      startNodeId: input.startNodeId,
      endNodeId: input.endNodeId,
      properties: checkProperties(input.properties ?? {}),
    }));
    return this.write(principal, instanceId, (store, instance) =>
      store.createRelationships(drafts, this.instances.limitsOf(instance)),
    );
  }

  /** `withProperties: false`: the answer does not show properties, which are then not read (see GraphStore.updateNodes). */
  async updateNodes(
    principal: Principal,
    instanceId: string,
    inputs: NodeUpdateInput[],
    { withProperties = true, maxAnswerBytes }: { withProperties?: boolean; maxAnswerBytes?: number } = {},
  ): Promise<UpdatedNodes> {
    requireRole(principal, 'MEMBER', 'writing data');
    checkBatch(inputs.length);
    const updates: NodeUpdate[] = inputs.map((input) => ({
      id: input.id,
      ...(input.labels == null ? {} : { labels: [...new Set(input.labels.map((label) => checkName(label, 'label')))] }),
      ...(input.properties == null ? {} : { properties: checkProperties(input.properties) }),
    }));
    return this.write(principal, instanceId, (store, instance) =>
      store.updateNodes(updates, this.instances.limitsOf(instance), { withProperties, maxAnswerBytes }),
    );
  }

  async deleteNodes(principal: Principal, instanceId: string, ids: string[]): Promise<number> {
    requireRole(principal, 'MEMBER', 'writing data');
    checkBatch(ids.length);
    return this.write(principal, instanceId, (store) => store.deleteNodes(ids));
  }

  /** `maxBytes`: of stored data, at most (PAGE_BYTES; an item larger comes alone). */
  nodes(principal: Principal, instanceId: string, label: string | undefined, first: number, afterId?: string, maxBytes?: number): Promise<Page<NodeRecord>> {
    return this.read(principal, instanceId, (store) => store.nodes(label, { first: checkPage(first), afterId, maxBytes }));
  }

  relationships(
    principal: Principal,
    instanceId: string,
    type: string | undefined,
    first: number,
    afterId?: string,
    maxBytes?: number,
  ): Promise<Page<RelationshipRecord>> {
    return this.read(principal, instanceId, (store) => store.relationships(type, { first: checkPage(first), afterId, maxBytes }));
  }

  private async write<T>(
    principal: Principal,
    instanceId: string,
    fn: (store: GraphStore, instance: InstanceEntity) => Promise<T>,
  ): Promise<T> {
    const instance = await this.instances.require(principal, instanceId);
    if (instance.status !== 'RUNNING' || instance.availability !== 'AVAILABLE') {
      throw instanceUnavailable(
        `instance ${instanceId} is ${instance.status} and ${instance.availability}: writes are refused until it is AVAILABLE again`,
      );
    }
    const attempt = () => this.instances.withStore(instance, (store) => fn(store, instance));
    let movedOn = false;
    const result = await attempt()
      .catch(async (error: unknown) => {
        // Its store taken away since the instance was read (a deletion, a restore's swap): the write failed there
        // (the store missing, or SQLite unable to open or lock a file removed under it) and rolled back. Asked again,
        // it meets the instance as it now is: NOT_FOUND, refused, or written to its new store. (A refusal of the
        // write itself, an AppError, stands; not the fence of a restore that has swapped the store out since.)
        if ((!(error instanceof AppError) || error instanceof WritesFencedError) && (await this.instances.movedOn(instance))) {
          movedOn = true;
          return this.write(principal, instanceId, fn);
        }
        // A write fence on an instance shown AVAILABLE is one its restore failed to lift: lifted, the write goes on.
        if (!(error instanceof WritesFencedError) || !(await this.instances.liftStaleWriteFence(instance, error.owner))) throw error;
        this.logger.warn({ instanceId, restore: error.owner }, 'lifted a write fence that no restore holds');
        return attempt();
      })
      .catch((error: unknown) => {
        // The store rolled the batch back; the instance keeps its data and serves reads.
        throw asStorageFull(error) ?? storeBusy(error) ?? error;
      });
    if (!movedOn) this.written.notify(instance);
    return result;
  }

  private async read<T>(principal: Principal, instanceId: string, fn: (store: GraphStore) => Promise<T>): Promise<T> {
    const instance = await this.instances.require(principal, instanceId);
    if (instance.availability === 'UNAVAILABLE') {
      // Shortly only while it is being created, restored or swapped: an instance whose creation failed, or one being
      // deleted, never will be.
      const when = instance.status === 'FAILED' || instance.status === 'DESTROYING' ? 'it has no data to read' : 'try again shortly';
      throw instanceUnavailable(`instance ${instanceId} is ${instance.status} and UNAVAILABLE; ${when}`);
    }
    return this.instances.readStore(instance, fn, () => this.read(principal, instanceId, fn));
  }
}

/**
 * CONFLICT for a write that waited out SQLite's busy timeout for the store's write lock: another process sharing the
 * file (a replica writing a large batch, or deleting a node with many relationships) held it. It was an internal
 * error, "a bug", though nothing was written and the write succeeds once the other one has committed.
 */
function storeBusy(error: unknown): AppError | null {
  if ((error as { code?: unknown } | null)?.code !== 'SQLITE_BUSY') return null;
  return new AppError(
    'CONFLICT',
    "another write held the instance's store for longer than this server waits for it (a large batch written through another server of the deployment): nothing was written; try again",
  );
}

function checkBatch(size: number): void {
  if (size === 0) throw badInput('the batch is empty');
  if (size > MAX_BATCH) throw badInput(`a batch holds at most ${MAX_BATCH} items; this one has ${size}`);
}

function checkPage(first: number): number {
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE) throw badInput(`first must be between 0 and ${MAX_PAGE}`);
  return first;
}

function checkProperties(properties: PropertyMap): PropertyMap {
  // Iterative, so a hostile input cannot overflow the stack; flat maps (the usual case) push nothing.
  const pending: [object, number][] = [[properties, 1]];
  for (let item = pending.pop(); item; item = pending.pop()) {
    const [value, depth] = item;
    if (depth > MAX_PROPERTY_DEPTH) throw badInput(`properties may nest at most ${MAX_PROPERTY_DEPTH} levels deep`);
    for (const key in value) {
      const child = (value as Record<string, unknown>)[key];
      if (child !== null && typeof child === 'object') pending.push([child, depth + 1]);
      // JSON's 1e400 parses as Infinity, which the store's JSON would hold as null: refused, as archives refuse it.
      else if (typeof child === 'number' && !Number.isFinite(child)) throw badInput('properties hold a number too large for a double');
    }
  }
  return properties;
}

function checkName(name: string, what: string): string {
  const problem = nameProblem(what, name);
  if (problem) throw badInput(`a ${what} must be 1-${MAX_NAME_LENGTH} characters of well-formed Unicode: this ${problem}`);
  return name;
}
