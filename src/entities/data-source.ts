// The metadata database: embedded SQLite in the data dir by default, PostgreSQL when DATABASE_URL is set.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Client as PgClient, ClientConfig } from 'pg';
import { DataSource, type QueryRunner } from 'typeorm';
import { Initial1764000000000 } from '../migrations/1764000000000-initial';
import { ExportTokens1764100000000 } from '../migrations/1764100000000-export-tokens';
import { OperationAttempts1765000000000 } from '../migrations/1765000000000-operation-attempts';
import { ApiKeyUsage1765100000000 } from '../migrations/1765100000000-api-key-usage';
import { ChunkStore1766000000000 } from '../migrations/1766000000000-chunk-store';
import { RestorePoints1766100000000 } from '../migrations/1766100000000-restore-points';
import { ChangeLog1766200000000 } from '../migrations/1766200000000-change-log';
import { ExportFormats1766300000000 } from '../migrations/1766300000000-export-formats';
import { ExportDestinations1766400000000 } from '../migrations/1766400000000-export-destinations';
import { TenantDataVersions1766500000000 } from '../migrations/1766500000000-tenant-data-versions';
import { CollectedLog1766600000000 } from '../migrations/1766600000000-collected-log';
import { RetiredMasterKeys1766700000000 } from '../migrations/1766700000000-retired-master-keys';
import { CurrentMasterKey1766800000000 } from '../migrations/1766800000000-current-master-key';
import { SharedDataDir1766900000000 } from '../migrations/1766900000000-shared-data-dir';
import { SweepIndexes1767000000000 } from '../migrations/1767000000000-sweep-indexes';
import { ScheduleDueTimes1767100000000 } from '../migrations/1767100000000-schedule-due-times';
import { DeletionClaims1767200000000 } from '../migrations/1767200000000-deletion-claims';
import { RestorePointDamage1767300000000 } from '../migrations/1767300000000-restore-point-damage';
import { ApiKeyEntity } from './api-key.entity';
import { ChunkKeyEntity } from './chunk-key.entity';
import { ChunkPackEntity } from './chunk-pack.entity';
import { ChunkEntity } from './chunk.entity';
import { CurrentMasterKeyEntity } from './current-master-key.entity';
import { ExportDestinationEntity } from './export-destination.entity';
import { ExportTokenEntity } from './export-token.entity';
import { InstanceEntity } from './instance.entity';
import { OperationEntity } from './operation.entity';
import { LogSegmentEntity } from './log-segment.entity';
import { RestorePointEntity } from './restore-point.entity';
import { RetiredMasterKeyEntity } from './retired-master-key.entity';
import { SharedDataDirEntity } from './shared-data-dir.entity';
import { StoreEpochEntity } from './store-epoch.entity';
import { SqliteTransactionGate } from './sqlite-transaction-gate';
import { SnapshotEntity } from './snapshot.entity';
import { TenantEntity } from './tenant.entity';
import { urlWithoutPassword } from '../logging/url-without-password';

export const ENTITIES = [TenantEntity, ApiKeyEntity, InstanceEntity, SnapshotEntity, OperationEntity, ExportTokenEntity, ChunkKeyEntity, ChunkPackEntity, ChunkEntity, RestorePointEntity, StoreEpochEntity, LogSegmentEntity, ExportDestinationEntity, RetiredMasterKeyEntity, CurrentMasterKeyEntity, SharedDataDirEntity];
export const MIGRATIONS = [Initial1764000000000, ExportTokens1764100000000, OperationAttempts1765000000000, ApiKeyUsage1765100000000, ChunkStore1766000000000, RestorePoints1766100000000, ChangeLog1766200000000, ExportFormats1766300000000, ExportDestinations1766400000000, TenantDataVersions1766500000000, CollectedLog1766600000000, RetiredMasterKeys1766700000000, CurrentMasterKey1766800000000, SharedDataDir1766900000000, SweepIndexes1767000000000, ScheduleDueTimes1767100000000, DeletionClaims1767200000000, RestorePointDamage1767300000000];

export interface MetadataDatabaseOptions {
  dataDir: string;
  databaseUrl?: string;
  /**
   * Told the first error of each PostgreSQL session that ends under the pool (a restart, a failover,
   * pg_terminate_backend): what its holder then meets is only pg's "not queryable", and an idle one goes unnoticed.
   */
  onSessionError?: (error: Error) => void;
}

/** The embedded metadata database's file. */
export const metadataDatabasePath = (dataDir: string) => join(dataDir, 'metadata.sqlite');

/**
 * The metadata database, created and connected. A PostgreSQL that cannot be reached is named by its variable and
 * address (pg says only "connect ECONNREFUSED <address>", which reads as anything else the process talks to), without
 * its password.
 */
export async function openMetadataDatabase(options: MetadataDatabaseOptions): Promise<DataSource> {
  const db = createMetadataDataSource(options);
  await db.initialize().catch((error: Error) => {
    if (!options.databaseUrl) throw error;
    throw new Error(`cannot open the metadata database of DATABASE_URL (${urlWithoutPassword(options.databaseUrl)}): ${error.message}`, { cause: error });
  });
  return db;
}

