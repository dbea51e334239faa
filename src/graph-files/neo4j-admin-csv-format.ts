// neo4j-admin import CSV bundles: a .tar of CSV files, each with its header on its first line, as
// `neo4j-admin database import full` loads them (see admin-csv-header.ts for headers and values):
//   persons.csv   personId:ID(Person),name,born:int,:LABEL
//   acted_in.csv  :START_ID(Person),role,:END_ID(Movie),:TYPE
// Reading: node files are read as the tar streams; relationship files are spooled to a scratch directory (encrypted,
// removed afterwards) and read once every node is known. Writing: one node file per label set, one relationship file
// per type, typed headers, and import.sh with the command line that loads them; deterministic (fixed order and
// mtimes). The bodies wait in a scratch directory too, encrypted, until their sizes are known.
import { Readable, Transform } from 'node:stream';
import { extract as createTarExtract, pack as createTarPack } from 'tar-stream';
import { ArchiveError } from '../archive/archive-error';
import { isTarHeader, tarEntriesIn } from '../archive/file-type';
import { type GraphRecord, setProperty } from '../graph/records';
import { type ScratchWriter, SealedScratchDir } from '../storage/sealed-scratch-dir';
import { cellValue, type Column, type Header, parseHeader } from './admin-csv-header';
import { type CsvRow, csvField, csvRows, CsvSyntaxError } from './csv-rows';
import { LONE_SURROGATE, pointText } from './cypher-values';
import { graphFileError, unexportableValueError } from './graph-file-error';
import type { ForeignRecord, GraphFileFormat, GraphFileReader, GraphFileSource } from './graph-file-format';

const HEADER_ROLE = /(?:^|,)"?[^,"]*:(?:ID|LABEL|START_ID|END_ID|TYPE)(?:\([^)]*\))?(?:\{[^}]*\})?"?(?:,|\r?$)/i;

export const neo4jAdminCsvFormat: GraphFileFormat = {
  kind: 'NEO4J_ADMIN_CSV',
  extension: '.tar',
  contentType: 'application/x-tar',
  detect(head: Buffer): boolean {
    if (!isTarHeader(head)) return false;
    const csv = tarEntriesIn(head).find((entry) => /\.csv$/i.test(entry.name));
    if (!csv) return false;
    const content = head.subarray(csv.contentOffset, csv.contentOffset + csv.size).toString('utf8').replace(/^\uFEFF/, '');
    return HEADER_ROLE.test(content.split('\n', 1)[0]);
  },
  open: (input) => new AdminCsvReader(input),
  write: (source) => writeBundle(source),
};

/** Compressed entries, which neo4j-admin reads but Snapgraph does not. */
const COMPRESSED = /\.(?:gz|zip|bz2|xz|zst)$/i;
const MAX_HEADER_BYTES = 1024 * 1024;

class AdminCsvReader implements GraphFileReader {
  private bytes = 0;
  /** Each file read, with the position its line 0 has (positions are base + line number). */
  private readonly files: Array<{ name: string; base: number }> = [];
  private nextBase = 0;
  /** The ID spaces node files declared (null: the global one), with the type of their ids ({id-type:…}). */
  private readonly spaces = new Map<string | null, Column['type']>();
  private unnamed = 0;

  constructor(private readonly input: Readable) {}

