// The graph data plane behind a small interface: one store per instance (embedded: a SQLite file).
import type { Readable } from 'node:stream';
import { AppError, capacityExceeded } from '../errors/app-error';
import type { DeltaBatch, EncodedBatch, GraphStats, NodeRecord, PropertyMap, RelationshipRecord } from './records';

export interface NodeDraft {
  labels: string[];
  properties: PropertyMap;
}

export interface RelationshipDraft {
  type: string;
  startNodeId: string;
  endNodeId: string;
  properties: PropertyMap;
}

/** Replaces what is given (labels, properties or both) of an existing node. */
export interface NodeUpdate {
  id: string;
  labels?: string[];
  properties?: PropertyMap;
}

/** Checked inside the write transaction, so a refused batch writes nothing. */
export interface WriteLimits {
  maxNodes: number | null;
  maxRelationships: number | null;
  maxBytes: number;
}

export interface Page<T> {
  items: T[];
  hasNextPage: boolean;
  totalCount: number;
  /** Bytes of stored data (labels or type, and properties) the items hold. */
  bytes: number;
}

/** The nodes an update answers, and the bytes of stored properties they hold (what the answer carries). */
export interface UpdatedNodes {
  nodes: NodeRecord[];
  bytes: number;
}

export interface PageRequest {
  first: number;
  /** Return items whose id is greater than this one. */
  afterId?: string;
  /** Bytes of stored data the page holds at most (an item larger comes alone); PAGE_BYTES when not given, nor more. */
  maxBytes?: number;
}

/** A consistent, point-in-time view of a store (one read transaction), read in batches. */
export interface GraphReadView {
  stats(): Promise<GraphStats>;
  /**
   * Every node, then every relationship, in id order, as tuple lines built by the store: batches of at most
   * `batchSize` items, holding at most `batchBytes` of stored data before their last item.
   */
  encodedBatches(batchSize?: number, batchBytes?: number): AsyncIterable<EncodedBatch>;
  /** The labels of the given nodes (ids that name no node are left out). */
  nodeLabels(ids: string[]): Promise<Map<string, string[]>>;
  close(): Promise<void>;
}

// The change log. Every write transaction that changes a row bumps the store's `seq` and logs, atomically with
// the write, one entry: its seq, its commit time and the tuple lines of the rows it touched as it left them (a write
// whose lines are not bounded by its request: several entries at one commit time, see LOG_ENTRY_LINES). `epoch`
// names the history those seqs belong to: a new, loaded or materialised store starts a new one at seq 0, holding what
// it was given (nothing for a new store), and its log replayed in order onto that reproduces it at any later seq.

/** One write transaction of the change log (or a part of one: see LOG_ENTRY_LINES): its seq, commit time (ms) and tuple lines in replay order. */
export interface LogEntry {
  seq: number;
  at: number;
  lines: string[];
}

/**
 * Where a store stands: its epoch, the seq of its latest write and that write's commit time (null before any write
 * of this epoch), and what it holds; read in one transaction.
 */
export interface StorePosition {
  epoch: number;
  seq: number;
  at: number | null;
  stats: GraphStats;
}

/** A physical copy of a store at one point in time (see GraphStore.captureBase): its position, size and page size. */
export interface BaseCapture extends StorePosition {
  sizeBytes: number;
  pageSize: number;
}

/**
 * A store its loader has just sealed: where it stands, and its bytes. Until something opens the store (the swap that
 * makes it an instance's), its file is a consistent copy by itself: a base is read straight from it, without the
 * backup copy a live store needs (captureBase).
 */
export interface SealedStore {
  base: BaseCapture;
  /** The store's bytes in pieces of `pieceBytes` (the last one may be shorter). */
  read(pieceBytes: number): Readable;
}

/**
 * Builds a new store from records (a restore's shadow), then verifies and seals it. The lines come from the
 * archive reader, which has checked each record on its own; the loader checks what needs the whole graph.
 */
