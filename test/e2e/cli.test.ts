// The transfer CLI against a real server: `snapgraph export` (resumable, sha256-checked downloads) and
// `snapgraph restore-file` (resumable tus uploads beyond the GraphQL upload limit), and the /uploads endpoint itself.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import * as tus from 'tus-js-client';
import {
  allNodes,
  allRelationships,
  archiveOf,
  type CliResult,
  createInstance,
  createKey,
  createNodes,
  createRelationships,
  createTenant,
  eventually,
  expectData,
  gql,
  LAUNCHER,
  makeTempDir,
  mountSmallVolume,
  REPO_ROOT,
  runCli,
  type NewTenant,
  serverEnv,
  serverPerSuite,
  settledOperation,
  type SmallVolume,
  startServer,
  takeSnapshot,
  type TestServer,
} from '../support';
import { ARCHIVE_MAGIC } from '../../src/archive/file-type';
import { formatBytes } from '../../src/cli/progress-bar';
import { Keyring, loadMasterKey } from '../../src/crypto';
import { PartialBlobFile } from '../../src/storage/partial-blob-file';

const MAX_UPLOAD_BYTES = 16 * 1024;

// tus-js-client's own state file, which earlier releases used: exported for Node but missing from the typings.
const { FileUrlStorage } = tus as unknown as { FileUrlStorage: new (path: string) => tus.UrlStorage };

interface SnapshotJson {
  id: string;
  status: string;
  sizeBytes: number;
  sha256: string;
}

/** The CLI's state dir (XDG_STATE_HOME) for the current suite: where it keeps tus upload URLs. */
let stateHome: string;

/** `snapgraph <args>` against the server (its URL and a key in the environment), with the suite's state dir. */
function snapgraph(
  server: TestServer,
  args: string[],
  { key = server.adminKey, env = {} }: { key?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const cliEnv = serverEnv({
    SNAPGRAPH_URL: server.url,
    SNAPGRAPH_API_KEY: key,
    XDG_STATE_HOME: stateHome,
    SNAPGRAPH_CLI_STOP_AFTER_BYTES: undefined,
    ...env,
  });
  return runCli(args, cliEnv, 60_000);
}

/**
 * An upload state file of `bytes` bytes holding the saved uploads of other files, in the shape tus-js-client's
 * FileUrlStorage writes ("tus::<fingerprint>::<id>" keys).
 */
function earlierUploads(server: TestServer, bytes: number): string {
  const uploads: Record<string, unknown> = {};
  for (let i = 0; i < 3; i++) {
    uploads[`tus::snapgraph-restore-${randomBytes(32).toString('hex')}::${100 + i}`] = {
      size: 1000 + i,
      metadata: { instanceId: `instance-${i}`, confirm: 'RESTORE', filename: `other-${i}.backup` },
      creationTime: new Date().toString(),
      uploadUrl: `${server.url}/uploads/${randomBytes(16).toString('hex')}`,
    };
  }
  const short = bytes - JSON.stringify(uploads).length;
  assert.ok(short >= 0);
  (Object.values(uploads)[0] as { metadata: { filename: string } }).metadata.filename += 'x'.repeat(short);
  return JSON.stringify(uploads);
}

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const output = (run: CliResult) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

async function snapshotOf(server: TestServer, instanceId: string): Promise<SnapshotJson> {
  const { createSnapshot } = expectData(
    await gql(server, `mutation ($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: instanceId }),
  );
  return eventually(
    async () => {
      const { snapshot } = expectData(
        await gql(server, `query ($id: ID!) { snapshot(id: $id) { id status sizeBytes sha256 } }`, { id: createSnapshot.id }),
      );
      assert.notEqual(snapshot.status, 'FAILED');
      return snapshot.status === 'COMPLETED' ? (snapshot as SnapshotJson) : undefined;
    },
    { timeoutMs: 30_000, what: `snapshot ${createSnapshot.id} COMPLETED` },
  );
}

/** The snapshot as it reads now: once exported, with the size and sha256 of the archive the export produced. */
async function snapshotNow(server: TestServer, id: string): Promise<SnapshotJson> {
  return expectData(await gql(server, `query ($id: ID!) { snapshot(id: $id) { id status sizeBytes sha256 } }`, { id })).snapshot;
}

/** A graph whose archive is well over MAX_UPLOAD_BYTES: random text does not compress away. */
async function fillInstance(server: TestServer, instanceId: string): Promise<void> {
  const nodes = await createNodes(
    server,
    instanceId,
    Array.from({ length: 300 }, (_, i) => ({ labels: ['Item', i % 2 ? 'Odd' : 'Even'], properties: { i, blob: randomBytes(128).toString('hex') } })),
  );
  await createRelationships(
    server,
    instanceId,
    nodes.slice(1).map((node, i) => ({ type: 'NEXT', startNodeId: nodes[i].id, endNodeId: node.id, properties: { i } })),
  );
}

async function graphOf(server: TestServer, instanceId: string) {
  return { nodes: await allNodes(server, instanceId), relationships: await allRelationships(server, instanceId) };
}

async function downloadArchive(server: TestServer, snapshotId: string): Promise<Buffer> {
  const { exportSnapshot } = expectData(await gql(server, `mutation ($id: ID!) { exportSnapshot(id: $id) { url } }`, { id: snapshotId }));
  const response = await fetch(exportSnapshot.url);
  assert.equal(response.status, 200);
  return Buffer.from(await response.arrayBuffer());
}

/** The tus creation request, as any tus client sends it. */
function createUpload(server: TestServer, key: string | null, metadata: Record<string, string>, length = 1024) {
  const headers: Record<string, string> = {
    'Tus-Resumable': '1.0.0',
    'Upload-Length': String(length),
    'Upload-Metadata': Object.entries(metadata)
      .map(([name, value]) => `${name} ${Buffer.from(value).toString('base64')}`)
      .join(','),
  };
  if (key !== null) headers.Authorization = `Bearer ${key}`;
  return fetch(`${server.url}/uploads`, { method: 'POST', headers });
}

/** A file that starts as an archive does, so that restore-file sends it (only the server reads what follows). */
const archiveStart = (bytes: number) => Buffer.concat([ARCHIVE_MAGIC, randomBytes(bytes - ARCHIVE_MAGIC.length)]);

/** extensions.code of the first error of a refusal's JSON body. */
const errorCodeOf = (body: string): string => JSON.parse(body).errors[0].extensions.code;

/** How the server checked the upload whose restore `restore-file` reports queued: 'as received' or 'read back'. */
function checkedAs(server: TestServer, stderr: string): unknown {
  const operationId = /restore queued as operation (\S+)/.exec(stderr)?.[1];
  assert.ok(operationId, `no operation in: ${stderr}`);
  const line = server.logLines().find((entry) => entry.msg === 'restore upload received' && entry.operationId === operationId);
  assert.ok(line, `no 'restore upload received' line for operation ${operationId}`);
  return line.checked;
}

/** PATCH bytes at an offset, as a tus client does. */
function patchUpload(location: string, key: string, offset: number, body: Buffer) {
  return fetch(location, {
    method: 'PATCH',
    headers: {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${key}`,
      'Upload-Offset': String(offset),
      'Content-Type': 'application/offset+octet-stream',
    },
    body,
  });
}

/**
 * A reverse proxy to `target` that answers the next `failHeads(n)` HEAD requests with 502 and an HTML page, as nginx
 * does while its upstream restarts; it counts the uploads created through it (POST /uploads).
 */
