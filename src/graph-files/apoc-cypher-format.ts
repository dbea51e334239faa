// APOC Cypher scripts, as apoc.export.cypher.all writes them for cypher-shell (format 'cypher-shell', cypherFormat
// 'create', optimizations UNWIND_BATCH by default, or NONE; UNWIND_BATCH_PARAMS' :param rows too):
//   :begin / :commit around batches; the schema first (indexes and constraints, incl. the temporary
//   CREATE CONSTRAINT UNIQUE_IMPORT_NAME FOR (node:`UNIQUE IMPORT LABEL`) REQUIRE (node.`UNIQUE IMPORT ID`) IS UNIQUE),
//   CALL db.awaitIndexes(300); nodes as
//   UNWIND [{_id:0, properties:{…}}, …] AS row
//   CREATE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row._id}) SET n += row.properties SET n:Foo;
//   (or keyed by a uniqueness constraint: CREATE (n:Bar{name: row.name}) SET n += row.properties;), relationships as
//   UNWIND [{start: {_id:0}, end: {_id:1}, properties:{…}}, …] AS row
//   MATCH (start:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row.start._id})
//   MATCH (end:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`: row.end._id})
//   CREATE (start)-[r:KNOWS]->(end) SET r += row.properties;
//   and the clean-up (REMOVE of the import label and id in batches, DROP CONSTRAINT UNIQUE_IMPORT_NAME).
// Reading parses exactly these shapes (schema statements and the clean-up are skipped: Snapgraph keeps no schema);
// anything else is refused naming its line.
//
// A node whose labels carry uniqueness constraints is keyed by them, not by an import id (neo4j/apoc
// CypherFormatterUtils, AbstractCypherFormatter). The single statements of optimizations NONE name all its constrained
// labels and the key properties of all of them, in the node's MERGE and in the MATCH of its relationships alike
// (`MERGE (n:A:B{a:1, b:2})`, `MATCH (n1:B:A{a:1, b:2}), …`; their order may differ): such a node is keyed by that
// set of labels and properties. The UNWIND batches name one of its constrained labels with the key properties of all
// of them (`CREATE (n:A{a: row.a, b: row.b}) … SET n:B`), but a relationship MATCHes it by that label and that label's
// key properties alone (`MATCH (start:A{a: row.start.a})`). Both are keyed by the label and the properties of its
// constraint, as the schema statements give it: of the label's uniqueness and node key constraints, the one with the
// fewest properties (the one APOC chose) among those the lookup holds; with none given, all the lookup's properties.
import { Readable } from 'node:stream';
import { setProperty } from '../graph/records';
import { encodeStrings } from '../runtime/text-lines';
import { graphFileError, unexportableValueError } from './graph-file-error';
import type { ForeignNode, ForeignRecord, GraphFileFormat, GraphFileSource } from './graph-file-format';
import { CypherSyntaxError, CypherTextParser } from './cypher-text-parser';
import { cypherMap, cypherName, UnstorableValue } from './cypher-values';
import { LineFileReader } from './text-lines';

const IMPORT_LABEL = 'UNIQUE IMPORT LABEL';
const IMPORT_ID = 'UNIQUE IMPORT ID';
const IMPORT_REL_ID = 'UNIQUE IMPORT ID REL';
/** APOC's defaults: rows per UNWIND (unwindBatchSize) and per transaction (batchSize). */
const UNWIND_ROWS = 20;
const TRANSACTION_ROWS = 20_000;
const MAX_STATEMENT_CHARS = 64 * 1024 * 1024;
/**
 * The most characters of constraint labels and properties remembered from the schema, and the most constraints of one
 * label remembered (those of its fewest properties): memory stays bounded, and so does the time a lookup takes.
 */
const MAX_CONSTRAINT_CHARS = 16 * 1024 * 1024;
const MAX_LABEL_CONSTRAINTS = 1000;

