// Starts a PubSub subscription immediately (a Repeater only attaches its listener on the first next()).
export interface Listener<T> {
  next(): Promise<T | undefined>;
  close(): Promise<void>;
}

export function startListening<T>(source: AsyncIterable<T> & { return?: () => Promise<unknown> }): Listener<T> {
  const iterator = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | null = iterator.next();
  return {
    async next() {
      const result = await (pending ?? iterator.next());
      pending = null;
      return result.done ? undefined : result.value;
    },
    async close() {
      await iterator.return?.();
    },
  };
}