async function proxyFailingHeads(target: string) {
  const upstream = new URL(target);
  let toFail = 0;
  let failed = 0;
  let created = 0;
  let beforePatchAnswer: (() => void) | null = null;
  const proxy = createServer((request, response) => {
    if (request.method === 'HEAD' && toFail > 0) {
      toFail -= 1;
      failed += 1;
      request.resume();
      response.writeHead(502, { 'content-type': 'text/html' }).end('<html><body>502 Bad Gateway</body></html>');
      return;
    }
    if (request.method === 'POST' && request.url === '/uploads') created += 1;
    const forwarded = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: request.headers },
      (answer) => {
        if (request.method === 'PATCH' && beforePatchAnswer) {
          const hook = beforePatchAnswer;
          beforePatchAnswer = null;
          hook();
        }
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => response.destroy());
    // A client that goes away mid-request: the server sees its connection go too.
    response.on('close', () => response.writableFinished || forwarded.destroy());
    request.pipe(forwarded);
  });
  // WebSockets (the restore's progress) pass through as they are.
  proxy.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    const forwarded = connect(Number(upstream.port), upstream.hostname, () => {
      const headers = Object.entries(request.headers).map(([name, value]) => `${name}: ${String(value)}\r\n`).join('');
      forwarded.write(`${request.method} ${request.url} HTTP/1.1\r\n${headers}\r\n`);
      forwarded.write(head);
      forwarded.pipe(socket).pipe(forwarded);
    });
    forwarded.on('error', () => socket.destroy());
    socket.on('error', () => forwarded.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    failHeads: (count: number) => (toFail = count),
    /** Runs `hook` once, when the next PATCH is answered, before the client has the answer. */
    beforePatchAnswer: (hook: () => void) => (beforePatchAnswer = hook),
    failedHeads: () => failed,
    creations: () => created,
    close: () => {
      proxy.closeAllConnections();
      return new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

describe('the transfer CLI (snapgraph export, snapgraph restore-file)', () => {
  let uploadDir: string;
  const suite = serverPerSuite(() => {
    uploadDir = makeTempDir('snapgraph-e2e-uploads-');
    return { config: { maxUploadBytes: MAX_UPLOAD_BYTES }, env: { SNAPGRAPH_UPLOAD_DIR: uploadDir } };
  });
  let sourceId: string;
  let snapshot: SnapshotJson;
  let archive: Buffer;
  let other: NewTenant;

  before(async function () {
    this.timeout(60_000);
    stateHome = makeTempDir('snapgraph-e2e-state-');
    const server = suite.server;
    sourceId = (await createInstance(server, { name: 'source graph' })).id;
    await fillInstance(server, sourceId);
    snapshot = await snapshotOf(server, sourceId);
    // Null until the first export produces the snapshot's archive, which records them.
    assert.equal(snapshot.sizeBytes, null);
    assert.equal(snapshot.sha256, null);
    archive = await downloadArchive(server, snapshot.id);
    snapshot = await snapshotNow(server, snapshot.id);
    assert.equal(snapshot.sizeBytes, archive.length);
    assert.equal(snapshot.sha256, sha256Of(archive));
    other = await createTenant(server, 'other-tenant');
  });

  const uploadsLeft = () => readdirSync(uploadDir);
  /** The upload URLs the CLI keeps for resuming (tus-js-client's FileUrlStorage). */
  const storedUploads = () => {
    const file = join(stateHome, 'snapgraph', 'uploads.json');
    return existsSync(file) ? Object.keys(JSON.parse(readFileSync(file, 'utf8'))) : [];
  };

  describe('snapgraph export', () => {
    it('downloads the archive under the file name the API gives, and its sha256 is the snapshot\'s', async () => {
      const dir = makeTempDir();
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', dir]);
      assert.equal(run.code, 0, output(run));
      const files = readdirSync(dir);
      assert.equal(files.length, 1, `expected only the archive, found ${files.join(', ')}`);
      assert.match(files[0], /^source-graph-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z\.backup$/);
      const bytes = readFileSync(join(dir, files[0]));
      assert.equal(sha256Of(bytes), snapshot.sha256);
      assert.equal(bytes.length, snapshot.sizeBytes);
      assert.match(run.stdout, new RegExp(`saved .*${files[0]} \\(${snapshot.sizeBytes} bytes, sha256 ${snapshot.sha256}\\)`));
      assert.match(run.stderr, /downloading: .*100%.*MB\/s/, 'a plain progress line (not a terminal)');
    });

    // The archive holds the graph unencrypted: other local users must not read it, whatever the umask (022 gave 0644).
    it('writes the archive readable by its owner only (0600), as the data dir keeps what it holds', async () => {
      const out = join(makeTempDir(), 'private.backup');
      const interrupted = await snapgraph(suite.server, ['export', snapshot.id, '-o', out], {
        env: { SNAPGRAPH_CLI_STOP_AFTER_BYTES: '1000' },
      });
      assert.equal(interrupted.code, 130, output(interrupted));
      assert.equal(statSync(`${out}.part`).mode & 0o777, 0o600, 'the partial download');
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
      assert.equal(run.code, 0, output(run));
      assert.equal(statSync(out).mode & 0o777, 0o600);

      // A partial download an earlier release left readable by all, resumed.
      const left = join(makeTempDir(), 'left.backup');
      writeFileSync(`${left}.part`, archive.subarray(0, 1000), { mode: 0o644 });
      chmodSync(`${left}.part`, 0o644);
      const resumed = await snapgraph(suite.server, ['export', snapshot.id, '-o', left]);
      assert.equal(resumed.code, 0, output(resumed));
      assert.equal(statSync(left).mode & 0o777, 0o600, 'the resumed download');
    });

    it('resumes an interrupted download with a Range request', async () => {
      const out = join(makeTempDir(), 'copy.backup');
      const stopAt = Math.floor(snapshot.sizeBytes / 3);
      const interrupted = await snapgraph(suite.server, ['export', snapshot.id, '-o', out], {
        env: { SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(stopAt) },
      });
      assert.equal(interrupted.code, 130, output(interrupted));
      assert.match(interrupted.stderr, /interrupted; .*run the same command again to resume/);
      assert.deepEqual(readFileSync(`${out}.part`), archive.subarray(0, stopAt));
      assert.equal(existsSync(out), false);

      const resumed = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
      assert.equal(resumed.code, 0, output(resumed));
      assert.match(resumed.stderr, new RegExp(`resuming at byte ${stopAt} of ${snapshot.sizeBytes}`));
      assert.deepEqual(readFileSync(out), archive);
      assert.equal(existsSync(`${out}.part`), false);
      const ranged = suite.server
        .logLines()
        .filter((line) => line.msg === 'export downloaded' && line.snapshotId === snapshot.id && line.partial === true);
      assert.ok(
        ranged.some((line) => line.bytes === snapshot.sizeBytes - stopAt),
        `no ranged download of the last ${snapshot.sizeBytes - stopAt} bytes in the server log: ${JSON.stringify(ranged)}`,
      );
    });

    it('finishes a partial file left by a crash (first bytes already in <file>.part, and its lock)', async () => {
      const out = join(makeTempDir(), 'crash.backup');
      writeFileSync(`${out}.part`, archive.subarray(0, 1000));
      writeFileSync(`${out}.part.lock`, '4194305\n'); // above Linux's largest pid: no process has it
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
      assert.equal(run.code, 0, output(run));
      assert.match(run.stderr, /resuming at byte 1000 /);
      assert.deepEqual(readFileSync(out), archive);
      assert.equal(existsSync(`${out}.part.lock`), false);
    });

    // A cron job exporting each day's snapshot to the same -o: yesterday's interrupted .part was resumed with today's
    // archive spliced onto its start (If-Range named today's archive, which always matched), and failed as damaged.
    it("starts over a partial file of another snapshot's archive instead of splicing this one onto it", async () => {
      const out = join(makeTempDir(), 'daily.backup');
      const stopAt = Math.floor(snapshot.sizeBytes / 2);
      const interrupted = await snapgraph(suite.server, ['export', snapshot.id, '-o', out], {
        env: { SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(stopAt) },
      });
      assert.equal(interrupted.code, 130, output(interrupted));
      // The start of another archive, as yesterday's run left it.
      writeFileSync(`${out}.part`, randomBytes(stopAt));
      writeFileSync(`${out}.part.sha256`, `${'ab'.repeat(32)}\n`);
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
      assert.equal(run.code, 0, output(run));
      assert.match(run.stderr, new RegExp(`daily\\.backup\\.part holds the start of another archive \\(sha256 ${'ab'.repeat(32)}\\); starting over`));
      assert.deepEqual(readFileSync(out), archive);
      assert.deepEqual(readdirSync(dirname(out)), ['daily.backup'], 'the .part and what names its archive are gone');
      // One of the same size as this archive was taken as complete.
      const same = join(makeTempDir(), 'same-size.backup');
      writeFileSync(`${same}.part`, randomBytes(archive.length));
      writeFileSync(`${same}.part.sha256`, `${'cd'.repeat(32)}\n`);
      const whole = await snapgraph(suite.server, ['export', snapshot.id, '-o', same]);
      assert.equal(whole.code, 0, output(whole));
      assert.deepEqual(readFileSync(same), archive);
    });

    it('detects a damaged partial download by its sha256, removes it and exits non-zero', async () => {
      const out = join(makeTempDir(), 'damaged.backup');
      const damaged = Buffer.from(archive.subarray(0, 2000));
      damaged[1500] ^= 0xff;
      writeFileSync(`${out}.part`, damaged);
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
      assert.equal(run.code, 1, output(run));
      assert.match(run.stderr, /damaged: sha256 [0-9a-f]{64} .* instead of [0-9a-f]{64} .*was removed, run the command again/);
      assert.equal(existsSync(`${out}.part`), false);
      assert.equal(existsSync(out), false);
    });

    // A write that only partly fits returns short (POSIX) instead of failing: a download whose last write fell short
    // was renamed into place and reported saved with the snapshot's size and sha256, though its last bytes were missing.
    it('on a volume one page short of the archive, fails saying so and saves no file; with room again, a rerun finishes it whole', async function () {
      const volume = mountSmallVolume(1024 * 1024);
      if ('unavailable' in volume) return this.skip();
      const small = volume as SmallVolume;
      const page = 4096;
      small.fill((Math.ceil(archive.length / page) - 1) * page);
      const out = join(small.path, 'short.backup');
      try {
        const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
        assert.equal(run.code, 1, output(run));
        assert.match(run.stderr, /cannot write .*short\.backup\.part: ENOSPC/);
        assert.doesNotMatch(run.stdout, /saved/);
        assert.equal(existsSync(out), false, 'a file without .part is always whole');

        small.release();
        const resumed = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
        assert.equal(resumed.code, 0, output(resumed));
        assert.deepEqual(readFileSync(out), archive);
      } finally {
        small.release();
      }
    });

    // `-o -` made a file named "-" in the current directory and said "saved …/-": a pipe got nothing.
    it('writes the archive to stdout with -o - (a pipe), saying what it wrote on stderr, and makes no file', async () => {
      const cwd = makeTempDir();
      const env = serverEnv({ SNAPGRAPH_URL: suite.server.url, SNAPGRAPH_API_KEY: suite.server.adminKey, XDG_STATE_HOME: stateHome });
      const child = spawn(LAUNCHER, ['export', snapshot.id, '-o', '-'], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      const stdout: Buffer[] = [];
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      const run = { code, stdout: `${Buffer.concat(stdout).length} bytes`, stderr };
      assert.equal(code, 0, output(run));
      assert.ok(Buffer.concat(stdout).equals(archive), 'stdout is the archive');
      assert.match(stderr, new RegExp(`wrote the archive to stdout \\(${snapshot.sizeBytes} bytes, sha256 ${snapshot.sha256}\\)`));
      assert.deepEqual(readdirSync(cwd), []);
    });

    // A pipe takes what it is written later: the command exited with the archive's end still in stdout's buffer, so a
    // slow reader (`| gzip`, `| ssh`) got less than the whole archive while the command said it wrote it all (exit 0).
    it('writes all of the archive to a slow reader of stdout before it exits', async function () {
      this.timeout(60_000);
      const instanceId = (await createInstance(suite.server, { name: 'larger graph' })).id;
      const blobs = Array.from({ length: 256 }, (_, i) => ({ labels: ['Item'], properties: { i, blob: randomBytes(2048).toString('base64') } }));
      await createNodes(suite.server, instanceId, blobs);
      const larger = await snapshotOf(suite.server, instanceId);
      const expected = await downloadArchive(suite.server, larger.id);
      assert.ok(expected.length > 512 * 1024, `an archive of ${expected.length} bytes fits in the pipe's buffers`);
      const env = serverEnv({ SNAPGRAPH_URL: suite.server.url, SNAPGRAPH_API_KEY: suite.server.adminKey, XDG_STATE_HOME: stateHome });
      // A real pipe (the shell's, 64 KiB; a child's stdio here is a socket pair, which holds more than the archive),
      // read 4 KiB at a time with a pause after each read: the pipe stays full, and the command's last writes wait.
      const slowReader = [
        `const { readSync, writeSync } = require('node:fs'), buffer = Buffer.alloc(4096), pause = new Int32Array(new SharedArrayBuffer(4))`,
        `for (let n; (n = readSync(0, buffer)) > 0; Atomics.wait(pause, 0, 0, 2)) writeSync(1, buffer.subarray(0, n))`,
      ].join('; ');
      const pipeline = `{ "${LAUNCHER}" export ${larger.id} -o -; echo "export exited $?" >&2; } | "${process.execPath}" -e "${slowReader}"`;
      const child = spawn('sh', ['-c', pipeline], { env, cwd: makeTempDir(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const received: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => received.push(chunk));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      const got = Buffer.concat(received);
      assert.equal(code, 0, output({ code, stdout: `${got.length} bytes`, stderr }));
      assert.match(stderr, /export exited 0/);
      assert.equal(got.length, expected.length, `the reader got the whole archive; stderr: ${stderr}`);
      assert.ok(got.equals(expected), 'stdout is the archive');
    });

    it('refuses -o - when stdout is a terminal (an archive is binary), before asking the server for a link', async function () {
      if (!existsSync('/usr/bin/script')) return this.skip();
      const env = serverEnv({ SNAPGRAPH_URL: suite.server.url, SNAPGRAPH_API_KEY: suite.server.adminKey, XDG_STATE_HOME: stateHome });
      // script(1) runs the command on a pseudo-terminal and copies what it shows.
      const run = await new Promise<CliResult>((resolve) => {
        const child = spawn('/usr/bin/script', ['-qec', `${LAUNCHER} export ${snapshot.id} -o -; echo "exit $?"`, '/dev/null'], { env, cwd: makeTempDir(), stdio: ['ignore', 'pipe', 'pipe'] });
        let shown = '';
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => (shown += chunk));
        child.once('close', (code) => resolve({ code, stdout: shown, stderr: '' }));
      });
      assert.match(run.stdout, /stdout is a terminal: the archive is binary; pipe it \(-o - \| …\) or write a file with -o <file>/, output(run));
      assert.match(run.stdout, /exit 2/);
    });

    it('refuses to overwrite an existing file', async () => {
      const out = join(makeTempDir(), 'taken.backup');
      writeFileSync(out, 'mine');
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', out]);
      assert.equal(run.code, 1, output(run));
      assert.match(run.stderr, /already exists/);
      assert.equal(readFileSync(out, 'utf8'), 'mine');
    });

    // `-o backups/2026-12/` before the directory was made saved the archive as a file named 2026-12, where the next
    // export into that directory then stopped with "already exists".
    it('refuses -o <dir>/ when there is no such directory, and makes no file', async () => {
      const parent = makeTempDir();
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', join(parent, 'not-made') + '/']);
      assert.equal(run.code, 1, output(run));
      assert.ok(run.stderr.includes(`snapgraph: ${join(parent, 'not-made')}/ is not a directory: create it first, or leave out the trailing /`), output(run));
      assert.deepEqual(readdirSync(parent), []);
    });

    it("says NOT_FOUND for another tenant's snapshot", async () => {
      const dir = makeTempDir();
      const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', dir], { key: other.apiKey });
      assert.equal(run.code, 1, output(run));
      assert.match(run.stderr, /NOT_FOUND: snapshot .* not found/);
      assert.deepEqual(readdirSync(dir), []);
    });

    it('explains a missing key and bad arguments with the usage (exit 2)', async () => {
      const noKey = await snapgraph(suite.server, ['export', snapshot.id], { env: { SNAPGRAPH_API_KEY: '' } });
      assert.equal(noKey.code, 2, output(noKey));
      assert.match(noKey.stderr, /an API key is required: set SNAPGRAPH_API_KEY/);
      const noId = await snapgraph(suite.server, ['export']);
      assert.equal(noId.code, 2, output(noId));
      assert.match(noId.stderr, /usage:/);
    });
    // A proxy's basic-auth credentials in the URL: fetch refuses such a URL, and the message printed it twice, password
    // and all, as a server it "cannot reach"; restore-file sent the file with it all the same.
    it('refuses a URL that holds a user name or password (exit 2), without printing the password', async () => {
      const url = suite.server.url.replace('http://', 'http://operator:hunter2@');
      const file = join(makeTempDir(), 'some.backup');
      writeFileSync(file, archiveStart(100));
      for (const args of [['export', snapshot.id, '-o', makeTempDir()], ['restore-file', sourceId, file, '--confirm', 'RESTORE']]) {
        const run = await snapgraph(suite.server, args, { env: { SNAPGRAPH_URL: url } });
        assert.equal(run.code, 2, output(run));
        assert.match(run.stderr, /^snapgraph: the server URL must not hold a user name or password \(http:\/\/…@127\.0\.0\.1:\d+\/\): /);
        assert.doesNotMatch(run.stdout + run.stderr, /hunter2|operator/);
      }
    });

    // A URL that is none (a port beyond 65535), or a key pasted with the line after it or in typographic quotes: fetch
    // refused them with messages that repeated the password or the key whole, as a server the command "cannot reach".
    it('refuses a URL that is not one and a key no header can carry (exit 2), without printing either secret', async () => {
      const badUrl = await snapgraph(suite.server, ['export', snapshot.id, '-o', makeTempDir()], {
        env: { SNAPGRAPH_URL: 'http://operator:hunter2@127.0.0.1:99999' },
      });
      assert.equal(badUrl.code, 2, output(badUrl));
      assert.match(badUrl.stderr, /^snapgraph: the server URL "http:\/\/…@127\.0\.0\.1:99999" is not a valid URL/);
      assert.doesNotMatch(badUrl.stdout + badUrl.stderr, /hunter2|operator/);
      for (const key of [`${suite.server.adminKey}\nsecondline`, `\u201c${suite.server.adminKey}\u201d`]) {
        const run = await snapgraph(suite.server, ['export', snapshot.id, '-o', makeTempDir()], { env: { SNAPGRAPH_API_KEY: key } });
        assert.equal(run.code, 2, output(run));
        assert.match(run.stderr, /the API key holds a character a key never has/);
        assert.ok(!(run.stdout + run.stderr).includes(suite.server.adminKey.slice(-12)), `the key was printed: ${output(run)}`);
      }
    });
  });

  describe('snapgraph restore-file', () => {
    let archivePath: string;

    before(() => {
      archivePath = join(makeTempDir(), 'source.backup');
      writeFileSync(archivePath, archive);
    });

    it('restores a file larger than the GraphQL upload limit into another instance', async () => {
      const server = suite.server;
      assert.ok(archive.length > MAX_UPLOAD_BYTES, `the archive (${archive.length} bytes) must exceed maxUploadBytes`);
      const targetId = (await createInstance(server, { name: 'target' })).id;
      await createNodes(server, targetId, [{ labels: ['Old'], properties: { gone: true } }]);

      // The GraphQL multipart upload refuses this file (FILE_TOO_LARGE)...
      const form = new FormData();
      form.append(
        'operations',
        JSON.stringify({
          query: 'mutation ($id: ID!, $file: Upload!) { restoreFromFile(instanceId: $id, file: $file, confirm: "RESTORE") { id } }',
          variables: { id: targetId, file: null },
        }),
      );
      form.append('map', JSON.stringify({ 0: ['variables.file'] }));
      form.append('0', new Blob([archive]), 'source.backup');
      const multipart = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.adminKey}`, 'apollo-require-preflight': 'true' },
        body: form,
      });
      const refused = (await multipart.json()) as { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
      assert.equal(refused.data, null);
      assert.equal(refused.errors?.[0]?.extensions?.code, 'FILE_TOO_LARGE');
      assert.match(refused.errors?.[0]?.message ?? '', /upload limit of 16384 bytes/);

      // ...and restore-file takes it.
      const run = await snapgraph(server, ['restore-file', targetId, archivePath, '--confirm', 'RESTORE']);
      assert.equal(run.code, 0, output(run));
      assert.match(run.stderr, /uploading: .*100%/);
      assert.match(run.stderr, /restore queued as operation \S+/);
      assert.match(run.stderr, /^restore: (QUEUED|RUNNING)/m, 'the restore is followed');
      assert.match(run.stderr, /^restore: SUCCEEDED/m);
      assert.match(run.stdout, /restore SUCCEEDED/);
      assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
      assert.deepEqual(uploadsLeft(), [], 'the finished upload is moved into the blob store');
      // Every byte came to this server: it was checked as it arrived, not read back from the partial file at the end.
      assert.equal(checkedAs(server, run.stderr), 'as received');
    });

    /**
     * restore-file stopped after `stopAt` bytes (SNAPGRAPH_CLI_STOP_AFTER_BYTES), then run again on the same server:
     * the server kept exactly the bytes sent, the rerun resumes from them, its check went on from them (as received,
     * not read back from the partial file), and the restore matches the source.
     */
    async function interruptThenResume(instanceName: string, chunkSize: string, stopAt: number) {
      const server = suite.server;
      const targetId = (await createInstance(server, { name: instanceName })).id;
      const args = ['restore-file', targetId, archivePath, '--confirm', 'RESTORE', '--chunk-size', chunkSize];
      const interrupted = await snapgraph(server, args, { env: { SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(stopAt) } });
      assert.equal(interrupted.code, 130, output(interrupted));
      assert.match(interrupted.stderr, /interrupted; run the same command again to resume the upload/);
      const partial = uploadsLeft().filter((name) => !name.includes('.'));
      assert.equal(partial.length, 1, `one partial upload expected, found ${uploadsLeft().join(', ')}`);
      const { key } = await loadMasterKey({ dataDir: server.dataDir });
      const kept = new PartialBlobFile(join(uploadDir, partial[0]), new Keyring(key));
      // The bytes of an unfinished chunk are sealed once the server has seen the connection go (the CLI may exit first).
      await eventually(async () => (await kept.size()) === stopAt, { what: `the server to keep the ${stopAt} bytes it received` });
      const sent = archive.subarray(0, Math.min(stopAt, 4096));
      for (const name of uploadsLeft()) {
        // A lock's claim (`.lock.takeover`) lives for a moment while the server lets go of the interrupted request.
        let bytes: Buffer;
        try {
          bytes = readFileSync(join(uploadDir, name));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
          continue;
        }
        assert.equal(bytes.includes(sent.subarray(sent.length - 64)), false, `${name} holds the upload's bytes in plaintext`);
      }

      const resumed = await snapgraph(server, args);
      assert.equal(resumed.code, 0, output(resumed));
      assert.match(resumed.stderr, /resuming an earlier upload of source\.backup/);
      assert.match(resumed.stderr, new RegExp(`^uploading: ${formatBytes(stopAt).replace('.', '\\.')} /`, 'm'), 'the resume starts at the bytes kept');
      assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
      assert.deepEqual(uploadsLeft(), []);
      assert.deepEqual(storedUploads(), [], 'a finished upload is forgotten');
      assert.equal(checkedAs(server, resumed.stderr), 'as received');
    }

    it('resumes an interrupted upload where it stopped (after its first 8 KiB request)', () => interruptThenResume('resumed', '8k', 8 * 1024));

    it('says so when the upload it would resume is gone from the server, and sends the file again from its start', async () => {
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'resumed-gone' })).id;
      const args = ['restore-file', targetId, archivePath, '--confirm', 'RESTORE', '--chunk-size', '8k'];
      const interrupted = await snapgraph(server, args, { env: { SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(8 * 1024) } });
      assert.equal(interrupted.code, 130, output(interrupted));
      // The server no longer has it (expired, or refused while the answer was lost).
      const [id] = uploadsLeft().filter((name) => !name.includes('.'));
      const deleted = await fetch(`${server.url}/uploads/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${server.adminKey}`, 'Tus-Resumable': '1.0.0' } });
      assert.equal(deleted.status, 204);

      const rerun = await snapgraph(server, args);
      assert.equal(rerun.code, 0, output(rerun));
      assert.match(rerun.stderr, /the earlier upload of source\.backup is no longer on the server \(refused, expired or deleted\): sending the file again from its start/);
      assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
    });

    // One request for the whole file (as the default 64 MiB requests are for a smaller one), broken off 10,000 bytes
    // into it: the client stops sending there and drops the connection half a second later.
    it('resumes an upload interrupted in the middle of a request from the bytes the server kept of it', () =>
      interruptThenResume('resumed-mid-request', '1G', 10_000));

    // The server verifies the file and queues its restore whether or not the client waits for the answer.
    it('on Ctrl-C once the last byte is sent, waits for the restore the server queues and says it goes on (no terminal)', async () => {
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'interrupted-at-the-end' })).id;
      const run = await snapgraph(server, ['restore-file', targetId, archivePath, '--confirm', 'RESTORE'], {
        env: { SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(archive.length) },
      });
      assert.equal(run.code, 130, output(run));
      const operationId = /restore queued as operation (\S+)/.exec(run.stderr)?.[1];
      assert.ok(operationId, output(run));
      assert.match(run.stderr, new RegExp(`the restore continues on the server as operation ${operationId}; cancelOperation`));
      assert.doesNotMatch(run.stderr, /resume the upload/);
      await eventually(
        async () => {
          const { operation } = expectData(await gql(server, `query ($id: ID!) { operation(id: $id) { status } }`, { id: operationId }));
          return operation.status === 'SUCCEEDED' || undefined;
        },
        { timeoutMs: 30_000, what: 'the restore SUCCEEDED' },
      );
      assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
      assert.deepEqual(storedUploads(), [], 'nothing is left to resume');
    });

    it('refuses a file that is not an archive, with a clear message, and changes nothing', async () => {
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'kept' })).id;
      await createNodes(server, targetId, [{ labels: ['Keep'], properties: { n: 1 } }]);
      const before = await graphOf(server, targetId);
      const junk = join(makeTempDir(), 'junk.backup');
      writeFileSync(junk, randomBytes(100_000));

      const run = await snapgraph(server, ['restore-file', targetId, junk, '--confirm', 'RESTORE']);
      assert.equal(run.code, 1, output(run));
      assert.match(run.stderr, /snapgraph: INVALID_BACKUP_FILE: /);
      assert.doesNotMatch(run.stderr, /restore queued/);
      assert.deepEqual(await graphOf(server, targetId), before);
      assert.deepEqual(storedUploads(), [], 'a refused upload is not offered for resuming');
      const { instance } = expectData(
        await gql(server, `query ($id: ID!) { instance(id: $id) { availability currentOperation { id } } }`, { id: targetId }),
      );
      assert.deepEqual(instance, { availability: 'AVAILABLE', currentOperation: null });
      assert.deepEqual(uploadsLeft(), []);
    });

    // The server tells a file from its first bytes, but said so only once it had all of them: a 2 GiB Neo4j dump was
    // uploaded whole, to hear at the end that it cannot be restored.
    it('refuses a file the server would refuse from its first bytes (a Neo4j dump) before sending any of it', async () => {
      const server = suite.server;
      const dump = join(makeTempDir(), 'neo4j.dump');
      writeFileSync(dump, Buffer.concat([Buffer.from('DZV1'), randomBytes(200_000)]));
      const created = () => server.logLines().filter((line) => line.msg === 'restore upload created').length;
      const before = created();
      const run = await snapgraph(server, ['restore-file', sourceId, dump, '--confirm', 'RESTORE']);
      assert.equal(run.code, 1, output(run));
      assert.match(run.stderr, /^snapgraph: INVALID_BACKUP_FILE: This file is a Neo4j database dump or backup \(made by neo4j-admin\).* \(.*neo4j\.dump was not uploaded\)\n$/);
      assert.equal(created(), before, 'no upload was created');
    });

    it("refuses another tenant's instance before uploading anything", async () => {
      const server = suite.server;
      const before = await graphOf(server, sourceId);
      const run = await snapgraph(server, ['restore-file', sourceId, archivePath, '--confirm', 'RESTORE'], { key: other.apiKey });
      assert.equal(run.code, 1, output(run));
      assert.match(run.stderr, /NOT_FOUND: instance .* not found/);
      assert.doesNotMatch(run.stderr, /uploading:/);
      assert.deepEqual(await graphOf(server, sourceId), before);
      assert.deepEqual(uploadsLeft(), []);
    });

    // The server logs and the README name http://HOST:PORT/graphql: the address users copy into SNAPGRAPH_URL. The
    // upload then went to /graphql/uploads, and was refused with Apollo's CSRF message.
    it("takes the server's /graphql address as its URL too", async () => {
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'via-graphql-url' })).id;
      const run = await snapgraph(server, ['restore-file', targetId, archivePath, '--confirm', 'RESTORE'], {
        env: { SNAPGRAPH_URL: `${server.url}/graphql/` },
      });
      assert.equal(run.code, 0, output(run));
      assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
    });

    // A reverse proxy answers 502 while the server behind it restarts (nginx does), and a server in trouble answers 5xx
    // itself: tus-js-client took any such answer to the HEAD that resumes an upload as "no such upload" and created a
    // new one, sending the file again from its first byte and leaving the partial upload on the server for a day.
    it('resumes where the server kept the bytes when a HEAD is answered 502 (a proxy while the server restarts)', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'resumed-through-a-proxy' })).id;
      const proxy = await proxyFailingHeads(server.url);
      try {
        const args = ['restore-file', targetId, archivePath, '--confirm', 'RESTORE', '--chunk-size', '8k'];
        const env = { SNAPGRAPH_URL: proxy.url };
        const stopAt = 8 * 1024;
        const interrupted = await snapgraph(server, args, { env: { ...env, SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(stopAt) } });
        assert.equal(interrupted.code, 130, output(interrupted));

        proxy.failHeads(1);
        const resumed = await snapgraph(server, args, { env });
        assert.equal(resumed.code, 0, output(resumed));
        assert.equal(proxy.failedHeads(), 1, 'the proxy answered one HEAD with 502');
        assert.deepEqual(proxy.creations(), 1, `one upload created, not a second one from byte 0:\n${output(resumed)}`);
        assert.match(resumed.stderr, new RegExp(`^uploading: ${formatBytes(stopAt).replace('.', '\\.')} /`, 'm'), 'the resume starts at the bytes kept');
        assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
        assert.deepEqual(uploadsLeft(), [], 'no partial upload is left on the server');
        assert.deepEqual(storedUploads(), []);
      } finally {
        await proxy.close();
      }
    });

    // tus-js-client opens the file again for each request and pipes it on without listening to its errors: a file
    // moved away between two requests ended the command with an uncaught ENOENT and a stack trace.
    it('stops, saying so, when the file cannot be read between two requests; with it back, a rerun resumes', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'file-moved-away' })).id;
      const file = join(makeTempDir(), 'moving.backup');
      copyFileSync(archivePath, file);
      const proxy = await proxyFailingHeads(server.url);
      try {
        const args = ['restore-file', targetId, file, '--confirm', 'RESTORE', '--chunk-size', '8k'];
        proxy.beforePatchAnswer(() => renameSync(file, `${file}.away`));
        const failed = await snapgraph(server, args, { env: { SNAPGRAPH_URL: proxy.url } });
        assert.equal(failed.code, 1, output(failed));
        assert.ok(failed.stderr.includes(`snapgraph: cannot read ${file}: ENOENT`), output(failed));
        assert.match(failed.stderr, /the server keeps what it received: run the same command again, with the file readable, to resume/);
        assert.doesNotMatch(failed.stderr, /^\s+at /m, 'no stack trace');

        renameSync(`${file}.away`, file);
        const resumed = await snapgraph(server, args, { env: { SNAPGRAPH_URL: proxy.url } });
        assert.equal(resumed.code, 0, output(resumed));
        assert.match(resumed.stderr, /resuming an earlier upload of moving\.backup/);
        assert.equal(proxy.creations(), 1, 'the rerun resumed the upload, not a second one');
        assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
      } finally {
        await proxy.close();
      }
    });

    // A state file left damaged (a crash or a full disk while it was written) stopped every restore-file with
    // "cannot read the upload state file: Unexpected end of JSON input", naming no file to repair or remove.
    it('names the upload state file it cannot read, and what removing it costs', async () => {
      const state = makeTempDir('snapgraph-e2e-state-');
      mkdirSync(join(state, 'snapgraph'));
      const stateFile = join(state, 'snapgraph', 'uploads.json');
      writeFileSync(stateFile, '{"tus::snapgraph-restore-x::1": {"size": 12');
      const run = await snapgraph(suite.server, ['restore-file', sourceId, archivePath, '--confirm', 'RESTORE'], { env: { XDG_STATE_HOME: state } });
      assert.equal(run.code, 1, output(run));
      assert.ok(run.stderr.includes(`cannot read the upload state file ${stateFile}`), output(run));
      assert.match(run.stderr, /remove it to go on: only the uploads it names are no longer resumed/);
    });

    // A state file that could not be written (its volume full) ended restore-file at once with Node's own report of an
    // unhandled rejection ("ENOSPC: no space left on device, write"), naming no file, the server's upload left behind.
    it('goes on when the upload state file cannot be written (a full disk), saying that a stop could not be resumed', async function () {
      const volume = mountSmallVolume(1024 * 1024);
      if ('unavailable' in volume) return this.skip();
      const small = volume as SmallVolume;
      mkdirSync(join(small.path, 'snapgraph'));
      small.fill();
      try {
        const targetId = (await createInstance(suite.server, { name: 'state on a full disk' })).id;
        const run = await snapgraph(suite.server, ['restore-file', targetId, archivePath, '--confirm', 'RESTORE'], { env: { XDG_STATE_HOME: small.path } });
        assert.equal(run.code, 0, output(run));
        const stateFile = join(small.path, 'snapgraph', 'uploads.json');
        assert.ok(run.stderr.includes(`cannot save the upload's address in ${stateFile} (ENOSPC)`), output(run));
        assert.match(run.stderr, /the upload goes on, but a rerun after it stops starts it over/);
        assert.doesNotMatch(run.stderr, /node:internal|^\s+at /m, 'no stack trace');
        assert.match(run.stdout, /restore SUCCEEDED/);
        assert.deepEqual(await graphOf(suite.server, targetId), await graphOf(suite.server, sourceId));
      } finally {
        small.release();
      }
    });

    // uploads.json was truncated and written again in place: a write that failed part-way (its volume full) or a process
    // that died in it left it damaged, every saved upload of every file lost with it, and restore-file refused to run.
    it('keeps the upload state file whole when a change to it cannot be written (a full disk)', async function () {
      const volume = mountSmallVolume(1024 * 1024);
      if ('unavailable' in volume) return this.skip();
      const small = volume as SmallVolume;
      const stateDir = join(small.path, 'snapgraph');
      mkdirSync(stateDir);
      const stateFile = join(stateDir, 'uploads.json');
      // The uploads of other files, in the shape tus-js-client's FileUrlStorage wrote, filling most of the page the file
      // holds: with one more address it needs a second one.
      const earlier = earlierUploads(suite.server, 4000);
      writeFileSync(stateFile, earlier);
      small.fill();
      try {
        const targetId = (await createInstance(suite.server, { name: 'state kept whole' })).id;
        const run = await snapgraph(suite.server, ['restore-file', targetId, archivePath, '--confirm', 'RESTORE'], { env: { XDG_STATE_HOME: small.path } });
        assert.equal(run.code, 0, output(run));
        assert.ok(run.stderr.includes(`cannot save the upload's address in ${stateFile} (ENOSPC)`), output(run));
        const kept = readFileSync(stateFile, 'utf8');
        assert.ok(kept === earlier, `the earlier uploads are all kept, whole (${kept.length} bytes for ${earlier.length}): ${kept.slice(-80)}`);
        assert.deepEqual(readdirSync(stateDir), ['uploads.json'], 'no temporary or lock file is left');
      } finally {
        small.release();
      }
    });

    // The finished upload that could not be removed from the state file (its volume full) was kept silently: a rerun with
    // the same file then resumed it and reported the old restore instead of restoring the file anew.
    it('says so when the finished upload cannot be removed from the state file, and what a rerun would do', async function () {
      this.timeout(90_000);
      const volume = mountSmallVolume(1024 * 1024);
      if ('unavailable' in volume) return this.skip();
      const small = volume as SmallVolume;
      const stateFile = join(small.path, 'snapgraph', 'uploads.json');
      const targetId = (await createInstance(suite.server, { name: 'state not cleaned up' })).id;
      const args = ['restore-file', targetId, archivePath, '--confirm', 'RESTORE', '--chunk-size', '8k'];
      const env = { XDG_STATE_HOME: small.path };
      const interrupted = await snapgraph(suite.server, args, { env: { ...env, SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(8 * 1024) } });
      assert.equal(interrupted.code, 130, output(interrupted));
      const saved = readFileSync(stateFile, 'utf8');
      small.fill();
      try {
        const resumed = await snapgraph(suite.server, args, { env });
        assert.equal(resumed.code, 0, output(resumed));
        assert.match(resumed.stdout, /restore SUCCEEDED/);
        const operationId = /restore queued as operation (\S+)/.exec(resumed.stderr)?.[1];
        assert.ok(operationId, output(resumed));
        assert.ok(resumed.stderr.includes(`cannot remove the finished upload from ${stateFile} (ENOSPC)`), output(resumed));
        assert.ok(
          resumed.stderr.includes(`a rerun with the same file would report this restore (operation ${operationId}) again instead of restoring the file anew`),
          output(resumed),
        );
        assert.equal(readFileSync(stateFile, 'utf8'), saved);
      } finally {
        small.release();
      }
    });

    // uploads.json was made 0660 minus the umask (0640 mostly): other local users read the upload addresses in it.
    it('keeps the upload state file readable by its owner only (0600), and resumes from one an earlier release wrote', async function () {
      this.timeout(90_000);
      const server = suite.server;
      const state = makeTempDir('snapgraph-e2e-state-');
      const stateFile = join(state, 'snapgraph', 'uploads.json');
      const targetId = (await createInstance(server, { name: 'state file mode' })).id;
      const args = ['restore-file', targetId, archivePath, '--confirm', 'RESTORE', '--chunk-size', '8k'];
      const interrupted = await snapgraph(server, args, { env: { XDG_STATE_HOME: state, SNAPGRAPH_CLI_STOP_AFTER_BYTES: String(8 * 1024) } });
      assert.equal(interrupted.code, 130, output(interrupted));
      assert.equal(statSync(stateFile).mode & 0o777, 0o600);

      // The same upload saved by tus-js-client's FileUrlStorage (as earlier releases did), readable by all.
      const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, tus.PreviousUpload>;
      const [key] = Object.keys(saved);
      rmSync(stateFile);
      await new FileUrlStorage(stateFile).addUpload(key.split('::')[1], saved[key]);
      chmodSync(stateFile, 0o644);
      const resumed = await snapgraph(server, args, { env: { XDG_STATE_HOME: state } });
      assert.equal(resumed.code, 0, output(resumed));
      assert.match(resumed.stderr, /resuming an earlier upload of source\.backup/);
      assert.deepEqual(await graphOf(server, targetId), await graphOf(server, sourceId));
      assert.deepEqual(JSON.parse(readFileSync(stateFile, 'utf8')), {}, 'the finished upload is forgotten');
      assert.equal(statSync(stateFile).mode & 0o777, 0o600, 'the file an earlier release wrote, rewritten');
    });

    // A relative XDG_STATE_HOME put the state file under the current directory: a rerun from another one did not resume.
    // The XDG Base Directory spec says such a value is invalid and to be ignored.
    it('ignores a relative XDG_STATE_HOME, as the XDG spec says, keeping its state under ~/.local/state', async () => {
      const home = makeTempDir('snapgraph-e2e-home-');
      const relative = `snapgraph-e2e-relative-state-${randomBytes(4).toString('hex')}`;
      const targetId = (await createInstance(suite.server, { name: 'relative state home' })).id;
      try {
        const run = await snapgraph(suite.server, ['restore-file', targetId, archivePath, '--confirm', 'RESTORE'], {
          env: { XDG_STATE_HOME: relative, HOME: home },
        });
        assert.equal(run.code, 0, output(run));
        assert.ok(existsSync(join(home, '.local', 'state', 'snapgraph', 'uploads.json')), output(run));
        assert.equal(existsSync(join(REPO_ROOT, relative)), false, 'a state dir under the current directory');
      } finally {
        rmSync(join(REPO_ROOT, relative), { recursive: true, force: true });
      }
    });

    it('requires --confirm RESTORE', async () => {
      const run = await snapgraph(suite.server, ['restore-file', sourceId, archivePath]);
      assert.equal(run.code, 2, output(run));
      assert.match(run.stderr, /--confirm RESTORE is required/);
    });
  });

  describe('the /uploads endpoint', () => {
    it('answers 401 without a valid API key', async () => {
      const none = await createUpload(suite.server, null, { instanceId: sourceId, confirm: 'RESTORE' });
      assert.equal(none.status, 401);
      assert.match(await none.text(), /UNAUTHENTICATED/);
      const wrong = await createUpload(suite.server, 'sg_not_a_key', { instanceId: sourceId, confirm: 'RESTORE' });
      assert.equal(wrong.status, 401);
    });

    it('refuses at creation, storing nothing: 403 for a MEMBER key, 400 without confirm, 404 for an unknown instance', async () => {
      const server = suite.server;
      const member = await createKey(server, server.adminKey, 'MEMBER');
      const cases: [string, Record<string, string>, number, string][] = [
        [member.secret, { instanceId: sourceId, confirm: 'RESTORE' }, 403, 'FORBIDDEN'],
        [server.adminKey, { instanceId: sourceId, confirm: 'yes' }, 400, 'CONFIRMATION_REQUIRED'],
        [server.adminKey, { confirm: 'RESTORE' }, 400, 'BAD_USER_INPUT'],
        [server.adminKey, { instanceId: 'no-such-instance', confirm: 'RESTORE' }, 404, 'NOT_FOUND'],
        [other.apiKey, { instanceId: sourceId, confirm: 'RESTORE' }, 404, 'NOT_FOUND'],
      ];
      for (const [key, metadata, status, code] of cases) {
        const response = await createUpload(server, key, metadata);
        const body = await response.text();
        assert.equal(response.status, status, `${JSON.stringify(metadata)}: ${body}`);
        assert.equal(errorCodeOf(body), code);
      }
      assert.deepEqual(uploadsLeft(), []);
    });

    it("keeps an upload to the tenant that created it: another tenant's key gets 404", async () => {
      const server = suite.server;
      const created = await createUpload(server, server.adminKey, { instanceId: sourceId, confirm: 'RESTORE', filename: 'x.backup' });
      assert.equal(created.status, 201, await created.text());
      assert.ok(created.headers.get('upload-expires'), 'unfinished uploads expire');
      const location = new URL(created.headers.get('location')!, server.url).toString();
      const head = (key: string) => fetch(location, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${key}` } });

      assert.equal((await head(other.apiKey)).status, 404);
      assert.equal((await patchUpload(location, other.apiKey, 0, Buffer.alloc(10))).status, 404);
      const own = await head(server.adminKey);
      assert.equal(own.status, 200);
      assert.equal(own.headers.get('upload-offset'), '0', 'the other tenant wrote nothing');

      const terminated = await fetch(location, {
        method: 'DELETE',
        headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${server.adminKey}` },
      });
      assert.equal(terminated.status, 204);
      assert.deepEqual(uploadsLeft(), []);
    });

    it('answers a damaged file with 422 INVALID_BACKUP_FILE and keeps none of it', async () => {
      const server = suite.server;
      const damaged = Buffer.from(archive);
      damaged[Math.floor(damaged.length / 2)] ^= 0xff;
      const created = await createUpload(server, server.adminKey, { instanceId: sourceId, confirm: 'RESTORE' }, damaged.length);
      const location = new URL(created.headers.get('location')!, server.url).toString();
      const finished = await patchUpload(location, server.adminKey, 0, damaged);
      assert.equal(finished.status, 422);
      assert.equal(errorCodeOf(await finished.text()), 'INVALID_BACKUP_FILE');
      assert.deepEqual(uploadsLeft(), []);
    });

    it('gives a client that lost the final answer the same restore operation, never a second restore', async () => {
      const server = suite.server;
      const targetId = (await createInstance(server, { name: 'once' })).id;
      const created = await createUpload(server, server.adminKey, { instanceId: targetId, confirm: 'RESTORE' }, archive.length);
      const location = new URL(created.headers.get('location')!, server.url).toString();
      const finished = await patchUpload(location, server.adminKey, 0, archive);
      assert.equal(finished.status, 204, await finished.text());
      const operationId = finished.headers.get('snapgraph-operation-id');
      assert.ok(operationId);

      const head = await fetch(location, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${server.adminKey}` } });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('upload-offset'), String(archive.length));
      assert.equal(head.headers.get('snapgraph-operation-id'), operationId);
      const repeated = await patchUpload(location, server.adminKey, archive.length, Buffer.alloc(0));
      assert.equal(repeated.status, 204);
      assert.equal(repeated.headers.get('snapgraph-operation-id'), operationId);

      await eventually(
        async () => {
          const { operation } = expectData(await gql(server, `query ($id: ID!) { operation(id: $id) { status } }`, { id: operationId }));
          return operation.status === 'SUCCEEDED' || undefined;
        },
        { timeoutMs: 30_000, what: 'the restore SUCCEEDED' },
      );
      const { operations } = expectData(
        await gql(server, `query ($id: ID!) { operations(instanceId: $id) { edges { node { id kind } } } }`, { id: targetId }),
      );
      const fileRestores = (operations.edges as { node: { id: string; kind: string } }[])
        .filter((edge) => edge.node.kind === 'RESTORE_FROM_FILE')
        .map((edge) => edge.node.id);
      assert.deepEqual(fileRestores, [operationId]);
      assert.deepEqual(uploadsLeft(), []);
    });
  });
});

describe('snapgraph export with an export link that expires at once', () => {
  const suite = serverPerSuite({ config: { exportUrlTtl: 'PT0.001S' } });

  it('says the link expired and to run the command again', async () => {
    stateHome = makeTempDir('snapgraph-e2e-state-');
    const instanceId = (await createInstance(suite.server, { name: 'short-lived' })).id;
    await createNodes(suite.server, instanceId, [{ labels: ['A'] }]);
    const { id } = await snapshotOf(suite.server, instanceId);
    const dir = makeTempDir();
    const run = await snapgraph(suite.server, ['export', id, '-o', dir]);
    assert.equal(run.code, 1, output(run));
    assert.match(run.stderr, /the export link expired \(HTTP 410\): run the command again/);
    assert.deepEqual(readdirSync(dir), []);
  });
});

// A minimal tus server that keeps every complete upload for a busy instance (423 CONFLICT on the last PATCH and on
// each HEAD), as Snapgraph does while another operation runs on it: restore-file waits with backoff, and Ctrl-C then
// must end it. Once the instance is free, it holds a HEAD unanswered (the server queueing the restore) for the test.
describe('snapgraph restore-file against a busy instance, or a server without room for the file', () => {
  const busy = JSON.stringify({ errors: [{ message: 'another operation runs on the instance', extensions: { code: 'CONFLICT' } }] });
  const full = JSON.stringify({ errors: [{ message: 'no room on the volume of partial uploads (SNAPGRAPH_UPLOAD_DIR)', extensions: { code: 'STORAGE_FULL' } }] });
  let instanceFree = false;
  let noRoom = false;
  let creations = 0;
  let heldHead: ServerResponse | null = null;
  let env: NodeJS.ProcessEnv;
  let file: string;
  const tus = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      if (request.method === 'POST') creations += 1;
      if (request.method === 'POST' && noRoom) response.writeHead(507, { 'tus-resumable': '1.0.0', 'content-type': 'application/json' }).end(full);
      else if (request.method === 'POST') response.writeHead(201, { 'tus-resumable': '1.0.0', location: '/uploads/kept' }).end();
      else if (request.method === 'HEAD' && instanceFree) heldHead = response;
      else response.writeHead(423, { 'tus-resumable': '1.0.0', 'content-type': 'application/json' }).end(busy);
    });
  });
  before(async () => {
    await new Promise<void>((resolve) => tus.listen(0, '127.0.0.1', resolve));
  });
  after(() => tus.close());
  beforeEach(() => {
    instanceFree = false;
    noRoom = false;
    creations = 0;
    heldHead = null;
    file = join(makeTempDir(), 'small.backup');
    writeFileSync(file, archiveStart(1000));
    const url = `http://127.0.0.1:${(tus.address() as AddressInfo).port}`;
    env = serverEnv({ SNAPGRAPH_URL: url, SNAPGRAPH_API_KEY: 'sg_any', XDG_STATE_HOME: makeTempDir(), SNAPGRAPH_CLI_STOP_AFTER_BYTES: undefined });
  });

  /** `snapgraph restore-file` of the test's file, its stderr as it comes, and its exit code (killed after 10 s). */
  const restoreFile = () => {
    const child = spawn(LAUNCHER, ['restore-file', 'instance-1', file, '--confirm', 'RESTORE'], { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const run = {
      child,
      stderr: '',
      exitCode: async () => {
        const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
        if (code === 'still running') child.kill('SIGKILL');
        return code;
      },
    };
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (run.stderr += chunk));
    return run;
  };

  /** A run that sends the whole file, hears the instance is busy, and is stopped there with Ctrl-C. */
  const stoppedWhileBusy = async () => {
    const run = restoreFile();
    await eventually(() => /waiting for the instance's running operation to end/.test(run.stderr), { timeoutMs: 15_000, what: `the wait:\n${run.stderr}` });
    run.child.kill('SIGINT');
    assert.equal(await run.exitCode(), 130, run.stderr);
    return run;
  };

  it('stops at once when the server has no room for the file (507 to its creation), saying why, and neither retries nor offers to resume', async function () {
    this.timeout(30_000);
    noRoom = true;
    const run = restoreFile();
    assert.equal(await run.exitCode(), 1, run.stderr);
    assert.match(run.stderr, /STORAGE_FULL: no room on the volume of partial uploads \(SNAPGRAPH_UPLOAD_DIR\)/);
    assert.doesNotMatch(run.stderr, /keeps what it received|resume/);
    assert.equal(creations, 1, 'asked once');
  });

  it('stops at Ctrl-C with exit 130, saying the server keeps the file and a rerun queues its restore', async function () {
    this.timeout(30_000);
    const run = await stoppedWhileBusy();
    assert.match(run.stderr, /interrupted; the server keeps the uploaded file: run the same command again to queue its restore/);
  });

  // A rerun's first request is a HEAD, which the server answers by queueing the restore, checking the file first if it
  // must. A Ctrl-C during that HEAD must wait for the answer and name the restore, not say "resume the upload".
  it('on Ctrl-C during the HEAD of a rerun that queues the restore, names the restore it queued (exit 130)', async function () {
    this.timeout(30_000);
    await stoppedWhileBusy();
    instanceFree = true;
    const rerun = restoreFile();
    await eventually(() => heldHead !== null, { timeoutMs: 15_000, what: `the rerun's HEAD:\n${rerun.stderr}` });
    rerun.child.kill('SIGINT');
    await eventually(() => /waiting for the server to answer/.test(rerun.stderr), { timeoutMs: 5_000, what: `the Ctrl-C to be heard:\n${rerun.stderr}` });
    heldHead!.writeHead(200, { 'tus-resumable': '1.0.0', 'upload-offset': '1000', 'upload-length': '1000', 'snapgraph-operation-id': 'op-queued' }).end();
    assert.equal(await rerun.exitCode(), 130, rerun.stderr);
    assert.match(rerun.stderr, /the restore continues on the server as operation op-queued/);
    assert.doesNotMatch(rerun.stderr, /resume the upload/);
  });
});

/** An address nothing listens at: a port just closed. */
async function closedAddress(): Promise<string> {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const address = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  return address;
}

/** `snapgraph export` into `dir` of a new snapshot of a new instance of one node. */
async function exportNewSnapshot(server: TestServer, name: string, dir: string) {
  stateHome = makeTempDir('snapgraph-e2e-state-');
  const instanceId = (await createInstance(server, { name })).id;
  await createNodes(server, instanceId, [{ labels: ['A'] }]);
  const { id } = await snapshotOf(server, instanceId);
  return snapgraph(server, ['export', id, '-o', dir]);
}

// SNAPGRAPH_PUBLIC_URL names an address the machine running the command cannot reach (a proxy's public name, from
// inside): the command reached the server a moment ago, and said it could not ("set SNAPGRAPH_URL or --url").
describe('snapgraph export when the export link names an address the command cannot reach', () => {
  let unreachable: string;
  const suite = serverPerSuite(async () => {
    unreachable = await closedAddress();
    return { env: { SNAPGRAPH_PUBLIC_URL: unreachable } };
  });

  it("names the link's address and the server's SNAPGRAPH_PUBLIC_URL, not the server it reached, nor the link's token", async () => {
    const dir = makeTempDir();
    const run = await exportNewSnapshot(suite.server, 'behind a proxy', dir);
    assert.equal(run.code, 1, output(run));
    assert.match(run.stderr, new RegExp(`cannot reach the export link's address ${unreachable} \\(ECONNREFUSED\\); the server builds it from its SNAPGRAPH_PUBLIC_URL`));
    assert.doesNotMatch(run.stderr, new RegExp(`${suite.server.url}|/exports/`), 'neither the server the command reached nor the link itself');
    assert.deepEqual(readdirSync(dir), []);
  });
});

// Without a public URL the link is built on SNAPGRAPH_ALLOWED_HOSTS (the request's Host when listed, else the first
// entry), never on the address the command asked: the message said "else from the address it was asked at".
describe('snapgraph export when SNAPGRAPH_ALLOWED_HOSTS gives the export link an address the command cannot reach', () => {
  let unreachable: string;
  const suite = serverPerSuite(async () => {
    unreachable = await closedAddress();
    return { env: { SNAPGRAPH_ALLOWED_HOSTS: unreachable } };
  });

  it('names SNAPGRAPH_ALLOWED_HOSTS, not the address it asked, as where the link comes from', async () => {
    const run = await exportNewSnapshot(suite.server, 'allowed elsewhere', makeTempDir());
    assert.equal(run.code, 1, output(run));
    assert.match(run.stderr, new RegExp(`cannot reach the export link's address ${unreachable} \\(ECONNREFUSED\\); .*SNAPGRAPH_ALLOWED_HOSTS`));
    assert.doesNotMatch(run.stderr, /the address it was asked at/);
  });
});

// SNAPGRAPH_URL naming another service (a proxy's login page, another app on the port): it answers 200 with HTML.
describe('snapgraph export against a server that is not Snapgraph', () => {
  /** A service at `url` that answers every request with `status` and an HTML `body`, for the length of `use`. */
  async function withOtherService(status: number, body: string, use: (url: string) => Promise<void>): Promise<void> {
    const other = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(status, { 'content-type': 'text/html' }).end(body));
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      await use(`http://127.0.0.1:${(other.address() as AddressInfo).port}`);
    } finally {
      other.close();
    }
  }

  const exportFrom = async (url: string) => {
    const env = serverEnv({ SNAPGRAPH_URL: url, SNAPGRAPH_API_KEY: 'sg_any', XDG_STATE_HOME: makeTempDir() });
    return { env, run: await runCli(['export', 'some-snapshot', '-o', makeTempDir()], env) };
  };

  it('says the URL does not answer as a Snapgraph server (exit 1), not a JSON parser error', async () => {
    await withOtherService(200, '<!DOCTYPE html><html>sign in</html>', async (url) => {
      const { run } = await exportFrom(url);
      assert.equal(run.code, 1, output(run));
      assert.equal(
        run.stderr,
        `snapgraph: ${url} does not answer as a Snapgraph server (HTTP 200, text/html: <!DOCTYPE html><html>sign in</html>); set SNAPGRAPH_URL or --url\n`,
      );
    });
  });

  // fetch's "terminated" was all it said of an answer cut off: not the server, nor the cause.
  it('says the connection broke off in the answer, naming the server and why, when it goes mid-answer', async () => {
    const cutting = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
        response.write('{"data":{"snapshot"', () => response.socket?.destroy());
      });
    });
    await new Promise<void>((resolve) => cutting.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(cutting.address() as AddressInfo).port}`;
      const { run } = await exportFrom(url);
      assert.equal(run.code, 1, output(run));
      assert.equal(run.stderr, `snapgraph: the connection to the Snapgraph server at ${url} broke off in its answer (UND_ERR_SOCKET); what was asked may have been done\n`);
    } finally {
      cutting.close();
    }
  });

  // A URL without the path a proxy serves Snapgraph under (http://host/ for http://host/snapgraph): the proxy's 404 was
  // reported as "the server answered HTTP 404: " and the body, as if Snapgraph had refused something.
  it('says the same of a 404 that is not a GraphQL answer (a wrong path behind a proxy)', async () => {
    await withOtherService(404, '<pre>Cannot POST /graphql</pre>', async (url) => {
      const { env, run } = await exportFrom(url);
      assert.equal(run.code, 1, output(run));
      assert.equal(
        run.stderr,
        `snapgraph: ${url} does not answer as a Snapgraph server (HTTP 404, text/html: <pre>Cannot POST /graphql</pre>); set SNAPGRAPH_URL or --url\n`,
      );

      // restore-file's first request (the tus creation, POST /uploads) said the server kept the file for a rerun.
      const file = join(makeTempDir(), 'some.backup');
      writeFileSync(file, archiveStart(100));
      const upload = await runCli(['restore-file', 'instance-1', file, '--confirm', 'RESTORE'], env);
      assert.equal(upload.code, 1, output(upload));
      assert.match(upload.stderr, new RegExp(`snapgraph: ${url} does not answer as a Snapgraph server \\(HTTP 404 to POST /uploads, text/html: <pre>Cannot POST /graphql</pre>\\); set SNAPGRAPH_URL or --url\n$`));
    });
  });
});

// Two runs into the same file at once (cron runs that overlap): the second resumed the first's .part and appended to it
// while the first still wrote at its own offsets, renamed it into place and said "saved … sha256 <the snapshot's>" over
// a file of both runs' bytes interleaved.
describe('snapgraph export twice at once into the same file', () => {
  it('refuses the second run while the first writes the .part, and the first saves the file whole', async () => {
    const archive = randomBytes(256 * 1024);
    const half = archive.length / 2;
    let releaseFirst = () => undefined as void;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    const fake = createServer((request, response) => {
      if (request.method === 'POST') {
        request.resume();
        request.on('end', () => {
          const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}/exports/some-token-that-is-long-enough`;
          const link = { url, fileName: 'twice.backup', sizeBytes: archive.length, sha256: sha256Of(archive), expiresAt: new Date(Date.now() + 60_000).toISOString() };
          response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: { exportSnapshot: link } }));
        });
        return;
      }
      const from = Number(/^bytes=(\d+)-/.exec(request.headers.range ?? '')?.[1] ?? 0);
      if (from > 0) {
        response.writeHead(206, { 'content-range': `bytes ${from}-${archive.length - 1}/${archive.length}`, 'content-length': archive.length - from });
        response.end(archive.subarray(from));
        return;
      }
      response.writeHead(200, { 'content-length': archive.length });
      response.write(archive.subarray(0, half));
      void firstHeld.then(() => response.end(archive.subarray(half)));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const dir = makeTempDir();
      const out = join(dir, 'twice.backup');
      const env = serverEnv({ SNAPGRAPH_URL: `http://127.0.0.1:${(fake.address() as AddressInfo).port}`, SNAPGRAPH_API_KEY: 'sg_any', XDG_STATE_HOME: makeTempDir() });
      const child = spawn(LAUNCHER, ['export', 'snapshot-1', '-o', out], { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let firstOutput = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (firstOutput += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (firstOutput += chunk));
      const firstExit = new Promise<number | null>((resolve) => child.once('close', resolve));
      await eventually(() => (existsSync(`${out}.part`) && statSync(`${out}.part`).size === half) || undefined, { timeoutMs: 10_000, what: 'the first half in the .part' });

      const second = await runCli(['export', 'snapshot-1', '-o', out], env);
      releaseFirst();
      const first = { code: await firstExit, stdout: firstOutput, stderr: '' };
      assert.equal(second.code, 1, output(second));
      assert.match(second.stderr, new RegExp(`another snapgraph export \\(process ${child.pid}\\) is writing ${out}\\.part; wait for it to end, or stop it and run this again`));
      assert.equal(first.code, 0, output(first));
      assert.ok(readFileSync(out).equals(archive), 'the saved file is the archive');
      assert.deepEqual(readdirSync(dir), ['twice.backup']);
    } finally {
      releaseFirst();
      fake.close();
    }
  });
});

