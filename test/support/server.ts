// Boots the real server (`bin/snapgraph serve`, the launcher package.json "bin" names) as a child process on a free
// port, as users run it.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { type Disposer, forgetCleanup, registerCleanup } from './cleanup';
import { eventually } from './wait';

/** The repository root (this file runs from dist/test/support). */
export const REPO_ROOT = resolve(__dirname, '..', '..', '..');
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
/** The snapgraph command as installed (package.json "bin"): a sh launcher that sets MALLOC_ARENA_MAX and runs CLI. */
export const LAUNCHER = join(REPO_ROOT, 'bin', 'snapgraph');

/** Variables of the developer's shell that would change what a test server does; tests set them explicitly. */
const INHERITED_VARIABLES_TO_DROP = [
  'PORT',
  'HOST',
  'NODE_ENV',
  'LOG_LEVEL',
  'DATABASE_URL',
  'REDIS_URL',
  'SNAPGRAPH_DATA_DIR',
  'SNAPGRAPH_CONFIG',
  'SNAPGRAPH_BOOTSTRAP_TOKEN',
  'SNAPGRAPH_MASTER_KEY',
  'SNAPGRAPH_PREVIOUS_MASTER_KEYS',
  'SNAPGRAPH_PUBLIC_URL',
  'SNAPGRAPH_ALLOWED_HOSTS',
  'SNAPGRAPH_OPERATION_LEASE_MS',
  'SNAPGRAPH_SHUTDOWN_GRACE_MS',
  'SNAPGRAPH_MAX_ATTEMPTS',
  'SNAPGRAPH_MAX_CONCURRENT_OPERATIONS',
  'SNAPGRAPH_LOG_SHIP_DELAY_MS',
  'SNAPGRAPH_LOG_SHIP_INTERVAL_MS',
  'SNAPGRAPH_LOG_SEGMENT_BYTES',
  'SNAPGRAPH_IDLE_TIMEOUT_MS',
  'SNAPGRAPH_UPLOAD_DIR',
  'SNAPGRAPH_MAX_QUERY_DEPTH',
  'SNAPGRAPH_MAX_QUERY_COST',
  'SNAPGRAPH_MAX_QUERY_BYTES',
  'SNAPGRAPH_MAX_QUERY_TOKENS',
  'SNAPGRAPH_MAX_QUERY_FIELDS',
  'SNAPGRAPH_MAX_QUERY_ALIASES',
  'SNAPGRAPH_MAX_BODY_BYTES',
  'SNAPGRAPH_INTROSPECTION',
  'SNAPGRAPH_PLAYGROUND',
  'SNAPGRAPH_DEBUG_ERRORS',
  'SNAPGRAPH_CORS_ORIGINS',
  'SNAPGRAPH_WS_MAX_BUFFERED_BYTES',
  'SNAPGRAPH_WS_MAX_SUBSCRIPTIONS',
  'SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS',
  'SNAPGRAPH_MAX_CONNECTIONS',
  'SNAPGRAPH_URL',
  'SNAPGRAPH_API_KEY',
  'SNAPGRAPH_BLOB_URL',
  'SNAPGRAPH_S3_ENDPOINT',
  'SNAPGRAPH_S3_REGION',
  'SNAPGRAPH_S3_PART_BYTES',
  'SNAPGRAPH_S3_PART_CONCURRENCY',
  'SNAPGRAPH_EXPORT_RETRY_MS',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_REGION',
  'AWS_PROFILE',
];

