// A verifier thread (VerifierThreads): reads each upload it is sent through ArchiveReader.verify(), all of them at once,
// their frames inflated and checked on a FramePool's threads (when it is given some) while this one hashes and orders
// them.
import { Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { isArchiveError } from './archive-error';
import { openArchive } from './archive-reader';
import { FramePool } from './frame-pool';
import type { FromVerifier, ToVerifier } from './verifier-threads';

/** An upload's bytes this thread holds unread: above it, the upload waits for `taken`. */
const INPUT_BYTES = 4 * 1024 * 1024;

const port = parentPort!;
const post = (message: FromVerifier) => port.postMessage(message);
const { frameWorkers } = workerData as { frameWorkers: number };
/** Shared by the uploads of this thread: frames are independent of each other and of their archive. */
const frames = frameWorkers > 0 ? new FramePool(frameWorkers) : undefined;

interface Upload {
  input: Readable;
  /** Bytes pushed and not yet reported taken. */
  untold: number;
  /** Its verdict was sent: bytes still coming are dropped until the upload is closed. */
  done: boolean;
}

const uploads = new Map<number, Upload>();

port.on('message', (message: ToVerifier) => {
  if ('close' in message) {
    uploads.get(message.id)?.input.destroy();
    uploads.delete(message.id);
    return;
  }
  const upload = uploads.get(message.id) ?? start(message.id);
  if (upload.done) return;
  if ('end' in message) return void upload.input.push(null);
  const chunk = Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength);
  upload.untold += chunk.length;
  // Bytes are reported taken once they fit under the input's high-water mark (at once, or when the reader asks for
  // more): the sender then sends on.
  if (upload.input.push(chunk)) tell(message.id, upload);
});

function start(id: number): Upload {
  const upload: Upload = {
    input: new Readable({ highWaterMark: INPUT_BYTES, read: () => tell(id, upload) }),
    untold: 0,
    done: false,
  };
  uploads.set(id, upload);
  openArchive(upload.input)
    .verify(frames)
    .then(
      (header) => post({ id, header }),
      (error: Error) => post({ id, error: { message: error.message, code: isArchiveError(error) ? error.code : undefined } }),
    )
    .finally(() => {
      upload.done = true;
    });
  return upload;
}

function tell(id: number, upload: Upload): void {
  if (upload.untold === 0 || upload.done) return;
  post({ id, taken: upload.untold });
  upload.untold = 0;
}