export interface GraphLoader {
  /**
   * Loads tuple lines (nodes before relationships), each of which passed the archive's record checks
   * (RecordValidator.frame, now or when its upload was stored): their fields are stored as they are written. A
   * repeated id is INVALID_BACKUP_FILE; more records than the limits allow, or data taking more bytes than they allow,
   * is CAPACITY_EXCEEDED as soon as it shows.
   */
  insert(batch: EncodedBatch): Promise<void>;
  /**
   * Loads records of a foreign file, which names nodes by its own keys (graph-files/): tuple lines
   *   [at, "<key>", "<id>", [labels…], {properties}]                                     (nodes)
   *   [at, "<id>", "<type>", "<startKey>", "<endKey>", {properties}, "<key>" | null]    (relationships)
   * with fresh ids chosen by the caller and `at` the record's place in the file. Keys go to an on-disk map beside the
   * store (memory stays flat for any file), removed by finish() and abort(). A node key or relationship key the file
   * already used, or an end naming no node loaded before it, is INVALID_BACKUP_FILE naming describe(at); limits as
   * for insert().
   */
  insertKeyed(batch: EncodedBatch, describe: (at: number) => string): Promise<void>;
  /**
   * Builds indexes and counts, checks every relationship's ends exist (INVALID_BACKUP_FILE) and the store's
   * final size (CAPACITY_EXCEEDED), seals the store (everything on disk, a new epoch at seq 0, closed) and returns it.
   */
  finish(): Promise<SealedStore>;
  /** Discards the partial store. */
  abort(): Promise<void>;
}

export interface GraphStore {
  createNodes(drafts: NodeDraft[], limits: WriteLimits): Promise<NodeRecord[]>;
  createRelationships(drafts: RelationshipDraft[], limits: WriteLimits): Promise<RelationshipRecord[]>;
  /**
   * All or nothing: an id that names no node is NOT_FOUND and nothing is written. Answers the nodes as they now are;
   * `withProperties: false` leaves their properties out (empty), as a relabelling whose answer does not show them
   * needs; with them, nodes holding more than UPDATE_ANSWER_BYTES of properties are BAD_USER_INPUT, nothing written.
   */
  updateNodes(updates: NodeUpdate[], limits: WriteLimits, options?: { withProperties?: boolean; maxAnswerBytes?: number }): Promise<UpdatedNodes>;
  /** Deletes the nodes and every relationship attached to them; ids that name no node are ignored. */
  deleteNodes(ids: string[]): Promise<number>;
  /** A page of at most `first` items, fewer when their data passes PAGE_BYTES (sqlite-graph-store.ts), with hasNextPage. */
  nodes(label: string | undefined, page: PageRequest): Promise<Page<NodeRecord>>;
  relationships(type: string | undefined, page: PageRequest): Promise<Page<RelationshipRecord>>;
  stats(): Promise<GraphStats>;
  openReadView(): Promise<GraphReadView>;
  /**
   * Where the store stands now, and `readAt`: a moment such that every write committed with a commit time before it is
   * within this position, and every later write gets a later commit time. `atLeast`: readAt is no earlier than it (a
   * restored store whose history must start after every moment its predecessor offered).
   */
  position(atLeast?: number): Promise<StorePosition & { readAt: number }>;
  /**
   * A new epoch at seq 0 for what the store holds now, its log dropped, unless its epoch is no longer `fromEpoch`
   * (another process started one first); returns the position then, with readAt no earlier than `atLeast`. For a store
   * found behind the log shipped from it (see ChangeLogService.checkOpened): its seqs from there on name other writes.
   */
  startHistory(fromEpoch: number, atLeast: number): Promise<StorePosition & { readAt: number }>;
  /** Entries with seq > afterSeq in seq order, at most about maxBytes of lines (always at least one entry when any exists). */
  readLog(afterSeq: number, maxBytes: number): Promise<LogEntry[]>;
  /** Bytes of the lines of the entries after afterSeq (what shipping them reads). */
  logBytesAfter(afterSeq: number): Promise<number>;
  /** Deletes the entries up to throughSeq (they are shipped). */
  trimLog(throughSeq: number): Promise<void>;
  /**
   * Writes a consistent copy of the store to destPath (a new file) in one step of SQLite's online backup: writes go
   * on meanwhile and the copy is one point in time. Returns where the copy stands. The copy also holds the log
   * entries not yet trimmed; they mean nothing there (its content is defined by its seq), and materialise drops them.
   */
  captureBase(destPath: string): Promise<BaseCapture>;
  /**
   * Lets the writes already admitted commit, then refuses every later one (WritesFencedError, INSTANCE_UNAVAILABLE)
   * until thawWrites(): once it resolves, a read view holds every acknowledged write (a restore's safety snapshot).
   * `owner` (the restore's operation id) is what the fence says when it refuses a write.
   */
  freezeWrites(owner: string): Promise<void>;
  /** Lifts the fence; with `owner`, only that owner's (a later fence is not lifted by mistake). */
  thawWrites(owner?: string): Promise<void>;
}