export interface StartOptions {
  /** Extra or overriding environment; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
  /** Reuse a data dir (restart tests); by default a fresh temp dir, removed when the server stops for good. */
  dataDir?: string;
  /** Written to a JSON file passed as SNAPGRAPH_CONFIG (tiers, bytesPerStorageGB, maxUploadBytes, exportUrlTtl). */
  config?: object;
  /** The bootstrap ADMIN key of tenant `default`; random by default. */
  bootstrapToken?: string;
  /** How long to wait for the "snapgraph is serving" line. */
  bootTimeoutMs?: number;
  /** Extra node flags for the server process (e.g. --cpu-prof, --inspect); the server then runs as plainNode. */
  nodeArgs?: string[];
  /** Runs `node dist/src/cli/main.js serve` rather than the launcher (what a server started without it does). */
  plainNode?: boolean;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TestServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** http://127.0.0.1:<port>/graphql */
  readonly graphqlUrl: string;
  /** ws://127.0.0.1:<port>/graphql */
  readonly wsUrl: string;
  /** The bootstrap ADMIN key of tenant `default` (valid when this data dir was first booted with it). */
  readonly adminKey: string;
  readonly dataDir: string;
  /** The environment the server runs with (also what `runCli` uses). */
  readonly env: NodeJS.ProcessEnv;
  readonly process: ChildProcess;
  /** Everything the current process wrote to stdout and stderr, in order. */
  logs(): string;
  /** Parsed JSON log lines (pino) of the current process. */
  logLines(): Record<string, unknown>[];
  /** SIGTERM and wait for the exit (SIGKILL after a timeout). Removes the data dir unless kept or caller-owned. */
  stop(options?: { keepDataDir?: boolean; timeoutMs?: number }): Promise<ExitStatus>;
  /** SIGKILL (a crash) and wait for the exit; the data dir stays for a restart. */
  kill(): Promise<ExitStatus>;
  /** Stops (SIGTERM) if running and boots again on the same data dir and env; url and process change. */
  restart(options?: { env?: Record<string, string | undefined> }): Promise<void>;
}

/** A temp dir removed at the end of the test (or of the run, when made in a `before` hook). */
export function makeTempDir(prefix = 'snapgraph-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  registerCleanup(async () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const randomToken = (prefix = 'sg_test_') => `${prefix}${randomBytes(18).toString('base64url')}`;

/** The environment a test server runs with: the parent's, minus anything Snapgraph reads, plus the overrides. */
export function serverEnv(overrides: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of INHERITED_VARIABLES_TO_DROP) delete env[name];
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'snapgraph-e2e-data-'));
  let configDir: string | undefined;
  let env: NodeJS.ProcessEnv;
  const adminKey = options.bootstrapToken ?? randomToken();
  // Partial tus uploads live outside the data dir; a sibling folder is removed with it (even after a SIGKILL).
  const uploadDir = `${dataDir}-uploads`;
  // Asynchronous: a data dir holds store files of hundreds of MB, and removing one synchronously held the test process
  // (which may be timing events of other servers meanwhile) for half a second.
  const removeFiles = async () => {
    if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
    if (ownsDataDir) await rm(uploadDir, { recursive: true, force: true });
    if (configDir) await rm(configDir, { recursive: true, force: true });
  };

  try {
    const overrides: Record<string, string | undefined> = {
      PORT: '0',
      HOST: '127.0.0.1',
      SNAPGRAPH_DATA_DIR: dataDir,
      SNAPGRAPH_BOOTSTRAP_TOKEN: adminKey,
      SNAPGRAPH_UPLOAD_DIR: uploadDir,
      LOG_LEVEL: 'info',
    };
    if (options.config !== undefined) {
      configDir = mkdtempSync(join(tmpdir(), 'snapgraph-e2e-config-'));
      overrides.SNAPGRAPH_CONFIG = join(configDir, 'snapgraph.json');
      writeFileSync(overrides.SNAPGRAPH_CONFIG, JSON.stringify(options.config, null, 2));
    }
    env = serverEnv({ ...overrides, ...options.env });
    if (['warn', 'error', 'fatal', 'silent'].includes(env.LOG_LEVEL ?? '')) {
      throw new Error(`LOG_LEVEL=${env.LOG_LEVEL} hides the "snapgraph is serving" line the harness reads the URL from`);
    }
  } catch (error) {
    await removeFiles();
    throw error;
  }

  let current: Booted;
  try {
    current = await boot(env, options);
  } catch (error) {
    await removeFiles();
    throw error;
  }

  let dispose: Disposer;
  // Longer than the server's default shutdown grace (25 s) for running operations.
  const stop = async ({ keepDataDir = false, timeoutMs = 45_000 } = {}): Promise<ExitStatus> => {
    const status = await terminate(current.child, 'SIGTERM', timeoutMs);
    if (!keepDataDir) {
      forgetCleanup(dispose);
      await removeFiles();
    }
    return status;
  };
  dispose = async () => {
    await stop();
  };
  registerCleanup(dispose);

  const server: TestServer = {
    get url() {
      return current.url;
    },
    get graphqlUrl() {
      return `${current.url}/graphql`;
    },
    get wsUrl() {
      return `${current.url.replace(/^http/, 'ws')}/graphql`;
    },
    adminKey,
    dataDir,
    get env() {
      return env;
    },
    get process() {
      return current.child;
    },
    logs: () => current.output.join(''),
    logLines: () => parseLogLines(current.output.join('')),
    stop,
    kill: () => terminate(current.child, 'SIGKILL', 15_000),
    restart: async ({ env: changes } = {}) => {
      await terminate(current.child, 'SIGTERM', 45_000);
      if (changes) env = serverEnv({ ...env, ...changes });
      current = await boot(env, options);
    },
  };
  return server;
}

