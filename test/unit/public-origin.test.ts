import assert from 'node:assert/strict';
import { publicOrigin } from '../../src/api/http/public-origin';
import { loadConfig } from '../../src/config/app-config';

describe('publicOrigin (the base of export links)', () => {
  const listening = 'http://127.0.0.1:4000';

  it('is SNAPGRAPH_PUBLIC_URL whatever the Host header says', () => {
    const config = { publicUrl: 'https://backups.example', allowedHosts: ['http://files.example'] };
    assert.equal(publicOrigin(config, listening, 'files.example'), 'https://backups.example');
  });

  it('is the listening address when nothing is configured, never the Host header', () => {
    assert.equal(publicOrigin({ allowedHosts: [] }, listening, 'attacker.example'), listening);
    assert.equal(publicOrigin({ allowedHosts: [] }, listening, undefined), listening);
  });

  it('takes the Host header only when allowed (case-insensitively), else the first allowed host', () => {
    const config = { allowedHosts: ['http://files.example:8080', 'https://backup.example'] };
    assert.equal(publicOrigin(config, listening, 'BACKUP.example'), 'https://backup.example');
    assert.equal(publicOrigin(config, listening, 'files.example:8080'), 'http://files.example:8080');
    assert.equal(publicOrigin(config, listening, 'files.example'), 'http://files.example:8080');
    assert.equal(publicOrigin(config, listening, 'attacker.example'), 'http://files.example:8080');
  });

  // Browsers and proxies may send the scheme's default port in Host (`files.example:443`): the same host, which was
  // taken for one not listed, so the link went to the first allowed host instead.
  it("takes a Host header with or without its scheme's default port as the same host", () => {
    const config = { allowedHosts: ['http://files.example:8080', 'https://backup.example', 'http://plain.example'] };
    assert.equal(publicOrigin(config, listening, 'backup.example:443'), 'https://backup.example');
    assert.equal(publicOrigin(config, listening, 'plain.example:80'), 'http://plain.example');
    assert.equal(publicOrigin(config, listening, 'PLAIN.example:80'), 'http://plain.example');
    // Another port is another host; so is the other scheme's default port.
    assert.equal(publicOrigin(config, listening, 'plain.example:8080'), 'http://files.example:8080');
    assert.equal(publicOrigin(config, listening, 'backup.example:80'), 'http://files.example:8080');
    assert.equal(publicOrigin(config, listening, 'files.example:80'), 'http://files.example:8080');
    // A Host header that is no host at all is not allowed, and does not throw.
    assert.equal(publicOrigin(config, listening, 'a b/c'), 'http://files.example:8080');
    assert.equal(publicOrigin(config, listening, 'plain.example:99999'), 'http://files.example:8080');
  });

  it('parses SNAPGRAPH_ALLOWED_HOSTS into origins and refuses what is not a host or an http(s) origin', () => {
    const config = loadConfig({ SNAPGRAPH_ALLOWED_HOSTS: 'a.example, b.example:81 ,https://c.example' });
    assert.deepEqual(config.allowedHosts, ['http://a.example', 'http://b.example:81', 'https://c.example']);
    for (const bad of ['ftp://a.example', 'https://a.example/path', 'a b']) {
      assert.throws(() => loadConfig({ SNAPGRAPH_ALLOWED_HOSTS: bad }), /SNAPGRAPH_ALLOWED_HOSTS/);
    }
  });
});
