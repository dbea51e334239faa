// The one clock that the processes sharing a metadata database judge leases and claims by.
import { type DataSource, type FindOperator, Raw } from 'typeorm';

/**
 * Epoch milliseconds `offsetMs` from now, as SQL for a bigint column, by the database's clock on PostgreSQL. Replicas
 * on several machines each have a clock of their own: a lease one of them set by its clock and another judged by its
 * own was taken for expired by a replica ahead by most of the lease, which took over live operations. On SQLite the
 * one process is alone on the database, and its clock (Date.now, which tests may shift) is the one clock.
 */
export function databaseTime(db: DataSource, offsetMs = 0): () => string {
  if (db.options.type === 'postgres') {
    // clock_timestamp(), not now(): now() stands still for a whole transaction.
    return () => `(floor(extract(epoch from clock_timestamp()) * 1000)::bigint + ${Math.round(offsetMs)})`;
  }
  const at = Date.now() + Math.round(offsetMs);
  return () => String(at);
}

/** A condition on a bigint column of epoch milliseconds: before `offsetMs` from now, by databaseTime's clock. */
export function beforeDatabaseTime(db: DataSource, offsetMs = 0): FindOperator<number> {
  const time = databaseTime(db, offsetMs)();
  return Raw((column) => `${column} < ${time}`);
}