// Statements skipped as a whole: the schema (Snapgraph keeps none) and the clean-up of the import label and ids.
const SKIPPED: RegExp[] = [
  /^CREATE\s+CONSTRAINT\b/i,
  /^CREATE\s+(?:RANGE\s+|TEXT\s+|POINT\s+|FULLTEXT\s+|LOOKUP\s+|VECTOR\s+|BTREE\s+)?INDEX\b/i,
  /^DROP\s+(?:CONSTRAINT|INDEX)\s+[^;]*;$/i,
  /^CALL\s+db\.awaitIndex(?:es)?\([^;]*\)\s*;$/i,
  /^MATCH\s+\(n:`UNIQUE IMPORT LABEL`\)\s+WITH\s+n\s+LIMIT\s+\d+\s+REMOVE\s+n:`UNIQUE IMPORT LABEL`\s+REMOVE\s+n\.`UNIQUE IMPORT ID`\s*;$/,
  /^MATCH\s+\(\)-\[r\]->\(\)\s+WHERE\s+r\.`UNIQUE IMPORT ID REL`\s+IS\s+NOT\s+NULL\s+WITH\s+r\s+LIMIT\s+\d+\s+REMOVE\s+r\.`UNIQUE IMPORT ID REL`\s*;$/,
];
// Lines that are shell commands, not statements.
const COMMANDS = /^(?::begin|:commit|BEGIN|COMMIT|SCHEMA AWAIT)$/;