// A last resort when the runner exits without its hooks (e.g. a crash): no server outlives the tests.
const liveServers = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveServers) child.kill('SIGKILL');
});

// A server that dies on its own (a crash) says why on the runner's stderr: its tests then only see "fetch failed".
const stoppedOnPurpose = new WeakSet<ChildProcess>();
function reportCrash(child: ChildProcess, output: string[]): void {
  child.once('exit', (code, signal) => {
    if (stoppedOnPurpose.has(child) || code === 0 || signal === 'SIGKILL' || signal === 'SIGTERM' || signal === 'SIGINT') return;
    const tail = output.join('').split('\n').slice(-40).join('\n');
    process.stderr.write(`\n[test harness] the server (pid ${child.pid}) exited on its own (code ${code}, signal ${signal}); its last output:\n${tail}\n`);
  });
}

interface Booted {
  child: ChildProcess;
  url: string;
  output: string[];
}

async function boot(env: NodeJS.ProcessEnv, { bootTimeoutMs: timeoutMs = 30_000, nodeArgs = [], plainNode = false }: StartOptions): Promise<Booted> {
  const output: string[] = [];
  const [command, args] = plainNode || nodeArgs.length > 0 ? [process.execPath, [...nodeArgs, CLI, 'serve']] : [LAUNCHER, ['serve']];
  const child = spawn(command, args, { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  liveServers.add(child);
  child.once('exit', () => liveServers.delete(child));
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => output.push(chunk));

  const url = await new Promise<string>((resolve, reject) => {
    let pending = '';
    const fail = (why: string) => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`the server did not boot: ${why}\n--- server output ---\n${output.join('')}`));
    };
    const onStdout = (chunk: string) => {
      output.push(chunk);
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        const entry = parseLogLine(line);
        if (entry?.msg === 'snapgraph is serving' && typeof entry.url === 'string') {
          cleanup();
          resolve(new URL(entry.url).origin);
          return;
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) => fail(`it exited (code ${code}, signal ${signal})`);
    const timer = setTimeout(() => fail(`no "snapgraph is serving" log line within ${timeoutMs} ms`), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout.off('data', onStdout);
      child.off('exit', onExit);
      child.stdout.on('data', (chunk: string) => output.push(chunk));
    };
    child.stdout.on('data', onStdout);
    child.once('exit', onExit);
  });
  reportCrash(child, output);
  return { child, url, output };
}

