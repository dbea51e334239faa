// The rules every record of an archive must satisfy before anything is restored from it
// (docs/archive-format.md, "Validation"): the graph's own rules (graph-rules.ts) and the tuple
// format's. Pure: each data frame's bytes in, the frame's checked lines out, or an ArchiveError
// naming the first record that breaks a rule. Checks that need the whole graph (unique ids,
// relationship ends, capacity) are the loader's, which has the data.
import { isAscii, isUtf8 } from 'node:buffer';
import { MAX_PROPERTY_DEPTH, nameProblem, shortJson } from '../graph/graph-rules';
import type { EncodedBatch } from '../graph/records';
import { decodeLines } from '../runtime/text-lines';
import { ArchiveError } from './archive-error';
import type { RecordCounts } from './archive-frame';
import type { ArchiveHeader } from './archive-header';

/**
 * The edition of the checks frame() applies. Raise it whenever they change: an upload whose records passed an earlier
 * edition (queued before an upgrade) is then checked again when it is restored, rather than only counted.
 */
export const RECORD_RULES_EDITION = 1;

/** Ids are JavaScript-safe integers: larger ones would round onto other ids. */
export const MAX_RECORD_ID = Number.MAX_SAFE_INTEGER;

export type RecordKind = EncodedBatch['kind'];

/** One record of a frame: its kind (from its tag) and its line as stored. */
export interface TaggedLine {
  kind: RecordKind;
  line: string;
}

/** One record of a frame, checked: its line as stored, and the parsed tuple. */
export interface CheckedRecord extends TaggedLine {
  tuple: unknown[];
}

/**
 * A data frame whose every record passed the rules that need nothing but the record (summarizeFrame), with what the
 * rules across frames need of it: its records per kind (nodes all before relationships) and per label and type.
 */
export interface FrameSummary {
  nodes: number;
  relationships: number;
  labels: [string, number][];
  types: [string, number][];
}

const NODE_TAG = 'N';
const RELATIONSHIP_TAG = 'R';
const CANONICAL_ID = /^[1-9][0-9]{0,15}$/;

/** "1" to "9007199254740991": no sign, no leading zero, no exponent, point or space. */
export function isCanonicalId(value: unknown): value is string {
  return typeof value === 'string' && CANONICAL_ID.test(value) && Number(value) <= MAX_RECORD_ID;
}

/** Why `tuple` is not a valid record of `kind` (for a message after "node record 17: "), or undefined. */
export function recordProblem(kind: RecordKind, tuple: unknown): string | undefined {
  if (!Array.isArray(tuple)) return 'it is not a JSON array';
  if (kind === 'node') {
    if (tuple.length !== 4) return `it has ${tuple.length} elements; a node tuple has 4: ["N", id, labels, properties]`;
    if (tuple[0] !== NODE_TAG) return 'its first element is not "N"';
    return idProblem('id', tuple[1]) ?? labelsProblem(tuple[2]) ?? propertiesProblem(tuple[3]);
  }
  if (tuple.length !== 6) {
    return `it has ${tuple.length} elements; a relationship tuple has 6: ["R", id, type, startNodeId, endNodeId, properties]`;
  }
  if (tuple[0] !== RELATIONSHIP_TAG) return 'its first element is not "R"';
  return (
    idProblem('id', tuple[1]) ??
    nameProblem('type', tuple[2]) ??
    idProblem('startNodeId', tuple[3]) ??
    idProblem('endNodeId', tuple[4]) ??
    propertiesProblem(tuple[5])
  );
}

function idProblem(field: string, value: unknown): string | undefined {
  if (isCanonicalId(value)) return undefined;
  if (typeof value !== 'string') return `${field} ${shortJson(value)} is not a string`;
  return `${field} ${shortJson(value)} is not a canonical decimal integer from 1 to ${MAX_RECORD_ID}`;
}

/** Labels up to this many are told apart by a scan, which is cheaper than a Set for the few a node usually has. */
const SCANNED_LABELS = 16;

function labelsProblem(labels: unknown): string | undefined {
  if (!Array.isArray(labels)) return `labels ${shortJson(labels)} is not a list`;
  // A file may give one node millions of labels: scanning for each one those before it would take hours.
  const seen = labels.length > SCANNED_LABELS ? new Set<unknown>() : null;
  for (let i = 0; i < labels.length; i++) {
    const problem = nameProblem('label', labels[i]);
    if (problem) return problem;
    const repeated = seen ? seen.size === seen.add(labels[i]).size : labels.indexOf(labels[i]) < i;
    if (repeated) return `label ${shortJson(labels[i])} appears twice`;
  }
  return undefined;
}

