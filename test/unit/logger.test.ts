// The log's censoring: every key it promises to hide is hidden where it may appear; nothing else changes.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { CENSOR, createLogger, redactSecrets } from '../../src/logging/logger';

function logged(write: (logger: ReturnType<typeof createLogger>) => void): Record<string, any> {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const logger = createLogger('info', destination as never);
  write(logger);
  assert.equal(lines.length, 1);
  return JSON.parse(lines[0]);
}

describe('the log', () => {
  it('censors each secret at the top of a line', () => {
    for (const key of ['authorization', 'apiKey', 'secret', 'token', 'masterKey', 'password', 'secretAccessKey', 'sessionToken', 'connectionParams']) {
      const line = logged((logger) => logger.info({ [key]: { bearer: 'sg_live_1' }, requestId: 'r1' }, 'x'));
      assert.equal(line[key], CENSOR, key);
      assert.equal(line.requestId, 'r1');
    }
  });

  it('censors each secret one level down, in any field, and in req.headers.authorization', () => {
    for (const key of ['authorization', 'apiKey', 'secret', 'token', 'masterKey', 'password', 'secretAccessKey', 'sessionToken']) {
      const line = logged((logger) => logger.info({ input: { [key]: 'sg_live_1', name: 'n' } }, 'x'));
      assert.deepEqual(line.input, { [key]: CENSOR, name: 'n' }, key);
    }
    const line = logged((logger) => logger.info({ req: { method: 'POST', headers: { authorization: 'Bearer sg_live_1', host: 'h' } } }, 'x'));
    assert.deepEqual(line.req, { method: 'POST', headers: { authorization: CENSOR, host: 'h' } });
    assert.deepEqual(logged((logger) => logger.info({ headers: { authorization: 'Bearer k' } }, 'x')).headers, { authorization: CENSOR });
  });

  it('censors a secret an error carries, its own or inherited, and keeps its class, message and stack', () => {
    const error = Object.assign(new TypeError('the store refused it'), { token: 'sg_live_1', code: 'E1' });
    for (const line of [logged((logger) => logger.error({ err: error }, 'failed')), logged((logger) => logger.error(error))]) {
      assert.equal(line.err.token, CENSOR);
      assert.equal(line.err.code, 'E1');
      assert.equal(line.err.type, 'TypeError');
      assert.equal(line.err.message, 'the store refused it');
      assert.match(line.err.stack, /the store refused it/);
    }
    assert.equal(error.token, 'sg_live_1', "the caller's error is not changed");

    class KeyedError extends Error {}
    Object.defineProperty(KeyedError.prototype, 'apiKey', { value: 'sg_inherited', enumerable: true });
    assert.equal(logged((logger) => logger.error({ err: new KeyedError('k') }, 'failed')).err.apiKey, CENSOR);

    const frozen = Object.freeze(Object.assign(new Error('f'), { secret: 's' }));
    assert.deepEqual(logged((logger) => logger.info({ error: frozen }, 'x')).error, { secret: CENSOR });
    assert.equal(logged((logger) => logger.error({ err: frozen }, 'x')).err.secret, CENSOR);
  });

  it("censors a child logger's bindings and objects interpolated into the message", () => {
    const line = logged((logger) => logger.child({ token: 'c1', input: { apiKey: 'c2' }, tenantId: 't' }).info({ requestId: 'r' }, 'x'));
    assert.deepEqual([line.token, line.input, line.tenantId, line.requestId], [CENSOR, { apiKey: CENSOR }, 't', 'r']);
    const grandchild = logged((logger) => logger.child({ a: 1 }).child({ secret: 'c3' }).info('x'));
    assert.deepEqual([grandchild.a, grandchild.secret], [1, CENSOR]);
    const interpolated = logged((logger) => logger.info('context %j and %o', { secret: 's1', n: 1 }, { nested: { token: 's2' } }));
    assert.doesNotMatch(interpolated.msg, /s1|s2/);
    assert.match(interpolated.msg, /"n":1/);
    const afterObject = logged((logger) => logger.info({ requestId: 'r' }, 'then %j', { masterKey: 'm' }));
    assert.doesNotMatch(afterObject.msg, /"m"/);
  });

  it("never changes what the caller passed, and gives a line with no secret back as it is", () => {
    const headers = { authorization: 'Bearer k' };
    const line = { req: { headers }, secret: 's', input: { apiKey: 'k' } };
    const censored = redactSecrets(line);
    assert.deepEqual(censored, { req: { headers: { authorization: CENSOR } }, secret: CENSOR, input: { apiKey: CENSOR } });
    assert.deepEqual(line, { req: { headers: { authorization: 'Bearer k' } }, secret: 's', input: { apiKey: 'k' } });
    const plain = { requestId: 'r', status: 200, errorCodes: ['X'], nested: { ok: true }, token: undefined };
    assert.equal(redactSecrets(plain), plain);
  });
});
