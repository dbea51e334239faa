// The graph data plane behind a small interface: one store per instance (embedded: a SQLite file).
import type { EncodedBatch, GraphStats, NodeRecord, PropertyMap, RelationshipRecord } from './records';

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
}

export interface PageRequest {
  first: number;
  /** Return items whose id is greater than this one. */
  afterId?: string;
}

/** A consistent, point-in-time view of a store (one read transaction), read in batches. */
export interface GraphReadView {
  stats(): Promise<GraphStats>;
  /** Every node, then every relationship, in id order, as tuple lines built by the store. */
  encodedBatches(batchSize?: number): AsyncIterable<EncodedBatch>;
  close(): Promise<void>;
}

/**
 * Builds a new store from records (a restore's shadow), then verifies and seals it. The lines come from the
 * archive reader, which has checked each record on its own; the loader checks what needs the whole graph.
 */
export interface GraphLoader {
  /**
   * Loads tuple lines (nodes before relationships). A repeated id is INVALID_BACKUP_FILE; more records than the
   * limits allow, or data taking more bytes than they allow, is CAPACITY_EXCEEDED as soon as it shows.
   */
  insert(batch: EncodedBatch): Promise<void>;
  /**
   * Builds indexes and counts, checks every relationship's ends exist (INVALID_BACKUP_FILE) and the store's
   * final size (CAPACITY_EXCEEDED), and returns what the store holds.
   */
  finish(): Promise<GraphStats>;
  /** Discards the partial store. */
  abort(): Promise<void>;
}

export interface GraphStore {
  createNodes(drafts: NodeDraft[], limits: WriteLimits): Promise<NodeRecord[]>;
  createRelationships(drafts: RelationshipDraft[], limits: WriteLimits): Promise<RelationshipRecord[]>;
  deleteNodes(ids: string[]): Promise<number>;
  nodes(label: string | undefined, page: PageRequest): Promise<Page<NodeRecord>>;
  relationships(type: string | undefined, page: PageRequest): Promise<Page<RelationshipRecord>>;
  stats(): Promise<GraphStats>;
  openReadView(): Promise<GraphReadView>;
  /**
   * Lets the writes already admitted commit, then refuses every later one with INSTANCE_UNAVAILABLE until
   * thawWrites(): once it resolves, a read view holds every acknowledged write (a restore's safety snapshot).
   */
  freezeWrites(): Promise<void>;
  thawWrites(): Promise<void>;
}

/** Where instance stores live; a store is addressed by instance and generation (a restore makes a new one). */
export interface GraphStoreProvider {
  /** Runs fn with the store open; the store is not closed underneath a running call. */
  use<T>(instanceId: string, generation: number, fn: (store: GraphStore) => Promise<T>): Promise<T>;
  create(instanceId: string, generation: number): Promise<void>;
  /** A loader for a new generation; `limits` are the instance's, checked against what is really loaded. */
  createLoader(instanceId: string, generation: number, limits: WriteLimits): Promise<GraphLoader>;
  /** Closes and deletes every generation of the instance except `keep` (all when keep is undefined). */
  removeGenerations(instanceId: string, keep?: number): Promise<void>;
  close(): Promise<void>;
}
