// The snapgraph command as an operator meets it (issue 10): usage, tenant and key administration on the metadata
// database, failures that say so, file modes, and the README's commands as written.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import {
  CLI,
  createInstance,
  createKey,
  createNodes,
  eventually,
  expectData,
  filesUnder,
  gql,
  LAUNCHER,
  makeTempDir,
  REPO_ROOT,
  runCli,
  serverEnv,
  serverPerSuite,
  startServer,
  takeSnapshot,
  type TestServer,
  within,
} from '../support';

const modeOf = (path: string) => statSync(path).mode & 0o777;
const octal = (mode: number) => `0${mode.toString(8)}`;

describe('the snapgraph command', () => {
  const suite = serverPerSuite();

  it('prints the usage and exits 2 when run without a command (it does not start a server)', async () => {
    const run = await runCli([], serverEnv({ SNAPGRAPH_DATA_DIR: makeTempDir() }), 15_000);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /a command is needed/);
    assert.match(run.stderr, /snapgraph serve/);
    assert.match(run.stderr, /snapgraph apikey list/);
    assert.equal(run.stdout, '');
  });

  // Configured by the environment only: `serve --port 5000` once started a server on 4000, and `serve --help` one too.
  it('refuses arguments to serve with the usage (exit 2) instead of starting a server that ignores them', async () => {
    const dataDir = join(makeTempDir(), 'data');
    const env = serverEnv({ SNAPGRAPH_DATA_DIR: dataDir, PORT: '0' });
    for (const args of [['--port', '5000'], ['extra']]) {
      const run = await runCli(['serve', ...args], env, 15_000);
      assert.equal(run.code, 2, `serve ${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /serve takes no arguments: it is configured by the environment \(PORT, HOST, SNAPGRAPH_\*; see README\)/);
      assert.match(run.stderr, /usage:/);
      assert.equal(run.stdout, '');
    }
    const help = await runCli(['serve', '--help'], env, 15_000);
    assert.equal(help.code, 0, `serve --help: ${help.stdout}${help.stderr}`);
    assert.match(help.stdout, /^usage:/);
    assert.ok(!existsSync(dataDir), 'a data dir was made');
  });

  it('answers --help after any command with the usage on stdout, exit 0, doing nothing else', async () => {
    const dataDir = join(makeTempDir(), 'data');
    for (const args of [['export', '--help'], ['restore-file', 'some-instance', '-h'], ['tenant', 'create', 'acme', '--help'], ['inspect', '--help']]) {
      const run = await runCli(args, serverEnv({ SNAPGRAPH_DATA_DIR: dataDir, SNAPGRAPH_API_KEY: undefined }), 15_000);
      assert.equal(run.code, 0, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stdout, /^usage:/, args.join(' '));
      assert.equal(run.stderr, '', args.join(' '));
    }
    assert.ok(!existsSync(dataDir), 'a data dir was made');
  });

  // The statuses were said nowhere but for "no command" (2): 78 for a wrong environment variable was a surprise to a
  // script that told failures apart.
  it('names its exit statuses in the usage, and returns them: 2 for wrong arguments, 78 for an invalid configuration', async () => {
    const help = await runCli(['--help'], serverEnv({}), 15_000);
    assert.match(help.stdout, /^exit status: 0 done; 1 failed \(said on stderr\); 2 wrong arguments; 78 invalid configuration \(an environment variable or SNAPGRAPH_CONFIG\);\n\s+130 export or restore-file interrupted \(Ctrl-C, SIGTERM\), saying what was kept$/m);
    const dataDir = join(makeTempDir(), 'data');
    const wrong = await runCli(['tenant', 'list', '--all'], serverEnv({ SNAPGRAPH_DATA_DIR: dataDir }), 15_000);
    assert.equal(wrong.code, 2, wrong.stderr);
    const invalid = await runCli(['tenant', 'list'], serverEnv({ SNAPGRAPH_DATA_DIR: dataDir, PORT: 'eighty' }), 15_000);
    assert.equal(invalid.code, 78, invalid.stderr);
    assert.match(invalid.stderr, /^snapgraph: invalid configuration:\n {2}- PORT: "eighty" is not a port number/);
    assert.ok(!existsSync(dataDir), 'a data dir was made');
  });

  // A data dir or upload dir that was a file stopped the boot with "EEXIST: file already exists, mkdir '…'", exit 1,
  // naming no variable (the upload dir's own check, "is not a directory", came after the mkdir that threw).
  // A reader that has closed the pipe (`| head -0`, or one that stopped early): rotate-master-key's first line failed
  // with EPIPE while it went on with its work, before anything listened to stdout, and the process ended with an
  // uncaught 'error' and a stack trace.
  it('goes on when stdout cannot be written, then says so and exits 1, without a stack trace', async () => {
    const env = serverEnv({ SNAPGRAPH_DATA_DIR: makeTempDir(), SNAPGRAPH_MASTER_KEY: randomBytes(32).toString('base64') });
    assert.equal((await runCli(['tenant', 'create', 'piped', '--init'], env, 15_000)).code, 0);
    const child = spawn('sh', ['-c', `{ "${LAUNCHER}" rotate-master-key; echo "exited $?" >&2; } | true`], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    await once(child, 'close');
    assert.doesNotMatch(stderr, /Unhandled 'error' event|^\s+at /m, stderr);
    assert.equal(stderr, 'snapgraph: stdout could not take all of the output (write EPIPE)\nexited 1\n');
  });

  it('refuses a data dir or upload dir that is not a directory, naming its variable (exit 78)', async () => {
    const dir = makeTempDir();
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const runs: [string[], NodeJS.ProcessEnv, string][] = [
      [['serve'], serverEnv({ SNAPGRAPH_DATA_DIR: file, PORT: '0' }), 'SNAPGRAPH_DATA_DIR'],
      [['serve'], serverEnv({ SNAPGRAPH_DATA_DIR: join(file, 'data'), PORT: '0' }), 'SNAPGRAPH_DATA_DIR'],
      [['tenant', 'create', 'acme', '--init'], serverEnv({ SNAPGRAPH_DATA_DIR: file }), 'SNAPGRAPH_DATA_DIR'],
      [['serve'], serverEnv({ SNAPGRAPH_DATA_DIR: join(dir, 'data'), SNAPGRAPH_UPLOAD_DIR: file, PORT: '0' }), 'SNAPGRAPH_UPLOAD_DIR'],
    ];
    for (const [args, env, variable] of runs) {
      const run = await runCli(args, env);
      assert.equal(run.code, 78, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^snapgraph: invalid configuration:\\n {2}- ${variable}: ${env[variable]} is not a directory`, 'm'));
    }
  });

  // Redis away or refusing REDIS_URL's password: ioredis printed its failures to stderr, stack and all, and the boot
  // stopped with "Connection is closed.", naming neither Redis nor why.
  it('stops a boot that cannot connect to Redis naming REDIS_URL, without its password, and why', async () => {
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as AddressInfo;
    probe.close();
    await once(probe, 'close');
    const run = await runCli(['serve'], serverEnv({ SNAPGRAPH_DATA_DIR: join(makeTempDir(), 'data'), PORT: '0', REDIS_URL: `redis://:hunter2@127.0.0.1:${port}` }));
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`^snapgraph: cannot connect to Redis at REDIS_URL \\(redis://127\\.0\\.0\\.1:${port}/?\\): connect ECONNREFUSED`, 'm'));
    assert.doesNotMatch(run.stderr, /hunter2|Unhandled error event|Connection is closed/);
  });

  describe('tenant create', () => {
    it('refuses to make a metadata database where there is none, naming SNAPGRAPH_DATA_DIR; --init makes one', async () => {
      const dataDir = join(makeTempDir(), 'not-the-server');
      const env = serverEnv({ SNAPGRAPH_DATA_DIR: dataDir });
      const refused = await runCli(['tenant', 'create', 'acme', '--json'], env);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /no metadata database in .*not-the-server.*SNAPGRAPH_DATA_DIR.*--init/);
      assert.equal(refused.stdout, '');
      assert.ok(!existsSync(dataDir), 'the data dir was created anyway');

      const created = await runCli(['tenant', 'create', 'acme', '--json', '--init'], env);
      assert.equal(created.code, 0, created.stderr);
      assert.ok(JSON.parse(created.stdout).apiKey);
      assert.equal(modeOf(dataDir), 0o700);
      assert.equal(modeOf(join(dataDir, 'metadata.sqlite')), 0o600);
    });

    it("works on the running server's data dir, and its key works", async () => {
      const run = await runCli(['tenant', 'create', 'beta', '--json'], suite.server.env);
      assert.equal(run.code, 0, run.stderr);
      const { apiKey } = JSON.parse(run.stdout);
      assert.equal(expectData(await gql(suite.server, `{ viewer { tenantName } }`, {}, apiKey)).viewer.tenantName, 'beta');
    });
  });

  // `snapgraph tenant list` said only "connect ECONNREFUSED 127.0.0.1:…", which reads as the Snapgraph server it does
  // not talk to, and named neither DATABASE_URL nor what to change.
  describe('with a DATABASE_URL that cannot be opened', () => {
    it('names DATABASE_URL and its address (not its password) with the cause, exit 1', async () => {
      const env = serverEnv({ DATABASE_URL: 'postgres://snapgraph:hunter2@127.0.0.1:9/metadata' });
      for (const args of [['tenant', 'list'], ['apikey', 'list'], ['tenant', 'create', 'acme']]) {
        const run = await runCli(args, env);
        assert.equal(run.code, 1, run.stderr);
        assert.equal(
          run.stderr,
          'snapgraph: cannot open the metadata database of DATABASE_URL (postgres://snapgraph@127.0.0.1:9/metadata): connect ECONNREFUSED 127.0.0.1:9\n',
        );
        assert.equal(run.stdout, '');
      }
    });

    it('says the same when the server is started with it, and ends (exit 1)', async () => {
      const run = await runCli(['serve'], serverEnv({ DATABASE_URL: 'postgres://snapgraph:hunter2@127.0.0.1:9/metadata', PORT: '0' }));
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /^snapgraph: cannot open the metadata database of DATABASE_URL \(postgres:\/\/snapgraph@127\.0\.0\.1:9\/metadata\): connect ECONNREFUSED 127\.0\.0\.1:9$/m);
      assert.doesNotMatch(`${run.stdout}${run.stderr}`, /hunter2/);
    });
  });

  describe('tenant list and apikey list', () => {
    it('list tenants, and keys without secrets with when each was last used', async () => {
      const server = suite.server;
      const member = await createKey(server, server.adminKey, 'MEMBER', 'listed member');
      expectData(await gql(server, `{ viewer { role } }`, {}, member.secret));

      const tenants = await runCli(['tenant', 'list', '--json'], server.env);
      assert.equal(tenants.code, 0, tenants.stderr);
      const names = (JSON.parse(tenants.stdout) as { name: string }[]).map((t) => t.name);
      assert.ok(names.includes('default'));

      const keys = await runCli(['apikey', 'list', '--tenant', 'default', '--json'], server.env);
      assert.equal(keys.code, 0, keys.stderr);
      assert.ok(!keys.stdout.includes(server.adminKey) && !keys.stdout.includes(member.secret), 'a secret was printed');
      const listed = (JSON.parse(keys.stdout) as { id: string; tenant: string; role: string; lastUsedAt: string | null }[]).find((k) => k.id === member.id);
      assert.equal(listed?.tenant, 'default');
      assert.equal(listed?.role, 'MEMBER');
      assert.ok(listed?.lastUsedAt, 'lastUsedAt missing');

      const table = await runCli(['apikey', 'list'], server.env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^TENANT\s+ID\s+NAME\s+ROLE\s+CREATED\s+LAST USED$/m);
      assert.match(table.stdout, /listed member\s+MEMBER/);

      const unknown = await runCli(['apikey', 'list', '--tenant', 'nobody'], server.env);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no tenant named "nobody"/);
      const empty = await runCli(['tenant', 'list'], serverEnv({ SNAPGRAPH_DATA_DIR: join(makeTempDir(), 'none') }));
      assert.equal(empty.code, 1);
      assert.match(empty.stderr, /SNAPGRAPH_DATA_DIR/);
    });

    // They said "or pass --init to create a new one there", an option only `tenant create` takes: passed, it was
    // "Unknown option '--init'" (exit 2).
    it('refuse a data dir without metadata naming SNAPGRAPH_DATA_DIR, and no option they do not take', async () => {
      const dataDir = join(makeTempDir(), 'not-the-server');
      for (const args of [['tenant', 'list'], ['apikey', 'list']]) {
        const run = await runCli(args, serverEnv({ SNAPGRAPH_DATA_DIR: dataDir }));
        assert.equal(run.code, 1, run.stderr);
        assert.equal(
          run.stderr,
          `snapgraph: no metadata database in ${dataDir}: set SNAPGRAPH_DATA_DIR to the server's data dir (or DATABASE_URL to its PostgreSQL)\n`,
        );
        assert.equal(run.stdout, '');
      }
      assert.ok(!existsSync(dataDir), 'a data dir was made');
    });
  });

  describe('rotate-master-key', () => {
    it('refuses arguments, a dir without metadata, and one without the master key, without making either', async () => {
      const dataDir = join(makeTempDir(), 'not-the-server');
      const env = serverEnv({ SNAPGRAPH_DATA_DIR: dataDir });
      const usage = await runCli(['rotate-master-key', '--all'], env);
      assert.equal(usage.code, 2, usage.stderr);
      assert.match(usage.stderr, /rotate-master-key takes no arguments/);
      const keyless = await runCli(['rotate-master-key'], env);
      assert.equal(keyless.code, 1, keyless.stderr);
      assert.match(keyless.stderr, /no master key: set SNAPGRAPH_MASTER_KEY, or SNAPGRAPH_DATA_DIR to the data dir that holds keys\/master\.key/);
      assert.ok(!existsSync(dataDir), 'a data dir was made');
      const key = Buffer.alloc(32, 3).toString('base64');
      const empty = await runCli(['rotate-master-key'], { ...env, SNAPGRAPH_MASTER_KEY: key });
      assert.equal(empty.code, 1, empty.stderr);
      assert.match(empty.stderr, /no metadata database in .*not-the-server: set SNAPGRAPH_DATA_DIR to the server's data dir \(or DATABASE_URL to its PostgreSQL\)\n$/);
      assert.ok(!`${empty.stdout}${empty.stderr}`.includes(key), 'the key was printed');
    });
  });

  describe('export', () => {
    it('exits non-zero with a message when the file cannot be written, and leaves no file', async () => {
      const server = suite.server;
      const instance = await createInstance(server, { name: 'unwritable' });
      await createNodes(server, instance.id, [{ labels: ['A'] }]);
      const snapshot = await takeSnapshot(server, instance.id);
      const env = serverEnv({ SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: server.adminKey, XDG_STATE_HOME: makeTempDir() });

      const missing = await runCli(['export', snapshot.id, '-o', '/nonexistent/dir/x.backup'], env);
      assert.equal(missing.code, 1, missing.stderr);
      assert.match(missing.stderr, /cannot write \/nonexistent\/dir\/x\.backup\.part: ENOENT/);
      assert.ok(!existsSync('/nonexistent/dir'));

      const readOnly = makeTempDir();
      chmodSync(readOnly, 0o500);
      const denied = await runCli(['export', snapshot.id, '-o', join(readOnly, 'x.backup')], env);
      chmodSync(readOnly, 0o700);
      // root ignores directory permissions: then the file is written, and whole.
      if (process.getuid?.() === 0) assert.equal(denied.code, 0, denied.stderr);
      else {
        assert.equal(denied.code, 1, denied.stderr);
        assert.match(denied.stderr, /cannot write .*EACCES/);
        assert.deepEqual(readdirSync(readOnly), []);
      }
    });
  });
});