  describe(at: number): string {
    let low = 0;
    let high = this.files.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.files[mid].base <= at) low = mid;
      else high = mid - 1;
    }
    const file = this.files[low];
    return file ? `${file.name} line ${at - file.base}` : `position ${at}`;
  }

  bytesRead(): number {
    return this.bytes;
  }

  async *records(): AsyncGenerator<ForeignRecord[]> {
    const spool = await SealedScratchDir.create('admin-csv-');
    const extract = createTarExtract();
    const counter = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        this.bytes += chunk.length;
        callback(null, chunk);
      },
    });
    this.input.on('error', (error) => extract.destroy(error));
    counter.on('error', (error) => extract.destroy(error));
    this.input.pipe(counter).pipe(extract as unknown as NodeJS.WritableStream);
    const relationshipFiles: Array<{ name: string; spooled: string }> = [];
    let csvFiles = 0;
    try {
      try {
        for await (const entry of extract) {
          const name = entry.header.name;
          if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
            entry.resume();
            continue;
          }
          if (COMPRESSED.test(name) && /\.csv\./i.test(name)) {
            throw graphFileError(name, 'compressed CSV files are not supported; put the uncompressed .csv files in the .tar');
          }
          if (!/\.csv$/i.test(name)) {
            entry.resume();
            continue;
          }
          csvFiles += 1;
          const { header, headerRow, rest } = await this.headerOf(name, entry as AsyncIterable<Buffer>);
          if (header.kind === 'nodes') {
            yield* this.nodeRecords(name, header, rest);
          } else {
            const spooled = `${relationshipFiles.length}.csv`;
            await spoolTo(headerRow, rest, spool.createWriter(spooled));
            relationshipFiles.push({ name, spooled });
          }
        }
      } catch (error) {
        throw tarError(error);
      }
      if (csvFiles === 0) throw new ArchiveError('INVALID_RECORD', 'The .tar file holds no .csv file: a neo4j-admin import bundle is a .tar of CSV files.');
      for (const file of relationshipFiles) {
        const input = spool.createReadStream(file.spooled);
        try {
          const { header, rest } = await this.headerOf(file.name, input);
          yield* this.relationshipRecords(file.name, header, rest);
        } finally {
          input.destroy();
        }
      }
    } finally {
      extract.destroy();
      this.input.unpipe(counter);
      // Stopped early (a load that failed, a cancel): the upload's file is let go now, not when it is collected.
      this.input.destroy();
      await spool.remove();
    }
  }

  /** The file's header and an iterable of its records after the header. */
  private async headerOf(name: string, input: AsyncIterable<Buffer>): Promise<{ header: Header; headerRow: CsvRow; rest: AsyncGenerator<CsvRow[]> }> {
    const base = this.nextBase;
    this.files.push({ name, base });
    const rows = this.positioned(name, csvRows(input));
    const first = await rows.next();
    if (first.done || first.value.length === 0) throw graphFileError(`${name} line 1`, 'the file is empty: it has no header line');
    const [headerRow, ...after] = first.value;
    if (headerRow.fields.join(',').length > MAX_HEADER_BYTES) throw graphFileError(`${name} line ${headerRow.line}`, 'the header line is too long');
    let header: Header;
    try {
      header = parseHeader(headerRow.fields);
    } catch (error) {
      throw graphFileError(`${name} line ${headerRow.line}`, (error as Error).message);
    }
    async function* rest() {
      if (after.length > 0) yield after;
      yield* rows;
    }
    return { header, headerRow, rest: rest() };
  }

  /** Rows with CSV syntax errors named by file and line; advances the position base past the file. */
  private async *positioned(name: string, rows: AsyncGenerator<CsvRow[]>) {
    const file = this.files[this.files.length - 1];
    try {
      for await (const batch of rows) {
        const last = batch[batch.length - 1].line;
        this.nextBase = Math.max(this.nextBase, file.base + last + 1);
        yield batch;
      }
    } catch (error) {
      if (error instanceof CsvSyntaxError) throw graphFileError(`${name} line ${error.line}`, error.problem);
      throw error;
    }
    this.nextBase = Math.max(this.nextBase, file.base + 1);
  }

  private async *nodeRecords(name: string, header: Header, rows: AsyncIterable<CsvRow[]>): AsyncGenerator<ForeignRecord[]> {
    const base = this.files[this.files.length - 1].base;
    const idColumn = header.columns.find((column) => column.role === 'ID');
    if (idColumn && !this.spaces.has(idColumn.space)) this.spaces.set(idColumn.space, idColumn.type);
    for await (const batch of rows) {
      const records: ForeignRecord[] = [];
      for (const row of batch) {
        const at = base + row.line;
        const fail = (problem: string) => graphFileError(`${name} line ${row.line}`, problem);
        checkWidth(row.fields.length, header, fail);
        const labels: string[] = [];
        const properties: Record<string, unknown> = {};
        let key: string | null = null;
        header.columns.forEach((column, i) => {
          const text = row.fields[i] ?? '';
          if (column.role === 'LABEL') {
            if (text !== '') labels.push(...text.split(';'));
          } else if (column.role === 'ID') {
            const id = text === '' ? undefined : valueOf(column, text, row.quoted[i], fail);
            if (id === undefined) return;
            key = keyOf(String(id), column.space);
            if (column.name !== null) setProperty(properties, column.name, id);
          } else if (column.role === 'PROPERTY') {
            const value = valueOf(column, text, row.quoted[i] ?? false, fail);
            if (value !== undefined) setProperty(properties, column.name!, value);
          }
        });
        // A node without an id cannot be named by a relationship; it still needs a key of its own.
        records.push({ kind: 'node', at, key: key ?? `\u0000${++this.unnamed}`, labels, properties });
      }
      if (records.length > 0) yield records;
    }
  }

  private async *relationshipRecords(name: string, header: Header, rows: AsyncIterable<CsvRow[]>): AsyncGenerator<ForeignRecord[]> {
    const base = this.files[this.files.length - 1].base;
    // An end's id is read as its ID space's ids are (a space declared {id-type:long} matches 7 and 07).
    const columns = header.columns.map((column) => {
      if (column.role !== 'START_ID' && column.role !== 'END_ID') return column;
      const type = this.spaces.get(column.space);
      if (type === undefined) {
        throw graphFileError(`${name} line 1`, `${column.raw} names the ID space ${column.space === null ? '(the global one)' : JSON.stringify(column.space)}, which no node file's :ID column declares`);
      }
      return { ...column, type };
    });
    for await (const batch of rows) {
      const records: ForeignRecord[] = [];
      for (const row of batch) {
        const fail = (problem: string) => graphFileError(`${name} line ${row.line}`, problem);
        checkWidth(row.fields.length, header, fail);
        let type = '';
        let startKey = '';
        let endKey = '';
        const properties: Record<string, unknown> = {};
        columns.forEach((column, i) => {
          const text = row.fields[i] ?? '';
          if (column.role === 'TYPE') type = text;
          else if (column.role === 'START_ID' || column.role === 'END_ID') {
            if (text === '') throw fail(`the relationship has no ${column.role === 'START_ID' ? 'start' : 'end'} node (its ${column.raw} cell is empty)`);
            const key = keyOf(String(valueOf(column, text, row.quoted[i], fail)), column.space);
            if (column.role === 'START_ID') startKey = key;
            else endKey = key;
          } else if (column.role === 'PROPERTY') {
            const value = valueOf(column, text, row.quoted[i] ?? false, fail);
            if (value !== undefined) setProperty(properties, column.name!, value);
          }
        });
        if (type === '') throw fail('the relationship has no type (its :TYPE cell is empty)');
        records.push({ kind: 'relationship', at: base + row.line, key: null, type, startKey, endKey, properties });
      }
      if (records.length > 0) yield records;
    }
  }
}