// restore-file tries a request again for 39 s (a server restarting): it did so in silence, so that a wrong URL looked
// like a command that hangs, and said only at the end that the server could not be reached.
describe('snapgraph restore-file with no server at the URL', () => {
  it('says at each try again what went wrong and when it tries next; Ctrl-C then stops it (exit 130)', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const file = join(makeTempDir(), 'some.backup');
    writeFileSync(file, archiveStart(100));
    const env = serverEnv({ SNAPGRAPH_URL: url, SNAPGRAPH_API_KEY: 'sg_any', XDG_STATE_HOME: makeTempDir() });
    const child = spawn(LAUNCHER, ['restore-file', 'instance-1', file, '--confirm', 'RESTORE'], { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    try {
      await eventually(() => /in 3 s/.test(stderr) || undefined, { timeoutMs: 10_000, what: `a third try announced:\n${stderr}` });
      const tries = `cannot reach the Snapgraph server at ${url} \\(ECONNREFUSED\\); trying again`;
      assert.match(stderr, new RegExp(`${tries} now \\(1 of 6\\)\n.*${tries} in 1 s \\(2 of 6\\)\n.*${tries} in 3 s \\(3 of 6\\)`, 's'));
      child.kill('SIGINT');
      assert.equal(await exited, 130, stderr);
      assert.match(stderr, /interrupted; run the same command again to resume the upload\n$/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

// A server restarts (an upgrade, a crash) while restore-file follows the restore it queued: the restore goes on (it is
// handed back and queued again), and so must the command, which followed it over a WebSocket that gave up at the first
// refused reconnection and exited 1 saying "cannot reach the Snapgraph server …; set SNAPGRAPH_URL or --url".
describe('snapgraph restore-file while the server restarts during the restore', function () {
  this.timeout(180_000);

  it('follows the restore again once the server answers, and reports how it ended (exit 0)', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const server = await startServer({ env: { PORT: String(port) } });
    const source = await createInstance(server, { name: 'restart source' });
    for (let batch = 0; batch < 20; batch++) {
      await createNodes(server, source.id, Array.from({ length: 500 }, (_, i) => ({ labels: ['Item'], properties: { i, blob: randomBytes(256).toString('hex') } })));
    }
    const file = join(makeTempDir(), 'restart.backup');
    writeFileSync(file, await archiveOf(server, (await takeSnapshot(server, source.id)).id));
    const target = await createInstance(server, { name: 'restart target' });

    const env = serverEnv({ SNAPGRAPH_URL: server.url, SNAPGRAPH_API_KEY: server.adminKey, XDG_STATE_HOME: makeTempDir(), SNAPGRAPH_CLI_STOP_AFTER_BYTES: undefined });
    const child = spawn(LAUNCHER, ['restore-file', target.id, file, '--confirm', 'RESTORE'], { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    try {
      const operationId = await eventually(() => /restore queued as operation (\S+)/.exec(stderr)?.[1], { timeoutMs: 60_000, what: `the restore queued:\n${stderr}` });
      // A crash mid-restore, and a server that takes a while to come back (a graceful stop may take its 25 s grace).
      await server.kill();
      await new Promise((resolve) => setTimeout(resolve, 20_000));
      await server.restart();
      assert.equal(server.url, `http://127.0.0.1:${port}`);

      const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 90_000))]);
      const run = { code: code === 'still running' ? null : code, stdout, stderr };
      await settledOperation(server, operationId);
      const { operation } = expectData(await gql(server, `query ($id: ID!) { operation(id: $id) { status attempt } }`, { id: operationId }));
      assert.ok(operation.attempt >= 2, `the restore ended before the crash (attempt ${operation.attempt}): the test proves nothing`);
      assert.equal(operation.status, 'SUCCEEDED');
      assert.equal(run.code, 0, output(run as CliResult));
      assert.match(run.stdout, new RegExp(`restore SUCCEEDED: instance ${target.id} .*operation ${operationId}`));
      assert.doesNotMatch(run.stderr, /set SNAPGRAPH_URL/);
      assert.deepEqual(await graphOf(server, target.id), await graphOf(server, source.id));
    } finally {
      child.kill('SIGKILL');
      await server.stop();
    }
  });
});
