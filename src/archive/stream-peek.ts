// Looking at the start of an upload before deciding how to read it, without losing those bytes.
import { Readable } from 'node:stream';

/**
 * The first `length` bytes (fewer if the stream is shorter), and a stream that reads everything from the start: the
 * input itself, those bytes put back in front (unshift), so that the rest flows to its reader as it came. (Replayed
 * through the input's async iterator, every byte of an upload was copied once more: the iterator's read() joins all
 * that the input holds into one new buffer, 4 MiB when its reader is slower than the network, and that copy was a
 * quarter of the event loop's work while a multipart upload was received.) An input that ended before `length` is
 * replaced by a stream of what it held.
 */
export async function peekStream(input: Readable, length: number): Promise<{ head: Buffer; stream: Readable }> {
  const { head, ended } = await readHead(input, length);
  const stream = ended ? Readable.from(head.length > 0 ? [head] : [], { objectMode: false }) : input;
  // Its readers see a failure of the input where they read (iteration, pipeline); one that stopped reading (an
  // inspection that has its answer, an entry skipped) must not see it as an 'error' nobody listens to, which would
  // end the process.
  stream.on('error', () => undefined);
  return { head: head.subarray(0, length), stream };
}

/**
 * Reads chunks until they hold `length` bytes, and puts them back at once, in the same turn as the read that
 * completed them (an input whose last bytes those were would emit 'end' before a later unshift, which then fails);
 * or until the input ends (nothing put back: `ended`).
 */
function readHead(input: Readable, length: number): Promise<{ head: Buffer; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
      input.off('error', onError);
      input.off('close', onClose);
    };
    const onReadable = () => {
      for (let chunk: Buffer | null; size < length && (chunk = input.read() as Buffer | null) !== null; ) {
        chunks.push(chunk);
        size += chunk.length;
      }
      if (size < length) return;
      stop();
      const head = Buffer.concat(chunks, size);
      input.unshift(head);
      resolve({ head, ended: false });
    };
    const onEnd = () => {
      stop();
      resolve({ head: Buffer.concat(chunks, size), ended: true });
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    const onClose = () => {
      stop();
      reject(input.errored ?? new Error('the stream closed before its end'));
    };
    if (input.readableEnded) {
      resolve({ head: Buffer.alloc(0), ended: true });
      return;
    }
    if (input.destroyed) {
      reject(input.errored ?? new Error('the stream was destroyed before it was read'));
      return;
    }
    input.on('readable', onReadable);
    input.on('end', onEnd);
    input.on('error', onError);
    input.on('close', onClose);
  });
}
