// Starts a PubSub subscription immediately (a Repeater only attaches its listener on the first next()).
export interface Listener<T> {
  next(): Promise<T | undefined>;
  /** The next value if it arrives within `timeoutMs`; otherwise undefined, and next() still receives it later. */
  nextWithin(timeoutMs: number): Promise<T | undefined>;
  close(): Promise<void>;
}

export function startListening<T>(source: AsyncIterable<T> & { return?: () => Promise<unknown> }): Listener<T> {
  const iterator = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | null = iterator.next();
  const next = async () => {
    const result = await (pending ??= iterator.next());
    pending = null;
    return result.done ? undefined : result.value;
  };
  return {
    next,
    async nextWithin(timeoutMs) {
      const waiting = (pending ??= iterator.next());
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const first = await Promise.race([waiting, timedOut]);
      clearTimeout(timer);
      if (first === 'timeout') return undefined;
      pending = null;
      return first.done ? undefined : first.value;
    },
    async close() {
      await iterator.return?.();
    },
  };
}
