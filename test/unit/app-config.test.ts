// The environment's numeric variables and the config file's fields (src/config/app-config.ts): what is refused.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config/app-config';

const refusedNaming = (name: string) => (error: unknown) => error instanceof ConfigError && error.message.includes(name);

describe('numeric configuration variables', () => {
  // Number(' ') is 0: a blank grace period once removed backup storage a snapshot had just deduplicated against at
  // once (SNAPGRAPH_COLLECT_GRACE_MS), and handed running operations back at the first SIGTERM (SNAPGRAPH_SHUTDOWN_GRACE_MS).
  it('count a blank value as unset, as every other variable does, never as 0', () => {
    const config = loadConfig({
      SNAPGRAPH_COLLECT_GRACE_MS: ' ',
      SNAPGRAPH_SHUTDOWN_GRACE_MS: '\t',
      SNAPGRAPH_HEAP_GROWTH_PERCENT: '  ',
      SNAPGRAPH_CHUNK_WORKERS: ' ',
      SNAPGRAPH_OPERATION_LEASE_MS: ' ',
    });
    assert.deepEqual(
      [config.collectGraceMs, config.shutdownGraceMs, config.heapGrowthPercent, config.chunkWorkers, config.operationLeaseMs],
      [3_600_000, 25_000, 50, 2, 30_000],
    );
  });

  it('take a decimal integer, with spaces around it', () => {
    assert.equal(loadConfig({ SNAPGRAPH_COLLECT_GRACE_MS: ' 5000 ' }).collectGraceMs, 5000);
    assert.equal(loadConfig({ SNAPGRAPH_CHUNK_WORKERS: '0' }).chunkWorkers, 0);
  });

  it('refuse anything else, naming the variable', () => {
    for (const value of ['0x10', '1e4', '1.5', '30s', '-0', '-5', '1 000']) {
      assert.throws(() => loadConfig({ SNAPGRAPH_CHUNK_WORKERS: value }), refusedNaming('SNAPGRAPH_CHUNK_WORKERS'), value);
      assert.throws(() => loadConfig({ SNAPGRAPH_MAX_ATTEMPTS: value }), refusedNaming('SNAPGRAPH_MAX_ATTEMPTS'), value);
    }
  });
});

