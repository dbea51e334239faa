// The counters a stop-probe-worker task shares with its test (an Int32Array on a SharedArrayBuffer): tasks started,
// tasks finished, and the release the running task spins on (set to 1 by the test).
export const PROBE = { started: 0, finished: 1, release: 2 } as const;

export function probeCounters(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
}
