// The worker thread of ArchiveVerifier: reads the archive bytes it is sent through ArchiveReader.verify(), its frames
// inflated and checked on a FramePool's threads (when it is given some) while this one hashes and orders them.
import { Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { isArchiveError } from './archive-error';
import { openArchive } from './archive-reader';
import { FramePool } from './frame-pool';
import type { VerifierMessage } from './archive-verifier';

const port = parentPort!;
const post = (message: VerifierMessage) => port.postMessage(message);
let untold = 0;

// Bytes are reported taken once they fit under the input's high-water mark (at once, or when the reader asks for
// more): the sender then sends on.
const input = new Readable({
  highWaterMark: 4 * 1024 * 1024,
  read() {
    if (untold > 0) post({ taken: untold });
    untold = 0;
  },
});

port.on('message', (message: { chunk?: Uint8Array; end?: boolean }) => {
  if (message.end) return void input.push(null);
  const chunk = Buffer.from(message.chunk!.buffer, message.chunk!.byteOffset, message.chunk!.byteLength);
  untold += chunk.length;
  if (input.push(chunk)) {
    post({ taken: untold });
    untold = 0;
  }
});

const { frameWorkers } = workerData as { frameWorkers: number };
const frames = frameWorkers > 0 ? new FramePool(frameWorkers) : undefined;
openArchive(input)
  .verify(frames)
  .then(
    (header) => post({ header }),
    (error: Error) => post({ error: { message: error.message, code: isArchiveError(error) ? error.code : undefined } }),
  )
  .finally(() => frames?.close());