/** The key a node's id has: the id itself in the global ID space, qualified by the space's name in another. */
function keyOf(id: string, space: string | null): string {
  return space === null ? id : `${id} in ID space ${space}`;
}

function valueOf(column: Column, text: string, quoted: boolean, fail: (problem: string) => Error): unknown {
  try {
    return cellValue(column, text, quoted);
  } catch (error) {
    throw fail(`${column.raw}: ${(error as Error).message}`);
  }
}

function checkWidth(width: number, header: Header, fail: (problem: string) => Error): void {
  if (width > header.columns.length) throw fail(`the line has ${width} fields; the header has ${header.columns.length} columns`);
}

/** The file's records written again as CSV, each on the line it had (the blank lines read past are written back). */
async function spoolTo(headerRow: CsvRow, rows: AsyncGenerator<CsvRow[]>, out: ScratchWriter): Promise<void> {
  try {
    let line = 1;
    async function* all() {
      yield [headerRow];
      yield* rows;
    }
    for await (const batch of all()) {
      let text = '';
      for (const row of batch) {
        while (line < row.line) {
          text += '\n';
          line++;
        }
        text += row.fields.map((field, i) => (row.quoted[i] ? `"${field.replace(/"/g, '""')}"` : field)).join(',') + '\n';
        line += 1 + countLineBreaks(row.fields);
      }
      await out.write(text);
    }
    await out.end();
  } finally {
    out.destroy();
  }
}

