// Starts a PubSub subscription immediately (a Repeater only attaches its listener on the first next()).
export interface Listener<T> {
  next(): Promise<T | undefined>;
  /** The next value if it arrives within `timeoutMs`; otherwise undefined, and next() still receives it later. */
  nextWithin(timeoutMs: number): Promise<T | undefined>;
  /** The next value if it arrives before `until` settles; otherwise undefined, and next() still receives it later. */
  nextBefore(until: Promise<unknown>): Promise<T | undefined>;
  close(): Promise<void>;
}

/** Listens until closed, or until `signal` aborts: a next() waiting then says the stream ended (undefined). */
export function startListening<T>(source: AsyncIterable<T> & { return?: () => Promise<unknown> }, signal?: AbortSignal): Listener<T> {
  const iterator = source[Symbol.asyncIterator]();
  // A Repeater's return() ends the next() it has pending, and removes its listener from the event bus.
  if (signal?.aborted) void iterator.return?.();
  else signal?.addEventListener('abort', () => void iterator.return?.(), { once: true });
  let pending: Promise<IteratorResult<T>> | null = iterator.next();
  const next = async () => {
    const result = await (pending ??= iterator.next());
    pending = null;
    return result.done ? undefined : result.value;
  };
  const nextBefore = async (until: Promise<unknown>) => {
    const waiting = (pending ??= iterator.next());
    const first = await Promise.race([waiting, until.then(() => 'passed' as const, () => 'passed' as const)]);
    if (first === 'passed') return undefined;
    pending = null;
    return first.done ? undefined : first.value;
  };
  return {
    next,
    async nextWithin(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await nextBefore(new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))));
      } finally {
        clearTimeout(timer);
      }
    },
    nextBefore,
    async close() {
      await iterator.return?.();
    },
  };
}

/**
 * The stream `body` makes, whose return() (a client gone, a shared subscription closed) takes effect at once. An async
 * generator's own return() waits until it stands at a `yield`: one waiting for its next event would keep its listener,
 * and over Redis its channel, until an event came, on a quiet tenant never. Here return() first aborts the signal
 * `body` listens with, which ends that wait.
 */
export function untilReturned<T>(body: (signal: AbortSignal) => AsyncGenerator<T>): AsyncGenerator<T> {
  const controller = new AbortController();
  const generator = body(controller.signal);
  const stream: AsyncGenerator<T> = {
    next: (...args) => generator.next(...args),
    return: (value) => {
      controller.abort();
      return generator.return(value);
    },
    throw: (error) => {
      controller.abort();
      return generator.throw(error);
    },
    [Symbol.asyncIterator]: () => stream,
  };
  return stream;
}
