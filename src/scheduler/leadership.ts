// Which process runs the scheduler: exactly one at a time, decided by the database, never by a home-made election.
import type { Client } from 'pg';
import type { AppConfig } from '../config/app-config';
import type { Logger } from '../logging/logger';

export interface SchedulerLeadership {
  /**
   * Whether this process leads now, acquiring leadership when it is free. The scheduler calls it before every
   * tick, so a follower retries about once a second. Never throws: any failure means "not the leader".
   */
  check(): Promise<boolean>;
  /** Gives leadership up and closes what it holds. The scheduler has stopped ticking when this is called. */
  release(): Promise<void>;
}

/** The embedded setup (SQLite metadata): no other process can share the database, so this one always leads. */
export class SoleProcessLeadership implements SchedulerLeadership {
  async check(): Promise<boolean> {
    return true;
  }

  async release(): Promise<void> {}
}

/**
 * A session-level PostgreSQL advisory lock held on a connection of its own. PostgreSQL releases the lock when that
 * session ends, so a process that dies (even by SIGKILL) or loses its connection gives leadership up by itself, and
 * a follower's next try wins it. The two-int form keeps the key out of the way of bigint keys other tools may use.
 *
 * A leader that stops talking without closing its connection (a hung or paused process, a host cut off from the
 * network or powered off) leaves PostgreSQL an idle session, not a dead one: left alone, it kept the lock (for ever,
 * or until the server's TCP keepalives gave up, two hours by default) and no process scheduled meanwhile. So the
 * session asks PostgreSQL to end it after SILENT_LEADER_TIMEOUT_MS without a query (PostgreSQL 14 and later; TCP
 * keepalives of seconds catch a vanished host on 13), and a leader sends one every HEARTBEAT_MS, however long a tick takes.
 */
export class PostgresAdvisoryLockLeadership implements SchedulerLeadership {
  /** 'SNAP' as an int4, and the scheduler's slot under it. */
  static readonly LOCK_KEY = [0x534e4150, 1] as const;
  /** How long a leader may stay silent before PostgreSQL ends its session, and so frees the lock for another process. */
  static readonly SILENT_LEADER_TIMEOUT_MS = 10_000;
  private static readonly HEARTBEAT_MS = 1_000;

  private client: Client | null = null;
  private leading = false;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(
    private readonly databaseUrl: string,
    private readonly logger: Logger,
  ) {}

  async check(): Promise<boolean> {
    try {
      const client = this.client ?? (await this.connect());
      if (this.leading) {
        // The lock lives as long as the session: a round trip proves the session is still there.
        await client.query('SELECT 1');
        return this.leading;
      }
      const [classId, objectId] = PostgresAdvisoryLockLeadership.LOCK_KEY;
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS locked', [
        classId,
        objectId,
      ]);
      if (rows[0]?.locked && this.client === client) {
        this.leading = true;
        this.startHeartbeat(client);
        this.logger.info('scheduler leadership acquired (PostgreSQL advisory lock)');
      }
      return this.leading;
    } catch (error) {
      this.disconnect(error);
      return false;
    }
  }

  async release(): Promise<void> {
    const client = this.client;
    if (!client) return;
    if (this.leading) {
      const [classId, objectId] = PostgresAdvisoryLockLeadership.LOCK_KEY;
      await client.query('SELECT pg_advisory_unlock($1::int, $2::int)', [classId, objectId]).catch(() => undefined);
      this.logger.info('scheduler leadership released');
    }
    this.leading = false;
    this.stopHeartbeat();
    this.client = null;
    await client.end().catch(() => undefined);
  }

  private async connect(): Promise<Client> {
    // Loaded only on PostgreSQL metadata: the embedded setup does not pay for the driver at every boot.
    const { Client } = await import('pg');
    const client = new Client({
      connectionString: this.databaseUrl,
      application_name: 'snapgraph-scheduler',
      connectionTimeoutMillis: 5_000,
      // A connection that hangs (not closed, just silent) must not keep a stale leader believing it leads.
      query_timeout: 5_000,
      keepAlive: true,
    });
    // Without a listener, a dropped connection's 'error' event would crash the process.
    client.on('error', (error) => this.disconnect(error, client));
    client.on('end', () => this.disconnect(new Error('the connection ended'), client));
    this.client = client;
    try {
      await client.connect();
      await this.endSessionWhenSilent(client);
    } catch (error) {
      this.client = null;
      await client.end().catch(() => undefined);
      throw error;
    }
    return client;
  }

  /** Has PostgreSQL end this session when it has been silent for SILENT_LEADER_TIMEOUT_MS (see the class comment). */
  private async endSessionWhenSilent(client: Client): Promise<void> {
    const silentSeconds = PostgresAdvisoryLockLeadership.SILENT_LEADER_TIMEOUT_MS / 1_000;
    await client.query(`SET tcp_keepalives_idle = ${silentSeconds / 2}; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = ${silentSeconds / 2}`);
    try {
      await client.query(`SET idle_session_timeout = ${PostgresAdvisoryLockLeadership.SILENT_LEADER_TIMEOUT_MS}`);
    } catch (error) {
      // PostgreSQL 13 has no idle_session_timeout: the keepalives above still catch a host that is gone.
      if ((error as { code?: string }).code !== '42704') throw error;
    }
  }

  private startHeartbeat(client: Client): void {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => {
      client.query('SELECT 1').catch((error: unknown) => this.disconnect(error, client));
    }, PostgresAdvisoryLockLeadership.HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Forgets the connection (and with it the lock, which PostgreSQL frees when the session ends). */
  private disconnect(error: unknown, which: Client | null = this.client): void {
    if (!which || which !== this.client) return;
    this.client = null;
    this.stopHeartbeat();
    if (this.leading) {
      this.leading = false;
      this.logger.warn({ err: error }, 'scheduler leadership lost: the lock connection failed');
    }
    which.end().catch(() => undefined);
  }
}

/** PostgreSQL metadata means other processes may share it; embedded SQLite means this process is alone. */
export function createSchedulerLeadership(config: Pick<AppConfig, 'databaseUrl'>, logger: Logger): SchedulerLeadership {
  return config.databaseUrl ? new PostgresAdvisoryLockLeadership(config.databaseUrl, logger) : new SoleProcessLeadership();
}
