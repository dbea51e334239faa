// The engine-neutral shape of graph data as it moves between stores and archives.

export type PropertyMap = Record<string, unknown>;

/**
 * Sets a property of a map being built from a file: `__proto__` too, as an own property like any other key. A plain
 * assignment (or Object.assign) of `__proto__` sets the map's prototype instead, and the property was lost.
 */
export function setProperty(map: PropertyMap, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
  else map[key] = value;
}

export interface NodeRecord {
  /** Stable across snapshot and restore: a positive integer, as a decimal string. */
  id: string;
  labels: string[];
  properties: PropertyMap;
}

export interface RelationshipRecord {
  id: string;
  type: string;
  startNodeId: string;
  endNodeId: string;
  properties: PropertyMap;
}

export type GraphRecord =
  | { kind: 'node'; node: NodeRecord }
  | { kind: 'relationship'; relationship: RelationshipRecord };

export interface NameCount {
  name: string;
  count: number;
}

/** What a store or an archive holds; mirrors the GraphQL GraphStats type. */
export interface GraphStats {
  nodeCount: number;
  relationshipCount: number;
  labels: NameCount[];
  relationshipTypes: NameCount[];
  /** Bytes the data takes in the instance's store. */
  storeSizeBytes: number;
}

/**
 * How the graph `actual` counts differs from the one `expected` counts, for messages; empty when they agree on the node
 * and relationship counts and on every label's and type's count (a name listed with count 0 is as good as absent).
 */
export function statsDifferences(actual: GraphStats, expected: GraphStats): string[] {
  const names = (list: NameCount[]) =>
    JSON.stringify(
      list
        .filter((entry) => entry.count > 0)
        .map((entry) => [entry.name, entry.count])
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  const differences = [
    actual.nodeCount !== expected.nodeCount && `${actual.nodeCount} nodes instead of ${expected.nodeCount}`,
    actual.relationshipCount !== expected.relationshipCount && `${actual.relationshipCount} relationships instead of ${expected.relationshipCount}`,
    names(actual.labels) !== names(expected.labels) && 'different label counts',
    names(actual.relationshipTypes) !== names(expected.relationshipTypes) && 'different relationship type counts',
  ];
  return differences.filter((difference): difference is string => difference !== false);
}

export type EngineVersion = 'V4' | 'V5';

/**
 * Records as JSON text, the engine-neutral encoding shared by stores and archives, one tuple per line:
 *   ["N", "<id>", [labels…], {properties}]
 *   ["R", "<id>", "<type>", "<startNodeId>", "<endNodeId>", {properties}]
 * Bulk paths (snapshot, restore) move these lines between SQLite and the archive without parsing them in
 * JavaScript: SQLite builds them in its own threads, and a restore's load binds the fields it cuts out of compact
 * lines (graph/tuple-fields.ts), leaving any other line to SQLite's JSON functions.
 */
export interface EncodedBatch {
  kind: 'node' | 'relationship';
  lines: string[];
}

/**
 * A batch of changes (a delta: rows changed since a seq; or change log lines): tuple lines as in EncodedBatch for rows
 * as they now are, and ["-N", "<id>"] or ["-R", "<id>"] for rows that are gone. An id may appear more than once in a
 * batch (log lines of successive writes): the last line for it wins.
 */
export interface DeltaBatch {
  kind: 'node' | 'relationship';
  lines: string[];
}
