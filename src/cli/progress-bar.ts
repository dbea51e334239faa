// Transfer progress: on a terminal, one line redrawn in place with bytes, percentage, rate and ETA; elsewhere (logs,
// CI, pipes) plain lines every 5 % or every 2 s, whichever comes first.

export interface ProgressBarOptions {
  /** Known size, or null when the total is unknown (no percentage or ETA then). */
  total: number | null;
  /** Bytes already there when this run started (a resumed transfer): the rate counts only this run's bytes. */
  start?: number;
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  interactive?: boolean;
  now?: () => number;
}

const REDRAW_MS = 100;
const RATE_WINDOW_MS = 5_000;
const PLAIN_STEP_PERCENT = 5;
const PLAIN_INTERVAL_MS = 2_000;

export class ProgressBar {
  private readonly out: NonNullable<ProgressBarOptions['out']>;
  private readonly interactive: boolean;
  private readonly now: () => number;
  private readonly started: number;
  private readonly samples: { at: number; done: number }[] = [];
  private done: number;
  private lastDrawAt = -Infinity;
  private lastPlainPercent = -Infinity;
  private drawn = false;
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly options: ProgressBarOptions,
  ) {
    this.out = options.out ?? process.stderr;
    this.interactive = options.interactive ?? Boolean(this.out.isTTY);
    this.now = options.now ?? Date.now;
    this.done = options.start ?? 0;
    this.started = this.now();
    this.samples.push({ at: this.started, done: this.done });
  }

  update(done: number): void {
    if (this.finished) return;
    this.done = done;
    const now = this.now();
    this.samples.push({ at: now, done });
    while (this.samples.length > 2 && now - this.samples[1].at > RATE_WINDOW_MS) this.samples.shift();
    if (this.interactive) {
      if (now - this.lastDrawAt >= REDRAW_MS) this.redraw(now);
    } else {
      const percent = this.percent();
      const stepped = percent !== null && percent - this.lastPlainPercent >= PLAIN_STEP_PERCENT;
      if (stepped || now - this.lastDrawAt >= PLAIN_INTERVAL_MS) this.printLine(now);
    }
  }

  /** The last state, then a newline; later updates are ignored. */
  finish(done = this.done): void {
    if (this.finished) return;
    this.done = done;
    const now = this.now();
    this.samples.push({ at: now, done });
    if (this.interactive) {
      this.redraw(now);
      this.out.write('\n');
    } else if (this.lastPlainPercent !== this.percent() || !this.drawn) {
      this.printLine(now);
    }
    this.finished = true;
  }

  /** A message on its own line, without breaking the bar (which is redrawn on the next update). */
  log(message: string): void {
    if (this.interactive && this.drawn && !this.finished) this.out.write('\r\x1b[K');
    this.out.write(`${message}\n`);
    this.lastDrawAt = -Infinity;
  }

  describe(now = this.now()): string {
    const { total } = this.options;
    const percent = this.percent();
    const rate = this.rate(now);
    const parts = [total === null ? formatBytes(this.done) : `${formatBytes(this.done)} / ${formatBytes(total)}`];
    if (percent !== null) parts.push(`${percent.toFixed(0)}%`);
    parts.push(rate === null ? '-- MB/s' : `${(rate / 1e6).toFixed(1)} MB/s`);
    if (total !== null) {
      const remaining = Math.max(0, total - this.done);
      parts.push(`ETA ${remaining === 0 ? '0:00' : rate ? formatDuration(remaining / rate) : '--:--'}`);
    }
    return parts.join('  ');
  }

  private redraw(now: number): void {
    const text = this.describe(now);
    const percent = this.percent();
    const columns = this.out.columns || 80; // 0 when the terminal size is unknown
    // A fixed width (room for the longest text) so the bar does not jump as the numbers change.
    const barWidth = Math.min(30, columns - this.label.length - 58);
    let bar = '';
    if (percent !== null && barWidth >= 10) {
      const filled = Math.round((percent / 100) * barWidth);
      bar = ` [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]`;
    }
    this.out.write(`\r\x1b[K${this.label}${bar}  ${text}`.slice(0, columns + 4));
    this.lastDrawAt = now;
    this.drawn = true;
  }

  private printLine(now: number): void {
    this.out.write(`${this.label}: ${this.describe(now)}\n`);
    this.lastDrawAt = now;
    this.lastPlainPercent = this.percent() ?? this.lastPlainPercent;
    this.drawn = true;
  }

  private percent(): number | null {
    const { total } = this.options;
    if (total === null) return null;
    return total === 0 ? 100 : Math.min(100, (this.done / total) * 100);
  }

  /** Bytes per second over the last few seconds (this run's bytes only). */
  private rate(now: number): number | null {
    const oldest = this.samples[0];
    const seconds = (now - oldest.at) / 1000;
    if (seconds < 0.2) return null;
    return Math.max(0, this.done - oldest.done) / seconds;
  }
}

/** Decimal units, as the rate (MB/s) uses. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** m:ss, or h:mm:ss from an hour up. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const total = Math.ceil(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mmss = `${String(m).padStart(h > 0 ? 2 : 1, '0')}:${String(s).padStart(2, '0')}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}
