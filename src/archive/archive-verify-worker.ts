// A verifier thread (VerifierThreads): reads each upload it is sent through ArchiveReader.verify(), all of them at once,
// their frames inflated and checked on a FramePool's threads (when it is given some) while this one hashes and orders
// them. Uploads take turns: each gets its next message of bytes in a turn of the event loop of its own, so that one
// whose bytes are all here does not read them all before the others read any (a reader goes on through bytes already
// in its stream without letting the event loop turn), and verify() lets the loop turn between frames and slices of
// large ones (takeTurns).
import { Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { isArchiveError } from './archive-error';
import { openArchive } from './archive-reader';
import { FramePool } from './frame-pool';
import { serveParent } from '../runtime/stoppable-worker';
import type { FromVerifier, ToVerifier } from './verifier-threads';

/** An upload's bytes in its stream, unread: more wait in its queue (and count as not yet taken). */
const INPUT_BYTES = 1024 * 1024;

const port = parentPort!;
const post = (message: FromVerifier) => port.postMessage(message);
const { frameWorkers } = workerData as { frameWorkers: number };
/** Shared by the uploads of this thread: frames are independent of each other and of their archive. */
const frames = frameWorkers > 0 ? new FramePool(frameWorkers) : undefined;

interface Upload {
  input: Readable;
  /** Messages of bytes (or the end: null) not yet in the stream. */
  queue: (Buffer | null)[];
  /** The stream asked for more and a turn to give it is planned. */
  turn: NodeJS.Immediate | null;
  /** Its verdict was sent: bytes still coming are dropped until the upload is closed. */
  done: boolean;
}

const uploads = new Map<number, Upload>();

serveParent((message: ToVerifier) => {
  if ('close' in message) {
    const upload = uploads.get(message.id);
    uploads.delete(message.id);
    if (upload?.turn) clearImmediate(upload.turn);
    upload?.input.destroy();
    return;
  }
  const upload = uploads.get(message.id) ?? start(message.id);
  if (upload.done) return;
  upload.queue.push('end' in message ? null : Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength));
  if (upload.queue.length === 1 && !upload.turn && upload.input.readableLength < INPUT_BYTES) planTurn(message.id, upload);
}, () => frames?.close() ?? Promise.resolve());

function start(id: number): Upload {
  const upload: Upload = { input: new Readable({ highWaterMark: INPUT_BYTES, read: () => planTurn(id, upload) }), queue: [], turn: null, done: false };
  uploads.set(id, upload);
  const reader = openArchive(upload.input);
  // Posted before the verdict: the header is read before anything after it.
  reader.header.then((header) => post({ id, headerRead: header }), () => undefined);
  reader
    .verify(frames, { takeTurns: true })
    .then(
      (header) => post({ id, header }),
      (error: Error) => post({ id, error: { message: error.message, code: isArchiveError(error) ? error.code : undefined } }),
    )
    .finally(() => {
      upload.done = true;
    });
  return upload;
}

/** In a turn of its own: the upload's next message into its stream, reported taken. */
function planTurn(id: number, upload: Upload): void {
  if (upload.turn || upload.queue.length === 0 || upload.done) return;
  upload.turn = setImmediate(() => {
    upload.turn = null;
    if (upload.done || !uploads.has(id)) return;
    const chunk = upload.queue.shift();
    if (chunk === undefined) return;
    if (chunk === null) return void upload.input.push(null);
    post({ id, taken: chunk.length });
    if (upload.input.push(chunk)) planTurn(id, upload);
  });
}
