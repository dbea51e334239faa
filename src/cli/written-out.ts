import type { Writable } from 'node:stream';

/**
 * Resolves once everything written to `stream` so far is handed to the system, or rejects with the error that stopped
 * it (EPIPE: the reader closed the pipe). Writes to a pipe are asynchronous (stdout and stderr included), and
 * process.exit() drops what they still hold: a command that ends wait for this first.
 */
export function writtenOut(stream: Writable): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    // Left in place once settled: a failed write calls back first and emits 'error' a tick later, which would
    // otherwise find no listener and end the process with a stack trace (`tenant list | head -1`: EPIPE).
    stream.once('error', reject);
    // Writes are done in order: the callback of an empty one comes once those before it are.
    stream.write(Buffer.alloc(0), (error) => (error ? reject(error) : resolve()));
  });
}