function propertiesProblem(properties: unknown): string | undefined {
  if (!isPlainObject(properties)) return `properties ${shortJson(properties)} is not a JSON object`;
  const found = valueProblem(properties, 0);
  return found && (found.path === null ? found.problem : `properties${found.path} ${found.problem}`);
}

/**
 * The first value JSON can write but an IEEE double cannot hold as written (1e400, -0), or nesting deeper than the
 * graph's rules allow. The path to it is built only when there is one: most records have none.
 */
function valueProblem(value: unknown, depth: number): { path: string | null; problem: string } | undefined {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return { path: '', problem: 'is a number too large for a double' };
    if (value === 0 && 1 / value < 0) return { path: '', problem: 'is -0, which is not an archive value' };
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_PROPERTY_DEPTH) return { path: null, problem: `properties nest deeper than ${MAX_PROPERTY_DEPTH} levels of lists and objects` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = valueProblem(value[i], depth + 1);
      if (found) return found.path === null ? found : { path: `[${i}]${found.path}`, problem: found.problem };
    }
    return undefined;
  }
  for (const key in value) {
    const found = valueProblem((value as Record<string, unknown>)[key], depth + 1);
    if (found) return found.path === null ? found : { path: `.${key}${found.path}`, problem: found.problem };
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The kind a line's tag says, or null. */
function tagOf(line: string): RecordKind | null {
  if (line.startsWith('["N",')) return 'node';
  if (line.startsWith('["R",')) return 'relationship';
  return null;
}

/** The line's tuple, or undefined when it is not JSON. */
function parsedTuple(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/**
 * One data frame's raw bytes checked on their own, on any thread: everything RecordValidator.frame() checks but the
 * rules across frames (order, counts and tallies against the header), which RecordValidator.merge() then applies in
 * the file's order. Null when a record breaks a rule: frame() then names it, as the first damage in the file.
 */
export function summarizeFrame(raw: Buffer): FrameSummary | null {
  const summary: FrameSummary = { nodes: 0, relationships: 0, labels: [], types: [] };
  if (raw.length === 0) return summary;
  const ascii = isAscii(raw);
  if ((!ascii && !isUtf8(raw)) || raw[raw.length - 1] !== 0x0a) return null;
  const labels = new Map<string, number>();
  const types = new Map<string, number>();
  for (const line of decodeLines(raw, ascii ? 'latin1' : 'utf8')) {
    const kind = tagOf(line);
    if (kind === null || (kind === 'node' && summary.relationships > 0)) return null;
    const tuple = parsedTuple(line);
    if (tuple === undefined || recordProblem(kind, tuple) !== undefined) return null;
    const fields = tuple as unknown[];
    if (kind === 'node') {
      summary.nodes++;
      for (const label of fields[2] as string[]) labels.set(label, (labels.get(label) ?? 0) + 1);
    } else {
      summary.relationships++;
      types.set(fields[2] as string, (types.get(fields[2] as string) ?? 0) + 1);
    }
  }
  summary.labels = [...labels];
  summary.types = [...types];
  return summary;
}

/**
 * Checks an archive's records frame by frame, in order, against the format's rules and against its header:
 * tags and order (all nodes, then all relationships), each tuple's shape and fields, and the header's counts
 * per kind, label and type (as soon as the records exceed one; the rest in complete()).
 */
export class RecordValidator {
  private nodes = 0;
  private relationships = 0;
  private readonly announced: RecordCounts;
  private readonly labels: NameTally;
  private readonly types: NameTally;
  /** Whether every record so far went through frame(), so that the label and type tallies are whole. */
  private tallied = true;

  constructor(header: ArchiveHeader) {
    this.announced = { nodeCount: header.stats.nodeCount, relationshipCount: header.stats.relationshipCount };
    this.labels = new NameTally('label', header.stats.labels);
    this.types = new NameTally('relationship type', header.stats.relationshipTypes);
  }

  /**
   * One data frame's raw bytes: UTF-8 text, one JSON tuple per newline-terminated line. Each line is parsed on
   * its own: parsing the frame as one array would also accept a tuple spread over two lines.
   */
  frame(raw: Buffer): CheckedRecord[] {
    return this.records(this.lines(raw));
  }

  /**
   * A frame summarized elsewhere (summarizeFrame, on a worker thread), taken in the file's order as frame() would take
   * it. False, with nothing taken, when one of its records breaks a rule across frames (a node after the
   * relationships, more records, labels or types than the header announces): frame() then names the record.
   */
  merge(summary: FrameSummary): boolean {
    const { announced } = this;
    if (summary.nodes > 0 && this.relationships > 0) return false;
    if (this.nodes + summary.nodes > announced.nodeCount || this.relationships + summary.relationships > announced.relationshipCount) return false;
    if (!this.labels.fits(summary.labels) || !this.types.fits(summary.types)) return false;
    this.nodes += summary.nodes;
    this.relationships += summary.relationships;
    this.labels.addAll(summary.labels);
    this.types.addAll(summary.types);
    return true;
  }

  /**
   * A frame of records that passed frame() before, in this release (an upload verified while it was stored, read
   * back from its authenticated blob), a slice of its lines at a time as frameSlices() cuts them: each line is only
   * told apart by its tag and counted, in order, against the header. Label and type tallies are then not kept:
   * complete() checks the counts alone. In slices: a frame of a few KiB stored may hold 64 MiB of the smallest records,
   * four million lines, which split and counted at once held the event loop of a restore for five seconds.
   */
  *countedSlices(raw: Buffer, sliceBytes: number, sliceRecords: number): Generator<TaggedLine[]> {
    this.tallied = false;
    for (const lines of this.lineSlices(raw, sliceBytes, sliceRecords)) {
      const records: TaggedLine[] = new Array(lines.length);
      for (let i = 0; i < lines.length; i++) {
        const kind = this.kindOf(lines[i]);
        this.count(kind);
        records[i] = { kind, line: lines[i] };
      }
      yield records;
    }
  }

  /**
   * frame(), a slice of its lines at a time, for a caller that lets other work run between slices (a frame of a few
   * KiB stored may hold 64 MiB of records: seconds of checking; and checking costs by the record more than by the
   * byte: 1 MiB of the smallest records is 50,000 of them). The frame's text is checked whole first, as frame() does:
   * the same records, the same first fault.
   */
  *frameSlices(raw: Buffer, sliceBytes: number, sliceRecords: number): Generator<CheckedRecord[]> {
    for (const lines of this.lineSlices(raw, sliceBytes, sliceRecords)) yield this.records(lines);
  }

  /** The frame's lines, at least `sliceBytes` of them or `sliceRecords` lines at a time, whichever is fewer. */
  private *lineSlices(raw: Buffer, sliceBytes: number, sliceRecords: number): Generator<string[]> {
    if (raw.length === 0) {
      yield [];
      return;
    }
    const encoding = this.checkText(raw) ? 'latin1' : 'utf8';
    for (let start = 0; start < raw.length; ) {
      const end = sliceEnd(raw, start, sliceBytes, sliceRecords);
      yield decodeLines(raw.subarray(start, end), encoding);
      start = end;
    }
  }

  private records(lines: string[]): CheckedRecord[] {
    const records: CheckedRecord[] = new Array(lines.length);
    for (let i = 0; i < lines.length; i++) records[i] = this.record(lines[i]);
    return records;
  }

  private lines(raw: Buffer): string[] {
    if (raw.length === 0) return [];
    return decodeLines(raw, this.checkText(raw) ? 'latin1' : 'utf8');
  }

  /** UTF-8 text ending with a complete record; whether it is ASCII (decoded as latin1: the same text, faster). */
  private checkText(raw: Buffer): boolean {
    const ascii = isAscii(raw);
    if (!ascii && !isUtf8(raw)) throw invalid(`the data frame after record ${this.nodes + this.relationships} is not valid UTF-8 text`);
    if (raw[raw.length - 1] !== 0x0a) throw invalid(`the data frame after record ${this.nodes + this.relationships} does not end with a complete record`);
    return ascii;
  }

  /** At the end frame: its counts, then the header's counts, label and type tallies, all exactly. */
  complete(ended: RecordCounts): void {
    if (ended.nodeCount !== this.nodes || ended.relationshipCount !== this.relationships) {
      throw new ArchiveError(
        'CORRUPT',
        `The archive is invalid: its end frame counts ${ended.nodeCount} nodes and ${ended.relationshipCount} ` +
          `relationships, but it holds ${this.nodes} nodes and ${this.relationships} relationships.`,
      );
    }
    if (this.nodes !== this.announced.nodeCount || this.relationships !== this.announced.relationshipCount) {
      throw this.countMismatch();
    }
    if (!this.tallied) return;
    this.labels.complete();
    this.types.complete();
  }

  private kindOf(line: string): RecordKind {
    const kind = tagOf(line);
    if (kind === null) throw invalid(`record ${this.nodes + this.relationships + 1} is not a node or relationship tuple`);
    return kind;
  }

  private record(line: string): CheckedRecord {
    const kind = this.kindOf(line);
    const name = this.count(kind);
    const tuple = parsedTuple(line);
    if (tuple === undefined) throw invalid(`${name} is not valid JSON`);
    const problem = recordProblem(kind, tuple);
    if (problem) throw invalid(`${name}: ${problem}`);
    const fields = tuple as unknown[];
    if (kind === 'node') for (const label of fields[2] as string[]) this.labels.add(label, name);
    else this.types.add(fields[2] as string, name);
    return { kind, line, tuple: fields };
  }

  /** Counts the record, checking order and the header's counts; returns its name for messages. */
  private count(kind: RecordKind): string {
    if (kind === 'node') {
      if (this.relationships > 0) throw invalid(`node record ${this.nodes + 1} follows the relationships; all nodes come first`);
      this.nodes++;
    } else {
      this.relationships++;
    }
    if (this.nodes > this.announced.nodeCount || this.relationships > this.announced.relationshipCount) throw this.countMismatch();
    return kind === 'node' ? `node record ${this.nodes}` : `relationship record ${this.relationships}`;
  }

  private countMismatch(): ArchiveError {
    const { announced } = this;
    const more = this.nodes > announced.nodeCount || this.relationships > announced.relationshipCount;
    return new ArchiveError(
      'COUNT_MISMATCH',
      `The archive is inconsistent: its header announces ${announced.nodeCount} nodes and ` +
        `${announced.relationshipCount} relationships, but it holds ${this.nodes} nodes and ` +
        `${this.relationships} relationships${more ? ' or more' : ''}.`,
    );
  }
}

/** A header's label (or type) counts against the records: a name it does not list, or too many, shows at once. */
class NameTally {
  private readonly counts = new Map<string, { announced: number; seen: number }>();

  constructor(
    private readonly what: string,
    announced: { name: string; count: number }[],
  ) {
    for (const { name, count } of announced) {
      if (this.counts.has(name)) throw mismatch(`its header lists the ${what} ${shortJson(name)} twice`);
      this.counts.set(name, { announced: count, seen: 0 });
    }
  }

  add(name: string, record: string): void {
    const entry = this.counts.get(name);
    if (!entry) throw mismatch(`${record} has the ${this.what} ${shortJson(name)}, which its header does not list`);
    if (++entry.seen > entry.announced) {
      throw mismatch(`its header announces ${entry.announced} of the ${this.what} ${shortJson(name)}, but ${record} is one more`);
    }
  }

  /** Whether the names, this many times each, stay within what the header announces. */
  fits(names: readonly [string, number][]): boolean {
    return names.every(([name, count]) => {
      const entry = this.counts.get(name);
      return entry !== undefined && entry.seen + count <= entry.announced;
    });
  }

  /** Names that fit (see fits), this many times each. */
  addAll(names: readonly [string, number][]): void {
    for (const [name, count] of names) this.counts.get(name)!.seen += count;
  }

  complete(): void {
    for (const [name, { announced, seen }] of this.counts) {
      if (seen !== announced) throw mismatch(`its header announces ${announced} of the ${this.what} ${shortJson(name)}, but it holds ${seen}`);
    }
  }
}

/**
 * Where the slice of `raw` (whole lines, ending with a newline) from `start` ends: just after a newline, which is never
 * inside a UTF-8 sequence, once the slice holds `sliceBytes` or `sliceRecords` lines, whichever comes first.
 */
function sliceEnd(raw: Buffer, start: number, sliceBytes: number, sliceRecords: number): number {
  const bytesEnd = raw.indexOf(0x0a, Math.min(start + sliceBytes, raw.length) - 1) + 1;
  let end = start;
  for (let lines = 0; lines < sliceRecords && end < bytesEnd; lines++) end = raw.indexOf(0x0a, end) + 1;
  return end;
}

function invalid(problem: string): ArchiveError {
  return new ArchiveError('INVALID_RECORD', `The archive is invalid: ${problem}.`);
}

function mismatch(problem: string): ArchiveError {
  return new ArchiveError('COUNT_MISMATCH', `The archive is inconsistent: ${problem}.`);
}
