// Fields cut out of tuple lines for a bulk load: exactly what SQLite's JSON functions give for a compact line, and
// nothing (the JSON path) for any other.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import type { WriteLimits } from '../../src/graph/graph-store';
import type { EncodedBatch } from '../../src/graph/records';
import { SqliteConnection } from '../../src/graph/sqlite-connection';
import { SqliteGraphLoader } from '../../src/graph/sqlite-graph-store';
import { nodeFields, relationshipFields } from '../../src/graph/tuple-fields';

const NO_LIMITS: WriteLimits = { maxNodes: null, maxRelationships: null, maxBytes: 1e12 };

const TRICKY_PROPERTIES: Record<string, unknown>[] = [
  {},
  { name: 'plain', n: 1, f: 0.1 + 0.2, big: 1e21, small: 5e-7, neg: -12.5, yes: true, no: false, none: null },
  { quote: 'say "hi"', backslash: 'a\\b', endsInBackslash: 'c:\\', brackets: '] } [ {', comma: 'a,b', colon: 'k:v' },
  { spaces: '  leading and trailing  ', tab: 'a\tb', newline: 'a\nb', control: '\u0001\u001f', separators: '\u2028\u2029' },
  { unicode: 'é中😀', lone: '\ud800', nested: [1, [2, []], { x: null, y: [{}] }], '"key"': 'quoted key', 'sp ace': 1 },
];

const nodeLine = (id: string, labels: string[], properties: Record<string, unknown>) => JSON.stringify(['N', id, labels, properties]);
const relationshipLine = (id: string, type: string, start: string, end: string, properties: Record<string, unknown>) =>
  JSON.stringify(['R', id, type, start, end, properties]);