describe('files in the data dir', () => {
  it('are readable by their owner only: dir 0700; metadata, stores and blobs 0600; the first key in a 0600 file', async () => {
    const server = await startServer({ env: { SNAPGRAPH_BOOTSTRAP_TOKEN: undefined } });
    const keyFile = join(server.dataDir, 'keys', 'initial-admin.key');
    const adminKey = readFileSync(keyFile, 'utf8').trim();
    assert.equal(modeOf(keyFile), 0o600);
    const announced = server.logLines().find((line) => line.path === keyFile);
    assert.ok(announced, 'the key file is not announced in the log');
    assert.ok(!server.logs().includes(adminKey), 'the key reached the output');

    const instance = await createInstance({ graphqlUrl: server.graphqlUrl, adminKey }, { name: 'private' });
    await createNodes({ graphqlUrl: server.graphqlUrl, adminKey }, instance.id, [{ labels: ['Secret'], properties: { pin: 1234 } }]);
    await takeSnapshot({ graphqlUrl: server.graphqlUrl, adminKey }, instance.id);

    assert.equal(modeOf(server.dataDir), 0o700);
    const files = filesUnder(server.dataDir);
    assert.ok(files.some((file) => file.endsWith('metadata.sqlite')));
    assert.ok(files.some((file) => file.includes(`${join('instances', instance.id)}`)), files.join('\n'));
    assert.ok(files.some((file) => file.includes('/blobs/')), files.join('\n'));
    for (const file of files) assert.equal(octal(modeOf(file)), '0600', file);
    for (const dir of new Set(files.map((file) => file.slice(0, file.lastIndexOf('/'))))) assert.equal(octal(modeOf(dir)), '0700', dir);
  });

  it('tightens the modes of an existing data dir at boot', async () => {
    const dataDir = makeTempDir();
    const server = await startServer({ dataDir });
    await server.stop({ keepDataDir: true });
    chmodSync(dataDir, 0o755);
    chmodSync(join(dataDir, 'metadata.sqlite'), 0o644);
    mkdirSync(join(dataDir, 'instances', 'old'), { recursive: true, mode: 0o755 });
    writeFileSync(join(dataDir, 'instances', 'old', 'left.sqlite'), 'x', { mode: 0o644 });
    chmodSync(join(dataDir, 'instances', 'old'), 0o755);

    await server.restart();
    assert.equal(modeOf(dataDir), 0o700);
    assert.equal(modeOf(join(dataDir, 'metadata.sqlite')), 0o600);
    assert.equal(modeOf(join(dataDir, 'instances', 'old')), 0o700);
    assert.equal(modeOf(join(dataDir, 'instances', 'old', 'left.sqlite')), 0o600);
    assert.ok(server.logLines().some((line) => line.msg === 'made the data dir readable by its owner only'));
  });
});

