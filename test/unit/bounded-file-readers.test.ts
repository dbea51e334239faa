// Readers of uploaded graph files hold at most one bounded record in memory: a file built to make one record endless (a
// line with no newline, a CSV row of endless fields, elements nested without end) is refused once the bound is passed,
// without reading on to the end of the file (an upload may be 4 GiB). Each source here counts what was taken from it.
import { strict as assert } from 'node:assert';
import { Readable } from 'node:stream';
import type { GraphFileFormat } from '../../src/graph-files/graph-file-format';
import { apocCypherFormat } from '../../src/graph-files/apoc-cypher-format';
import { apocJsonFormat } from '../../src/graph-files/apoc-json-format';
import { csvRows } from '../../src/graph-files/csv-rows';
import { graphmlFormat } from '../../src/graph-files/graphml-format';
import { XmlTokenizer } from '../../src/graph-files/xml-tokens';

const MIB = 1024 * 1024;

/** A source of `head`, then the same piece `count` times; `taken()` says how many pieces were read from it. */
function counted(head: string, piece: Buffer, count: number): { input: Readable; taken: () => number } {
  let taken = 0;
  const input = Readable.from(
    (function* () {
      yield Buffer.from(head);
      for (let i = 0; i < count; i++) {
        taken += 1;
        yield piece;
      }
    })(),
    { objectMode: false },
  );
  return { input, taken: () => taken };
}

async function readAll(format: GraphFileFormat, input: Readable): Promise<Error> {
  try {
    for await (const _ of format.open(input).records());
  } catch (error) {
    return error as Error;
  }
  assert.fail('the file was read without an error');
}

describe('bounded reading of uploaded graph files', function () {
  this.timeout(20_000);

  for (const [format, head, line] of [
    [apocJsonFormat, '{"type":"node","id":"1","labels":["A"]}\n{"type":"node","id":"2","properties":{"s":"', 2],
    [apocCypherFormat, "CREATE (:A {s: '", 1],
  ] as const) {
    it(`${format.kind}: a line longer than the line limit is refused before the file's end is read`, async () => {
      // 100 MiB without a newline; the limit is 64 Mi characters.
      const { input, taken } = counted(head, Buffer.alloc(MIB, 'a'), 100);
      const error = await readAll(format, input);
      assert.match(error.message, new RegExp(`at line ${line}: the line is longer than 67108864 characters`));
      assert.ok(taken() <= 66, `${taken()} MiB were read to refuse a line of more than 64 MiB`);
    });
  }

  it('csvRows: a record longer than the record limit is refused before the file is read to its end', async () => {
    // 100 MiB of one line of fields of 1 KiB, 64 Ki of them at the limit.
    const field = Buffer.alloc(1024, 'a');
    field[1023] = 0x2c;
    const { input, taken } = counted(':ID,name\n', Buffer.concat(Array.from({ length: 1024 }, () => field)), 100);
    await assert.rejects(
      async () => {
        for await (const _ of csvRows(input));
      },
      (error: Error & { line?: number }) => /a record is longer than 67108864 characters/.test(error.message) && error.line === 2,
    );
    assert.ok(taken() <= 66, `${taken()} MiB were read to refuse a record of more than 64 MiB`);
  });

  it('csvRows: a record of more fields than the field limit is refused at once, however short they are', async () => {
    // 100 MiB of empty fields on one line: within the record limit, each kept would cost memory of its own.
    const { input, taken } = counted(':ID,name\n', Buffer.alloc(MIB, ','), 100);
    await assert.rejects(
      async () => {
        for await (const _ of csvRows(input));
      },
      (error: Error & { line?: number }) => /a record has more than 1048576 fields/.test(error.message) && error.line === 2,
    );
    assert.ok(taken() <= 2, `${taken()} MiB were read to refuse a record of more than 1 Mi fields`);
  });

  // Every key is kept for the whole file, and each node looked at every key for its default.
  it('GRAPHML: a file declaring more keys than the limit is refused before the file is read to its end', async () => {
    // 100 MiB of key declarations, 100 bytes each: 1 Mi keys, ten times the limit.
    const piece = Buffer.from(Array.from({ length: 10_486 }, (_, i) => `<key id="k${String(i).padStart(8, '0')}" for="node" attr.name="p" attr.type="string"/>`.padEnd(100, ' ')).join(''));
    const { input, taken } = counted('<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">', piece, 100);
    const error = await readAll(graphmlFormat, input);
    assert.match(error.message, /the file declares more than 100000 keys/);
    assert.ok(taken() <= 12, `${taken()} MiB were read to refuse more than 100,000 keys`);
  });

  it('XmlTokenizer: elements nested deeper than the limit are refused at once', () => {
    const tokenizer = new XmlTokenizer();
    tokenizer.write('<graphml><graph id="G"><desc>');
    // 3 bytes an element, each one a name kept until it closes.
    const piece = '<a>'.repeat(10_000);
    let written = 0;
    assert.throws(() => {
      for (; written < 1_000; written++) tokenizer.write(piece);
    }, /elements are nested deeper than 1000/);
    assert.equal(written, 0, 'refused in the first 30 KB, not after 30 MB');
  });
});