export const apocCypherFormat: GraphFileFormat = {
  kind: 'CYPHER',
  extension: '.cypher',
  contentType: 'application/x-cypher-query; charset=utf-8',
  detect(head: Buffer): boolean {
    const text = head.toString('utf8').replace(/^\uFEFF/, '').trimStart();
    return /^(?::begin|:param\s|BEGIN\s*\n|UNWIND\s|CREATE\s+(?:CONSTRAINT|(?:RANGE\s+|TEXT\s+|POINT\s+|FULLTEXT\s+)?INDEX|\(:))/.test(text);
  },
  open: (input) => new ApocCypherReader(input),
  write: (source) => Readable.from(cypherScript(source), { objectMode: false }),
};

/** How a statement names a node: the labels and key properties of its lookup, and where the row holds their values. */
interface NodeLookup {
  /** [IMPORT_LABEL] for a node keyed by its import id. */
  labels: string[];
  /** [property, field of the row map] pairs, e.g. [['UNIQUE IMPORT ID', '_id']] or [['name', 'name']]. */
  fields: Array<[string, string]>;
}

class ApocCypherReader extends LineFileReader {
  /** The rows of the latest `:param rows => […]`, for `UNWIND $rows AS row`. */
  private rows: unknown[] | null = null;
  /**
   * By label, the property sets of the uniqueness and node key constraints the schema declares with the fewest
   * properties (APOC keys a label by one of those), in file order.
   */
  private readonly constraints = new Map<string, string[][]>();
  private constraintChars = 0;

  async *records(): AsyncGenerator<ForeignRecord[]> {
    let statement = '';
    let startLine = 0;
    for await (const lines of this.lines.batches()) {
      const records: ForeignRecord[] = [];
      for (const [number, text] of lines) {
        if (statement === '') {
          const trimmed = text.trim();
          if (trimmed === '' || COMMANDS.test(trimmed)) continue;
          if (trimmed.startsWith(':param')) {
            this.param(trimmed, number);
            continue;
          }
          startLine = number;
        }
        statement += statement === '' ? text : `\n${text}`;
        if (statement.length > MAX_STATEMENT_CHARS) throw graphFileError(this.describe(startLine), `the statement is longer than ${MAX_STATEMENT_CHARS} characters`);
        if (text.trimEnd().endsWith(';')) {
          this.statement(statement.trim(), startLine, records);
          statement = '';
        }
      }
      if (records.length > 0) yield records;
    }
    if (statement !== '') throw graphFileError(this.describe(startLine), 'the file ends inside this statement (no closing ";")');
  }

  /** `:param rows => [ … ]` (UNWIND_BATCH_PARAMS). */
  private param(text: string, line: number): void {
    this.parse(text, line, (p) => {
      p.expect(':param', 'rows', '=>');
      const rows = p.value();
      if (!Array.isArray(rows) || !p.atEnd()) return p.fail('expected :param rows => [ … ]');
      this.rows = rows;
    });
  }

  private statement(text: string, line: number, out: ForeignRecord[]): void {
    if (/^CREATE\s+CONSTRAINT\b/i.test(text)) this.constraint(text, line);
    if (SKIPPED.some((pattern) => pattern.test(text))) return;
    this.parse(text, line, (p) => {
      if (p.accept('UNWIND')) return this.unwind(p, line, out);
      if (p.peek('CREATE')) return out.push(this.createNode(p, line));
      if (p.peek('MERGE')) return out.push(this.mergeNode(p, line));
      if (p.peek('MATCH')) return out.push(this.matchCreateRelationship(p, line));
      p.fail(UNKNOWN_STATEMENT);
    });
  }

  /**
   * Remembers a node uniqueness or node key constraint: `CREATE CONSTRAINT [name] [IF NOT EXISTS] FOR (node:Label)
   * REQUIRE (node.a[, node.b…]) IS UNIQUE|IS NODE KEY;` (or `ON (…) ASSERT …` of Neo4j 4). Other constraints, and
   * statements of other shapes, are skipped as before.
   */
  private constraint(text: string, line: number): void {
    const p = new CypherTextParser(text);
    let label: string;
    const properties: string[] = [];
    try {
      p.expect('CREATE', 'CONSTRAINT');
      if (!p.peek('FOR') && !p.peek('ON') && !p.peek('IF')) p.name();
      if (p.accept('IF')) p.expect('NOT', 'EXISTS');
      if (!p.accept('FOR')) p.expect('ON');
      p.expect('(');
      const variable = p.name();
      p.expect(':');
      label = p.name();
      p.expect(')');
      if (!p.accept('REQUIRE')) p.expect('ASSERT');
      const parenthesised = p.accept('(');
      do {
        if (p.name() !== variable) return;
        p.expect('.');
        properties.push(p.name());
      } while (parenthesised && p.accept(','));
      if (parenthesised) p.expect(')');
      p.expect('IS');
      if (!p.accept('UNIQUE')) p.expect('NODE', 'KEY');
      this.end(p);
    } catch (error) {
      if (error instanceof CypherSyntaxError) return;
      throw error;
    }
    if (label === IMPORT_LABEL) return;
    this.constraintChars += label.length + properties.reduce((sum, property) => sum + property.length + 1, 1);
    if (this.constraintChars > MAX_CONSTRAINT_CHARS) {
      throw graphFileError(this.describe(line), `the schema's constraints name more than ${MAX_CONSTRAINT_CHARS} characters of labels and properties`);
    }
    const set = [...new Set(properties)];
    const sets = this.constraints.get(label);
    if (!sets || set.length < sets[0].length) {
      this.constraints.set(label, [set]);
    } else if (set.length === sets[0].length) {
      if (sets.length >= MAX_LABEL_CONSTRAINTS) {
        throw graphFileError(this.describe(line), `the schema declares more than ${MAX_LABEL_CONSTRAINTS} constraints of ${set.length} properties on one label`);
      }
      sets.push(set);
    }
  }

  /**
   * The lookup a node is keyed by: one of a single label narrowed to the properties of that label's constraint (of
   * those of its fewest properties, the first the lookup holds all of), else the lookup itself. Two such constraints
   * that the lookup both holds cannot be told apart (APOC took the first Neo4j listed): the first in the file is
   * taken, and a relationship that names the node by the other fails the restore as naming a node the file lacks.
   */
  private keyLookup(lookup: NodeLookup): NodeLookup {
    const sets = lookup.labels.length === 1 ? this.constraints.get(lookup.labels[0]) : undefined;
    if (!sets) return lookup;
    const fields = new Map(lookup.fields);
    for (const set of sets) {
      if (set.every((property) => fields.has(property))) return { labels: lookup.labels, fields: set.map((property) => [property, fields.get(property)!]) };
    }
    return lookup;
  }

  /** Runs a parse, turning its syntax errors into errors naming the line. */
  private parse(text: string, line: number, body: (p: CypherTextParser) => void): void {
    const parser = new CypherTextParser(text);
    try {
      body(parser);
    } catch (error) {
      if (!(error instanceof CypherSyntaxError)) throw error;
      const before = text.slice(0, error.offset);
      const at = line + (before.match(/\n/g)?.length ?? 0);
      throw graphFileError(this.describe(at), error.message);
    }
  }

  private unwind(p: CypherTextParser, line: number, out: ForeignRecord[]): void {
    let rows: unknown;
    if (p.accept('$')) {
      p.expect('rows');
      if (!this.rows) p.fail('UNWIND $rows comes without a :param rows before it');
      rows = this.rows;
    } else {
      rows = p.value();
    }
    if (!Array.isArray(rows)) p.fail('UNWIND must be given a list of rows');
    p.expect('AS', 'row');
    if (p.accept('MATCH')) {
      const start = this.lookupOfRow(p, 'start');
      p.expect('MATCH');
      const end = this.lookupOfRow(p, 'end');
      if (!p.accept('CREATE')) p.expect('MERGE');
      p.expect('(', 'start', ')', '-', '[', 'r', ':');
      const type = p.name();
      let keyed = false;
      if (p.accept('{')) {
        if (p.name() !== IMPORT_REL_ID) p.fail(`expected \`${IMPORT_REL_ID}\``);
        p.expect(':', 'row', '.', 'id', '}');
        keyed = true;
      }
      p.expect(']', '->', '(', 'end', ')');
      this.setProperties(p, 'r');
      this.end(p);
      const [startKeyLookup, endKeyLookup] = [this.keyLookup(start), this.keyLookup(end)];
      for (const row of rows) {
        const map = this.rowMap(p, row);
        const startKey = keyOf(startKeyLookup, this.field(p, map.start, 'start'));
        const endKey = keyOf(endKeyLookup, this.field(p, map.end, 'end'));
        if (keyed && map.id === undefined) p.fail('a row has no id (its relationship\'s import id)');
        const key = map.id === undefined ? null : JSON.stringify(map.id);
        out.push({ kind: 'relationship', at: line, key, type, startKey, endKey, properties: this.propertiesOf(p, map) });
      }
      return;
    }
    if (!p.accept('CREATE')) p.expect('MERGE');
    p.expect('(', 'n', ':');
    const lookup = this.lookup(p, 'row.');
    p.expect(')');
    this.setProperties(p, 'n');
    const labels = lookup.labels[0] === IMPORT_LABEL ? [] : [...lookup.labels];
    if (p.accept('SET')) {
      p.expect('n');
      while (p.accept(':')) labels.push(p.name());
    }
    this.end(p);
    const keyLookup = this.keyLookup(lookup);
    for (const row of rows) {
      const map = this.rowMap(p, row);
      const key = keyOf(keyLookup, map);
      const properties: Record<string, unknown> = {};
      for (const [property, field] of lookup.fields) if (property !== IMPORT_ID) setProperty(properties, property, map[field]);
      for (const [property, value] of Object.entries(this.propertiesOf(p, map))) setProperty(properties, property, value);
      out.push({ kind: 'node', at: line, key, labels: [...labels], properties });
    }
  }

  /** `(start:Label{prop: row.start.field, …})`: the MATCH of a relationship UNWIND. */
  private lookupOfRow(p: CypherTextParser, end: 'start' | 'end'): NodeLookup {
    p.expect('(', end, ':');
    const lookup = this.lookup(p, `row.${end}.`);
    p.expect(')');
    return lookup;
  }

  /** `Label[:Label…]{prop: <prefix>field, …}` */
  private lookup(p: CypherTextParser, prefix: string): NodeLookup {
    const labels = this.lookupLabels(p);
    p.expect('{');
    const fields: Array<[string, string]> = [];
    do {
      const property = p.name();
      p.expect(':');
      for (const part of prefix.split('.').filter(Boolean)) p.expect(part, '.');
      fields.push([property, p.name()]);
    } while (p.accept(','));
    p.expect('}');
    if (labels[0] === IMPORT_LABEL && (fields.length !== 1 || fields[0][0] !== IMPORT_ID)) p.fail(`the import label is looked up by \`${IMPORT_ID}\` only`);
    return { labels, fields };
  }

  /** `Label[:Label…]` after the first ':' of a lookup: the import label stands alone. */
  private lookupLabels(p: CypherTextParser): string[] {
    const labels = [p.name()];
    while (p.accept(':')) labels.push(p.name());
    if (labels.length > 1 && labels.includes(IMPORT_LABEL)) p.fail(`\`${IMPORT_LABEL}\` is looked up alone`);
    return labels;
  }

  /** The lookup of a single statement, `Label[:Label…]{prop:value, …}`, and its values. */
  private literalLookup(p: CypherTextParser): { lookup: NodeLookup; values: Record<string, unknown> } {
    const labels = this.lookupLabels(p);
    const values = p.map();
    const names = Object.keys(values);
    if (names.length === 0) p.fail('expected the key properties of the node');
    if (labels[0] === IMPORT_LABEL && (names.length !== 1 || names[0] !== IMPORT_ID)) p.fail(`the import label is looked up by \`${IMPORT_ID}\` only`);
    return { lookup: this.keyLookup({ labels, fields: names.map((name) => [name, name]) }), values };
  }

  /** `[ON CREATE] SET x += row.properties` */
  private setProperties(p: CypherTextParser, variable: string): void {
    p.accept('ON') && p.expect('CREATE');
    p.expect('SET', variable, '+=', 'row', '.', 'properties');
  }

  private end(p: CypherTextParser): void {
    p.expect(';');
    if (!p.atEnd()) p.fail('expected the end of the statement after ";"');
  }

  /** Optimizations NONE: `CREATE (:Foo:`UNIQUE IMPORT LABEL` {name:"foo", `UNIQUE IMPORT ID`:0});` */
  private createNode(p: CypherTextParser, line: number): ForeignNode {
    p.expect('CREATE', '(');
    if (!p.peek(':')) p.fail(UNKNOWN_STATEMENT);
    const labels: string[] = [];
    while (p.accept(':')) labels.push(p.name());
    const properties = p.peek('{') ? p.map() : {};
    p.expect(')');
    this.end(p);
    const at = labels.indexOf(IMPORT_LABEL);
    const id = properties[IMPORT_ID];
    if (at === -1 || id === undefined) {
      p.fail(`this node has no \`${IMPORT_LABEL}\` and \`${IMPORT_ID}\`: nodes keyed by a uniqueness constraint are read in the UNWIND form or as MERGE statements only (export with the default optimizations, or cypherFormat updateAll)`);
    }
    labels.splice(at, 1);
    delete properties[IMPORT_ID];
    return { kind: 'node', at: line, key: keyOf({ labels: [IMPORT_LABEL], fields: [[IMPORT_ID, IMPORT_ID]] }, { [IMPORT_ID]: id }), labels, properties };
  }

  /**
   * Optimizations NONE with cypherFormat updateAll or addStructure:
   * `MERGE (n:`UNIQUE IMPORT LABEL`{`UNIQUE IMPORT ID`:0}) [ON CREATE] SET n.name="foo", n:Foo;`, or keyed by a
   * uniqueness constraint, `MERGE (n:Bar{name:"bar"}) …`, or by several, `MERGE (n:Bar:Baz{name:"bar", id:1}) …`.
   */
  private mergeNode(p: CypherTextParser, line: number): ForeignNode {
    p.expect('MERGE', '(', 'n', ':');
    const { lookup, values } = this.literalLookup(p);
    p.expect(')');
    const labels = lookup.labels[0] === IMPORT_LABEL ? [] : [...lookup.labels];
    const properties: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(values)) if (key !== IMPORT_ID) setProperty(properties, key, value);
    this.setItems(p, 'n', properties, labels);
    this.end(p);
    return { kind: 'node', at: line, key: keyOf(lookup, values), labels, properties };
  }

  /** `[ON CREATE] SET x.key=value, x:Label, …` (none at all for a record without properties and labels). */
  private setItems(p: CypherTextParser, variable: string, properties: Record<string, unknown>, labels: string[] | null): void {
    if (p.accept('ON')) p.expect('CREATE', 'SET');
    else if (!p.accept('SET')) return;
    do {
      p.expect(variable);
      if (labels && p.peek(':')) {
        while (p.accept(':')) labels.push(p.name());
        continue;
      }
      p.expect('.');
      const key = p.name();
      p.expect('=');
      setProperty(properties, key, p.value());
    } while (p.accept(','));
  }

  /**
   * Optimizations NONE: `MATCH (n1:L{k:v}), (n2:L{k:v}) CREATE (n1)-[r:TYPE {…}]->(n2);`, or with MERGE (cypherFormat
   * updateAll, addStructure) `… MERGE (n1)-[r:TYPE{`UNIQUE IMPORT ID REL`:0}]->(n2) [ON CREATE] SET r.k=v, …;`
   */
  private matchCreateRelationship(p: CypherTextParser, line: number): ForeignRecord {
    p.expect('MATCH');
    if (!p.accept('(') || !p.peek('n1')) p.fail(UNKNOWN_STATEMENT);
    const [startKey, endKey] = ['n1', 'n2'].map((variable, i) => {
      if (i === 1) p.expect(',', '(');
      p.expect(variable, ':');
      const { lookup, values } = this.literalLookup(p);
      p.expect(')');
      return keyOf(lookup, values);
    });
    const merge = !p.accept('CREATE');
    if (merge) p.expect('MERGE');
    p.expect('(', 'n1', ')', '-', '[', 'r', ':');
    const type = p.name();
    let key: string | null = null;
    let properties: Record<string, unknown> = {};
    if (p.peek('{')) {
      const map = p.map();
      // MERGE names the relationship by its import id (the other properties are SET after it).
      if (merge) {
        if (Object.keys(map).length !== 1 || map[IMPORT_REL_ID] === undefined) p.fail(`expected {\`${IMPORT_REL_ID}\`:…}`);
        key = JSON.stringify(map[IMPORT_REL_ID]);
      } else {
        properties = map;
      }
    }
    p.expect(']', '->', '(', 'n2', ')');
    if (merge) this.setItems(p, 'r', properties, null);
    this.end(p);
    return { kind: 'relationship', at: line, key, type, startKey, endKey, properties };
  }

  private rowMap(p: CypherTextParser, row: unknown): Record<string, unknown> {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) p.fail('an UNWIND row is not a map');
    return row as Record<string, unknown>;
  }

  private field(p: CypherTextParser, value: unknown, what: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) p.fail(`a row's ${what} is not a map`);
    return value as Record<string, unknown>;
  }

  private propertiesOf(p: CypherTextParser, row: Record<string, unknown>): Record<string, unknown> {
    const properties = row.properties ?? {};
    return this.field(p, properties, 'properties');
  }
}

