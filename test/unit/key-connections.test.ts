// The open connections of API keys (src/api/key-connections.ts): WebSockets, export downloads and uploads, ended when
// their key is revoked. Besides the revocation's event, the keys of the open connections are looked up every KEY_RECHECK_MS, so
// that a revocation whose event was lost ends them before revokeApiKey answers (it waits KEY_FRESH_MS, twice that
// period, from the revocation's commit).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import type { App } from '../../src/app';
import { CUT_OFF_LINGER_MS, endConnectionsOfRevokedKeys, type KeyConnections } from '../../src/api/key-connections';
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

/** A server response under way: destroy() is how KeyConnections cuts it off. */
class FakeResponse extends EventEmitter {
  closed = false;
  destroyedAt: number | null = null;
  destroy(): void {
    this.closed = true;
    this.destroyedAt = Date.now();
    this.emit('close');
  }
  /** Sent to its end by the handler (not cut off). */
  finish(): void {
    this.closed = true;
    this.emit('close');
  }
}

/**
 * A response to an upload still being received: answered (a refusal, at the cut-off), then its socket destroyed. As
 * node's, it lets go of its socket once the answer is written.
 */
class FakeUploadResponse extends EventEmitter {
  closed = false;
  headersSent = false;
  writableFinished = false;
  readonly headers = new Map<string, string>();
  answeredAt: number | null = null;
  socketDestroyedAt: number | null = null;
  socket: { destroy(): void } | null = {
    destroy: () => {
      this.socketDestroyedAt = Date.now();
      this.closed = true;
      this.emit('close');
    },
  };
  /** The request's bytes have all come (IncomingMessage.complete). */
  readonly request = { complete: false };
  setHeader(name: string, value: string): void {
    this.headers.set(name, value);
  }
  /** What the refusal does: the answer leaves (written to the socket a moment later). */
  answer(): void {
    this.headersSent = true;
    this.answeredAt = Date.now();
    setTimeout(() => {
      this.writableFinished = true;
      this.emit('finish');
      this.socket = null;
    }, 20);
  }
}

const logger = { info: () => undefined, error: () => undefined, warn: () => undefined } as unknown as Logger;

