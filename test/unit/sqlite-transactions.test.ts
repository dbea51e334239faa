// The embedded metadata database is one better-sqlite3 connection: its transactions must take turns.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { DataSource } from 'typeorm';
import { metadataDatabasePath } from '../../src/entities/data-source';
import { TenantEntity } from '../../src/entities/tenant.entity';
import { migratedSqliteMetadata } from '../support/metadata-database';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('metadata transactions on SQLite', () => {
  let dir: string;
  let db: DataSource;

  beforeEach(async () => {
    ({ dir, db } = await migratedSqliteMetadata('snapgraph-sqlite-tx-'));
  });

  afterEach(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const tenant = (name: string) => ({ id: randomUUID(), name, createdAt: Date.now() });
  const names = async () => (await db.getRepository(TenantEntity).find()).map((row) => row.name).sort();

  it("one transaction's rollback does not undo another's writes, nor writes made outside transactions", async () => {
    let inserted!: () => void;
    const firstInserted = new Promise<void>((resolve) => (inserted = resolve));
    const failing = db.transaction(async (manager) => {
      await manager.insert(TenantEntity, tenant('rolled-back'));
      inserted();
      await pause(100); // the others start while this transaction is open
      throw new Error('the first request fails');
    });
    await firstInserted;
    const committed = db.transaction(async (manager) => {
      await manager.insert(TenantEntity, tenant('committed'));
    });
    const plain = db.getRepository(TenantEntity).insert(tenant('outside'));
    const saved = db.getRepository(TenantEntity).save(tenant('saved'));
    await assert.rejects(failing, /the first request fails/);
    await Promise.all([committed, plain, saved]);
    assert.deepEqual(await names(), ['committed', 'outside', 'saved']);
  });

  it('reads outside a transaction do not see its uncommitted rows', async () => {
    let inserted!: () => void;
    const firstInserted = new Promise<void>((resolve) => (inserted = resolve));
    const failing = db.transaction(async (manager) => {
      await manager.insert(TenantEntity, tenant('uncommitted'));
      inserted();
      await pause(50);
      throw new Error('rolled back');
    });
    await firstInserted;
    const seen = await names();
    await assert.rejects(failing);
    assert.deepEqual(seen, []);
  });

  it('lets code inside a transaction use the data source and nest transactions without waiting for itself', async () => {
    await db.transaction(async (manager) => {
      await manager.insert(TenantEntity, tenant('outer'));
      // Through the data source rather than the manager: part of the same transaction, not a deadlock.
      assert.deepEqual(await names(), ['outer']);
      await db.transaction(async (inner) => inner.insert(TenantEntity, tenant('inner')));
      await assert.rejects(
        db.transaction(async (inner) => {
          await inner.insert(TenantEntity, tenant('inner-rolled-back'));
          throw new Error('nested failure');
        }),
      );
      await db.getRepository(TenantEntity).insert(tenant('via-repository'));
    });
    assert.deepEqual(await names(), ['inner', 'outer', 'via-repository']);
  });

  it('serves many concurrent transactions, each all-or-nothing', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        db.transaction(async (manager) => {
          await manager.insert(TenantEntity, tenant(`t${i}-a`));
          await pause(i % 3);
          await manager.insert(TenantEntity, tenant(`t${i}-b`));
          if (i % 2 === 1) throw new Error(`odd ${i}`);
        }),
      ),
    );
    assert.equal(results.filter((result) => result.status === 'rejected').length, 20);
    const expected = Array.from({ length: 20 }, (_, k) => [`t${2 * k}-a`, `t${2 * k}-b`]).flat().sort();
    assert.deepEqual(await names(), expected);
  });

  it('a transaction that read before it writes is not refused when another process wrote meanwhile (BEGIN IMMEDIATE)', async () => {
    // The other process (as the operator CLI beside the server) inserts a tenant while this transaction is open.
    const other = `
      const Database = require('better-sqlite3');
      const db = new Database(process.argv[1], { timeout: 10000 });
      db.prepare('INSERT INTO tenants (id, name, createdAt) VALUES (?, ?, ?)').run(require('node:crypto').randomUUID(), 'from-the-cli', Date.now());
    `;
    let otherDone!: Promise<unknown>;
    await db.transaction(async (manager) => {
      await manager.getRepository(TenantEntity).count(); // a read first, as TypeORM's save does
      otherDone = new Promise((resolve, reject) =>
        execFile(process.execPath, ['-e', other, metadataDatabasePath(dir)], (error) => (error ? reject(error) : resolve(null))),
      );
      await pause(300); // the other process is running (and waits for this transaction's lock)
      await manager.insert(TenantEntity, tenant('from-the-server'));
    });
    await otherDone;
    assert.deepEqual(await names(), ['from-the-cli', 'from-the-server']);
  });

  it('gives the connection back after a failed commit or rollback', async () => {
    await db.query('CREATE TABLE deferred_parent (id INTEGER PRIMARY KEY)');
    await db.query('CREATE TABLE deferred_child (parent INTEGER REFERENCES deferred_parent(id) DEFERRABLE INITIALLY DEFERRED)');
    await db.query('PRAGMA foreign_keys = ON');
    // The foreign key is checked at COMMIT, which fails; TypeORM rolls back.
    await assert.rejects(db.transaction(async (manager) => manager.query('INSERT INTO deferred_child (parent) VALUES (42)')));
    await db.transaction(async (manager) => manager.insert(TenantEntity, tenant('after')));
    assert.deepEqual(await names(), ['after']);
  });
});
