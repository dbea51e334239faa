// What restore-file says when Ctrl-C asks the server to cancel its restore (src/cli/restore-file-command whenInterrupted),
// against a client that answers as the server would.
import assert from 'node:assert/strict';
import type { ApiClient } from '../../src/cli/api-client';
import { CliError } from '../../src/cli/cli-error';
import { whenInterrupted } from '../../src/cli/restore-file-command';

/** A client whose cancelOperation is refused with `conflict`, and whose operation query answers `operation`. */
function refusingClient(conflict: string, operation: Record<string, unknown>): ApiClient {
  return {
    request: async (query: string) => {
      if (query.includes('cancelOperation')) throw new CliError(`CONFLICT: ${conflict}`);
      if (query.includes('operation(')) return { operation };
      throw new Error(`unexpected request: ${query}`);
    },
  } as unknown as ApiClient;
}

describe('restore-file: Ctrl-C that asks to cancel the restore', () => {
  it('says the restore is past its point of no return and completes, when it is', async () => {
    const client = refusingClient('operation op-1 is past its point of no return (swapping); it can no longer be cancelled', {
      id: 'op-1',
      status: 'RUNNING',
      error: null,
    });
    const said = await whenInterrupted(client, 'op-1', 'cancel');
    assert.equal(said.exitCode, 130);
    assert.match(said.message, /too late to cancel: the restore is past its point of no return and completes on the server \(operation op-1\)/);
  });

  // The operation may end while the user reads the question: telling them it "completes on the server" when it FAILED
  // had them wait for data that never came.
  it('says how the restore ended when it ended before the cancellation came', async () => {
    const client = refusingClient('operation op-2 has already ended (FAILED); only QUEUED or RUNNING operations can be cancelled', {
      id: 'op-2',
      status: 'FAILED',
      error: { code: 'INVALID_BACKUP_FILE', message: 'The archive is invalid: node record 7' },
    });
    const said = await whenInterrupted(client, 'op-2', 'cancel');
    assert.doesNotMatch(said.message, /completes on the server/);
    assert.match(said.message, /operation op-2 had already ended: FAILED \(INVALID_BACKUP_FILE: The archive is invalid: node record 7\)/);
    assert.equal(said.exitCode, 1);
  });

  it('says the restore succeeded when it did before the cancellation came', async () => {
    const client = refusingClient('operation op-3 has already ended (SUCCEEDED); only QUEUED or RUNNING operations can be cancelled', {
      id: 'op-3',
      status: 'SUCCEEDED',
      error: null,
    });
    const said = await whenInterrupted(client, 'op-3', 'cancel');
    assert.match(said.message, /operation op-3 had already ended: SUCCEEDED/);
    assert.doesNotMatch(said.message, /completes on the server/);
  });
});
