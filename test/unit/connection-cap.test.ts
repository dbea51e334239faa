// The connection cap's pure parts: what the open-file limit leaves for connections, read from /proc's limits, and
// SNAPGRAPH_MAX_CONNECTIONS.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { capConnections, connectionCapFor, openFileLimit } from '../../src/api/http/connection-cap';
import { ConfigError, loadConfig } from '../../src/config/app-config';

const limits = (soft: string, hard: string) =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             127436               127436               processes ',
    `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     `,
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');

describe('the connection cap', () => {
  it('leaves the server a fifth of the open-file limit for its own files, and at least 256', () => {
    assert.equal(connectionCapFor(1024), 768);
    assert.equal(connectionCapFor(20_000), 16_000);
    assert.equal(connectionCapFor(1_048_576), 838_860);
    // A limit too small to leave 64 connections is a mistake to fix, not a cap to apply.
    assert.equal(connectionCapFor(320), 64);
    assert.equal(connectionCapFor(319), null);
    assert.equal(connectionCapFor(100), null);
    assert.equal(connectionCapFor(null), null);
  });

  it("reads the soft limit on open files from /proc's limits; unlimited or unknown is no limit", () => {
    assert.equal(openFileLimit(limits('1024', '524288')), 1024);
    assert.equal(openFileLimit(limits('unlimited', 'unlimited')), null);
    assert.equal(openFileLimit(''), null);
    assert.equal(openFileLimit(null), null);
    // This process's own, on Linux.
    if (process.platform === 'linux') assert.ok((openFileLimit() ?? 0) > 0);
  });

  it('takes SNAPGRAPH_MAX_CONNECTIONS as a positive integer, derived when unset', () => {
    assert.equal(loadConfig({}).maxConnections, undefined);
    assert.equal(loadConfig({ SNAPGRAPH_MAX_CONNECTIONS: ' 5000 ' }).maxConnections, 5000);
    for (const bad of ['0', '-1', '1.5', 'many']) {
      assert.throws(() => loadConfig({ SNAPGRAPH_MAX_CONNECTIONS: bad }), (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_MAX_CONNECTIONS/.test(error.message));
    }
  });

  it('logs the first drop of a flood at once and the rest together once the interval is up or the server stops, none lost', async () => {
    const server = createServer();
    const warnings: Record<string, unknown>[] = [];
    let counted = 0;
    const metrics = { droppedConnections: { inc: () => void (counted += 1) } } as unknown as Parameters<typeof capConnections>[2];
    const logger = { warn: (line: Record<string, unknown>) => void warnings.push(line) } as unknown as Parameters<typeof capConnections>[3];
    assert.equal(capConnections(server, 3, metrics, logger, 50), 3);
    assert.equal(server.maxConnections, 3);
    for (let i = 0; i < 5; i++) server.emit('drop');
    assert.deepEqual(warnings.map((line) => line.dropped), [1]);
    await sleep(120);
    assert.deepEqual(warnings.map((line) => line.dropped), [1, 4]);
    assert.equal(counted, 5);
    // Quiet since: the next drop is logged at once again.
    server.emit('drop');
    assert.deepEqual(warnings.map((line) => line.dropped), [1, 4, 1]);
    assert.equal(warnings[0].maxConnections, 3);
    // Those still waiting for their line when the server stops are logged then.
    server.emit('drop');
    server.emit('drop');
    server.emit('close');
    assert.deepEqual(warnings.map((line) => line.dropped), [1, 4, 1, 2]);
  });
});
