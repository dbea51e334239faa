// Recognising a full disk from every layer that can meet one, with the errors the real drivers raise.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { GraphQLError } from 'graphql';
import sqlite3 from 'sqlite3';
import { QueryFailedError } from 'typeorm';
import { formatError } from '../../src/api/format-error';
import { AppError } from '../../src/errors/app-error';
import { asStorageFull, isStorageFull } from '../../src/errors/storage-full';
import { SqliteConnection } from '../../src/graph/sqlite-connection';

/** A real ENOSPC: Linux's /dev/full refuses every write with it. */
async function enospc(): Promise<Error> {
  return writeFile('/dev/full', 'x').then(
    () => assert.fail('/dev/full accepted a write'),
    (error: Error) => error,
  );
}

/** A real SQLITE_FULL from better-sqlite3: a database capped at its current size. */
function betterSqliteFull(): Error {
  const db = new Database(':memory:');
  try {
    db.exec('CREATE TABLE t (v TEXT)');
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true })}`);
    db.prepare('INSERT INTO t VALUES (?)').run('x'.repeat(100_000));
    return assert.fail('the capped database accepted the row');
  } catch (error) {
    return error as Error;
  } finally {
    db.close();
  }
}

/** The same from the async sqlite3 driver the instance stores use. */
async function sqlite3Full(): Promise<Error> {
  const db = await SqliteConnection.open(':memory:', sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE);
  try {
    await db.exec('CREATE TABLE t (v TEXT); PRAGMA max_page_count = 2;');
    await db.run('INSERT INTO t VALUES (?)', ['x'.repeat(100_000)]);
    return assert.fail('the capped database accepted the row');
  } catch (error) {
    return error as Error;
  } finally {
    await db.close();
  }
}

describe('isStorageFull', () => {
  it('recognises ENOSPC from the file system', async () => {
    assert.equal(isStorageFull(await enospc()), true);
  });

  it('recognises SQLITE_FULL from better-sqlite3, also wrapped by TypeORM', () => {
    const driverError = betterSqliteFull();
    assert.equal(isStorageFull(driverError), true);
    assert.equal(isStorageFull(new QueryFailedError('UPDATE operations …', [], driverError)), true);
  });

  it('recognises SQLITE_FULL from sqlite3', async () => {
    assert.equal(isStorageFull(await sqlite3Full()), true);
  });

  it('recognises EDQUOT, a PostgreSQL disk_full, and errors wrapped as a cause or a GraphQL error', async () => {
    assert.equal(isStorageFull(Object.assign(new Error('EDQUOT: disk quota exceeded, write'), { code: 'EDQUOT' })), true);
    assert.equal(isStorageFull(Object.assign(new Error('could not extend file'), { code: '53100' })), true);
    assert.equal(isStorageFull(new Error('blob write failed', { cause: await enospc() })), true);
    assert.equal(isStorageFull(new GraphQLError('wrapped', { originalError: await enospc() })), true);
    assert.equal(isStorageFull(new AggregateError([new Error('other'), await enospc()])), true);
  });

  it('does not mistake other errors for a full disk', () => {
    assert.equal(isStorageFull(new Error('SQLITE_BUSY: database is locked')), false);
    assert.equal(isStorageFull(Object.assign(new Error('no such file'), { code: 'ENOENT' })), false);
    assert.equal(isStorageFull(new AppError('CAPACITY_EXCEEDED', "the instance's storage is full")), false);
    assert.equal(isStorageFull(null), false);
    assert.equal(isStorageFull('ENOSPC'), false);
  });
});

describe('asStorageFull', () => {
  it('names the volume by its variable and says what to do, without driver text or paths', async () => {
    const error = asStorageFull(await enospc());
    assert.ok(error);
    assert.equal(error.code, 'STORAGE_FULL');
    assert.match(error.message, /SNAPGRAPH_DATA_DIR/);
    assert.match(error.message, /free space/i);
    assert.doesNotMatch(error.message, /ENOSPC|SQLITE|\/dev\/|\//);
    assert.match(asStorageFull(await enospc(), 'uploads')!.message, /SNAPGRAPH_UPLOAD_DIR/);
  });

  it('names the metadata database for a PostgreSQL disk_full, wherever the caller was writing', () => {
    const postgres = new QueryFailedError('INSERT …', [], Object.assign(new Error('could not extend file'), { code: '53100' }));
    assert.match(asStorageFull(postgres, 'data')!.message, /DATABASE_URL/);
  });

  it('leaves other errors alone', () => {
    assert.equal(asStorageFull(new Error('boom')), null);
    assert.equal(asStorageFull(new AppError('CONFLICT', 'busy')), null);
  });
});

describe('formatError and a full disk', () => {
  it('answers STORAGE_FULL with no trace of the driver for an error thrown anywhere', () => {
    const thrown = new GraphQLError('SQLITE_FULL: database or disk is full', { originalError: betterSqliteFull() });
    const formatted = formatError(
      { message: thrown.message, extensions: { code: 'INTERNAL_SERVER_ERROR', stacktrace: ['SqliteError: database or disk is full'] } },
      { debugErrors: true },
      thrown,
    );
    assert.equal(formatted.extensions?.code, 'STORAGE_FULL');
    assert.doesNotMatch(JSON.stringify(formatted), /SQLITE|SqliteError|database or disk/);
  });
});
