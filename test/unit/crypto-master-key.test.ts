import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';

import { CryptoError, Keyring, loadMasterKey, MASTER_KEY_ENV, MasterKey, masterKeyPath, UnknownKeyError } from '../../src/crypto';

describe('loadMasterKey', () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'snapgraph-master-key-'));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('generates <dataDir>/keys/master.key (mode 0600, directory 0700) on first boot', async () => {
    const loaded = await loadMasterKey({ dataDir });
    assert.equal(loaded.generated, true);
    assert.equal(loaded.path, join(dataDir, 'keys', 'master.key'));
    assert.equal((await stat(loaded.path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'keys'))).mode & 0o777, 0o700);
    assert.deepEqual(await readdir(join(dataDir, 'keys')), ['master.key'], 'left a temp file behind');
    const text = (await readFile(loaded.path, 'utf8')).trim();
    assert.equal(Buffer.from(text, 'base64').length, 32);
  });

  it('reuses the generated key on the next load', async () => {
    const first = await loadMasterKey({ dataDir });
    const second = await loadMasterKey({ dataDir });
    assert.equal(second.generated, false);
    assert.equal(second.key.keyId, first.key.keyId);
  });

  it('agrees on one key when several processes start at once', async () => {
    const loads = await Promise.all(Array.from({ length: 8 }, () => loadMasterKey({ dataDir })));
    assert.equal(new Set(loads.map((loaded) => loaded.key.keyId)).size, 1);
    assert.equal(loads.filter((loaded) => loaded.generated).length, 1);
  });

  it('uses SNAPGRAPH_MASTER_KEY when set, without touching the data dir', async () => {
    const material = randomBytes(32);
    const loaded = await loadMasterKey({ dataDir, envValue: ` ${material.toString('base64')}\n` });
    assert.equal(loaded.generated, false);
    assert.equal(loaded.path, undefined);
    assert.equal(loaded.key.keyId, MasterKey.fromBytes(material).keyId);
    assert.deepEqual(await readdir(dataDir), []);
  });

  it('treats a blank SNAPGRAPH_MASTER_KEY as unset', async () => {
    const loaded = await loadMasterKey({ dataDir, envValue: '  ' });
    assert.equal(loaded.path, masterKeyPath(dataDir));
  });

  it('rejects a malformed SNAPGRAPH_MASTER_KEY with a message that names it but not its value', async () => {
    const badValues = [
      'hunter2-not-a-key',
      randomBytes(16).toString('base64'),
      randomBytes(33).toString('base64'),
      randomBytes(32).toString('hex'),
      `${randomBytes(32).toString('base64')}!!`,
    ];
    for (const envValue of badValues) {
      await assert.rejects(loadMasterKey({ dataDir, envValue }), (error: Error) => {
        assert.ok(error instanceof CryptoError);
        assert.ok(error.message.includes(MASTER_KEY_ENV), error.message);
        assert.ok(!error.message.includes(envValue) && !error.message.includes(envValue.slice(0, 8)), 'leaked the value');
        return true;
      });
    }
  });

  it('rejects a corrupt key file, naming the file but not its content', async () => {
    await mkdir(join(dataDir, 'keys'));
    await writeFile(masterKeyPath(dataDir), 'c2hvcnQtc2VjcmV0LXZhbHVl\n');
    await assert.rejects(loadMasterKey({ dataDir }), (error: Error) => {
      assert.ok(error.message.includes(masterKeyPath(dataDir)));
      assert.ok(!error.message.includes('c2hvcnQtc2VjcmV0'));
      return true;
    });
  });
});

describe('MasterKey', () => {
  const material = randomBytes(32);
  const key = MasterKey.fromBytes(material);
  const renderings = () => [
    inspect(key),
    inspect({ nested: { key } }, { depth: 10, showHidden: true }),
    JSON.stringify({ key }),
    String(key),
    `${key}`,
    inspect(new Keyring(key), { showHidden: true }),
    JSON.stringify(new Keyring(key)),
  ];

  it('has a 16-hex-digit id that depends only on the key bytes', () => {
    assert.match(key.keyId, /^[0-9a-f]{16}$/);
    assert.equal(MasterKey.fromBytes(Buffer.from(material)).keyId, key.keyId);
    assert.notEqual(MasterKey.generate().keyId, key.keyId);
  });

  it('never shows its key material when logged or serialised', () => {
    const secretForms = [material.toString('base64'), material.toString('hex'), material.toString('base64').slice(0, 12)];
    for (const rendering of renderings()) {
      assert.ok(rendering.includes(key.keyId), rendering);
      for (const secret of secretForms) assert.ok(!rendering.includes(secret), `leaked in ${rendering}`);
    }
  });

  it('accepts only 32-byte keys', () => {
    for (const size of [0, 16, 31, 33]) assert.throws(() => MasterKey.fromBytes(randomBytes(size)), CryptoError);
  });
});

describe('Keyring', () => {
  it('finds keys by id and encrypts under the current one', () => {
    const [oldKey, newKey] = [MasterKey.generate(), MasterKey.generate()];
    const keyring = new Keyring(oldKey);
    keyring.add(newKey, { makeCurrent: true });
    assert.equal(keyring.current, newKey);
    assert.equal(keyring.get(oldKey.keyId), oldKey);
    assert.deepEqual(keyring.keyIds.sort(), [oldKey.keyId, newKey.keyId].sort());
    assert.throws(() => keyring.get('0000000000000000'), UnknownKeyError);
  });
});
