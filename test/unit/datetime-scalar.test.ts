// The DateTime scalar's input: RFC 3339 date-times with a time zone, a moment that exists, nothing else.
import assert from 'node:assert/strict';
import { GraphQLError } from 'graphql';
import { DateTimeScalar } from '../../src/api/scalars';

const parse = (text: unknown) => DateTimeScalar.parseValue(text) as Date;

describe('DateTime input', () => {
  it('takes RFC 3339 date-times, with "T" and "Z" in either case, and offsets', () => {
    const moment = Date.UTC(2026, 10, 25, 10, 0, 0, 250);
    for (const text of ['2026-11-25T10:00:00.250Z', '2026-11-25t10:00:00.250z', '2026-11-25t10:00:00.250Z', '2026-11-25T11:30:00.250+01:30', '2026-11-25t05:00:00.25-05:00']) {
      assert.equal(parse(text).getTime(), moment, text);
    }
    assert.equal(parse('2026-11-25T10:00Z').getTime(), Date.UTC(2026, 10, 25, 10, 0));
  });

  it('refuses a date-time without a time zone, a moment that does not exist, and what is not a date-time', () => {
    for (const text of ['2026-11-25T10:00:00', '2026-11-25 10:00:00Z', '2026-02-30T10:00:00Z', '2026-11-25T24:00:00Z', '2026-11-25T10:00:00+24:00', '2026-11-25', 'yesterday', 1795600800000]) {
      assert.throws(() => parse(text), (error: unknown) => error instanceof GraphQLError && error.extensions.code === 'BAD_USER_INPUT', String(text));
    }
  });
});
