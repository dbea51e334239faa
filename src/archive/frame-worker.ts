// A worker thread of FramePool: inflates data frames and checks their records (summarizeFrame).
import { parentPort } from 'node:worker_threads';
import { DATA_FRAME, inflateDataFrame } from './archive-frame';
import type { FrameMessage, FrameReply, FrameVerdict } from './frame-pool';
import { summarizeFrame } from './record-validation';

const port = parentPort!;

port.on('message', ({ seq, stored, rawLength }: FrameMessage) => {
  try {
    let verdict: FrameVerdict;
    try {
      verdict = summarizeFrame(inflateDataFrame({ type: DATA_FRAME, rawLength, stored: Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength) }));
    } catch {
      verdict = 'damaged';
    }
    port.postMessage({ seq, verdict } satisfies FrameReply);
  } catch (error) {
    port.postMessage({ seq, error: (error as Error).message } satisfies FrameReply);
  }
});
