// The local PostgreSQL (127.0.0.1:5432, trust auth, database `test`) for suites that run
// against PostgreSQL metadata; skipped with a message when it is not there.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { Client } from 'pg';
import { registerCleanup } from './cleanup';
import { serverPerSuite, type TestServer } from './server';

/** The admin URLs tried in order; SNAPGRAPH_TEST_POSTGRES_URL (allowed to CREATE DATABASE), when set, is the only one. */
function candidateUrls(): string[] {
  const chosen = process.env.SNAPGRAPH_TEST_POSTGRES_URL?.trim();
  if (chosen) return [chosen];
  return ['postgres://postgres@127.0.0.1:5432/test', 'postgres://root@127.0.0.1:5432/test'];
}

export type PostgresAvailability = { url: string } | { reason: string };

let availability: Promise<PostgresAvailability> | undefined;

/** Whether the local PostgreSQL answers, and an admin URL that connects (checked once per run). */
export function postgresAvailability(): Promise<PostgresAvailability> {
  return (availability ??= probe());
}

async function probe(): Promise<PostgresAvailability> {
  const candidates = candidateUrls();
  const { hostname, port } = new URL(candidates[0]);
  const host = hostname || '127.0.0.1';
  if (!(await reachable(host, Number(port || 5432), 1000))) return { reason: `nothing listens on ${host}:${port || 5432}` };
  const failures: string[] = [];
  for (const url of candidates) {
    const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return { url };
    } catch (error) {
      failures.push(`${redact(url)}: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return { reason: `cannot connect (${failures.join('; ')})` };
}

function reachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

const redact = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');

/**
 * A describe block that runs only when the local PostgreSQL is reachable; otherwise every test is skipped and the
 * reason printed. Inside, `adminUrl()` is the admin URL (set by the time `before` hooks declared later run).
 */
export function describePostgres(title: string, body: (postgres: { adminUrl(): string }) => void): Mocha.Suite {
  return describe(title, function () {
    let adminUrl: string | undefined;
    before(async function skipWithoutPostgres() {
      const found = await postgresAvailability();
      if ('reason' in found) {
        console.log(`      (skipped "${title}": no PostgreSQL for the tests: ${found.reason})`);
        this.skip();
      }
      adminUrl = found.url;
    });
    body({
      adminUrl: () => {
        if (!adminUrl) throw new Error('PostgreSQL availability has not been checked yet (use it inside hooks or tests)');
        return adminUrl;
      },
    });
  });
}

export interface TestDatabase {
  /** postgres://…/snapgraph_test_<random>: a fresh, empty database. */
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** Creates a fresh database for one suite (so runs never collide); dropped after the suite or the run. */
export async function createTestDatabase(adminUrl: string): Promise<TestDatabase> {
  const name = `snapgraph_test_${randomBytes(6).toString('hex')}`;
  await withClient(adminUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const drop = registerCleanup(async () => {
    // FORCE: a server killed mid-test may leave connections behind.
    await withClient(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  });
  return { url: url.toString(), name, drop };
}

/**
 * One server for the describePostgres block, its metadata in a fresh database of its own, dropped once the server has
 * stopped (mocha runs `after` hooks in the order they were declared: the server's first).
 */
export function postgresServerPerSuite(postgres: { adminUrl(): string }): { readonly server: TestServer; readonly database: TestDatabase } {
  let database: TestDatabase | undefined;
  before(async () => {
    database = await createTestDatabase(postgres.adminUrl());
  });
  const suite = serverPerSuite(() => ({ env: { DATABASE_URL: database!.url } }));
  after(async () => {
    await database?.drop();
  });
  return {
    get server() {
      return suite.server;
    },
    get database() {
      if (!database) throw new Error('the suite database does not exist (used outside the describe block?)');
      return database;
    },
  };
}

/** Runs one function with a connected client (e.g. to inspect the metadata tables). */
export async function withClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
