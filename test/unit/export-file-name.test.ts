// The names of export files (exportFileName) and how a download names them (contentDisposition).
import { strict as assert } from 'node:assert';
import { contentDisposition } from '../../src/api/http/export-download';
import { exportFileName } from '../../src/services/export.service';
import { isValidBlobKey } from '../../src/storage/blob-store';

const AT = Date.UTC(2026, 11, 7, 10, 0, 0);
const STAMP = '2026-12-07T10-00-00Z.backup';
const named = (instanceName: string) => exportFileName(instanceName, AT, '.backup');

describe('exportFileName', () => {
  it("keeps the instance's name in its own script, composed (NFC), with separators, spaces, punctuation and symbols made -", () => {
    assert.equal(named('Prod / Graph ü 日本'), `Prod-Graph-ü-日本-${STAMP}`);
    assert.equal(named('Café'.normalize('NFD')), `Café-${STAMP}`);
    assert.equal(named('हिन्दी ग्राफ'), `हिन्दी-ग्राफ-${STAMP}`);
    assert.equal(named('../../etc/passwd'), `etc-passwd-${STAMP}`);
    assert.equal(named('🚀 prod\u0000\n'), `prod-${STAMP}`);
    for (const nothing of ['', '...', '🚀', ' / ']) assert.equal(named(nothing), `instance-${STAMP}`);
  });

  it("keeps only ASCII's letters when told (accents stripped), and `instance` when none is left", () => {
    assert.equal(exportFileName('Prod / Graph ü 日本', AT, '.backup', 'ascii'), `Prod-Graph-u-${STAMP}`);
    assert.equal(exportFileName('日本語', AT, '.backup', 'ascii'), `instance-${STAMP}`);
  });

  it("gives, in ASCII, a name that is a valid blob key: an export destination's object key", () => {
    for (const name of ['orders.tmp-2', 'cache.tmp v2', 'a.tmp-.tmp-b', '.tmp-x', 'x.tmp', 'Prod / Graph ü']) {
      const fileName = exportFileName(name, AT, '.backup', 'ascii');
      assert.ok(isValidBlobKey(`prefix/${fileName}`), `${JSON.stringify(name)} gave ${fileName}`);
    }
    assert.equal(exportFileName('orders.tmp-2', AT, '.backup', 'ascii'), `orders-tmp-2-${STAMP}`);
  });

  it('takes at most 100 characters and 150 bytes of the name: the whole stays far below 255 bytes', () => {
    assert.equal(named('a'.repeat(300)), `${'a'.repeat(100)}-${STAMP}`);
    assert.equal(named('漢'.repeat(80)), `${'漢'.repeat(50)}-${STAMP}`);
    // Cut between characters, never inside one (a character outside the BMP is two UTF-16 units).
    assert.equal(named('𠀋'.repeat(80)), `${'𠀋'.repeat(37)}-${STAMP}`);
    assert.equal(named(`${'a'.repeat(99)}-b`), `${'a'.repeat(99)}-${STAMP}`, 'a name cut just after a - ends without it');
  });
});

describe('contentDisposition', () => {
  it('gives an ASCII name as it is, and any other in UTF-8 (filename*) after its ASCII form (filename)', () => {
    assert.equal(contentDisposition(`etc-passwd-${STAMP}`), `attachment; filename="etc-passwd-${STAMP}"`);
    assert.equal(
      contentDisposition(`Café-日本-${STAMP}`),
      `attachment; filename="Cafe-${STAMP}"; filename*=UTF-8''Caf%C3%A9-%E6%97%A5%E6%9C%AC-${STAMP}`,
    );
    assert.equal(contentDisposition(`日本-${STAMP}`), `attachment; filename="${STAMP}"; filename*=UTF-8''%E6%97%A5%E6%9C%AC-${STAMP}`);
  });
});