function countLineBreaks(fields: string[]): number {
  let count = 0;
  for (const field of fields) for (let i = field.indexOf('\n'); i !== -1; i = field.indexOf('\n', i + 1)) count++;
  return count;
}

/** tar-stream's own failures, in words for the user (the reader's errors pass through). */
function tarError(error: unknown): unknown {
  if (error instanceof ArchiveError || !(error instanceof Error)) return error;
  if (/unexpected end/i.test(error.message)) {
    return new ArchiveError('TRUNCATED', 'The .tar file is incomplete: it ends inside an entry. Upload the complete file.', { cause: error });
  }
  if (/tar|header/i.test(error.message)) return new ArchiveError('NOT_AN_ARCHIVE', `The file is not a valid tar file (${error.message}).`, { cause: error });
  return error;
}

// ---- Writing ----

type Kind = 'string' | 'number' | 'boolean' | 'point' | 'string[]' | 'number[]' | 'boolean[]' | 'point[]';

/** The records of one file: the label set (or type) and the kinds of its properties' columns. */
interface Group {
  file: string;
  kind: 'nodes' | 'relationships';
  labels: string[];
  kinds: Map<string, Kind>;
  /** Number columns (and number list columns) holding a value that is not a safe integer: double, else long. */
  fractions: Set<string>;
}

const CSV_KIND = 'NEO4J_ADMIN_CSV';
/** Rows of one file written out together (see writeBodies)... */
const OUTPUT_PENDING_CHARS = 256 * 1024;
/** ...and of all files: what an export holds of rows whatever the number of its files. */
const PENDING_CHARS = 4 * 1024 * 1024;
/** Files written at once (see writeBodies). */
const OPEN_FILES = 64;

