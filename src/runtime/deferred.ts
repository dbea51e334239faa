// A promise settled from outside (Promise.withResolvers, which Node 20 lacks). Its rejection is observed at once: one
// that nobody awaits (a file nobody asked for, a header nobody looked at) is not an unhandled rejection.

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((yes, no) => ((resolve = yes), (reject = no)));
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
