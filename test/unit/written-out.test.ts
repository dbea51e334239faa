// What the CLI waits for before it exits: everything written to stdout handed to the system, or the error that
// stopped it. A reader that closes the pipe early (`snapgraph tenant list | head -1`) fails the wait; it must not end
// the process with an uncaught 'error' (a failed write calls back first and emits 'error' a tick later).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const MODULE = join(__dirname, '../../src/cli/written-out.js');

/** Runs `script` (given writtenOut) with its stdout piped into `reader` by the shell; its stderr and exit status. */
function piped(script: string, reader: string): Promise<string> {
  const program = `const { writtenOut } = require(${JSON.stringify(MODULE)}); ${script}`;
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `{ "${process.execPath}" -e '${program}'; echo "exited $?" >&2; } | ${reader}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', () => resolve(stderr));
  });
}

describe('writtenOut (the CLI waiting for its output before it exits)', function () {
  this.timeout(20_000);

  it('resolves once a reader has taken everything', async () => {
    const stderr = await piped(
      `process.stdout.write(Buffer.alloc(1 << 20, 97)); writtenOut(process.stdout).then(() => process.stderr.write("written\\n"));`,
      'wc -c >&2',
    );
    assert.match(stderr, /written\n/);
    assert.match(stderr, /1048576/);
    assert.match(stderr, /exited 0/);
  });

  it('rejects with EPIPE when the reader closes the pipe early, and the process goes on to exit as it chooses', async () => {
    const stderr = await piped(
      `process.stdout.write(Buffer.alloc(1 << 20, 97)); writtenOut(process.stdout).then(() => process.stderr.write("written\\n"), (error) => { process.stderr.write("failed " + error.code + "\\n"); setTimeout(() => process.exit(3), 50); });`,
      'head -c 10 > /dev/null',
    );
    assert.match(stderr, /failed EPIPE\n/, stderr);
    assert.doesNotMatch(stderr, /Unhandled 'error' event/, stderr);
    assert.match(stderr, /exited 3/, stderr);
  });
});
