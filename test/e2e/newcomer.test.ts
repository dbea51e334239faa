import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { itRunsTheCoreRoundTrip } from '../support/core-round-trip';
import { expectCode, expectData, gql, serverPerSuite, startServer } from '../support';

describe("a newcomer's first run", () => {
  describe('on a fresh data dir with SNAPGRAPH_BOOTSTRAP_TOKEN', () => {
    const suite = serverPerSuite();

    it('creates the metadata database in the data dir', () => {
      assert.ok(existsSync(join(suite.server.dataDir, 'metadata.sqlite')), 'metadata.sqlite is missing from the data dir');
    });

    it('serves the playground to a browser on GET /graphql', async () => {
      const response = await fetch(suite.server.graphqlUrl, { headers: { accept: 'text/html' } });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /text\/html/);
    });

    itRunsTheCoreRoundTrip(() => suite.server);
  });

  describe('without SNAPGRAPH_BOOTSTRAP_TOKEN', () => {
    it('prints a generated ADMIN key once on stdout, which works, and never again', async () => {
      const server = await startServer({ env: { SNAPGRAPH_BOOTSTRAP_TOKEN: undefined } });
      const printed = /^\s+(\S{32,})\s*$/m.exec(server.logs())?.[1];
      assert.ok(printed, `no generated key in the output:\n${server.logs()}`);
      const { viewer } = expectData(await gql(server, `{ viewer { tenantName role } }`, {}, printed));
      assert.deepEqual(viewer, { tenantName: 'default', role: 'ADMIN' });
      for (const line of server.logLines()) assert.ok(!JSON.stringify(line).includes(printed), 'the key reached a log line');

      await server.restart();
      assert.ok(!server.logs().includes(printed), 'the key was printed again after a restart');
      expectData(await gql(server, `{ viewer { role } }`, {}, printed));
      expectCode(await gql(server, `{ viewer { role } }`), 'UNAUTHENTICATED');
    });
  });
});