/** A write refused by a restore's write fence (freezeWrites): the instance is being restored, by `owner`. */
export class WritesFencedError extends AppError {
  constructor(readonly owner: string) {
    super('INSTANCE_UNAVAILABLE', 'the instance is being restored: writes are refused until it is AVAILABLE again');
  }
}

/** The store file of an instance's generation is not there (lost, or removed underneath the server). */
export class StoreMissingError extends Error {
  constructor(
    readonly instanceId: string,
    readonly generation: number,
  ) {
    super(`the store of instance ${instanceId} (generation ${generation}) is missing`);
    this.name = 'StoreMissingError';
  }
}

export interface MaterialiseOptions {
  signal?: AbortSignal;
  /** Also runs SQLite's structural check on the base (verification wants it; a restore can skip its cost). */
  quickCheck?: boolean;
  /**
   * The target's tier limits, and at least how many lines the batches hold: the build stops with CAPACITY_EXCEEDED as
   * soon as the lines left, each changing one row, could no longer bring the counts within them.
   */
  within?: { maxNodes: number | null; maxRelationships: number | null; lines: number };
}

/** The target's tier limits a build is checked against, and at least how many lines it will still apply. */
export type BuildLimits = NonNullable<MaterialiseOptions['within']>;

/**
 * CAPACITY_EXCEEDED when counts pass the limits by more than `linesLeft` lines could take away (each changes one row):
 * whatever those lines do, the result cannot fit. `allowedBy` names the limits in the message (the target's tier).
 */
export function assertMayStillFit(
  counts: { nodeCount: number; relationshipCount: number },
  within: Pick<BuildLimits, 'maxNodes' | 'maxRelationships'>,
  linesLeft: number,
  allowedBy = 'the target',
): void {
  for (const [kind, count, max] of [
    ['nodes', counts.nodeCount, within.maxNodes],
    ['relationships', counts.relationshipCount, within.maxRelationships],
  ] as const) {
    const fewest = count - linesLeft;
    if (max !== null && fewest > max) throw capacityExceeded(`the data holds at least ${fewest} ${kind}; ${allowedBy} allows ${max}`);
  }
}

/** Where instance stores live; a store is addressed by instance and generation (a restore makes a new one). */
export interface GraphStoreProvider {
  /**
   * `check` runs on each store as it is opened, before any use gets it; when it fails, so does that use, and the next
   * one opens the store again.
   */
  onOpen(check: (instanceId: string, store: GraphStore) => Promise<void>): void;
  /** Runs fn with the store open; the store is not closed underneath a running call. */
  use<T>(instanceId: string, generation: number, fn: (store: GraphStore) => Promise<T>): Promise<T>;
  create(instanceId: string, generation: number): Promise<void>;
  /** A loader for a new generation; `limits` are the instance's, checked against what is really loaded. */
  createLoader(instanceId: string, generation: number, limits: WriteLimits): Promise<GraphLoader>;
  /**
   * Builds a generation from a base copy's bytes (null: an empty store) and the batches after it, applied in order
   * (a snapshot's deltas, or log lines replayed), and checks it: against `expected`, or when that is null (a point in
   * time nothing recorded) against its own rows. Returns what it holds; it then starts a new epoch at seq 0 with an
   * empty log. On any failure nothing is left.
   */
  materialise(
    instanceId: string,
    generation: number,
    base: Readable | null,
    deltas: AsyncIterable<DeltaBatch>,
    expected: GraphStats | null,
    options?: MaterialiseOptions,
  ): Promise<GraphStats>;
  /** Closes and deletes every generation of the instance except `keep` (all when keep is undefined). */
  removeGenerations(instanceId: string, keep?: number): Promise<void>;
  /**
   * Closes and deletes the generations older than `generation`: what a swap to it replaced. A newer one is left: once
   * the swap is recorded, it can only be the shadow a later operation is building.
   */
  removeGenerationsBefore(instanceId: string, generation: number): Promise<void>;
  /** Closes and deletes one generation: a shadow its restore gives up. */
  removeGeneration(instanceId: string, generation: number): Promise<void>;
  close(): Promise<void>;
}
