import type { Writable } from 'node:stream';

/**
 * Resolves once everything written to `stream` so far is handed to the system, or rejects with the error that stopped
 * it (EPIPE: the reader closed the pipe). Writes to a pipe are asynchronous (stdout and stderr included), and
 * process.exit() drops what they still hold: a command that ends wait for this first.
 */
export function writtenOut(stream: Writable): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => reject(error);
    stream.once('error', fail);
    // Writes are done in order: the callback of an empty one comes once those before it are.
    stream.write(Buffer.alloc(0), (error) => {
      stream.off('error', fail);
      if (error) reject(error);
      else resolve();
    });
  });
}
