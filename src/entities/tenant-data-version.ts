// The version of a tenant's rows in the versioned tables, instances and snapshots (migration 1766500000000): triggers
// give the tenant a new random version in the transaction of every insert, update or delete of one of them, whoever
// commits it (this server, another replica, the operator CLI, an operator's SQL). Two equal versions, read at two
// moments, mean that no change to those rows was committed in between, so whatever was computed from them alone can be
// given again (the API's response cache). A change that nobody reading cares about (an instance's lastScheduledAt)
// only costs a recompute.
import type { DataSource } from 'typeorm';

/**
 * The tenant's current version, as an opaque string; null when there is none that can be relied on: no change has been
 * counted for the tenant yet (or a TRUNCATE forgot them all), or it cannot be read consistently now.
 */
export type TenantDataVersion = (tenantId: string) => Promise<string | null>;

interface BetterSqlite3Connection {
  readonly inTransaction: boolean;
  prepare(sql: string): { pluck(): { get(...values: unknown[]): unknown } };
}

const SELECT_VERSION = 'SELECT "version" FROM "tenant_data_versions" WHERE "tenantId" = ';

export function tenantDataVersion(db: Pick<DataSource, 'options' | 'driver' | 'query'>): TenantDataVersion {
  return db.options.type === 'postgres' ? postgresVersion(db) : sqliteVersion(db);
}

/**
 * SQLite: read straight from the server's one connection, past TypeORM and the transaction gate (about 5 µs against
 * 30-40). Not while a transaction is open on it: that read would see the transaction's uncommitted version, and if it
 * then rolled back, rows read after it (the gate makes them wait for the end) would be kept under a version that
 * never was.
 */
function sqliteVersion(db: Pick<DataSource, 'driver'>): TenantDataVersion {
  const connection = (db.driver as unknown as { databaseConnection: BetterSqlite3Connection }).databaseConnection;
  const statement = connection.prepare(`${SELECT_VERSION}?`).pluck();
  return async (tenantId) => (connection.inTransaction ? null : ((statement.get(tenantId) as string | undefined) ?? null));
}

/** PostgreSQL: the committed version (a statement outside any transaction sees only commits), one round trip. */
function postgresVersion(db: Pick<DataSource, 'query'>): TenantDataVersion {
  return async (tenantId) => {
    const [row] = (await db.query(`${SELECT_VERSION}$1`, [tenantId])) as { version: string }[];
    return row?.version ?? null;
  };
}
