// Embedded SQLite (better-sqlite3) is one connection, and TypeORM hands the same query runner to every caller: a
// transaction opened while another is open would become a savepoint of it, and a statement run meanwhile by anyone
// else would land inside it, so one request's rollback could undo another's writes. The gate gives the connection's
// transaction to one caller at a time:
// - every createQueryRunner() returns a session (a proxy of the shared runner) with its own view of the transaction;
// - a session that starts a transaction waits for the gate, and holds it until its outermost commit or rollback;
// - a statement from anyone else waits until the transaction is over (no write lands in it, no read sees its
//   uncommitted rows);
// - code running inside the transaction's callback (it knows through AsyncLocalStorage) belongs to it: a nested
//   transaction is a savepoint of it and a query through the data source instead of the callback's manager joins
//   it, rather than waiting for a gate its own transaction holds (a deadlock).
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';

/** The transaction a piece of code runs inside; null once it is over (work it started may outlive it). */
interface Scope {
  owner: object | null;
  /** Set once its transaction has started: a scope is never lent to a later transaction. */
  claimed: boolean;
}

/** The shared runner's transaction state, which TypeORM keeps on the runner itself. */
type SharedRunner = QueryRunner & { transactionDepth: number; isTransactionActive: boolean };

export class SqliteTransactionGate {
  private owner: object | null = null;
  private readonly waiting: (() => void)[] = [];
  private readonly scopes = new AsyncLocalStorage<Scope>();
  private openScopes = 0;

  /** Installs the gate on a better-sqlite3 data source, before it is initialized. */
  static install(db: DataSource): SqliteTransactionGate {
    const gate = new SqliteTransactionGate();
    const driver = db.driver as { createQueryRunner(mode: string): QueryRunner };
    const createShared = driver.createQueryRunner.bind(driver);
    driver.createQueryRunner = (mode) => gate.session(createShared(mode) as SharedRunner);
    const manager = db.manager as EntityManager & { transaction: (...args: unknown[]) => Promise<unknown> };
    const transaction = manager.transaction.bind(manager) as (...args: unknown[]) => Promise<unknown>;
    // db.transaction() goes through db.manager.transaction(): the callback runs in a scope of its own.
    manager.transaction = (...args: unknown[]) => gate.inScope(() => transaction(...args));
    return gate;
  }

  private inScope<T>(run: () => Promise<T>): Promise<T> {
    if (this.scopes.getStore()?.owner) return run();
    const scope: Scope = { owner: null, claimed: false };
    this.openScopes += 1;
    return this.scopes.run(scope, async () => {
      try {
        return await run();
      } finally {
        scope.owner = null;
        // With no scope open, nothing needs a store: disabled, AsyncLocalStorage stops hooking every promise of the
        // process (bench:api, interleaved: 0.72–0.82 against 0.96 ms of server CPU per `{ viewer { role } }`); the
        // next run() enables it again. Work a scope started that outlives it then sees no store, which means what a
        // closed scope does: not inside a transaction.
        if (--this.openScopes === 0) this.scopes.disable();
      }
    });
  }

  /** Whether `session` (or the code running in its transaction's scope) holds the connection's transaction. */
  private holds(session: object): boolean {
    return this.owner !== null && (this.owner === session || this.scopes.getStore()?.owner === this.owner);
  }

  private async acquire(owner: object): Promise<void> {
    while (this.owner !== null) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.owner = owner;
  }

  private release(): void {
    this.owner = null;
    // Wake everyone: the first to run takes the gate, the others see it taken and queue again.
    for (const wake of this.waiting.splice(0)) wake();
  }

  private session(shared: SharedRunner): QueryRunner {
    const gate = this;
    let manager: EntityManager | undefined;
    const session: QueryRunner = new Proxy(shared, {
      get(target, property, receiver) {
        switch (property) {
          case 'manager':
            return manager ?? target.manager;
          case 'isTransactionActive':
            return gate.holds(session) && target.isTransactionActive;
          case 'query':
            return async (...args: Parameters<QueryRunner['query']>) => {
              if (gate.owner === null || gate.holds(session)) return target.query(...args);
              await gate.acquire(session);
              try {
                return await target.query(...args);
              } finally {
                gate.release();
              }
            };
          case 'startTransaction':
            return async (isolationLevel?: Parameters<QueryRunner['startTransaction']>[0]) => {
              if (gate.holds(session)) return target.startTransaction(isolationLevel);
              await gate.acquire(session);
              const scope = gate.scopes.getStore();
              if (scope && !scope.claimed) Object.assign(scope, { owner: session, claimed: true });
              try {
                await target.startTransaction(isolationLevel);
              } catch (error) {
                gate.release();
                throw error;
              }
            };
          case 'commitTransaction':
            return () => gate.finish(session, target, () => target.commitTransaction(), false);
          case 'rollbackTransaction':
            return () => gate.finish(session, target, () => target.rollbackTransaction(), true);
          default:
            return Reflect.get(target, property, receiver);
        }
      },
      set(target, property, value, receiver) {
        // DataSource.createQueryRunner() gives each runner its own manager: this session's, bound to it.
        if (property === 'manager') {
          manager = value as EntityManager;
          return true;
        }
        return Reflect.set(target, property, value, receiver);
      },
    });
    return session;
  }

  /**
   * Commit or rollback; the outermost one gives the connection back. A failed COMMIT keeps it: TypeORM rolls back
   * next. A failed outermost ROLLBACK ends the transaction all the same (SQLite has already rolled back when, say,
   * the disk filled), or the connection would stay taken for good.
   */
  private async finish(session: object, shared: SharedRunner, end: () => Promise<void>, isRollback: boolean): Promise<void> {
    if (!this.holds(session)) return end(); // TypeORM's own "no transaction" error
    const outermost = shared.transactionDepth <= 1;
    let failed = true;
    try {
      await end();
      failed = false;
    } finally {
      if (outermost) {
        if (failed && isRollback) {
          shared.isTransactionActive = false;
          shared.transactionDepth = 0;
        }
        if (shared.transactionDepth === 0) {
          const scope = this.scopes.getStore();
          if (scope?.owner === this.owner) scope.owner = null;
          this.release();
        }
      }
    }
  }
}
