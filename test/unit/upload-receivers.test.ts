import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAX_RECEIVERS, type ReceiverOptions, UploadReceivers } from '../../src/api/http/upload-receivers';

type Start = (input: Readable) => Promise<string>;

/** A check that reads its input to the end: what it read, and how it ended. */
function recordingCheck(): { start: Start; read: Buffer[]; ended: Promise<'end' | Error> } {
  const read: Buffer[] = [];
  let settle: (how: 'end' | Error) => void = () => undefined;
  const ended = new Promise<'end' | Error>((resolve) => (settle = resolve));
  const start: Start = async (input) => {
    try {
      for await (const chunk of input) read.push(chunk as Buffer);
      settle('end');
      return `checked ${Buffer.concat(read).length} bytes`;
    } catch (error) {
      settle(error as Error);
      throw error;
    }
  };
  return { start, read, ended };
}

/** Receivers whose discarded results are listed. */
function receiversFor(options: Partial<ReceiverOptions<string>> = {}) {
  const discarded: string[] = [];
  const receivers = new UploadReceivers<string>({
    discard: async (received) => void discarded.push(received),
    finishTimeoutMs: 5_000,
    ...options,
  });
  return { receivers, discarded };
}

/** A write as the partial file takes it: the body read to the end; settled with its new end offset. */
async function write(receivers: UploadReceivers<string>, id: string, offset: number, bytes: Buffer): Promise<number> {
  const receiving = receivers.receive(id, offset, Readable.from([bytes.subarray(0, bytes.length >> 1), bytes.subarray(bytes.length >> 1)]));
  let length = 0;
  for await (const chunk of receiving.body) length += (chunk as Buffer).length;
  receiving.settle(offset + length);
  return offset + length;
}

