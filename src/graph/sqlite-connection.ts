// Promise wrappers over one `sqlite3` connection. Queries run in libuv's pool, never on the event loop.
import sqlite3 from 'sqlite3';

export class SqliteConnection {
  private constructor(private readonly db: sqlite3.Database) {}

  static open(path: string, mode = sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE): Promise<SqliteConnection> {
    return new Promise((resolve, reject) => {
      const db = new sqlite3.Database(path, mode, (error) => (error ? reject(error) : resolve(new SqliteConnection(db))));
    });
  }

  run(sql: string, params: unknown[] = []): Promise<{ changes: number; lastID: number }> {
    return new Promise((resolve, reject) => {
      this.db.run(sql, params, function (this: sqlite3.RunResult, error: Error | null) {
        if (error) reject(error);
        else resolve({ changes: this.changes, lastID: this.lastID });
      });
    });
  }

  all<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return new Promise((resolve, reject) => {
      this.db.all(sql, params, (error, rows) => (error ? reject(error) : resolve(rows as T[])));
    });
  }

  async get<T>(sql: string, params: unknown[] = []): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      this.db.get(sql, params, (error, row) => (error ? reject(error) : resolve(row as T | undefined)));
    });
  }

  exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => this.db.exec(sql, (error) => (error ? reject(error) : resolve())));
  }

  /**
   * Copies this connection's main database to a new file at destPath with SQLite's online backup API, in one step:
   * the copy is one point in time (inside this connection's read transaction when one is open).
   */
  backupTo(destPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const backup = (this.db as unknown as { backup(path: string, callback: (error: Error | null) => void): SqliteBackup }).backup(
        destPath,
        (error) => {
          if (error) return reject(error);
          backup.step(-1, (stepError, done) => {
            backup.finish(() => {
              if (stepError) reject(stepError);
              else if (!done) reject(new Error('the backup of the store did not complete in one step'));
              else resolve();
            });
          });
        },
      );
      // Any error ends the backup (the driver would otherwise keep it open for a retry on BUSY or LOCKED).
      backup.retryErrors = [];
    });
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => this.db.close((error) => (error ? reject(error) : resolve())));
  }

  /** Runs fn inside BEGIN IMMEDIATE … COMMIT, rolling back on any error. The caller serialises writers. */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.exec('BEGIN IMMEDIATE');
    try {
      const result = await fn();
      await this.exec('COMMIT');
      return result;
    } catch (error) {
      await this.exec('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }
}

/** The part of the driver's (untyped) Backup object used here. */
interface SqliteBackup {
  retryErrors: number[];
  step(pages: number, callback: (error: Error | null, done: boolean) => void): void;
  finish(callback: () => void): void;
}

/** A FIFO lock: one writer at a time per store, as SQLite wants. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