describe('SNAPGRAPH_CHUNK_WORKERS', () => {
  // Each worker is a thread with a heap of its own (up to 36 MiB): a typo such as 1000 started a thousand of them.
  it('is refused at boot outside 0 to 64, naming the variable and the range', () => {
    assert.equal(loadConfig({ SNAPGRAPH_CHUNK_WORKERS: '64' }).chunkWorkers, 64);
    for (const value of ['65', '1000', '9007199254740991']) {
      assert.throws(
        () => loadConfig({ SNAPGRAPH_CHUNK_WORKERS: value }),
        (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_CHUNK_WORKERS: value must be an integer from 0 to 64/.test(error.message),
        value,
      );
    }
  });
});

describe('SNAPGRAPH_OPERATION_LEASE_MS', () => {
  // Renewed every 250 ms at the most often: a lease of a few hundred ms ran out before its first renewal came back.
  it('takes 1 s to a day, and refuses less or more naming the variable and the range', () => {
    assert.equal(loadConfig({ SNAPGRAPH_OPERATION_LEASE_MS: '1000' }).operationLeaseMs, 1_000);
    assert.equal(loadConfig({ SNAPGRAPH_OPERATION_LEASE_MS: '86400000' }).operationLeaseMs, 86_400_000);
    for (const value of ['1', '375', '999', '86400001']) {
      assert.throws(
        () => loadConfig({ SNAPGRAPH_OPERATION_LEASE_MS: value }),
        (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_OPERATION_LEASE_MS: value must be an integer from 1000 to 86400000/.test(error.message),
        value,
      );
    }
  });
});

describe('SNAPGRAPH_API_KEY_CACHE_MS', () => {
  it('takes 0 to 60000, and refuses more naming the variable and the range', () => {
    assert.equal(loadConfig({ SNAPGRAPH_API_KEY_CACHE_MS: '0' }).apiKeyCacheMs, 0);
    assert.equal(loadConfig({ SNAPGRAPH_API_KEY_CACHE_MS: '60000' }).apiKeyCacheMs, 60_000);
    for (const value of ['60001', '-1']) {
      assert.throws(
        () => loadConfig({ SNAPGRAPH_API_KEY_CACHE_MS: value }),
        (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_API_KEY_CACHE_MS: value must be an integer from 0 to 60000/.test(error.message),
        value,
      );
    }
  });
});

describe('the config file (SNAPGRAPH_CONFIG)', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'snapgraph-config-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const withFile = (content: unknown) => {
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(content));
    return { SNAPGRAPH_CONFIG: path };
  };

  // A zero lifetime was taken: every export link the server gave had expired before any client could use it.
  it('refuses an export link lifetime of zero, naming exportUrlTtl', () => {
    for (const exportUrlTtl of ['PT0S', 'P0D']) {
      assert.throws(
        () => loadConfig(withFile({ exportUrlTtl })),
        (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_CONFIG: exportUrlTtl: .* must be longer than zero/.test(error.message),
        exportUrlTtl,
      );
    }
    assert.equal(loadConfig(withFile({ exportUrlTtl: 'PT0.001S' })).exportUrlTtlMs, 1);
  });

  // Taken, every export link's expiresAt was past the last moment a date can name: exportSnapshot failed after
  // recording the link, with "DateTime cannot represent ...".
  it('refuses an export link lifetime too long for a date, naming exportUrlTtl', () => {
    assert.throws(
      () => loadConfig(withFile({ exportUrlTtl: 'P100000000D' })),
      (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_CONFIG: exportUrlTtl: "P100000000D" is longer than P100000D/.test(error.message),
    );
  });
});

describe('SNAPGRAPH_PREVIOUS_MASTER_KEYS', () => {
  const key = (fill: number) => Buffer.alloc(32, fill).toString('base64');

  it('is empty when unset or blank', () => {
    assert.deepEqual(loadConfig({}).previousMasterKeys, []);
    assert.deepEqual(loadConfig({ SNAPGRAPH_PREVIOUS_MASTER_KEYS: ' ' }).previousMasterKeys, []);
  });

  it('takes comma-separated keys, with spaces around them and blank entries (a trailing comma) skipped', () => {
    assert.deepEqual(loadConfig({ SNAPGRAPH_PREVIOUS_MASTER_KEYS: ` ${key(1)} ,${key(2)},` }).previousMasterKeys, [key(1), key(2)]);
  });

  it('takes a key written as the key file may hold it (URL-safe, unpadded), as SNAPGRAPH_MASTER_KEY does', () => {
    // The key file took these and the variables refused them, though the docs say to paste the file's key there.
    const material = Buffer.alloc(32, 0xfb);
    const urlSafe = material.toString('base64url');
    assert.ok(!urlSafe.endsWith('=') && /[-_]/.test(urlSafe));
    assert.deepEqual(loadConfig({ SNAPGRAPH_PREVIOUS_MASTER_KEYS: `${urlSafe},${key(2).replace(/=$/, '')}` }).previousMasterKeys, [urlSafe, key(2).replace(/=$/, '')]);
    assert.equal(loadConfig({ SNAPGRAPH_MASTER_KEY: ` ${urlSafe} ` }).masterKey, urlSafe);
  });

  it('refuses an entry that is not the base64 of 32 bytes, naming the variable and its position, never a key', () => {
    const short = Buffer.alloc(31, 7).toString('base64');
    for (const [value, position] of [
      [`${key(1)},${short}`, 2],
      [`not-a-key-at-all-but-secret,${key(1)}`, 1],
      [`${key(1)} ${key(2)}`, 1],
    ] as const) {
      assert.throws(
        () => loadConfig({ SNAPGRAPH_PREVIOUS_MASTER_KEYS: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, new RegExp(`SNAPGRAPH_PREVIOUS_MASTER_KEYS: entry ${position} must be the base64 encoding of exactly 32 bytes`));
          for (const part of value.split(/[ ,]/)) assert.ok(!error.message.includes(part), 'a key was printed');
          return true;
        },
        value,
      );
    }
  });
});

describe('SNAPGRAPH_WS_MAX_SUBSCRIPTIONS and SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS', () => {
  it('default to 100 per connection and 20000 per API key, and refuse 0 (no subscription at all) naming the variable', () => {
    const config = loadConfig({});
    assert.deepEqual([config.wsMaxSubscriptions, config.wsMaxKeySubscriptions], [100, 20_000]);
    assert.deepEqual(
      [loadConfig({ SNAPGRAPH_WS_MAX_SUBSCRIPTIONS: '3' }).wsMaxSubscriptions, loadConfig({ SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS: '5' }).wsMaxKeySubscriptions],
      [3, 5],
    );
    assert.throws(() => loadConfig({ SNAPGRAPH_WS_MAX_SUBSCRIPTIONS: '0' }), refusedNaming('SNAPGRAPH_WS_MAX_SUBSCRIPTIONS'));
    assert.throws(() => loadConfig({ SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS: '0' }), refusedNaming('SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS'));
  });
});
