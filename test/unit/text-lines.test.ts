// Lines to UTF-8 bytes and back: the same text as join/split, whatever the line lengths and characters, across the
// pieces decoding cuts.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { numberedLines } from '../../src/graph-files/text-lines';
import { lineBatches } from '../../src/graph/line-batches';
import { decodeLines, encodeLines, encodeStrings } from '../../src/runtime/text-lines';

/** What UTF-8 can carry of a line: lone surrogates become U+FFFD. */
const asUtf8 = (line: string) => Buffer.from(line, 'utf8').toString('utf8');

/** Lines of every length from empty to past the 64 KiB decode piece, some with multi-byte characters. */
function sampleLines(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < 400; i++) {
    const length = (i * 7919) % 3000;
    const text = 'x'.repeat(length);
    lines.push(i % 5 === 0 ? `${text}é€😀"\\u0000` : text);
  }
  // Lone surrogates are written as U+FFFD, as Buffer.from writes them.
  lines.push('', 'y'.repeat(200 * 1024), 'ü'.repeat(70 * 1024), 'a\ud800b', '\udc00', '');
  return lines;
}

describe('text lines', () => {
  it('encodes lines as join("\\n") + "\\n" would, in a buffer of exactly that size', () => {
    const lines = sampleLines();
    const expected = Buffer.from(lines.join('\n') + '\n', 'utf8');
    const encoded = encodeLines(lines);
    assert.equal(encoded.length, expected.length);
    assert.ok(encoded.equals(expected));
    assert.equal(encodeLines([]).length, 0);
  });

  it('decodes back the same lines, ASCII or not, across piece boundaries', () => {
    const lines = sampleLines();
    assert.deepEqual(decodeLines(encodeLines(lines)), lines.map(asUtf8));
    const ascii = lines.map((line) => line.replace(/[^\x00-\x7f]/g, '?'));
    assert.deepEqual(decodeLines(encodeLines(ascii), 'latin1'), ascii);
    assert.deepEqual(decodeLines(Buffer.alloc(0)), []);
  });

  it('encodes strings one after the other', () => {
    const parts = ['<a>', 'é'.repeat(100 * 1024), '', '</a>\n'];
    assert.ok(encodeStrings(parts).equals(Buffer.from(parts.join(''), 'utf8')));
  });

  it('reads the lines of a stream whose pieces are large and cut anywhere, even inside a character', async () => {
    const lines = sampleLines().map((line, i) => asUtf8(i === 0 ? `\uFEFF${line}` : line));
    const bytes = encodeLines(lines);
    // Pieces of 1 MiB and odd sizes, so that cuts fall inside lines and inside multi-byte characters.
    const pieces: Buffer[] = [];
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const size = i % 2 === 0 ? 1024 * 1024 : 70_001;
      pieces.push(bytes.subarray(at, at + size));
      at += size;
    }
    const numbered: Array<[number, string]> = [];
    for await (const batch of numberedLines(Readable.from(pieces)).batches()) numbered.push(...batch);
    assert.deepEqual(numbered.map(([, line]) => line), [lines[0].slice(1), ...lines.slice(1)], 'the byte-order mark is dropped');
    assert.deepEqual(numbered.map(([n]) => n), lines.map((_, i) => i + 1));

    const tuples = lines.map((line, i) => `["N","${i + 1}",[],{"t":${JSON.stringify(line)}}]`);
    const encoded = encodeLines(tuples);
    for (const cuts of [[], [70_001, 1024 * 1024 + 3]]) {
      const bounds = [0, ...cuts, encoded.length];
      const parts = bounds.slice(1).map((end, i) => encoded.subarray(bounds[i], end));
      const batched: string[] = [];
      for await (const batch of lineBatches(Readable.from(parts))) batched.push(...batch.lines);
      assert.deepEqual(batched, tuples, `pieces cut at ${cuts.join(', ') || 'nothing'}`);
    }
  });

  it('drops a CR whose LF comes in the next piece, and reads nothing from an empty stream', async () => {
    // The CR is the last byte of a 60 KiB decode piece; its LF starts the next.
    const text = `${'c'.repeat(60 * 1024 - 1)}\r\nnext\r\n`;
    const numbered: string[] = [];
    for await (const batch of numberedLines(Readable.from([Buffer.from(text)])).batches()) numbered.push(...batch.map(([, line]) => line));
    assert.deepEqual(numbered, ['c'.repeat(60 * 1024 - 1), 'next']);
    const none: unknown[] = [];
    for await (const batch of numberedLines(Readable.from([])).batches()) none.push(...batch);
    assert.deepEqual(none, []);
  });

  it('keeps a last line that has no newline', () => {
    assert.deepEqual(decodeLines(Buffer.from('a\nbc')), ['a', 'bc']);
    const long = `${'z'.repeat(100 * 1024)}\n${'w'.repeat(10)}`;
    assert.deepEqual(decodeLines(Buffer.from(long)), ['z'.repeat(100 * 1024), 'w'.repeat(10)]);
    // No newline after the first piece at all: the rest is the last line.
    assert.deepEqual(decodeLines(Buffer.from(`a\n${'x'.repeat(100 * 1024)}`)), ['a', 'x'.repeat(100 * 1024)]);
  });
});
