// The question restore-file asks on a terminal after Ctrl-C while the server restores (src/cli/ask-to-cancel).
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { askToCancel } from '../../src/cli/ask-to-cancel';

/** The answer to the question when `type` is what the user types once it is asked, as on a terminal or not. */
async function answer(type: (input: PassThrough) => void, { terminal }: { terminal: boolean }): Promise<boolean> {
  const input = new PassThrough();
  const output = Object.assign(new PassThrough(), { isTTY: terminal, columns: 80 });
  output.resume();
  const asked = askToCancel(input, output);
  setImmediate(() => type(input));
  return asked;
}

describe('restore-file: the question whether to cancel the restore', () => {
  it('cancels on y or yes only', async () => {
    assert.equal(await answer((input) => input.write('y\n'), { terminal: true }), true);
    assert.equal(await answer((input) => input.write('Yes\n'), { terminal: false }), true);
    assert.equal(await answer((input) => input.write('\n'), { terminal: true }), false);
    assert.equal(await answer((input) => input.write('nope\n'), { terminal: true }), false);
  });

  // readline rejects the question on a terminal (the command then failed with "Aborted with Ctrl+C", exit 1, and never
  // said the restore goes on), and leaves it pending forever when the input ends elsewhere.
  it('takes Ctrl-C or Ctrl-D at the question, or the end of the input, for a no', async () => {
    assert.equal(await answer((input) => input.write('\x03'), { terminal: true }), false);
    assert.equal(await answer((input) => input.write('\x04'), { terminal: true }), false);
    assert.equal(await answer((input) => input.end(), { terminal: false }), false);
  });
});
