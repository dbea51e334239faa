// How restore-file takes the /uploads endpoint's answers that tus-js-client reports as errors (src/cli/upload-answers).
import assert from 'node:assert/strict';
import type * as tus from 'tus-js-client';
import { isRefusal, isTransient, nothingStored, type UploadError, waitsForInstance } from '../../src/cli/upload-answers';

/** An error as tus-js-client reports an answer: the response's status and body (to a PATCH unless `method` says). */
function answered(status: number, code?: string, method = 'PATCH'): UploadError {
  const body = code ? JSON.stringify({ errors: [{ message: `refused: ${code}`, extensions: { code } }] }) : '';
  const response = { getStatus: () => status, getBody: () => body } as unknown as tus.HttpResponse;
  const request = { getMethod: () => method } as unknown as tus.HttpRequest;
  return Object.assign(new Error(`HTTP ${status}`), { originalResponse: response, originalRequest: request });
}

const verdict = (error: UploadError) => ({ retried: isTransient(error), waits: waitsForInstance(error), forgotten: isRefusal(error) });

describe('restore-file: what an answer of /uploads means', () => {
  it('waits out a complete upload kept for a busy instance (423), and keeps its URL', () => {
    for (const code of ['CONFLICT', 'INSTANCE_UNAVAILABLE']) {
      assert.deepEqual(verdict(answered(423, code)), { retried: false, waits: true, forgotten: false }, code);
    }
  });

  it("retries tus's offset conflict (409, a resume on another replica while the first still writes), and keeps its URL", () => {
    // The server answers tus protocol errors in the JSON error shape too: the status decides, not the code.
    assert.deepEqual(verdict(answered(409, 'CONFLICT')), { retried: true, waits: false, forgotten: false });
    assert.deepEqual(verdict(answered(409)), { retried: true, waits: false, forgotten: false });
  });

  it("retries the server's own trouble (5xx) and network trouble, and keeps the URL: the server keeps what it received", () => {
    assert.deepEqual(verdict(answered(507, 'STORAGE_FULL')), { retried: true, waits: false, forgotten: false });
    assert.deepEqual(verdict(answered(500)), { retried: true, waits: false, forgotten: false });
    assert.deepEqual(verdict(Object.assign(new Error('socket hang up'), { originalResponse: null })), { retried: true, waits: false, forgotten: false });
  });

  it('gives up on a creation the server has no room for (507 to the POST): nothing was stored, and asking again at once changes nothing', () => {
    const noRoom = answered(507, 'STORAGE_FULL', 'POST');
    assert.deepEqual(verdict(noRoom), { retried: false, waits: false, forgotten: false });
    assert.equal(nothingStored(noRoom), true);
    assert.equal(nothingStored(answered(507, 'STORAGE_FULL')), false, 'a PATCH that met the full disk kept what it received');
  });

  it('gives up on a creation refused because the instance is busy or not running (409 to the POST): nothing was created', () => {
    for (const code of ['CONFLICT', 'INSTANCE_UNAVAILABLE']) {
      assert.deepEqual(verdict(answered(409, code, 'POST')), { retried: false, waits: false, forgotten: true }, code);
    }
  });

  it('gives up on a refusal that says why (a 4xx with a code), and forgets the URL: saying it again changes nothing', () => {
    for (const [status, code] of [
      [422, 'INVALID_BACKUP_FILE'],
      [403, 'FORBIDDEN'],
      [404, 'NOT_FOUND'],
      [413, 'FILE_TOO_LARGE'],
    ] as const) {
      assert.deepEqual(verdict(answered(status, code)), { retried: false, waits: false, forgotten: true }, code);
    }
  });
});