describe('endConnectionsOfRevokedKeys', () => {
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
    const sockets = endConnectionsOfRevokedKeys(app, logger);
    try {
      const socket = new FakeSocket();
      assert.equal(sockets.addSocket({ apiKeyId: 'key', role: 'VIEWER' }, socket as unknown as WebSocket), true);
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

  /** Runs `test` with KeyConnections over an in-memory event bus and a database whose keys `roles` holds. */
  async function withConnections(roles: Map<string, 'VIEWER' | 'ADMIN'>, test: (connections: KeyConnections, revoke: (apiKeyId: string) => void) => Promise<void>) {
    const events = createInMemoryEventBus();
    const app = {
      events,
      services: { tenants: { activeKeyRoles: async (ids: string[]) => new Map(ids.filter((id) => roles.has(id)).map((id) => [id, roles.get(id)!])) } },
    } as unknown as App;
    const connections = endConnectionsOfRevokedKeys(app, logger);
    const revoke = (apiKeyId: string) => {
      roles.delete(apiKeyId);
      events.pubSub.publish('api-key.revoked', 'all', { tenantId: 'tenant', apiKeyId, at: new Date().toISOString() });
    };
    try {
      await test(connections, revoke);
    } finally {
      connections.stop();
      await events.close();
    }
  }

  const until = async (done: () => boolean, what: string) => {
    const started = Date.now();
    while (!done()) {
      if (Date.now() - started > 5_000) assert.fail(`${what}: not within 5 s`);
      await sleep(5);
    }
  };

  it("cuts off the downloads of a revoked key's export links at its revocation, and refuses the next; other keys' go on", async () => {
    await withConnections(new Map([['doomed', 'VIEWER'], ['kept', 'VIEWER']]), async (connections, revoke) => {
      const doomed = [new FakeResponse(), new FakeResponse()];
      const kept = new FakeResponse();
      for (const response of doomed) assert.equal(connections.addDownload('doomed', response as unknown as Writable), true);
      assert.equal(connections.addDownload('kept', kept as unknown as Writable), true);
      const socket = new FakeSocket();
      assert.equal(connections.addSocket({ apiKeyId: 'doomed', role: 'VIEWER' }, socket as unknown as WebSocket), true);

      revoke('doomed');
      await until(() => doomed.every((response) => response.destroyedAt !== null) && socket.closedAt !== null, "the revoked key's connections ending");
      assert.equal(kept.destroyedAt, null, "another key's download was cut off");
      // A download whose link was looked up just before the revocation arrived starts no more.
      const late = new FakeResponse();
      assert.equal(connections.addDownload('doomed', late as unknown as Writable), false);
      assert.equal(late.destroyedAt, null, 'a refused download is answered by its handler, not cut off');
      assert.equal(connections.addDownload('kept', new FakeResponse() as unknown as Writable), true);
    });
  });

  it("answers a revoked key's uploads under way at once and closes their connections after the answer has gone; an answered or complete one, or another key's, goes on", async () => {
    await withConnections(new Map([['doomed', 'ADMIN'], ['kept', 'ADMIN']]), async (connections, revoke) => {
      const doomed = new FakeUploadResponse();
      const answered = new FakeUploadResponse();
      const complete = new FakeUploadResponse();
      const kept = new FakeUploadResponse();
      const add = (apiKeyId: string, response: FakeUploadResponse) =>
        connections.addUpload(apiKeyId, response.request as IncomingMessage, response as unknown as ServerResponse, () => response.answer());
      for (const response of [doomed, answered, complete]) assert.equal(add('doomed', response), true);
      assert.equal(add('kept', kept), true);
      answered.headersSent = true; // its request was read to its end, and its answer is leaving
      complete.request.complete = true; // every byte is in: the end of the file decides

      revoke('doomed');
      await until(() => doomed.answeredAt !== null, 'the upload refused');
      assert.equal(doomed.headers.get('connection'), 'close');
      assert.equal(doomed.socketDestroyedAt, null, 'the connection closed before its answer could be read');
      await until(() => doomed.socketDestroyedAt !== null, 'the connection closing');
      assert.ok(doomed.socketDestroyedAt! - doomed.answeredAt! >= CUT_OFF_LINGER_MS, `closed ${doomed.socketDestroyedAt! - doomed.answeredAt!} ms after the answer`);
      assert.equal(answered.answeredAt, null, 'an upload already answered was answered again');
      assert.equal(answered.socketDestroyedAt, null, 'an upload already answered was cut off');
      assert.equal(complete.answeredAt, null, 'an upload whose bytes had all come was cut off');
      assert.equal(kept.answeredAt, null, "another key's upload was cut off");
      // An upload whose key was checked just before the revocation arrived goes no further.
      assert.equal(add('doomed', new FakeUploadResponse()), false);
    });
  });

  it('cuts off a download whose key was revoked without an event, at the next look-up of the keys', async () => {
    const roles = new Map([['lost', 'VIEWER' as const]]);
    await withConnections(roles, async (connections) => {
      const response = new FakeResponse();
      assert.equal(connections.addDownload('lost', response as unknown as Writable), true);
      const revokedAt = Date.now();
      roles.delete('lost');
      await until(() => response.destroyedAt !== null, 'the download ending');
      assert.ok(response.destroyedAt! - revokedAt < 2 * KEY_RECHECK_MS, `cut off ${response.destroyedAt! - revokedAt} ms after the revocation`);
    });
  });

  it("closes a key's sockets when its role changes, not its downloads (they need no role); a finished download is forgotten", async () => {
    const roles = new Map<string, 'VIEWER' | 'ADMIN'>([['changed', 'ADMIN']]);
    await withConnections(roles, async (connections, revoke) => {
      const socket = new FakeSocket();
      const download = new FakeResponse();
      const finished = new FakeResponse();
      connections.addSocket({ apiKeyId: 'changed', role: 'ADMIN' }, socket as unknown as WebSocket);
      connections.addDownload('changed', download as unknown as Writable);
      connections.addDownload('changed', finished as unknown as Writable);
      finished.finish();
      roles.set('changed', 'VIEWER');
      await until(() => socket.closedAt !== null, 'the socket of the old role closing');
      // Two look-ups more: the download stays.
      await sleep(2 * KEY_RECHECK_MS + 100);
      assert.equal(download.destroyedAt, null, 'a download was cut off for a role change');
      revoke('changed');
      await until(() => download.destroyedAt !== null, 'the download ending at the revocation');
      assert.equal(finished.destroyedAt, null, 'a download sent to its end was cut off');
    });
  });
});
