// An archive sent to restoreFromFile whose header shows that it cannot fit the target instance is refused as soon as
// that header is read, with the error the check after the upload gives: nothing more of it is checked or stored. The
// test holds back the rest of the file until the refusal is seen, so that one decided only after the whole file never
// comes. (A resumable upload is refused once complete: answering a PATCH early broke the connection under a client
// still sending, which then saw EPIPE rather than the refusal.)
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import {
  createInstance,
  eventually,
  operationCount,
  paddedArchive,
  serverPerSuite,
  tempBlobs,
  uploadBlobs,
} from '../support';

/** 512 nodes of 128 KiB each: about 48 MiB stored, where FREE holds 50 nodes. */
const ARCHIVE = { nodes: 512, padBytes: 128 * 1024 };
const REFUSAL = /^the data holds 512 nodes; FREE allows 50$/;
/** Bytes of the file sent before the rest is held back: past the header, a small part of the file. */
const HOLD_AFTER = 4 * 1024 * 1024;

async function lengthOf(chunks: AsyncIterable<Buffer>): Promise<number> {
  let length = 0;
  for await (const chunk of chunks) length += chunk.length;
  return length;
}

describe('an upload whose archive header shows that it cannot fit the instance', () => {
  const suite = serverPerSuite({ config: { tiers: { FREE: { maxNodes: 50 } } } });
  let archiveLength: number;

  before(async () => {
    archiveLength = await lengthOf(paddedArchive(ARCHIVE));
    assert.ok(archiveLength > 10 * HOLD_AFTER, `the archive takes only ${archiveLength} bytes`);
  });

  it('restoreFromFile: CAPACITY_EXCEEDED is decided once the header is read, before the rest of the file comes; nothing is kept', async function () {
    this.timeout(120_000);
    const server = suite.server;
    const free = await createInstance(server, { name: 'free', tier: 'FREE' });
    const operations = await operationCount(server, free.id);
    const requestId = 'refused-by-its-archive-header';
    const boundary = 'snapgraph-early-refusal';
    const head = (name: string, extra = '') => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n`;
    const query = 'mutation ($instanceId: ID!, $file: Upload!) { restoreFromFile(instanceId: $instanceId, file: $file, confirm: "RESTORE") { id } }';
    const before = Buffer.from(
      `${head('operations')}${JSON.stringify({ query, variables: { instanceId: free.id, file: null } })}\r\n` +
        `${head('map')}{"0":["variables.file"]}\r\n${head('0', '; filename="big.backup"')}`,
    );
    const after = Buffer.from(`\r\n--${boundary}--\r\n`);
    const req = httpRequest(server.graphqlUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.adminKey}`,
        'apollo-require-preflight': 'true',
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(before.length + archiveLength + after.length),
        'x-request-id': requestId,
      },
    });
    const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    answer.catch(() => undefined);
    const send = async (chunk: Buffer) => {
      if (!req.write(chunk)) await once(req, 'drain');
    };
    await send(before);
    let sent = 0;
    let decided: string | undefined;
    for await (const chunk of paddedArchive(ARCHIVE)) {
      if (decided === undefined && sent >= HOLD_AFTER) {
        // A multipart answer leaves once the request has been read (its rest discarded); the decision is its log line.
        decided = await eventually(
          () => server.logs().split('\n').find((line) => line.includes(`"requestId":"${requestId}"`) && line.includes('"msg":"graphql request"')),
          { timeoutMs: 20_000, what: `the request's refusal while ${archiveLength - sent} bytes of its file are still to come` },
        );
        assert.match(decided, /"errorCodes":\["CAPACITY_EXCEEDED"\]/);
      }
      await send(chunk);
      sent += chunk.length;
    }
    req.end(after);
    const { status, text } = await answer;
    assert.equal(status, 200, text);
    const error = JSON.parse(text).errors[0];
    assert.equal(error.extensions.code, 'CAPACITY_EXCEEDED', text);
    assert.match(error.message, REFUSAL);
    assert.equal(await operationCount(server, free.id), operations);
    assert.deepEqual(uploadBlobs(server.dataDir), []);
    assert.deepEqual(tempBlobs(server.dataDir), []);
  });
});
