// The WebSockets of revoked API keys (src/api/revoked-key-sockets.ts): besides the revocation's event, the keys of the
// open sockets are looked up every KEY_RECHECK_MS, so that a revocation whose event was lost closes them before
// revokeApiKey answers (it waits KEY_FRESH_MS, twice that period, from the revocation's commit).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WebSocket } from 'ws';
import type { App } from '../../src/app';
import { closeSocketsOfRevokedKeys } from '../../src/api/revoked-key-sockets';
import { createInMemoryEventBus } from '../../src/events/event-bus';
import type { Logger } from '../../src/logging/logger';
import { KEY_RECHECK_MS } from '../../src/services/tenant.service';

class FakeSocket extends EventEmitter {
  readonly CLOSED = 3;
  readyState = 1;
  closedAt: number | null = null;
  close(): void {
    this.readyState = this.CLOSED;
    this.closedAt = Date.now();
    this.emit('close');
  }
}

const logger = { info: () => undefined, error: () => undefined, warn: () => undefined } as unknown as Logger;

describe('closeSocketsOfRevokedKeys', () => {
  it('closes the socket of a key revoked without an event within twice KEY_RECHECK_MS, also when a look-up takes a while', async function () {
    this.timeout(15_000);
    const LOOKUP_MS = 700;
    let revokedAt: number | null = null;
    const activeKeyRoles = async (ids: string[]) => {
      // What the database says when the read begins.
      const active = new Map((revokedAt === null ? ids : []).map((id) => [id, 'VIEWER'] as const));
      await sleep(LOOKUP_MS);
      return active;
    };
    const lookups: number[] = [];
    const events = createInMemoryEventBus();
    const app = {
      events,
      services: {
        tenants: {
          activeKeyRoles: (ids: string[]) => {
            lookups.push(Date.now());
            return activeKeyRoles(ids);
          },
        },
      },
    } as unknown as App;
    const sockets = closeSocketsOfRevokedKeys(app, logger);
    try {
      const socket = new FakeSocket();
      assert.equal(sockets.add({ apiKeyId: 'key', role: 'VIEWER' }, socket as unknown as WebSocket), true);
      // Revoked (committed, no event) just after a look-up began: that one still finds the key active.
      while (lookups.length === 0) await sleep(5);
      await sleep(10);
      revokedAt = Date.now();
      while (socket.closedAt === null && Date.now() - revokedAt < 5_000) await sleep(10);
      assert.ok(socket.closedAt !== null, 'the socket was never closed');
      assert.ok(
        socket.closedAt - revokedAt < 2 * KEY_RECHECK_MS,
        `closed ${socket.closedAt - revokedAt} ms after the revocation: revokeApiKey had answered ${2 * KEY_RECHECK_MS} ms after it`,
      );
    } finally {
      sockets.stop();
      await events.close();
    }
  });
});