describe('tuple fields', () => {
  let db: SqliteConnection;
  before(async () => (db = await SqliteConnection.open(':memory:')));
  after(() => db.close());

  /** What the JSON path's `->>` and `->` give for each line: the rows as SQLite would have loaded them. */
  async function sqliteFields(lines: string[], selects: string): Promise<string[][]> {
    const rows = await db.all<Record<string, string>>(`SELECT ${selects} FROM json_each(?1) ORDER BY key`, [`[${lines.join(',')}]`]);
    return rows.map((row) => Object.values(row).map(String));
  }

  it("cut a compact node line into what SQLite's JSON functions give", async () => {
    const lines = TRICKY_PROPERTIES.map((properties, i) =>
      nodeLine(String(i + 1), i % 2 ? [] : ['Person', 'with "quote"', 'a]b', 'back\\slash', 'é'], properties),
    );
    const expected = await sqliteFields(lines, `value ->> 1 AS id, value -> 2 AS labels, value -> 3 AS properties`);
    assert.deepEqual(
      lines.map((line) => nodeFields(line)),
      expected,
    );
  });

  it("cut a compact relationship line into what SQLite's JSON functions give", async () => {
    const lines = TRICKY_PROPERTIES.map((properties, i) => relationshipLine(String(100 + i), i % 2 ? 'KNOWS' : 'ÉTÉ ]', String(i + 1), '12345678901', properties));
    const expected = await sqliteFields(lines, `value ->> 1 AS id, value ->> 2 AS type, value ->> 3 AS s, value ->> 4 AS e, value -> 5 AS properties`);
    assert.deepEqual(
      lines.map((line) => relationshipFields(line)),
      expected,
    );
  });

  it('cut lines in spellings other writers use (escapes, numbers, repeated keys) as SQLite gives them', async () => {
    const lines = [
      '["N","1",["\\u0041","a\\/b"],{"a":1E5,"b":"\\/\\u00e9\\uD83D\\uDE00","c":-0.0,"d":1.50,"e":1e+400,"f":123456789012345678901234567890}]',
      '["N","2",[],{"k":1,"k":2,"nested":{"deep":[[[{"x":"]}[{,\\""}]]]}}]',
      '["N","3",["x"],{"s":"tab\\there","u":"\\u0000"}]',
    ];
    const expected = await sqliteFields(lines, `value ->> 1 AS id, value -> 2 AS labels, value -> 3 AS properties`);
    assert.deepEqual(
      lines.map((line) => nodeFields(line)),
      expected,
    );
  });

  it('leave lines that are not compact, or not of the expected shape, to SQLite', () => {
    const notCut = [
      '["N", "1",["A"],{}]',
      '["N","1", ["A"],{}]',
      '["N","1",["A", "B"],{}]',
      '["N","1",[ ],{}]',
      '["N","1",["A"], {}]',
      '["N","1",["A"],{"a": 1}]',
      '["N","1",["A"],{"a":[1, 2]}]',
      '["N","1",["A"],{"a":1} ]',
      '["N","1",["A"],{"a":1}\n]',
      '["N","x",["A"],{}]',
      '["N","",["A"],{}]',
      '["N",1,["A"],{}]',
      '["N","1",["A"]]',
      '["N","1",["A"],{},{}]',
      '["N","1",["A"],[]]',
      '["N","1",["A],{}]',
      '["R","1","KNOWS","1","2",{}]',
    ];
    for (const line of notCut) assert.equal(nodeFields(line), null, line);
    const notCutRelationships = [
      '["R","1","KNOWS","1","2", {}]',
      '["R","1","KNOWS","1", "2",{}]',
      '["R","1","say \\"hi\\"","1","2",{}]',
      '["R","1","a\\\\","1","2",{}]',
      '["R","1","KNOWS","1","2",{"a":true }]',
      '["R","1","KNOWS","1","x",{}]',
      '["R","1","KNOWS","1","2"]',
      '["N","1",["A"],{}]',
    ];
    for (const line of notCutRelationships) assert.equal(relationshipFields(line), null, line);
  });

  describe('in a load', () => {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tuple-fields-'))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    type Loaded = { nodes: string[][]; relationships: string[][]; labels: string[][]; counts: string[][] };

    async function load(batches: EncodedBatch[]): Promise<Loaded> {
      const path = join(dir, 'store.sqlite');
      const loader = await SqliteGraphLoader.create(path, NO_LIMITS, async () => undefined);
      for (const batch of batches) await loader.insert(batch);
      await loader.finish();
      const store = await SqliteConnection.open(path, sqlite3.OPEN_READONLY);
      try {
        const rows = async (sql: string) => (await store.all<Record<string, unknown>>(sql)).map((row) => Object.values(row).map(String));
        return {
          nodes: await rows(`SELECT id, labels, properties FROM nodes ORDER BY id`),
          relationships: await rows(`SELECT id, type, start_id, end_id, properties FROM relationships ORDER BY id`),
          labels: await rows(`SELECT label, node_id FROM node_labels ORDER BY label, node_id`),
          counts: await rows(`SELECT kind, name, count FROM counts ORDER BY kind, name`),
        };
      } finally {
        await store.close();
      }
    }

    it('stores the same rows, label index and counts whether the lines are cut or parsed by SQLite (which makes them compact)', async () => {
      const compact: EncodedBatch[] = [
        {
          kind: 'node',
          lines: [
            ...TRICKY_PROPERTIES.map((properties, i) => nodeLine(String(i + 1), i % 2 ? ['A', 'b c', 'with "quote"'] : [], properties)),
            ...Array.from({ length: 1_200 }, (_, i) => nodeLine(String(100 + i), i % 3 ? ['A'] : ['Many', 'A'], { i })),
          ],
        },
        { kind: 'relationship', lines: TRICKY_PROPERTIES.map((properties, i) => relationshipLine(String(i + 1), 'T', String(i + 1), '1', properties)) },
      ];
      // The same records with a space after every comma that is not inside a string: every batch takes the JSON path.
      const spaced: EncodedBatch[] = compact.map(({ kind, lines }) => ({
        kind,
        lines: lines.map((line) => line.replace(/("(?:[^"\\]|\\.)*")|,/g, (match, string) => string ?? ', ')),
      }));
      assert.ok(spaced[0].lines.every((line) => nodeFields(line) === null));
      assert.ok(spaced[1].lines.every((line) => relationshipFields(line) === null));

      const cut = await load(compact);
      assert.equal(cut.nodes.length, TRICKY_PROPERTIES.length + 1_200);
      assert.equal(cut.relationships.length, TRICKY_PROPERTIES.length);
      assert.equal(cut.labels.length, 2 * 3 + 1_200 + 400);
      assert.deepEqual(cut.counts.filter(([kind]) => kind !== 'label' && kind !== 'type'), [
        ['nodes', '', String(TRICKY_PROPERTIES.length + 1_200)],
        ['relationships', '', String(TRICKY_PROPERTIES.length)],
      ]);
      rmSync(dir, { recursive: true, force: true });
      dir = mkdtempSync(join(tmpdir(), 'tuple-fields-'));
      assert.deepEqual(await load(spaced), cut);
    });

    it('names the record whose id an earlier one of a cut batch already has', async () => {
      const lines = Array.from({ length: 1_200 }, (_, i) => nodeLine(String(i === 1_100 ? 7 : i + 1), ['A'], { i }));
      const path = join(dir, 'store.sqlite');
      const loader = await SqliteGraphLoader.create(path, NO_LIMITS, async () => undefined);
      await loader.insert({ kind: 'node', lines: [nodeLine('5000', [], {})] });
      await assert.rejects(loader.insert({ kind: 'node', lines }), /node record 1102: id "7" is already used by an earlier node record/);
      await loader.abort();
    });
  });
});
