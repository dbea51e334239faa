import assert from 'node:assert/strict';
import { formatBytes, formatDuration, ProgressBar } from '../../src/cli/progress-bar';

/** A stream that records what is written, and a clock the test moves. */
function fakeTerminal(isTTY: boolean) {
  const writes: string[] = [];
  let now = 0;
  return {
    writes,
    out: { isTTY, columns: 100, write: (text: string) => (writes.push(text), true) } as unknown as NodeJS.WriteStream,
    now: () => now,
    advance: (ms: number) => (now += ms),
  };
}

describe('ProgressBar', () => {
  it('prints plain lines every 5 % when not on a terminal, then a last one', () => {
    const t = fakeTerminal(false);
    const bar = new ProgressBar('downloading', { total: 1_000_000, out: t.out, now: t.now });
    for (let done = 10_000; done <= 1_000_000; done += 10_000) {
      t.advance(10);
      bar.update(done);
    }
    bar.finish();
    const lines = t.writes.join('').trimEnd().split('\n');
    assert.equal(lines.length, 21, lines.join('\n')); // 1 %, then every 5 % up to 96 %, and 100 %
    assert.match(lines[0], /^downloading: 10\.0 kB \/ 1\.0 MB {2}1% {2}-- MB\/s {2}ETA --:--$/);
    assert.match(lines.at(-1)!, /^downloading: 1\.0 MB \/ 1\.0 MB {2}100% {2}1\.0 MB\/s {2}ETA 0:00$/);
  });

  it('prints a plain line every 2 s when progress is slow', () => {
    const t = fakeTerminal(false);
    const bar = new ProgressBar('uploading', { total: 1_000_000_000, out: t.out, now: t.now });
    for (let second = 1; second <= 10; second++) {
      t.advance(1000);
      bar.update(second * 1_000_000);
    }
    assert.equal(t.writes.length, 5);
    assert.match(t.writes[4], /^uploading: 9\.0 MB \/ 1\.0 GB {2}1% {2}1\.0 MB\/s {2}ETA 16:31\n$/); // at 1, 3, 5, 7, 9 s
  });

  it('redraws one line in place on a terminal, with a bar', () => {
    const t = fakeTerminal(true);
    const bar = new ProgressBar('downloading', { total: 100, out: t.out, now: t.now });
    bar.update(10);
    t.advance(50);
    bar.update(20); // within 100 ms of the last draw: skipped
    t.advance(100);
    bar.update(50);
    bar.finish(100);
    assert.equal(t.writes.length, 4);
    assert.ok(t.writes.slice(0, 3).every((text) => text.startsWith('\r\x1b[K') && !text.includes('\n')));
    assert.match(t.writes[1], /^\r\x1b\[Kdownloading \[#{15}-{15}\] {2}50 B \/ 100 B {2}50%/);
    assert.equal(t.writes[3], '\n');
  });

  it('counts only this run in the rate of a resumed transfer', () => {
    const t = fakeTerminal(false);
    const bar = new ProgressBar('downloading', { total: 10_000_000, start: 9_000_000, out: t.out, now: t.now });
    t.advance(1000);
    bar.update(9_500_000);
    assert.match(bar.describe(t.now()), /9\.5 MB \/ 10\.0 MB {2}95% {2}0\.5 MB\/s {2}ETA 0:01/);
  });
});

describe('formatBytes and formatDuration', () => {
  it('use decimal units and m:ss or h:mm:ss', () => {
    assert.deepEqual([0, 999, 1000, 1_234_567, 5e12].map(formatBytes), ['0 B', '999 B', '1.0 kB', '1.2 MB', '5.0 TB']);
    assert.deepEqual([0, 9.2, 61, 3600, 3661].map(formatDuration), ['0:00', '0:10', '1:01', '1:00:00', '1:01:01']);
  });
});
