import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../src/config/duration.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('parseDuration', () => {
  const cases: [string, number][] = [
    ['P1D', DAY],
    ['PT1H', HOUR],
    ['P7D', 7 * DAY],
    ['P60D', 60 * DAY],
    ['PT2S', 2 * SECOND],
    ['PT0.5S', 500],
    ['PT0,5S', 500],
    ['PT0.07S', 70],
    ['PT0.001S', 1],
    ['P1W', 7 * DAY],
    ['P2W1D', 15 * DAY],
    ['P1DT12H', DAY + 12 * HOUR],
    ['PT15M', 15 * MINUTE],
    ['PT1H30M', HOUR + 30 * MINUTE],
    ['PT1.5H', HOUR + 30 * MINUTE],
    ['P0D', 0],
    ['PT0S', 0],
    ['PT36H', 36 * HOUR],
  ];
  for (const [text, ms] of cases) {
    it(`reads ${text} as ${ms} ms`, () => assert.equal(parseDuration(text), ms));
  }

  it('rejects years and months, saying which units are supported', () => {
    for (const text of ['P1Y', 'P1M', 'P1Y2M3D', 'P1MT1H']) {
      assert.throws(() => parseDuration(text), /only weeks, days, hours, minutes and seconds are supported/, text);
    }
    assert.throws(() => parseDuration('P1Y'), /"P1Y" uses years/);
    assert.throws(() => parseDuration('P1M'), /"P1M" uses months/);
  });

  it('reads M after T as minutes, not months', () => {
    assert.equal(parseDuration('PT1M'), MINUTE);
  });

  it('rejects text that is not an ISO-8601 duration, quoting it', () => {
    for (const text of ['', 'P', 'PT', 'P1DT', '1D', 'P1X', 'p1d', ' P1D', 'P1D ', '-P1D', 'P-1D', 'PT1H1D', 'P1H', 'P1.D', 'P.5D', 'PT1S2M', 'P1D1D']) {
      assert.throws(() => parseDuration(text), new RegExp(`${JSON.stringify(text).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not an ISO-8601 duration`), JSON.stringify(text));
    }
  });

  it('allows a fraction on the smallest component only', () => {
    assert.throws(() => parseDuration('PT1.5H30M'), /only its smallest component may have a fraction/);
  });

  it('rejects durations finer than a millisecond', () => {
    assert.throws(() => parseDuration('PT0.0005S'), /finer than a millisecond/);
  });

  it('rejects durations beyond the safe integer range', () => {
    assert.throws(() => parseDuration('P999999999999D'), /too long/);
  });

  it('rejects values that are not strings', () => {
    assert.throws(() => parseDuration(42 as unknown as string), /42 is not an ISO-8601 duration/);
    assert.throws(() => parseDuration(null as unknown as string), /null is not an ISO-8601 duration/);
  });
});

describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, 'PT0S'],
    [500, 'PT0.5S'],
    [1, 'PT0.001S'],
    [1500, 'PT1.5S'],
    [2 * SECOND, 'PT2S'],
    [15 * MINUTE, 'PT15M'],
    [HOUR, 'PT1H'],
    [DAY, 'P1D'],
    [7 * DAY, 'P7D'],
    [60 * DAY, 'P60D'],
    [DAY + 12 * HOUR, 'P1DT12H'],
    [DAY + HOUR + MINUTE + SECOND + 10, 'P1DT1H1M1.01S'],
  ];
  for (const [ms, text] of cases) {
    it(`writes ${ms} ms as ${text}`, () => assert.equal(formatDuration(ms), text));
  }

  it('writes weeks as days', () => {
    assert.equal(formatDuration(parseDuration('P1W')), 'P7D');
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 1, 999, 1001, 59_999, HOUR - 1, DAY + 1, 400 * DAY + 3 * HOUR + 7]) {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }
  });

  it('rejects negative, fractional and non-finite values', () => {
    for (const ms of [-1, 0.5, NaN, Infinity]) {
      assert.throws(() => formatDuration(ms), /non-negative whole number of milliseconds/, String(ms));
    }
  });
});