const UNKNOWN_STATEMENT =
  'this is not a statement apoc.export.cypher writes (Snapgraph reads the statements of its cypher-shell scripts: ' +
  ':begin/:commit, schema, UNWIND batches or single CREATE/MERGE/MATCH…CREATE statements, and the clean-up)';

/**
 * The key of a node in the file: its import id, or its labels and key properties, each in name order (a node's MERGE
 * and the MATCH of its relationships may list them in different orders).
 */
function keyOf(lookup: NodeLookup, row: Record<string, unknown>): string {
  const values = lookup.fields.map(([property, field]) => {
    const value = row[field];
    if (value === undefined) throw new CypherSyntaxError(`a row has no ${field} (the key of its node)`, 0);
    return [property, value] as const;
  });
  if (lookup.labels[0] === IMPORT_LABEL) {
    const id = values[0][1];
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) throw new CypherSyntaxError(`\`${IMPORT_ID}\` ${JSON.stringify(id)} is not an integer`, 0);
    return String(id);
  }
  // As Cypher writes a node pattern (names in backticks, doubling those inside), so that a message naming a key reads.
  const quoted = (name: string) => `\`${name.replace(/`/g, '``')}\``;
  const labels = [...new Set(lookup.labels)].sort().map((label) => `:${quoted(label)}`);
  const properties = [...values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, value]) => `${quoted(name)}: ${JSON.stringify(value)}`);
  return `(${labels.join('')} {${properties.join(', ')}})`;
}

