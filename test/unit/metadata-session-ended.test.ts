import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetadataDataSource } from '../../src/entities/data-source';

/** One PostgreSQL protocol message: its type byte, then its length (itself included) and its body. */
function message(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type, 'latin1'), length, body]);
}

/**
 * What a client reads when PostgreSQL ends its session just as it opened it (pg_terminate_backend, a server shutdown or
 * a failover at that moment), in one write: authentication done, ready for a query, then the termination notice.
 */
const OPENED_AND_ENDED = Buffer.concat([
  message('R', Buffer.from([0, 0, 0, 0])), // AuthenticationOk
  message('Z', Buffer.from('I', 'latin1')), // ReadyForQuery, idle
  message('E', Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0', 'latin1')),
]);

/** A PostgreSQL that ends every session in the read that opens it. */
async function endsEverySessionAtOnce(): Promise<{ server: Server; url: string; sessions: () => number }> {
  let sessions = 0;
  const server = createServer((socket: Socket) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      // The startup message: its length, then the protocol version and the parameters.
      if (received.length < 4 || received.length < received.readInt32BE(0)) return;
      socket.off('data', onData);
      sessions++;
      socket.end(OPENED_AND_ENDED);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { server, url: `postgres://snapgraph@127.0.0.1:${port}/metadata`, sessions: () => sessions };
}

describe('the metadata database on PostgreSQL, when a session ends as it opens', () => {
  it('fails the work that meets it with an error, never the process with an uncaught one', async () => {
    // pg-pool hands a new client over as it reads ReadyForQuery, and TypeORM listens for the client's errors only a
    // promise's continuation later: the termination in the same read found no listener, and Node threw it (a server
    // exited so in CI while PostgreSQL cut its connections). Mocha fails the test on that uncaught exception.
    const postgres = await endsEverySessionAtOnce();
    const dataDir = mkdtempSync(join(tmpdir(), 'snapgraph-metadata-'));
    const sessionErrors: Error[] = [];
    const db = createMetadataDataSource({ dataDir, databaseUrl: postgres.url, onSessionError: (error) => sessionErrors.push(error) });
    try {
      await assert.rejects(db.initialize(), /not queryable|terminat/);
      // The pool's first session (TypeORM's check) and the query runner's: the second is the one handed over.
      assert.ok(postgres.sessions() >= 2, `${postgres.sessions()} session(s) opened`);
      // PostgreSQL's reason, once per session (pg follows it with "Connection terminated unexpectedly").
      assert.equal(sessionErrors.length, postgres.sessions());
      for (const error of sessionErrors) assert.match(error.message, /terminating connection due to administrator command/);
    } finally {
      if (db.isInitialized) await db.destroy();
      postgres.server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
