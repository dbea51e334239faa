// Foreign graph files (APOC JSON lines, APOC Cypher scripts, GraphML, neo4j-admin CSV bundles): the contract every
// format implements, so that restore, upload, export and inspect handle them all the same way.
// See docs/neo4j-files.md for the formats and their type mappings.
import type { Readable } from 'node:stream';
import type { EngineVersion, GraphRecord, GraphStats, PropertyMap } from '../graph/records';

/** The formats, named as ExportFormat and FileInspection.kind name them. */
export type GraphFileKind = 'APOC_JSON' | 'CYPHER' | 'GRAPHML' | 'NEO4J_ADMIN_CSV';

/**
 * A node as a file names it: `key` is the file's own id for it (unique among the file's nodes; relationships name
 * their ends by it), never a Snapgraph id: nodes get fresh ids when they are loaded.
 */
export interface ForeignNode {
  kind: 'node';
  /** Where the record is in the file (e.g. its line number), for GraphFileReader.describe. */
  at: number;
  key: string;
  labels: string[];
  properties: PropertyMap;
}

export interface ForeignRelationship {
  kind: 'relationship';
  at: number;
  /** The file's own id for it, when the file has one (then it must be unique among the file's relationships). */
  key: string | null;
  type: string;
  startKey: string;
  endKey: string;
  properties: PropertyMap;
}

export type ForeignRecord = ForeignNode | ForeignRelationship;

/** One pass over a file's records. */
export interface GraphFileReader {
  /**
   * The records in file order, in batches (any size up to a few thousand). A node must come before the
   * relationships that name it. Syntax the format does not allow, and values it cannot carry, reject with
   * graphFileError(reader.describe(at), problem): an ArchiveError that restores report as INVALID_BACKUP_FILE.
   * Must stream: memory stays flat whatever the file's size.
   */
  records(): AsyncIterable<ForeignRecord[]>;
  /** Where `at` is, in words for a message: "line 17", "persons.csv line 4", "the <edge> element on line 40". */
  describe(at: number): string;
  /** Bytes of the input consumed so far (progress). */
  bytesRead(): number;
}

/** What a writer writes: a consistent view of one snapshot. */
export interface GraphFileSource {
  stats: GraphStats;
  engineVersion: EngineVersion;
  /** ISO-8601 capture time of the snapshot. */
  capturedAt: string;
  sourceInstanceName: string;
  /** Every node in id order, then every relationship in id order. */
  batches(): AsyncIterable<GraphRecord[]>;
  /** The labels of the given nodes (for formats that name the labels of a relationship's ends). */
  nodeLabels(ids: string[]): Promise<Map<string, string[]>>;
}

export interface GraphFileFormat {
  kind: GraphFileKind;
  /** The file extension of an export, with its dot. */
  extension: string;
  /** Content-Type of an export download. */
  contentType: string;
  /**
   * True when a file starting with `head` (its first SNIFF_LENGTH bytes, fewer for a short file) is in this format.
   * For a tar, `head` is the start of the tar itself (a format that is a tar of files claims it here); formats that
   * are single files are also found inside a tar by the caller (one entry whose head they claim).
   */
  detect(head: Buffer): boolean;
  /** A reader over the file's bytes. */
  open(input: Readable): GraphFileReader;
  /**
   * The file for a snapshot, as the real tool for the format writes it (so that it loads it); deterministic: the same
   * source gives the same bytes. A value the format cannot carry rejects (the stream errors) with
   * unexportableValueError. Absent while the format can be read but not written.
   */
  write?(source: GraphFileSource): Readable;
}
