// A worker thread of FramePool: inflates data frames, and checks their records (summarizeFrame) or sends them back.
import { parentPort } from 'node:worker_threads';
import { ownedBytes } from '../runtime/owned-bytes';
import { serveParent } from '../runtime/stoppable-worker';
import { DATA_FRAME, inflateDataFrame } from './archive-frame';
import type { FrameMessage, FrameReply } from './frame-pool';
import { summarizeFrame } from './record-validation';

const port = parentPort!;

serveParent(({ seq, task, stored, rawLength }: FrameMessage) => {
  try {
    let raw: Buffer;
    try {
      raw = inflateDataFrame({ type: DATA_FRAME, rawLength, stored: Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength) });
    } catch {
      return port.postMessage((task === 'check' ? { seq, verdict: 'damaged' } : { seq, raw: 'damaged' }) satisfies FrameReply);
    }
    if (task === 'check') return port.postMessage({ seq, verdict: summarizeFrame(raw) } satisfies FrameReply);
    const bytes = ownedBytes(raw);
    port.postMessage({ seq, raw: bytes } satisfies FrameReply, [bytes.buffer as ArrayBuffer]);
  } catch (error) {
    port.postMessage({ seq, error: (error as Error).message } satisfies FrameReply);
  }
});
