// peekStream: the start of a stream, and the whole stream from its start, however it is read afterwards and however
// its bytes arrive; failures reach whoever reads.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { peekStream } from '../../src/archive/stream-peek';

const HEAD = 512;

/** A stream fed `bytes` in `piece`-byte writes, one per turn of the event loop, honouring backpressure. */
function trickle(bytes: Buffer, piece: number): PassThrough {
  const input = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
  void (async () => {
    for (let at = 0; at < bytes.length; at += piece) {
      if (!input.write(bytes.subarray(at, at + piece))) await new Promise((resolve) => input.once('drain', resolve));
      await new Promise((resolve) => setImmediate(resolve));
    }
    input.end();
  })();
  return input;
}

const readers: Record<string, (stream: Readable) => Promise<Buffer>> = {
  'async iteration': async (stream) => {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  },
  pipe: async (stream) => {
    const sink = new PassThrough();
    stream.pipe(sink);
    const chunks: Buffer[] = [];
    for await (const chunk of sink) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  },
  "'data' events": (stream) =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => resolve(Buffer.concat(chunks)));
      stream.on('error', reject);
    }),
};

describe('peekStream', () => {
  for (const size of [0, 10, HEAD - 1, HEAD, HEAD + 1, 100_000, 5 * 1024 * 1024]) {
    for (const [how, read] of Object.entries(readers)) {
      it(`gives the first bytes and then all ${size} bytes, read by ${how}`, async () => {
        const bytes = randomBytes(size);
        const { head, stream } = await peekStream(trickle(bytes, 64 * 1024), HEAD);
        assert.deepEqual(head, bytes.subarray(0, HEAD));
        assert.deepEqual(await read(stream), bytes);
      });
    }
  }

  it('gives everything of a stream that ended with exactly the bytes looked at, written at once', async () => {
    const bytes = randomBytes(HEAD);
    const input = new PassThrough();
    input.end(bytes);
    const { head, stream } = await peekStream(input, HEAD);
    assert.deepEqual(head, bytes);
    assert.deepEqual(await readers['async iteration'](stream), bytes);
  });

  it('gives the first bytes of a stream arriving one byte at a time', async () => {
    const bytes = randomBytes(HEAD * 2);
    const { head, stream } = await peekStream(trickle(bytes, 1), HEAD);
    assert.deepEqual(head, bytes.subarray(0, HEAD));
    assert.deepEqual(await readers.pipe(stream), bytes);
  });

  it('rejects with the failure of a stream that fails before its first bytes are in', async () => {
    const input = new PassThrough();
    input.write(Buffer.alloc(HEAD / 2));
    setImmediate(() => input.destroy(new Error('the connection was reset')));
    await assert.rejects(peekStream(input, HEAD), /the connection was reset/);
  });

  it("gives a later failure of the stream to its reader, and never to nobody (an 'error' without a listener)", async () => {
    const input = new PassThrough();
    input.write(randomBytes(HEAD * 2));
    const { stream } = await peekStream(input, HEAD);
    setImmediate(() => input.destroy(new Error('the connection was reset')));
    await assert.rejects(readers['async iteration'](stream), /the connection was reset/);

    const unread = new PassThrough();
    unread.write(randomBytes(HEAD * 2));
    await peekStream(unread, HEAD);
    unread.destroy(new Error('nobody reads this any more'));
    await new Promise((resolve) => unread.once('close', resolve)); // an unheard 'error' would have ended mocha's process
  });
});