export function createMetadataDataSource({ dataDir, databaseUrl, onSessionError = () => undefined }: MetadataDatabaseOptions): DataSource {
  const common = { entities: ENTITIES, migrations: MIGRATIONS, synchronize: false, logging: false } as const;
  if (databaseUrl) {
    return new DataSource({ type: 'postgres', url: databaseUrl, ...common, extra: { max: 10, Client: pgClientListenedToForLife(onSessionError) } });
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new DataSource({
    type: 'better-sqlite3',
    database: metadataDatabasePath(dataDir),
    enableWAL: true,
    // The CLI (`snapgraph tenant create`) may write while the server runs: wait for the lock instead of failing.
    timeout: 10_000,
    ...common,
  });
  beginImmediate(db);
  // One connection for everyone: transactions take turns (see the gate).
  SqliteTransactionGate.install(db);
  return db;
}

/**
 * pg's Client (the JavaScript driver: pg-pool takes this class even where pg-native would be chosen), with an 'error'
 * listener for all its life. pg-pool listens to a pooled client while it is idle, and TypeORM while a query runner
 * holds it, but neither in between (nor while TypeORM's own setup holds one): the pool hands a new client over as it
 * reads the session's ReadyForQuery, and TypeORM attaches its listener in a promise's continuation. When PostgreSQL
 * ended the session just then (the termination notice in the same read, as when an administrator or a failover ends
 * every session), pg emitted the error with no listener, Node threw it, and the server exited on an uncaught exception.
 * The client is then no longer queryable: its holder's next query fails ("Client has encountered a connection error
 * and is not queryable") and the pool drops the client when it comes back. The session's own error goes to
 * `onSessionError`, once per client.
 */
function pgClientListenedToForLife(onSessionError: (error: Error) => void): new (config: ClientConfig) => PgClient {
  // Required here, not imported: the embedded setup does not load the driver at all.
  const { Client } = require('pg') as typeof import('pg');
  return class ListenedClient extends Client {
    constructor(config: ClientConfig) {
      super(config);
      // A session that ends errs twice: PostgreSQL's notice, then pg's "Connection terminated unexpectedly".
      this.once('error', onSessionError);
      this.on('error', () => undefined);
    }
  };
}

/**
 * Every transaction takes SQLite's write lock at BEGIN (IMMEDIATE), waiting for it up to the busy timeout. A deferred
 * one takes it at its first write, and when another process (the operator CLI while the server runs, or the server
 * while the CLI does) has committed since the transaction first read, SQLite fails that write at once with "database
 * is locked", without waiting: `snapgraph tenant create` failed so once in CI (TypeORM's save reads before it writes).
 */
function beginImmediate(db: DataSource): void {
  const driver = db.driver as { createQueryRunner(mode: string): QueryRunner };
  const create = driver.createQueryRunner.bind(driver);
  const patched = new WeakSet<QueryRunner>();
  driver.createQueryRunner = (mode) => {
    const runner = create(mode);
    if (!patched.has(runner)) {
      patched.add(runner);
      const query = runner.query.bind(runner) as (sql: string, ...rest: unknown[]) => Promise<unknown>;
      // TypeORM's sqlite runners open every outermost transaction with exactly this statement.
      runner.query = ((sql: string, ...rest: unknown[]) => query(sql === 'BEGIN TRANSACTION' ? 'BEGIN IMMEDIATE TRANSACTION' : sql, ...rest)) as QueryRunner['query'];
    }
    return runner;
  };
}

/** The PostgreSQL advisory lock the servers (and the CLI) migrate under; the scheduler's leadership is [.., 1]. */
export const MIGRATION_LOCK_KEY = [0x534e4150, 2] as const;

/**
 * Brings the metadata database to this release's schema; returns the migrations it applied. On PostgreSQL, under an
 * advisory lock held on a connection of its own: replicas booting a new release at once (a rolling update that starts
 * several, every replica restarted together) each found the same migrations pending, and all but the first failed
 * their boot on a table or column the first had just added ("column ... already exists", "duplicate key value violates
 * unique constraint pg_type_typname_nsp_index"). Now the others wait for it and find nothing left to apply.
 */
export async function runMetadataMigrations(db: DataSource): Promise<{ name: string }[]> {
  if (db.options.type !== 'postgres') return db.runMigrations({ transaction: 'each' });
  const holder = db.createQueryRunner();
  try {
    await holder.query('SELECT pg_advisory_lock($1::int, $2::int)', [...MIGRATION_LOCK_KEY]);
    try {
      return await db.runMigrations({ transaction: 'each' });
    } finally {
      // Released with the session anyway, should the unlock fail (the connection lost).
      await holder.query('SELECT pg_advisory_unlock($1::int, $2::int)', [...MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    await holder.release();
  }
}

/** Whether a database error is a unique constraint's refusal (PostgreSQL 23505, SQLite's UNIQUE constraint failed). */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; driverError?: { code?: string }; message?: string };
  const code = e.driverError?.code ?? e.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(e.message ?? '');
}
