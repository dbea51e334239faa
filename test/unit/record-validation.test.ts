import { strict as assert } from 'node:assert';
import { ArchiveError } from '../../src/archive';
import type { ArchiveHeader } from '../../src/archive/archive-header';
import { isCanonicalId, recordProblem, RecordValidator } from '../../src/archive/record-validation';
import { MAX_NAME_LENGTH, MAX_PROPERTY_DEPTH } from '../../src/graph/graph-rules';

function header(stats: Partial<ArchiveHeader['stats']> = {}): ArchiveHeader {
  return {
    formatVersion: 1,
    engineVersion: 'V5',
    sourceInstanceId: 'i',
    sourceInstanceName: 'n',
    capturedAt: '2024-05-01T12:00:00.000Z',
    stats: { nodeCount: 0, relationshipCount: 0, labels: [], relationshipTypes: [], storeSizeBytes: 0, ...stats },
  };
}

const frame = (...lines: string[]) => Buffer.from(lines.map((line) => `${line}\n`).join(''), 'utf8');

function refusal(fn: () => unknown): ArchiveError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ArchiveError, String(error));
    return error;
  }
  assert.fail('expected an ArchiveError');
}

describe('record validation', () => {
  describe('isCanonicalId', () => {
    it('accepts 1 to 2^53 - 1 written as plain decimals', () => {
      for (const id of ['1', '7', '10', '42', '9007199254740991', '1000000000000000']) assert.equal(isCanonicalId(id), true, id);
    });

    it('refuses every other spelling, sign, zero, size and type', () => {
      const refused: unknown[] = ['01', '1e3', ' 7', '7 ', '1.0', '0', '-5', '+5', '', '9007199254740992', '9007199254740993',
        '99999999999999999', '0x10', '１', '1_000', 7, null, undefined, ['1'], {}];
      for (const id of refused) assert.equal(isCanonicalId(id), false, JSON.stringify(id));
    });
  });

  describe('recordProblem', () => {
    it('accepts the documented shapes, with every kind of property value', () => {
      assert.equal(recordProblem('node', ['N', '1', [], {}]), undefined);
      assert.equal(recordProblem('node', ['N', '1', ['A', 'B', 'a\u0000b', '🎉'], { s: '\ud800', n: 5e-324, l: [null, true, { x: [] }] }]), undefined);
      assert.equal(recordProblem('relationship', ['R', '1', 'T', '2', '2', { big: 1.7976931348623157e308 }]), undefined);
    });

    const cases: [string, 'node' | 'relationship', unknown, RegExp][] = [
      ['not an array', 'node', { id: '1' }, /not a JSON array/],
      ['a short node', 'node', ['N', '1', []], /3 elements; a node tuple has 4/],
      ['a long relationship', 'relationship', ['R', '1', 'T', '1', '1', {}, 1], /7 elements; a relationship tuple has 6/],
      ['a wrong tag', 'node', ['R', '1', [], {}], /first element is not "N"/],
      ['a non-canonical id', 'node', ['N', '01', [], {}], /id "01" is not a canonical decimal integer from 1 to 9007199254740991/],
      ['a numeric id', 'node', ['N', 1, [], {}], /id 1 is not a string/],
      ['a null label', 'node', ['N', '1', [null], {}], /label null is not a string/],
      ['a duplicated label', 'node', ['N', '1', ['A', 'B', 'B'], {}], /label "B" appears twice/],
      ['an empty label', 'node', ['N', '1', [''], {}], /label is empty/],
      ['a lone surrogate in a label', 'node', ['N', '1', ['x\udc00'], {}], /lone UTF-16 surrogate/],
      ['a label too long', 'node', ['N', '1', ['x'.repeat(MAX_NAME_LENGTH + 1)], {}], /label is longer than 200 characters/],
      ['labels as an object', 'node', ['N', '1', {}, {}], /labels \{\} is not a list/],
      ['a numeric type', 'relationship', ['R', '1', 5, '1', '1', {}], /type 5 is not a string/],
      ['an empty type', 'relationship', ['R', '1', '', '1', '1', {}], /type is empty/],
      ['a bad start', 'relationship', ['R', '1', 'T', '1.0', '1', {}], /startNodeId "1.0"/],
      ['a bad end', 'relationship', ['R', '1', 'T', '1', '-5', {}], /endNodeId "-5"/],
      ['list properties', 'node', ['N', '1', [], []], /properties \[\] is not a JSON object/],
      ['null properties', 'relationship', ['R', '1', 'T', '1', '1', null], /properties null is not a JSON object/],
      ['an infinite value', 'node', ['N', '1', [], { a: { b: [Infinity] } }], /properties.a.b\[0\] is a number too large/],
      ['-0', 'node', ['N', '1', [], { z: -0 }], /properties.z is -0/],
    ];
    for (const [what, kind, tuple, message] of cases) {
      it(`names ${what}`, () => assert.match(recordProblem(kind, tuple) ?? 'accepted', message));
    }

    it('names a label repeated among many', () => {
      const labels = Array.from({ length: 1_000 }, (_, i) => `L${i}`);
      assert.equal(recordProblem('node', ['N', '1', labels, {}]), undefined);
      assert.match(recordProblem('node', ['N', '1', [...labels, 'L0'], {}]) ?? 'accepted', /label "L0" appears twice/);
      assert.match(recordProblem('node', ['N', '1', ['L0', 'L0', ...labels], {}]) ?? 'accepted', /label "L0" appears twice/);
    });

    it(`refuses properties nested deeper than ${MAX_PROPERTY_DEPTH} levels, and accepts them at that depth`, () => {
      // `levels` lists and objects, the properties object included.
      const nest = (levels: number) => {
        let value: unknown = 1;
        for (let i = 1; i < levels; i++) value = [value];
        return { v: value };
      };
      assert.equal(recordProblem('node', ['N', '1', [], nest(MAX_PROPERTY_DEPTH)]), undefined);
      assert.match(recordProblem('node', ['N', '1', [], nest(MAX_PROPERTY_DEPTH + 1)]) ?? '', /nest deeper than 100 levels/);
    });
  });

  describe('RecordValidator', () => {
    it('returns each line with its parsed tuple, numbering records per kind across frames', () => {
      const validator = new RecordValidator(header({ nodeCount: 2, relationshipCount: 2, labels: [{ name: 'A', count: 2 }], relationshipTypes: [{ name: 'T', count: 2 }] }));
      const first = validator.frame(frame('["N","1",["A"],{}]', '["N","2",["A"],{}]', '["R","1","T","1","2",{}]'));
      assert.deepEqual(first.map((r) => [r.kind, r.line]), [
        ['node', '["N","1",["A"],{}]'],
        ['node', '["N","2",["A"],{}]'],
        ['relationship', '["R","1","T","1","2",{}]'],
      ]);
      assert.deepEqual(first[2].tuple, ['R', '1', 'T', '1', '2', {}]);
      const error = refusal(() => validator.frame(frame('["R","01","T","1","2",{}]')));
      assert.equal(error.code, 'INVALID_RECORD');
      assert.match(error.message, /relationship record 2: id "01"/);
    });

    it('refuses a node after a relationship, a line of another kind, broken JSON, invalid UTF-8 and a cut line', () => {
      const stats = { nodeCount: 3, relationshipCount: 1, relationshipTypes: [{ name: 'T', count: 1 }] };
      assert.match(refusal(() => new RecordValidator(header(stats)).frame(frame('["N","1",[],{}]', '["R","1","T","1","1",{}]', '["N","2",[],{}]'))).message, /node record 2 follows the relationships/);
      assert.match(refusal(() => new RecordValidator(header(stats)).frame(frame('["N","1",[],{}]', '{"id":"2"}'))).message, /record 2 is not a node or relationship tuple/);
      assert.match(refusal(() => new RecordValidator(header(stats)).frame(frame('["N","1",[],{}'))).message, /node record 1 is not valid JSON/);
      assert.match(refusal(() => new RecordValidator(header(stats)).frame(Buffer.from([...frame('["N","1",[],{"a":"'), 0xff]))).message, /UTF-8|complete record/);
      assert.match(refusal(() => new RecordValidator(header(stats)).frame(Buffer.concat([Buffer.from('["N","1",[],{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]\n')]))).message, /not valid UTF-8/);
      assert.match(refusal(() => new RecordValidator(header(stats)).frame(Buffer.from('["N","1",[],{}]'))).message, /does not end with a complete record/);
    });

    it('names a field nested too deeply to print as JSON (JSON.parse builds what JSON.stringify overflows on)', () => {
      const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
      const refused = (line: string) => refusal(() => new RecordValidator(header({ nodeCount: 1 })).frame(frame(line)));
      for (const [line, message] of [
        [`["N",${deep},[],{}]`, /node record 1: id \[\.\.\.\] is not a string/],
        [`["N","1",[${deep}],{}]`, /node record 1: label \[\.\.\.\] is not a string/],
        [`["N","1",[],${deep}]`, /node record 1: properties \[\.\.\.\] is not a JSON object/],
      ] as const) {
        const error = refused(line);
        assert.equal(error.code, 'INVALID_RECORD');
        assert.match(error.message, message);
      }
    });

    /** countedSlices(), its slices joined. */
    const counted = (validator: RecordValidator, raw: Buffer) => [...validator.countedSlices(raw, 1024 * 1024, 8192)].flat();

    it('counts, without parsing, the lines of records checked before: tags, order, UTF-8, whole lines and counts still hold', () => {
      const stats = { nodeCount: 2, relationshipCount: 1, labels: [{ name: 'A', count: 2 }], relationshipTypes: [{ name: 'T', count: 1 }] };
      const validator = new RecordValidator(header(stats));
      // A field frame() would refuse passes: the line is not parsed (its checks were passed at upload).
      const lines = ['["N","1",["A"],{}]', '["N","01",["A"],{}]', '["R","1","T","1","2",{}]'];
      assert.deepEqual(counted(validator, frame(...lines)), lines.map((line, i) => ({ kind: i < 2 ? 'node' : 'relationship', line })));
      // Label and type tallies are not kept, so complete() holds the counts alone.
      validator.complete({ nodeCount: 2, relationshipCount: 1 });
      assert.equal(refusal(() => new RecordValidator(header(stats)).complete({ nodeCount: 0, relationshipCount: 0 })).code, 'COUNT_MISMATCH');

      assert.match(refusal(() => counted(new RecordValidator(header(stats)), frame('["N","1",[],{}]', '["R","1","T","1","1",{}]', '["N","2",[],{}]'))).message, /node record 2 follows the relationships/);
      assert.match(refusal(() => counted(new RecordValidator(header(stats)), frame('{"id":"2"}'))).message, /record 1 is not a node or relationship tuple/);
      assert.match(refusal(() => counted(new RecordValidator(header(stats)), Buffer.from('["N","1",[],{}]'))).message, /does not end with a complete record/);
      assert.match(refusal(() => counted(new RecordValidator(header(stats)), Buffer.concat([Buffer.from('["N","1",[],{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]\n')]))).message, /not valid UTF-8/);
      assert.equal(refusal(() => counted(new RecordValidator(header(stats)), frame('["N","1",[],{}]', '["N","2",[],{}]', '["N","3",[],{}]'))).code, 'COUNT_MISMATCH');
      const ended = new RecordValidator(header(stats));
      counted(ended, frame(...lines));
      assert.equal(refusal(() => ended.complete({ nodeCount: 3, relationshipCount: 1 })).code, 'CORRUPT');
    });

    it('counts a frame in slices of whole lines, the fewer of so many bytes or so many lines, the same lines in the same order', () => {
      const lines = Array.from({ length: 10 }, (_, i) => `["N","${i + 1}",["A"],{"pad":"${'x'.repeat(i)}"}]`);
      const stats = { nodeCount: 10, labels: [{ name: 'A', count: 10 }] };
      const byLines = [...new RecordValidator(header(stats)).countedSlices(frame(...lines), 1024 * 1024, 3)];
      assert.deepEqual(byLines.map((slice) => slice.length), [3, 3, 3, 1]);
      assert.deepEqual(byLines.flat().map((record) => record.line), lines);
      const byBytes = [...new RecordValidator(header(stats)).countedSlices(frame(...lines), 60, 8192)];
      assert.ok(byBytes.length > 1 && byBytes.every((slice) => slice.length < 10), `slices of ${byBytes.map((slice) => slice.length)} lines`);
      assert.deepEqual(byBytes.flat().map((record) => record.line), lines);
    });

    it('holds the records to the header: counts as soon as they are exceeded, labels and types exactly, at the end', () => {
      const over = new RecordValidator(header({ nodeCount: 1, labels: [] }));
      const tooMany = refusal(() => over.frame(frame('["N","1",[],{}]', '["N","2",[],{}]')));
      assert.equal(tooMany.code, 'COUNT_MISMATCH');
      assert.match(tooMany.message, /announces 1 nodes and 0 relationships, but it holds 2 nodes and 0 relationships or more/);

      assert.match(refusal(() => new RecordValidator(header({ nodeCount: 1 })).frame(frame('["N","1",["X"],{}]'))).message, /node record 1 has the label "X", which its header does not list/);

      const short = new RecordValidator(header({ nodeCount: 1, labels: [{ name: 'X', count: 2 }, { name: 'Unused', count: 0 }] }));
      short.frame(frame('["N","1",["X"],{}]'));
      assert.match(refusal(() => short.complete({ nodeCount: 1, relationshipCount: 0 })).message, /announces 2 of the label "X", but it holds 1/);

      const ended = new RecordValidator(header({ nodeCount: 1 }));
      ended.frame(frame('["N","1",[],{}]'));
      assert.equal(refusal(() => ended.complete({ nodeCount: 2, relationshipCount: 0 })).code, 'CORRUPT');
      ended.complete({ nodeCount: 1, relationshipCount: 0 });

      assert.match(refusal(() => new RecordValidator(header({ labels: [{ name: 'A', count: 1 }, { name: 'A', count: 1 }] }))).message, /lists the label "A" twice/);
    });
  });
});