function writeBundle(source: GraphFileSource): Readable {
  const pack = createTarPack();
  const mtime = new Date(source.capturedAt);
  let scratch: SealedScratchDir | undefined;
  (async () => {
    try {
      scratch = await SealedScratchDir.create('admin-csv-export-');
      const groups = await planGroups(source);
      const entries: Array<{ name: string; header: string; body?: string; mode?: number }> = await writeBodies(source, groups, scratch);
      if (entries.length === 0) entries.push({ name: 'nodes.csv', header: ':ID,:LABEL\n' });
      entries.push({ name: 'import.sh', header: importScript(entries.map((entry) => entry.name)), mode: 0o755 });
      for (const entry of entries) {
        const header = Buffer.from(entry.header);
        const size = header.length + (entry.body ? await scratch.size(entry.body) : 0);
        const sink = pack.entry({ name: entry.name, size, mtime, mode: entry.mode ?? 0o644, uid: 0, gid: 0, uname: '', gname: '' });
        // Seen through 'close' (writeTo) or the finish below. Without a listener, an entry under way when the reader
        // failed (the pack destroyed with its error) threw that error out of the process.
        sink.on('error', () => undefined);
        await writeTo(sink, header);
        if (entry.body) for await (const chunk of scratch.createReadStream(entry.body)) await writeTo(sink, chunk as Buffer);
        (sink as unknown as { end(): void }).end();
        await new Promise<void>((resolve, reject) => {
          sink.once('finish', () => resolve());
          sink.once('close', () => resolve());
          sink.once('error', reject);
        });
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
    } finally {
      if (scratch) await scratch.remove();
    }
  })().catch(() => undefined); // the clean-up's own failure: nothing more to tell the reader, who has the bundle or its error
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

async function writeTo(sink: { write(chunk: Buffer): boolean; once(event: string, listener: () => void): unknown }, chunk: Buffer): Promise<void> {
  if (sink.write(chunk)) return;
  // The pack was destroyed (its reader went away): no 'drain' will come.
  if ((sink as unknown as { destroying: boolean }).destroying) throw new Error('the bundle was abandoned');
  await new Promise<void>((resolve, reject) => {
    const s = sink as unknown as NodeJS.EventEmitter;
    const settle = (error?: Error) => {
      s.off('drain', onDrain);
      s.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    // The pack was destroyed (its reader went away): no 'drain' will come.
    const onClose = () => settle(new Error('the bundle was abandoned'));
    s.on('drain', onDrain);
    s.on('close', onClose);
  });
}

/** First pass: the groups (files) in order of first appearance, each with its columns' kinds. */
async function planGroups(source: GraphFileSource): Promise<Group[]> {
  const groups: Group[] = [];
  const byName = new Map<string, Group[]>();
  for await (const batch of source.batches()) {
    for (const record of batch) {
      const { labels, properties, what } = parts(record);
      const kinds = propertyKinds(properties, what);
      const name = `${record.kind}:${JSON.stringify(labels)}`;
      const variants = byName.get(name) ?? [];
      byName.set(name, variants);
      let group = variants.find((candidate) => fits(candidate, kinds));
      if (!group) {
        group = { file: '', kind: record.kind === 'node' ? 'nodes' : 'relationships', labels, kinds: new Map(), fractions: new Set() };
        variants.push(group);
        groups.push(group);
      }
      for (const [key, { kind, fraction }] of kinds) {
        group.kinds.set(key, kind);
        if (fraction) group.fractions.add(key);
      }
    }
  }
  const counts = { nodes: 0, relationships: 0 };
  for (const group of groups) {
    const number = String(++counts[group.kind]).padStart(3, '0');
    const words = group.labels.map((label) => label.replace(/[^A-Za-z0-9_-]+/g, '_')).join('-').slice(0, 60);
    group.file = `${group.kind}-${number}${words ? `-${words}` : ''}.csv`;
  }
  return groups;
}

function fits(group: Group, kinds: Map<string, { kind: Kind }>): boolean {
  for (const [key, { kind }] of kinds) {
    const existing = group.kinds.get(key);
    if (existing !== undefined && existing !== kind) return false;
  }
  return true;
}

function parts(record: GraphRecord): { labels: string[]; properties: Record<string, unknown>; what: string } {
  if (record.kind === 'node') {
    const { id, labels, properties } = record.node;
    for (const label of labels) {
      if (label.includes(';')) throw unexportableValueError(CSV_KIND, `node ${id}'s label ${JSON.stringify(label)}`, "holds ';', the :LABEL column's separator");
    }
    return { labels, properties, what: `node ${id}` };
  }
  const { id, type, properties } = record.relationship;
  return { labels: [type], properties, what: `relationship ${id}` };
}

/** The column kind of each property; refuses what a neo4j-admin CSV cell cannot carry back as it is. */
function propertyKinds(properties: Record<string, unknown>, what: string): Map<string, { kind: Kind; fraction: boolean }> {
  const kinds = new Map<string, { kind: Kind; fraction: boolean }>();
  for (const key in properties) {
    const refuse = (problem: string) => unexportableValueError(CSV_KIND, `${what}'s property ${JSON.stringify(key)}`, problem);
    if (key === '' || /[(){}]/.test(key)) throw refuse("has a name a neo4j-admin header cannot carry (empty, or with '(', ')', '{' or '}')");
    // A CSV file is UTF-8 text without escapes: a lone surrogate would be written as U+FFFD.
    if (LONE_SURROGATE.test(key)) throw refuse(`has a name holding ${SURROGATE_PROBLEM}`);
    const value = properties[key];
    if (Array.isArray(value)) {
      if (value.length === 0) throw refuse('is an empty list, which a neo4j-admin CSV cell cannot hold (an empty cell is no property)');
      const element = scalarKind(value[0], refuse);
      for (const item of value) {
        if (scalarKind(item, refuse) !== element) throw refuse('is a list of mixed types, which Neo4j cannot store');
        if (typeof item === 'string' && item.includes(';')) throw refuse("is a list holding a string with ';', the array delimiter");
        if (typeof item === 'string' && LONE_SURROGATE.test(item)) throw refuse(`is a list holding a string with ${SURROGATE_PROBLEM}`);
      }
      if (element === 'string' && value.length === 1 && value[0] === '') throw refuse('is a list of one empty string, which a CSV cell cannot tell from no value');
      kinds.set(key, { kind: `${element}[]` as Kind, fraction: element === 'number' && value.some((n) => !Number.isSafeInteger(n)) });
    } else {
      const kind = scalarKind(value, refuse);
      if (typeof value === 'string' && LONE_SURROGATE.test(value)) throw refuse(`holds ${SURROGATE_PROBLEM}`);
      kinds.set(key, { kind, fraction: kind === 'number' && !Number.isSafeInteger(value) });
    }
  }
  return kinds;
}

const SURROGATE_PROBLEM = 'a lone UTF-16 surrogate, which a CSV file (UTF-8, no escapes) cannot carry';

function scalarKind(value: unknown, refuse: (problem: string) => Error): 'string' | 'number' | 'boolean' | 'point' {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return typeof value as 'string' | 'number' | 'boolean';
  if (value === null) throw refuse('is null, which Neo4j does not store');
  if (Array.isArray(value)) throw refuse('is a list of lists, which Neo4j cannot store');
  if (pointText(value as Record<string, unknown>)) return 'point';
  throw refuse('is a map, which Neo4j cannot store as a property (only points are maps)');
}

/**
 * Second pass: each group's rows (without the header line) into a file of `scratch`. A file open for each group was a
 * descriptor and buffers each, all at once: a graph of 10,000 label sets made 10,000, and the process's open-file
 * limit (its connections, the stores of every instance) ran out. At most OPEN_FILES are written at once: a graph of
 * more groups is read once for each OPEN_FILES of them.
 */
async function writeBodies(source: GraphFileSource, groups: Group[], scratch: SealedScratchDir): Promise<Array<{ name: string; header: string; body: string }>> {
  const columns = new Map(groups.map((group) => [group, [...group.kinds.keys()]]));
  const byName = new Map<string, Group[]>();
  for (const group of groups) {
    const name = `${group.kind === 'nodes' ? 'node' : 'relationship'}:${JSON.stringify(group.labels)}`;
    const variants = byName.get(name);
    if (variants) variants.push(group);
    else byName.set(name, [group]);
  }
  for (let first = 0; first < groups.length; first += OPEN_FILES) {
    await writeSomeBodies(source, new Set(groups.slice(first, first + OPEN_FILES)), { byName, columns, scratch });
  }
  return groups.map((group) => ({ name: group.file, header: headerLine(group, columns.get(group)!), body: group.file }));
}

/** One pass over the source: the rows of `writing`'s groups, each group's into its file; the other rows are skipped. */
async function writeSomeBodies(
  source: GraphFileSource,
  writing: Set<Group>,
  { byName, columns, scratch }: { byName: Map<string, Group[]>; columns: Map<Group, string[]>; scratch: SealedScratchDir },
): Promise<void> {
  const outputs = new Map<Group, { stream: ScratchWriter; pending: string }>();
  for (const group of writing) outputs.set(group, { stream: scratch.createWriter(group.file), pending: '' });
  // Rows wait in their file's `pending` until it holds OUTPUT_PENDING_CHARS, and all of them together are written out
  // once they hold PENDING_CHARS: a graph of many label sets (500 files) had 256 KiB waiting for every one of them.
  let pendingChars = 0;
  const flush = async (output: { stream: ScratchWriter; pending: string }) => {
    if (output.pending === '') return;
    const text = output.pending;
    output.pending = '';
    pendingChars -= text.length;
    await output.stream.write(text);
  };
  try {
    for await (const batch of source.batches()) {
      for (const record of batch) {
        const { labels, properties, what } = parts(record);
        const variants = byName.get(`${record.kind}:${JSON.stringify(labels)}`)!;
        // A record of a group written in another pass: skipped before its properties are looked at.
        if (!variants.some((candidate) => writing.has(candidate))) continue;
        const kinds = propertyKinds(properties, what);
        const group = variants.find((candidate) => fits(candidate, kinds))!;
        const output = outputs.get(group);
        if (!output) continue;
        const cells = columns.get(group)!.map((key) => (key in properties ? cell(properties[key]) : ''));
        const lead =
          record.kind === 'node'
            ? [csvField(record.node.id), record.node.labels.length > 0 ? csvField(record.node.labels.join(';')) : '']
            : [csvField(record.relationship.startNodeId), csvField(record.relationship.endNodeId), csvField(record.relationship.type)];
        const row = [...lead, ...cells].join(',') + '\n';
        output.pending += row;
        pendingChars += row.length;
        if (output.pending.length > OUTPUT_PENDING_CHARS) await flush(output);
        else if (pendingChars > PENDING_CHARS) for (const each of outputs.values()) await flush(each);
      }
    }
    for (const output of outputs.values()) {
      await flush(output);
      await output.stream.end();
    }
  } finally {
    for (const output of outputs.values()) output.stream.destroy();
  }
}

const COLUMN_TYPE: Record<Kind, string> = {
  string: 'string',
  number: 'long',
  boolean: 'boolean',
  point: 'point',
  'string[]': 'string[]',
  'number[]': 'long[]',
  'boolean[]': 'boolean[]',
  'point[]': 'point[]',
};

function headerLine(group: Group, keys: string[]): string {
  const lead = group.kind === 'nodes' ? [':ID', ':LABEL'] : [':START_ID', ':END_ID', ':TYPE'];
  const typed = keys.map((key) => {
    const kind = group.kinds.get(key)!;
    const type = group.fractions.has(key) ? COLUMN_TYPE[kind].replace('long', 'double') : COLUMN_TYPE[kind];
    return csvField(`${key}:${type}`);
  });
  return [...lead, ...typed].join(',') + '\n';
}

/** A property's cell: strings always quoted (so that "" is the empty string, not no value). */
function cell(value: unknown): string {
  if (Array.isArray(value)) return csvField(value.map(element).join(';'));
  if (typeof value === 'string') return `"${value.replace(/"/g, '""')}"`;
  return csvField(element(value));
}

function element(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  // point({x: 1.0, y: 2.0, crs: 'cartesian'}) → {x: 1.0, y: 2.0, crs: 'cartesian'}, the form neo4j-admin reads.
  return pointText(value as Record<string, unknown>)!.slice('point('.length, -1);
}

function importScript(files: string[]): string {
  const lines = files.map((file) => `  --${file.startsWith('relationships-') ? 'relationships' : 'nodes'}=${file}`);
  return [
    '#!/bin/sh',
    '# Loads this bundle into a new, empty Neo4j 5 database (default name: neo4j) with neo4j-admin:',
    '#   sh import.sh [database]   (run it in the directory holding the .csv files, with neo4j-admin on the PATH)',
    '# Written by Snapgraph (exportSnapshotAs NEO4J_ADMIN_CSV): node ids are the :ID column, relationships name them.',
    'set -e',
    'cd "$(dirname "$0")"',
    'neo4j-admin database import full "${1:-neo4j}" \\',
    '  --delimiter=, --array-delimiter=";" --quote=\'"\' --multiline-fields=true \\',
    lines.join(' \\\n'),
    '',
  ].join('\n');
}
