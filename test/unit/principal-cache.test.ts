// The API-key cache (src/services/principal-cache.ts): an entry is answered only while a database read that found its
// key active is recent, so that a revocation whose event was lost still ends it (TenantService checks cached keys).
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Principal } from '../../src/services/principal';
import { PrincipalCache } from '../../src/services/principal-cache';

const principal = (apiKeyId: string): Principal => ({ tenantId: 't', tenantName: 't', role: 'ADMIN', apiKeyId, apiKeyName: apiKeyId });

describe('PrincipalCache', () => {
  it('reads again an entry whose key was last found active freshMs ago, however long its ttl', async () => {
    const cache = new PrincipalCache(60_000, 10, () => true, 100);
    let reads = 0;
    const read = async () => {
      reads += 1;
      return principal('k');
    };
    await cache.get('h', read);
    await cache.get('h', read);
    assert.equal(reads, 1);
    await sleep(120);
    await cache.get('h', read);
    assert.equal(reads, 2);
  });

  it('keeps answering an entry a check confirmed, and forgets one whose key the check found revoked', async () => {
    const cache = new PrincipalCache(60_000, 10, () => true, 100);
    let reads = 0;
    const read = (id: string) => async () => {
      reads += 1;
      return principal(id);
    };
    await cache.get('a', read('ka'));
    await cache.get('b', read('kb'));
    assert.deepEqual(cache.keyIds().sort(), ['ka', 'kb']);
    await sleep(80);
    cache.confirm(['ka', 'kb'], new Map([['ka', 'ADMIN' as const]]), performance.now());
    assert.deepEqual(cache.keyIds(), ['ka']);
    await sleep(40);
    await cache.get('a', read('ka'));
    assert.equal(reads, 2, 'the confirmed entry was read again');
    await cache.get('b', read('kb'));
    assert.equal(reads, 3, 'the revoked key was answered from memory');
  });

  it("forgets an entry whose key's role a check found changed (in the database), and reads it again", async () => {
    const cache = new PrincipalCache(60_000, 10, () => true, 100);
    let reads = 0;
    const read = async () => {
      reads += 1;
      return principal('ka');
    };
    await cache.get('a', read);
    cache.confirm(['ka'], new Map([['ka', 'ADMIN' as const]]), performance.now());
    await cache.get('a', read);
    assert.equal(reads, 1, 'a check that found the same role kept the entry');
    cache.confirm(['ka'], new Map([['ka', 'VIEWER' as const]]), performance.now());
    assert.deepEqual(cache.keyIds(), []);
    await cache.get('a', read);
    assert.equal(reads, 2, 'the old role was answered from memory');
  });

  it('lets a check that began before an entry was read take nothing from its freshness', async () => {
    const cache = new PrincipalCache(60_000, 10, () => true, 100);
    let reads = 0;
    const began = performance.now() - 1_000;
    const read = async () => {
      reads += 1;
      return principal('ka');
    };
    await cache.get('a', read);
    cache.confirm(['ka'], new Map([['ka', 'ADMIN' as const]]), began);
    await cache.get('a', read);
    assert.equal(reads, 1);
  });

  it('does not let a request join a read that began freshMs ago or more and is still under way', async () => {
    // The read began before a revocation whose event was lost, and the database is slow: a request that comes once
    // revokeApiKey has waited freshMs must not be answered with what that read finds.
    const cache = new PrincipalCache(60_000, 10, () => true, 100);
    let reads = 0;
    let finishSlow: (principal: Principal | null) => void = () => undefined;
    const slow = cache.get('a', () => {
      reads += 1;
      return new Promise<Principal | null>((resolve) => (finishSlow = resolve));
    });
    await sleep(120);
    const late = cache.get('a', async () => {
      reads += 1;
      return null; // revoked meanwhile
    });
    finishSlow(principal('ka'));
    assert.deepEqual(await slow, principal('ka'));
    assert.equal(await late, null, 'the late request was answered by the read that began before the revocation');
    assert.equal(reads, 2);
  });
});
