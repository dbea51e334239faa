// Looking at the start of an upload before deciding how to read it, without losing those bytes.
import { Readable } from 'node:stream';

/** The first `length` bytes (fewer if the stream is shorter), and a stream that reads everything from the start. */
export async function peekStream(input: Readable, length: number): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  while (size < length) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.length;
  }
  const head = Buffer.concat(chunks, size);
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  const stream = Readable.from(replay(), { objectMode: false });
  // Its readers see a failure of the input where they read (iteration, pipeline); one that stopped reading (an
  // inspection that has its answer, an entry skipped) must not see it as an 'error' nobody listens to, which would
  // end the process.
  stream.on('error', () => undefined);
  return { head: head.subarray(0, length), stream };
}