describe('upload receivers (a tus upload checked as its bytes arrive)', () => {
  const file = randomBytes(200_000);

  it('hands every byte of the writes, in order, to the check, and finishes with what it gave', async () => {
    const { receivers, discarded } = receiversFor();
    const check = recordingCheck();
    receivers.expect('u1', check.start);
    let offset = 0;
    for (const end of [70_000, 150_000, file.length]) offset = await write(receivers, 'u1', offset, file.subarray(offset, end));
    assert.equal(await receivers.finish('u1', file.length), `checked ${file.length} bytes`);
    assert.deepEqual(Buffer.concat(check.read), file);
    assert.deepEqual(discarded, []);
  });

  it('paces the writes by the check: a check that does not read holds the write back (memory stays bounded), and loses nothing', async () => {
    const { receivers } = receiversFor();
    const read: Buffer[] = [];
    const big = randomBytes(12 * 1024 * 1024);
    let go: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (go = resolve));
    receivers.expect('slow', async (input) => {
      await gate;
      for await (const chunk of input) read.push(chunk as Buffer);
      return 'slow';
    });
    let written = false;
    const writing = write(receivers, 'slow', 0, big).then(() => (written = true));
    await sleep(200);
    assert.equal(written, false, 'the write waits for the check');
    go();
    await writing;
    assert.equal(await receivers.finish('slow', big.length), 'slow');
    assert.deepEqual(Buffer.concat(read), big);
  });

  it('lets the rest of the upload run out once the check has what it needs (an archive inside a tar ends first)', async () => {
    const { receivers } = receiversFor();
    const big = randomBytes(20 * 1024 * 1024);
    receivers.expect('tar', async (input) => {
      let length = 0;
      for await (const chunk of input) {
        length += (chunk as Buffer).length;
        if (length >= 1024 * 1024) break; // the archive entry ended; the tar goes on
      }
      return 'archive of the tar';
    });
    await write(receivers, 'tar', 0, big.subarray(0, 10 * 1024 * 1024));
    await write(receivers, 'tar', 10 * 1024 * 1024, big.subarray(10 * 1024 * 1024));
    assert.equal(await receivers.finish('tar', big.length), 'archive of the tar');
  });

  it('drops the receiver, stopping its check, when a write starts elsewhere than where it got to; the file is then read back', async () => {
    const { receivers } = receiversFor();
    const check = recordingCheck();
    receivers.expect('u2', check.start);
    await write(receivers, 'u2', 0, file.subarray(0, 50_000));
    // The next write starts at 60,000: bytes this receiver never saw came in elsewhere (another replica).
    await write(receivers, 'u2', 60_000, file.subarray(60_000));
    assert.ok((await check.ended) instanceof Error, 'the check was stopped');
    assert.equal(await receivers.finish('u2', file.length), null);
  });

  it('drops the receiver when the file did not take a write, or took fewer bytes than it was given', async () => {
    for (const end of [null, 10] as const) {
      const { receivers } = receiversFor();
      const check = recordingCheck();
      receivers.expect('u3', check.start);
      const receiving = receivers.receive('u3', 0, Readable.from([file.subarray(0, 100)]));
      for await (const _ of receiving.body);
      receiving.settle(end);
      assert.ok((await check.ended) instanceof Error);
      assert.equal(await receivers.finish('u3', 100), null);
    }
  });

  it('discards what a check stored when its receiver is dropped after the check ended (the upload was deleted)', async () => {
    const { receivers, discarded } = receiversFor();
    receivers.expect('deleted', async (input) => {
      for await (const _ of input) break;
      return 'stored file';
    });
    await write(receivers, 'deleted', 0, file);
    receivers.abandon('deleted');
    await sleep(10);
    assert.deepEqual(discarded, ['stored file']);
    assert.equal(await receivers.finish('deleted', file.length), null);
  });

  it('passes the bytes of an upload it did not see created, or whose check has stopped, straight through', async () => {
    const { receivers } = receiversFor();
    assert.equal(await write(receivers, 'elsewhere', 0, file), file.length);
    assert.equal(await receivers.finish('elsewhere', file.length), null);

    // A check that refuses at once (the instance is busy now): the upload goes on, and is read back at the end.
    receivers.expect('refused', async (input) => {
      input.resume();
      throw new Error('refused');
    });
    let offset = 0;
    for (const end of [100_000, file.length]) offset = await write(receivers, 'refused', offset, file.subarray(offset, end));
    assert.equal(await receivers.finish('refused', file.length), null);
  });

  it('drops a receiver that gets no byte for its idle time, and forgets an upload whose first byte never comes', async () => {
    const { receivers } = receiversFor({ idleMs: 50 });
    const check = recordingCheck();
    receivers.expect('idle', check.start);
    await write(receivers, 'idle', 0, file.subarray(0, 1000));
    await sleep(150);
    assert.ok((await check.ended) instanceof Error);
    assert.equal(await receivers.finish('idle', 1000), null);

    const never = recordingCheck();
    receivers.expect('late', never.start);
    await sleep(150);
    await write(receivers, 'late', 0, file.subarray(0, 1000));
    assert.deepEqual(never.read, [], 'no check started');
    assert.equal(await receivers.finish('late', 1000), null);
  });

  it('gives up on a check that does not end in time once the last byte is in; what it gives later is discarded', async () => {
    const { receivers, discarded } = receiversFor({ finishTimeoutMs: 100 });
    let go: () => void = () => undefined;
    const stuck = new Promise<void>((resolve) => (go = resolve));
    receivers.expect('stuck', async (input) => {
      for await (const _ of input);
      await stuck; // its blob write hangs, say
      return 'late';
    });
    await write(receivers, 'stuck', 0, file);
    assert.equal(await receivers.finish('stuck', file.length), null);
    go();
    await sleep(10);
    assert.deepEqual(discarded, ['late']);
  });

  it('finishes with null when the last byte is not the one it got to', async () => {
    const { receivers } = receiversFor();
    const check = recordingCheck();
    receivers.expect('short', check.start);
    await write(receivers, 'short', 0, file.subarray(0, 1000));
    assert.equal(await receivers.finish('short', 2000), null);
    assert.ok((await check.ended) instanceof Error);
  });

  it(`receives at most ${MAX_RECEIVERS} uploads at once; the others are read back`, async () => {
    const { receivers } = receiversFor();
    const checks = Array.from({ length: MAX_RECEIVERS + 1 }, () => recordingCheck());
    checks.forEach((check, i) => receivers.expect(`u${i}`, check.start));
    for (let i = 0; i < checks.length; i++) await write(receivers, `u${i}`, 0, file.subarray(0, 1000));
    for (let i = 0; i < checks.length; i++) {
      const finished = await receivers.finish(`u${i}`, 1000);
      assert.equal(finished, i < MAX_RECEIVERS ? 'checked 1000 bytes' : null, `upload ${i}`);
    }
  });
});
