import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
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
    it('writes a generated ADMIN key to a 0600 file it names in the log (never the key), which works, and never again', async () => {
      const server = await startServer({ env: { SNAPGRAPH_BOOTSTRAP_TOKEN: undefined } });
      const announced = server.logLines().find((line) => typeof line.path === 'string' && line.path.endsWith('initial-admin.key'));
      assert.ok(announced, `the key file is not announced:\n${server.logs()}`);
      const path = announced.path as string;
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const written = readFileSync(path, 'utf8').trim();
      assert.match(written, /^\S{32,}$/);
      const { viewer } = expectData(await gql(server, `{ viewer { tenantName role } }`, {}, written));
      assert.deepEqual(viewer, { tenantName: 'default', role: 'ADMIN' });
      assert.ok(!server.logs().includes(written), 'the key reached the output');

      unlinkSync(path);
      await server.restart();
      assert.ok(!existsSync(path), 'a key file was written again after a restart');
      expectData(await gql(server, `{ viewer { role } }`, {}, written));
      expectCode(await gql(server, `{ viewer { role } }`), 'UNAUTHENTICATED');
    });
  });
});
