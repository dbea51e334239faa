// The change-log segment format: what is encoded decodes to the same entries, and every kind of damage is refused.
import assert from 'node:assert/strict';
import { decodeSegment, encodeSegment, expectSegment, SegmentFormatError } from '../../src/changelog/segment-format';
import type { LogEntry } from '../../src/graph/graph-store';

const ENTRIES: LogEntry[] = [
  { seq: 7, at: 1_767_312_000_100, lines: ['["N","1",["Person"],{"name":"Ada\\nLovelace"}]', '["N","2",[],{}]'] },
  { seq: 8, at: 1_767_312_000_100, lines: ['["R","1","KNOWS","1","2",{"since":1843}]'] },
  { seq: 9, at: 1_767_312_000_250, lines: ['["-R","1"]', '["-N","2"]'] },
];
const PLACE = { instanceId: '00000000-0000-4000-8000-000000000001', epoch: 42, prevSha256: 'ab'.repeat(32) };

describe('change-log segment format', () => {
  it('decodes what it encodes, with a header that describes it', () => {
    const encoded = encodeSegment(PLACE, ENTRIES);
    const decoded = decodeSegment(encoded.plaintext);
    assert.deepEqual(decoded.entries, ENTRIES);
    assert.equal(decoded.sha256, encoded.sha256);
    assert.deepEqual(
      { first: decoded.header.firstSeq, last: decoded.header.lastSeq, firstAt: decoded.header.firstAt, lastAt: decoded.header.lastAt, lines: decoded.header.lines },
      { first: 7, last: 9, firstAt: ENTRIES[0].at, lastAt: ENTRIES[2].at, lines: 5 },
    );
    expectSegment(decoded, { ...PLACE, firstSeq: 7, lastSeq: 9, sha256: encoded.sha256 });
  });

  it('keeps an entry with no lines', () => {
    const entries = [{ seq: 1, at: 5, lines: [] }, { seq: 2, at: 6, lines: ['["-N","3"]'] }];
    assert.deepEqual(decodeSegment(encodeSegment(PLACE, entries).plaintext).entries, entries);
  });

  it('refuses entries out of order', () => {
    assert.throws(() => encodeSegment(PLACE, [ENTRIES[0], ENTRIES[2]]), /out of order/);
    assert.throws(() => encodeSegment(PLACE, [{ ...ENTRIES[1], at: 1 }, { ...ENTRIES[2], seq: 9 }].reverse()), /out of order/);
  });

  it('finds truncation, a changed line, and a changed count', () => {
    const { plaintext } = encodeSegment(PLACE, ENTRIES);
    assert.throws(() => decodeSegment(plaintext.subarray(0, plaintext.length - 1)), SegmentFormatError);
    const text = plaintext.toString('utf8');
    const cut = text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1);
    assert.throws(() => decodeSegment(Buffer.from(cut)), /truncated|does not hold/);
    assert.throws(() => decodeSegment(Buffer.from(text.replace('"lines":1}', '"lines":2}'))), SegmentFormatError);
    assert.throws(() => decodeSegment(Buffer.from(text.replace('"seq":8', '"seq":10'))), /seq 10 where seq 8/);
    assert.throws(() => decodeSegment(Buffer.from('not json\n')), /header is not JSON/);
  });

  it('tells a segment from another place in the chain', () => {
    const encoded = encodeSegment(PLACE, ENTRIES);
    const decoded = decodeSegment(encoded.plaintext);
    const expected = { ...PLACE, firstSeq: 7, lastSeq: 9, sha256: encoded.sha256 };
    assert.throws(() => expectSegment(decoded, { ...expected, prevSha256: null }), /does not follow/);
    assert.throws(() => expectSegment(decoded, { ...expected, epoch: 43 }), /another instance or epoch/);
    assert.throws(() => expectSegment(decoded, { ...expected, firstSeq: 8 }), /holds seqs 7/);
    assert.throws(() => expectSegment(decoded, { ...expected, sha256: '00'.repeat(32) }), /sha256/);
  });
});
