// Waiting without sleeping blindly: poll a condition until it holds or a deadline passes.

/**
 * Calls `probe` until it returns a value other than undefined/false (returned) or the timeout passes (rejects with
 * the last value or error, so the failure says what was seen).
 */
export async function eventually<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 10_000, intervalMs = 50, what = 'the condition' }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`${what} did not hold within ${timeoutMs} ms (last: ${seen})`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Rejects when `promise` does not settle within timeoutMs. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what = 'the operation'): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${timeoutMs} ms`)), timeoutMs);
    }),
  ]);
}

/**
 * Runs a scenario that must catch an operation in its middle (kill it while it loads, check it while READ_ONLY) until
 * one run did (`caught`), at most `tries` times: an operation that ended first lost the race, not the test. Gives the
 * last run either way, for the test's assertions to say what went wrong. `scenario` is told which round it is.
 */
export async function untilCaught<T>(scenario: (round: number) => Promise<T>, caught: (run: T) => boolean, tries = 3): Promise<T> {
  let run = await scenario(1);
  for (let round = 2; round <= tries && !caught(run); round++) run = await scenario(round);
  return run;
}