/** Sends a signal and waits for the exit; escalates to SIGKILL when the process outlives the timeout. */
export async function terminate(child: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<ExitStatus> {
  const exited = exitOf(child);
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  stoppedOnPurpose.add(child);
  const first = await Promise.race([exited, timedOut]);
  clearTimeout(timer);
  if (first !== 'timeout') return first;
  child.kill('SIGKILL');
  await exited;
  throw new Error(`the server did not exit within ${timeoutMs} ms of ${signal}; it was killed`);
}

/** Resolves when the process has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<ExitStatus> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

function parseLogLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/**
 * One sample of the server's GET /metrics: with `labels` (as printed: `outcome="hit"`), that series, 0 if absent;
 * without, the metric's only value or the sum of its series.
 */
export async function metricsValue(server: Pick<TestServer, 'url'>, name: string, labels?: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const wanted = labels === undefined ? (line: string) => line.startsWith(`${name} `) || line.startsWith(`${name}{`) : (line: string) => line.startsWith(`${name}{${labels}} `);
  return text
    .split('\n')
    .filter(wanted)
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** GraphQL subscriptions the server runs (graphql-ws counts one once its stream has started). */
export const activeSubscriptions = (server: Pick<TestServer, 'url'>) => metricsValue(server, 'snapgraph_subscriptions_active');

/** Resolves once the server runs at least `count` subscriptions (a subscription's stream starts when it has it). */
export async function untilSubscribed(server: Pick<TestServer, 'url'>, count: number): Promise<void> {
  await eventually(async () => (await activeSubscriptions(server)) >= count, { what: `${count} active subscriptions` });
}

export function parseLogLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .map(parseLogLine)
    .filter((entry): entry is Record<string, unknown> => entry !== null);
}

/**
 * One server for a whole describe block: booted in `before`, stopped in `after`. The options may be a function,
 * evaluated in `before` (e.g. to use a database created there).
 */
export function serverPerSuite(options: StartOptions | (() => StartOptions | Promise<StartOptions>) = {}): {
  readonly server: TestServer;
} {
  let server: TestServer | undefined;
  before(async function bootSuiteServer() {
    this.timeout(60_000);
    server = await startServer(typeof options === 'function' ? await options() : options);
  });
  after(async function stopSuiteServer() {
    await server?.stop();
    server = undefined;
  });
  return {
    get server() {
      if (!server) throw new Error('the suite server is not running (used outside the describe block?)');
      return server;
    },
  };
}

/**
 * One server for a describe block whose tests kill, stop and restart it (some with other settings): each test finds
 * it running with the block's settings, booted again if the test before it left it stopped or changed. A boot costs
 * more than most of these tests' own work (about 1.5 s of CPU).
 */
export function restartableServerPerSuite(options: StartOptions = {}): { readonly server: TestServer } {
  const suite = serverPerSuite(options);
  let bootEnv: NodeJS.ProcessEnv | undefined;
  beforeEach(async function bootSuiteServerAgain() {
    this.timeout(60_000);
    const { server } = suite;
    bootEnv ??= server.env;
    const settings = bootEnv;
    const { exitCode, signalCode } = server.process;
    if (exitCode === null && signalCode === null && isDeepStrictEqual(server.env, settings)) return;
    const names = new Set([...Object.keys(server.env), ...Object.keys(settings)]);
    await server.restart({ env: Object.fromEntries([...names].map((name) => [name, settings[name]])) });
  });
  return suite;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bin/snapgraph <args>` with the given environment (a server's, to share its data). */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(LAUNCHER, args, { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`snapgraph ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `snapgraph serve` expecting it to refuse to boot; resolves with its exit code and output. */
/** What a boot that stopped printed, and the data dir of its own it was given. */
export type BootFailure = CliResult & { dataDir: string };

/** `snapgraph serve` expected to stop at its boot, on a data dir of its own. */
export async function bootExpectingFailure(env: Record<string, string | undefined>, timeoutMs = 20_000): Promise<BootFailure> {
  const dataDir = makeTempDir();
  const result = await runCli(['serve'], serverEnv({ PORT: '0', HOST: '127.0.0.1', SNAPGRAPH_DATA_DIR: dataDir, ...env }), timeoutMs);
  return { ...result, dataDir };
}

export interface NewTenant {
  tenantId: string;
  apiKey: string;
}

/** `snapgraph tenant create <name> --json` with the server's environment (works while it runs). */
export async function createTenant(server: Pick<TestServer, 'env'>, name: string): Promise<NewTenant> {
  const result = await runCli(['tenant', 'create', name, '--json'], server.env);
  if (result.code !== 0) {
    throw new Error(`snapgraph tenant create ${name} exited ${result.code}\n${result.stdout}${result.stderr}`);
  }
  const printed = JSON.parse(result.stdout.trim()) as NewTenant;
  if (typeof printed.tenantId !== 'string' || typeof printed.apiKey !== 'string') {
    throw new Error(`unexpected output of tenant create: ${result.stdout}`);
  }
  return printed;
}