// ---- writing ----

/** The script APOC writes for a graph without constraints (every node keyed by the import label and id). */
async function* cypherScript(source: GraphFileSource): AsyncGenerator<string | Buffer> {
  const { nodeCount } = source.stats;
  if (nodeCount > 0) {
    yield ':begin\n' +
      `CREATE CONSTRAINT UNIQUE_IMPORT_NAME FOR (node:\`${IMPORT_LABEL}\`) REQUIRE (node.\`${IMPORT_ID}\`) IS UNIQUE;\n` +
      ':commit\nCALL db.awaitIndexes(300);\n';
  }
  const script = new ScriptBatches();
  for await (const batch of source.batches()) {
    const parts: string[] = [];
    for (const record of batch) {
      if (record.kind === 'node') {
        const { id, labels, properties } = record.node;
        const row = `{_id:${id}, properties:${exportable(() => cypherMap(properties, `node ${id}`))}}`;
        const labelsText = exportable(() => labels.map((l) => `:${cypherName(l, `node ${id}'s label ${JSON.stringify(l)}`)}`).join(''));
        script.add(parts, 'node', labelsText, row);
      } else {
        const { id, type, startNodeId, endNodeId, properties } = record.relationship;
        const map = exportable(() => cypherMap(properties, `relationship ${id}`));
        const typeText = exportable(() => cypherName(type, `relationship ${id}'s type ${JSON.stringify(type)}`));
        script.add(parts, 'relationship', typeText, `{start: {_id:${startNodeId}}, end: {_id:${endNodeId}}, properties:${map}}`);
      }
    }
    yield encodeStrings(parts);
  }
  yield script.finish();
  if (nodeCount > 0) {
    let cleanUp = '';
    for (let left = nodeCount; left > 0; left -= TRANSACTION_ROWS) {
      cleanUp +=
        `:begin\nMATCH (n:\`${IMPORT_LABEL}\`)  WITH n LIMIT ${TRANSACTION_ROWS} REMOVE n:\`${IMPORT_LABEL}\` REMOVE n.\`${IMPORT_ID}\`;\n:commit\n`;
    }
    yield `${cleanUp}:begin\nDROP CONSTRAINT UNIQUE_IMPORT_NAME;\n:commit\n`;
  }
}

function exportable(write: () => string): string {
  try {
    return write();
  } catch (error) {
    if (error instanceof UnstorableValue) throw unexportableValueError('CYPHER', error.subject, error.problem);
    throw error;
  }
}

/**
 * Rows grouped as APOC groups them: consecutive records of one kind and label set (or type) share an UNWIND of at most
 * UNWIND_ROWS rows; a transaction (:begin … :commit) holds at most TRANSACTION_ROWS rows and one kind.
 */
class ScriptBatches {
  private kind: 'node' | 'relationship' | null = null;
  private group = '';
  private rows: string[] = [];
  private inTransaction = 0;

  /** Adds a row; the script text it completes (statements, transaction bounds) goes to `out`, in parts. */
  add(out: string[], kind: 'node' | 'relationship', group: string, row: string): void {
    if (this.rows.length > 0 && (kind !== this.kind || group !== this.group || this.rows.length >= UNWIND_ROWS)) this.flushRows(out);
    if (this.inTransaction > 0 && (kind !== this.kind || this.inTransaction >= TRANSACTION_ROWS)) this.commit(out);
    if (this.inTransaction === 0) out.push(':begin\n');
    this.kind = kind;
    this.group = group;
    this.rows.push(row);
    this.inTransaction += 1;
  }

  finish(): Buffer {
    const out: string[] = [];
    this.flushRows(out);
    if (this.inTransaction > 0) this.commit(out);
    return encodeStrings(out);
  }

  private commit(out: string[]): void {
    this.flushRows(out);
    out.push(':commit\n');
    this.inTransaction = 0;
  }

  /** The UNWIND of the rows so far, each row a part of its own: together they are megabytes, too long for one string. */
  private flushRows(out: string[]): void {
    if (this.rows.length === 0) return;
    out.push('UNWIND [');
    for (let i = 0; i < this.rows.length; i++) out.push(i === 0 ? this.rows[i] : `, ${this.rows[i]}`);
    out.push('] AS row\n');
    this.rows = [];
    if (this.kind === 'node') {
      const labels = this.group ? ` SET n${this.group}` : '';
      out.push(`CREATE (n:\`${IMPORT_LABEL}\`{\`${IMPORT_ID}\`: row._id}) SET n += row.properties${labels};\n`);
      return;
    }
    out.push(
      `MATCH (start:\`${IMPORT_LABEL}\`{\`${IMPORT_ID}\`: row.start._id})\n` +
        `MATCH (end:\`${IMPORT_LABEL}\`{\`${IMPORT_ID}\`: row.end._id})\n` +
        `CREATE (start)-[r:${this.group}]->(end) SET r += row.properties;\n`,
    );
  }
}
