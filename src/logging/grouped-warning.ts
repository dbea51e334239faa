// A warning about something that can come in floods (connections dropped, messages that cannot be read): the first of a
// flood is logged at once, and those after it within the interval together once it is up, with how many there were.
// None is lost: flush() logs those still waiting (at a stop).

export interface GroupedWarning {
  /** One more occurrence. */
  note(): void;
  /** Logs the occurrences still waiting for their line now. */
  flush(): void;
}

/** `warn(count)` writes the line for `count` occurrences; it runs at most once per `intervalMs`, except at flush(). */
export function groupedWarning(intervalMs: number, warn: (count: number) => void): GroupedWarning {
  let unlogged = 0;
  let loggedAt = -Infinity;
  let pending: NodeJS.Timeout | null = null;
  const log = () => {
    if (pending) clearTimeout(pending);
    pending = null;
    loggedAt = Date.now();
    const count = unlogged;
    unlogged = 0;
    warn(count);
  };
  return {
    note() {
      unlogged += 1;
      const wait = loggedAt + intervalMs - Date.now();
      if (wait <= 0) log();
      else pending ??= setTimeout(log, wait).unref();
    },
    flush() {
      if (unlogged > 0) log();
    },
  };
}