describe('the launcher, bin/snapgraph (package.json "bin")', () => {
  const environ = (server: TestServer) => readFileSync(`/proc/${server.process.pid}/environ`, 'utf8').split('\0');
  const arenaWarnings = (server: TestServer) => server.logLines().filter((line) => String(line.msg).startsWith('MALLOC_ARENA_MAX is not set'));

  it('runs the server in node itself (exec) with MALLOC_ARENA_MAX=2, or the value the environment sets', async function () {
    if (process.platform !== 'linux') this.skip(); // /proc
    const server = await startServer({ env: { MALLOC_ARENA_MAX: undefined } });
    assert.match(readFileSync(`/proc/${server.process.pid}/cmdline`, 'utf8'), /^node\0[^\0]*dist\/src\/cli\/main\.js\0serve\0$/);
    assert.ok(environ(server).includes('MALLOC_ARENA_MAX=2'), 'MALLOC_ARENA_MAX=2 is not in the server process environment');
    assert.deepEqual(arenaWarnings(server), []);
    await server.restart({ env: { MALLOC_ARENA_MAX: '4' } });
    assert.ok(environ(server).includes('MALLOC_ARENA_MAX=4'));
    assert.ok(!environ(server).includes('MALLOC_ARENA_MAX=2'));
    await server.stop();
  });

  it('a server started with plain node on glibc without MALLOC_ARENA_MAX warns once; with it, it does not', async function () {
    const { header } = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
    if (!header?.glibcVersionRuntime) this.skip(); // musl and others: nothing to warn about
    const server = await startServer({ plainNode: true, env: { MALLOC_ARENA_MAX: undefined } });
    const warnings = arenaWarnings(server);
    assert.equal(warnings.length, 1, server.logs());
    assert.equal(warnings[0].level, 40);
    assert.match(String(warnings[0].msg), /bin\/snapgraph/);
    await server.restart({ env: { MALLOC_ARENA_MAX: '2' } });
    assert.deepEqual(arenaWarnings(server), []);
    await server.stop();
  });

  it('`npm start` passes SIGTERM on to the server, which drains and stops (npm\'s shell does not leave it running)', async function () {
    this.timeout(60_000);
    // detached: the npm process leads a group of its own, so that a server it left behind can be killed below.
    const npm = spawn('npm', ['start'], {
      cwd: REPO_ROOT,
      env: serverEnv({ PORT: '0', SNAPGRAPH_DATA_DIR: makeTempDir(), npm_config_ignore_scripts: 'true' }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    npm.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`npm start did not serve within 30 s: ${out}`)), 30_000);
        npm.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const serving = /"url":"(http:\/\/[^"]+)\/graphql"[^\n]*"msg":"snapgraph is serving"/.exec(out);
          if (serving) {
            clearTimeout(timer);
            resolve(serving[1]);
          }
        });
      });
      const npmExited = new Promise((resolve) => npm.once('exit', resolve));
      npm.kill('SIGTERM');
      await npmExited;
      let stillServing = true;
      for (const deadline = Date.now() + 10_000; stillServing && Date.now() < deadline; ) {
        stillServing = await fetch(`${url}/healthz`).then(() => true, () => false);
        if (stillServing) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(stillServing, false, `npm start exited on SIGTERM but left the server answering at ${url}`);
      // It stops answering when its HTTP server closes; it says it stopped once it has closed the rest (the database,
      // the data dir), a moment later.
      await eventually(() => /"msg":"snapgraph stopped"/.test(out), { what: `"snapgraph stopped" in ${out}` });
    } finally {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {
        // the group has gone, as it should
      }
    }
  });

  it('a SIGTERM that comes while the server boots stops it once it is up, drained, instead of killing it', async function () {
    this.timeout(60_000);
    const server = spawn(LAUNCHER, ['serve'], { cwd: REPO_ROOT, env: serverEnv({ PORT: '0', SNAPGRAPH_DATA_DIR: makeTempDir() }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    server.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<[number | null, string | null]>((resolve) => server.once('exit', (code, signal) => resolve([code, signal])));
    // Its first line comes before it listens (the migrations), long before it says it serves.
    server.stdout.on('data', (chunk: Buffer) => {
      const first = out === '' || !out.includes('"msg"');
      out += chunk.toString();
      if (first) server.kill('SIGTERM');
    });
    try {
      const [code, signal] = await within(exited, 30_000, 'the server to stop');
      assert.deepEqual([code, signal], [0, null], out);
      const lines = out.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line).msg as string);
      const at = (msg: string) => lines.indexOf(msg);
      assert.ok(at('shutting down: draining connections, then running operations') >= 0, out);
      assert.ok(at('snapgraph is serving') >= 0 && at('snapgraph is serving') < at('snapgraph stopped'), out);
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('finds the package through symlinks, as node_modules/.bin/snapgraph and `npm link` install it', async () => {
    const dir = makeTempDir();
    const binDir = join(dir, 'node_modules', '.bin');
    mkdirSync(binDir, { recursive: true });
    symlinkSync(relative(binDir, LAUNCHER), join(binDir, 'snapgraph'));
    symlinkSync(join(binDir, 'snapgraph'), join(dir, 'snapgraph'));
    for (const [command, env] of [
      [join(binDir, 'snapgraph'), serverEnv({})],
      [join(dir, 'snapgraph'), serverEnv({})],
      ['snapgraph', serverEnv({ PATH: `${binDir}:${process.env.PATH}` })],
    ] as const) {
      const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(command, ['help'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.once('close', (code) => resolve({ code, out }));
      });
      assert.equal(run.code, 0, `${command}: ${run.out}`);
      assert.match(run.out, /snapgraph tenant list/, command);
    }
  });
});

describe("the README's commands, right after npm install", () => {
  it('use `npx snapgraph`, which runs through package.json "bin"', async function () {
    this.timeout(300_000);
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const cliLines = readme.split('\n').filter((line) => /^\s*(npx )?snapgraph /.test(line));
    assert.ok(cliLines.length > 0);
    for (const line of cliLines) assert.match(line, /^\s*npx snapgraph /, `the README says "${line.trim()}"; snapgraph is not on PATH`);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
    // "bin" is the sh launcher (MALLOC_ARENA_MAX), which execs node on the built CLI; `npm start` runs it too.
    assert.equal(join(REPO_ROOT, pkg.bin.snapgraph), LAUNCHER);
    const launcher = readFileSync(LAUNCHER, 'utf8');
    assert.ok(launcher.startsWith('#!/bin/sh\n'), launcher.split('\n')[0]);
    assert.match(launcher, /^exec node "\$\(dirname "\$self"\)\/\.\.\/dist\/src\/cli\/main\.js" "\$@"$/m);
    assert.ok(statSync(LAUNCHER).mode & 0o100, 'the launcher is not executable');
    assert.equal(pkg.scripts.start, 'exec bin/snapgraph serve'); // exec: npm's SIGTERM reaches the server

    // As a newcomer types it after `npm install` (offline: nothing is fetched). npx would otherwise run "prepare" again,
    // rebuilding dist/ under the servers other test files are booting at the same moment (a server that read a
    // half-written module failed to boot in CI); `npm install` has built it already.
    const env = serverEnv({ npm_config_ignore_scripts: 'true' });
    const builtAt = statSync(CLI).mtimeMs;
    const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('npx', ['--offline', 'snapgraph', 'help'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.once('close', (code) => resolve({ code, out }));
    });
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /snapgraph tenant list/);
    assert.equal(statSync(CLI).mtimeMs, builtAt, 'npx rebuilt dist/ while other tests were running from it');
  });
});
