// `snapgraph restore-file <instanceId> <file> --confirm RESTORE`: uploads a backup file of any size through the
// resumable /uploads endpoint (tus), then follows the restore it starts until it succeeds or fails.
// A rerun after Ctrl-C resumes the upload: its URL is kept in $XDG_STATE_HOME/snapgraph/uploads.json under a
// fingerprint of the file (path, size, mtime), the target instance, the server and the key. Ctrl-C once the server
// works on the restore cancels it (--cancel-on-interrupt, or yes to the question on a terminal) or leaves it running.
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import * as tus from 'tus-js-client';
import { OPERATION_ID_HEADER, UPLOADS_PATH } from '../api/http/upload-endpoint';
import { ApiClient, describeErrorBody } from './api-client';
import { askToCancel } from './ask-to-cancel';
import { CliError, Interrupted, UsageError } from './cli-error';
import { parseCommandArgs } from './command-args';
import { Interruption } from './interruption';
import { formatBytes, ProgressBar } from './progress-bar';
import { FileUnreadableError, HeadAnsweredWithServerError, isRefusal, isTransient, nothingStored, responseOf, type UploadError, waitsForInstance } from './upload-answers';
import { UploadStateFile } from './upload-state-file';

const MIB = 1024 * 1024;
/**
 * Bytes per PATCH unless --chunk-size says otherwise. The server keeps the bytes of a PATCH that broke off, so a
 * resume starts from the last byte it got, but only where the request streams through to it: a reverse proxy that
 * buffers request bodies (nginx does by default) forwards nothing of a request that broke off, and a resume starts at
 * the end of the last whole one. One request for the whole file measured no faster at 1 GiB (bench:transfer
 * --tus-chunk), so the default keeps what such a proxy can lose at 64 MiB.
 */
const DEFAULT_CHUNK_BYTES = 64 * MIB;
const RETRY_DELAYS_MS = [0, 1_000, 3_000, 5_000, 10_000, 20_000];
/**
 * How long a complete upload waits for its instance's running operation (a snapshot, a verification, another restore)
 * before the command gives up (the upload stays on the server: a rerun resumes it), and the pauses between looks.
 */
const INSTANCE_WAIT_MS = 30 * 60_000;
const INSTANCE_WAIT_DELAYS_MS = [2_000, 5_000, 10_000, 20_000, 30_000];
/**
 * How long the restore is followed again after the connection to the server was lost: a server that restarts (an
 * upgrade; a graceful stop gives running operations SNAPGRAPH_SHUTDOWN_GRACE_MS, 25 s by default) hands the restore
 * back and runs it again, and answers again well within this.
 */
const FOLLOW_RECONNECT_MS = 5 * 60_000;

const RESTORE_PROGRESS = `subscription ($id: ID!) {
  restoreProgress(operationId: $id) { id status phase progress bytesDone bytesTotal error { code message } }
}`;

const CANCEL_OPERATION = `mutation ($id: ID!) { cancelOperation(id: $id) { id status } }`;

/** What Ctrl-C does once the upload is done and the server restores: cancel it, ask (on a terminal), or leave it. */
type OnInterrupt = 'cancel' | 'ask' | 'leave';

interface OperationState {
  id: string;
  status: 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
  phase: string | null;
  progress: number;
  bytesDone: number;
  bytesTotal: number | null;
  error: { code: string; message: string } | null;
}

interface UploadRequest {
  instanceId: string;
  file: string;
  stats: Stats;
  confirm: string;
  chunkSize: number;
}

export async function restoreFileCommand(args: string[]): Promise<number> {
  const options = { confirm: { type: 'string' }, 'chunk-size': { type: 'string' }, 'cancel-on-interrupt': { type: 'boolean' } } as const;
  const { values, positionals } = parseCommandArgs(args, options, 2, 'restore-file takes an instance id and a file');
  const [instanceId, file] = positionals;
  if (values.confirm !== 'RESTORE') {
    throw new UsageError("--confirm RESTORE is required: the restore replaces the instance's data (a PRE_RESTORE snapshot is taken first)");
  }
  const chunkSize = values['chunk-size'] === undefined ? DEFAULT_CHUNK_BYTES : parseSize(values['chunk-size']);
  const stats = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${file}: ${error.code ?? error.message}`);
  });
  if (!stats.isFile()) throw new CliError(`${file} is not a regular file`);
  const client = ApiClient.fromOptions(values);
  await refuseUnrestorableStart(file);

  const interruption = new Interruption();
  try {
    const operationId = await uploadFile(client, { instanceId, file, stats, confirm: values.confirm, chunkSize }, interruption);
    process.stderr.write(`the server verified the file; restore queued as operation ${operationId}\n`);
    const onInterrupt: OnInterrupt = values['cancel-on-interrupt'] ? 'cancel' : process.stdin.isTTY && process.stderr.isTTY ? 'ask' : 'leave';
    const final = await followRestore(client, operationId, interruption, onInterrupt);
    if (final.status === 'CANCELLED') {
      // Someone else cancelled it (cancelOperation): no failure, but not the restore asked for either.
      throw new CliError(`restore CANCELLED (operation ${operationId}): the instance keeps its data`);
    }
    if (final.status !== 'SUCCEEDED') {
      const why = final.error ? `${final.error.code}: ${final.error.message}` : 'no error was reported';
      throw new CliError(`restore FAILED (operation ${operationId}): ${why}`);
    }
    process.stdout.write(`restore SUCCEEDED: instance ${instanceId} now holds the data of ${basename(file)} (operation ${operationId})\n`);
    return 0;
  } finally {
    interruption.dispose();
  }
}

/**
 * A file the server would refuse from its first bytes (a Neo4j store dump, a gzip, anything unknown) is refused here:
 * the server says so only once it has all of it, after an upload of perhaps many GiB.
 */
async function refuseUnrestorableStart(file: string): Promise<void> {
  const { refusalOfFileStart } = await import('../services/uploaded-file.js');
  const { SNIFF_LENGTH } = await import('../archive/file-type.js');
  const handle = await open(file, 'r');
  let head: Buffer;
  try {
    const buffer = Buffer.alloc(SNIFF_LENGTH);
    const { bytesRead } = await handle.read(buffer, 0, SNIFF_LENGTH, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const refusal = refusalOfFileStart(head);
  if (refusal) throw new CliError(`INVALID_BACKUP_FILE: ${refusal} (${file} was not uploaded)`);
}

/** 1048576, 512k, 16M, 1G (binary units). */
function parseSize(text: string): number {
  const match = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  const bytes = match ? Number(match[1]) * 1024 ** ' kmg'.indexOf((match[2] || ' ').toLowerCase()) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`--chunk-size "${text}" is not a size (e.g. 16M)`);
  return bytes;
}

/** Uploads (or resumes uploading) the file; resolves with the id of the restore operation the server queued. */
async function uploadFile(client: ApiClient, request: UploadRequest, interruption: Interruption): Promise<string> {
  const { file, stats } = request;
  const statePath = await urlStoragePath();
  const fingerprint = fingerprintOf(client, request);
  let progress: ProgressBar | null = null;
  /** A line on stderr that does not break the progress bar. */
  const say = (line: string) => void (progress ? progress.log(line) : process.stderr.write(`${line}\n`));
  const stateFile = new UploadStateFile(statePath);
  const urlStorage = savingMayFail(stateFile, statePath, say);
  let instanceWaits = 0;
  let instanceWaitEnds = 0;
  // Once the file's last byte is sent, the server verifies it and queues the restore whether or not this client waits
  // for the answer: a Ctrl-C then waits for it, so that the restore it queues is followed, cancelled or named.
  let allSent = false;
  /** The server named the restore: a Ctrl-C from then on is followRestore's to handle. */
  let answered = false;
  /** The next look at a complete upload waiting for its busy instance, while no request is under way. */
  let nextLook: NodeJS.Timeout | null = null;
  /**
   * A HEAD is under way: a rerun's first request, or a look at an upload waiting for its busy instance. The server
   * answers the HEAD of a complete upload by queueing its restore (checking the file first if it must), so a Ctrl-C
   * meanwhile waits for the answer as after the last byte.
   */
  let headUnderWay = false;
  /** A Ctrl-C once the whole file is on the server, before any restore was named. */
  const keptOnServer = () => new Interrupted('the server keeps the uploaded file: run the same command again to queue its restore');
  const resumeLater = () => new Interrupted('run the same command again to resume the upload');

  return new Promise<string>((resolvePromise, reject) => {
    // tus-js-client reads the file by its name (a stream of its own for each request) and only closes this one: an
    // error of it (the file gone already) is met again by the requests, which say it.
    const source = createReadStream(file).on('error', () => undefined);
    const upload = new tus.Upload(source, {
      endpoint: client.endpoint(UPLOADS_PATH),
      headers: { Authorization: client.authorization },
      metadata: { instanceId: request.instanceId, confirm: request.confirm, filename: basename(file) },
      chunkSize: request.chunkSize,
      retryDelays: RETRY_DELAYS_MS,
      // After a Ctrl-C while the server verifies the file, one answer is awaited, not a series of retries.
      onShouldRetry: (error, attempt) => {
        if (interruption.isRequested || !isTransient(error)) return false;
        // Said at each try, or a wrong URL looks like a command that hangs for the retries' 39 s.
        const delay = RETRY_DELAYS_MS[attempt];
        const when = delay === 0 ? 'now' : `in ${delay / 1000} s`;
        const line = `${describeTransientFailure(client, error)}; trying again ${when} (${attempt + 1} of ${RETRY_DELAYS_MS.length})`;
        say(line);
        return true;
      },
      urlStorage,
      fingerprint: async () => fingerprint,
      removeFingerprintOnSuccess: true,
      httpStack: httpStackTellingWhenSent(file, stats.size, interruption, {
        onAllSent: () => {
          allSent = true;
          progress?.finish(stats.size);
          process.stderr.write('upload complete; the server is verifying the archive\n');
        },
        onHead: (underWay) => (headUnderWay = underWay),
        // tus-js-client then starts the upload again, from the first byte, without a word: said here.
        onUploadGone: () =>
          process.stderr.write(
            `the earlier upload of ${basename(file)} is no longer on the server (refused, expired or deleted): sending the file again from its start\n`,
          ),
        // A Ctrl-C while a HEAD was answered that found bytes missing: nothing is queued, the rest is sent by a rerun.
        mayContinue: () => {
          if (!interruption.isRequested) return true;
          reject(resumeLater());
          return false;
        },
      }),
      onProgress: (sent, total) => {
        // Created at the first report, which is where a resumed upload starts: the rate counts this run only.
        progress ??= new ProgressBar('uploading', { total, start: sent });
        progress.update(sent);
      },
      onChunkComplete: (_chunk, accepted) => interruption.count(accepted),
      onSuccess: ({ lastResponse }) => {
        answered = true;
        progress?.finish(stats.size);
        const operationId = lastResponse.getHeader(OPERATION_ID_HEADER);
        // tus-js-client forgets the upload URL without waiting: a command that exits at once (Ctrl-C) kept it, and a
        // later run with the same file resumed the finished upload and reported its old restore instead of a new one.
        void forgetUploads(stateFile, fingerprint).then((failure) => {
          if (failure && operationId) {
            process.stderr.write(
              `cannot remove the finished upload from ${statePath} (${failure}): a rerun with the same file would report this restore ` +
                `(operation ${operationId}) again instead of restoring the file anew; before one, remove the entries "tus::${fingerprint}::…" from it\n`,
            );
          }
          if (operationId) resolvePromise(operationId);
          else reject(new CliError(`the upload finished but the server named no restore operation; see operations(instanceId: "${request.instanceId}")`));
        });
      },
      onError: (error) => {
        if (waitsForInstance(error) && !interruption.isRequested) {
          if (instanceWaits === 0) instanceWaitEnds = Date.now() + INSTANCE_WAIT_MS;
          if (Date.now() < instanceWaitEnds) {
            const delay = INSTANCE_WAIT_DELAYS_MS[Math.min(instanceWaits++, INSTANCE_WAIT_DELAYS_MS.length - 1)];
            progress?.finish(stats.size);
            if (instanceWaits === 1) process.stderr.write(`the file is uploaded; waiting for the instance's running operation to end before the restore is queued (${describeErrorBody((error as UploadError).originalResponse!.getBody()) ?? 'busy'})\n`);
            // The upload resumes with a HEAD, which queues the restore once the instance is free.
            nextLook = setTimeout(() => {
              nextLook = null;
              upload.start();
            }, delay);
            return;
          }
        }
        progress?.finish();
        if (interruption.isRequested && !isRefusal(error)) {
          reject(allSent || waitsForInstance(error) ? keptOnServer() : resumeLater());
          return;
        }
        const failure = describeUploadError(client, error);
        // Refused for good (the server said why): forget the upload URL, so a rerun starts afresh. One that cannot be
        // forgotten is not said: the server keeps no refused upload, and a rerun that finds it gone starts afresh too.
        const forgotten = isRefusal(error) ? forgetUploads(stateFile, fingerprint) : Promise.resolve();
        void forgotten.finally(() => reject(failure));
      },
    });
    interruption.onRequest(() => {
      if (answered) return;
      progress?.finish();
      if (nextLook) {
        // Between two looks nothing is under way that could answer: stop here (a rerun resumes the wait).
        clearTimeout(nextLook);
        reject(keptOnServer());
        return;
      }
      if (allSent || headUnderWay) {
        // The server queues the restore anyway: its answer names it, and restoreFileCommand handles the Ctrl-C then.
        process.stderr.write('interrupted: waiting for the server to answer for the uploaded file (Ctrl-C again quits at once)\n');
        return;
      }
      void upload.abort().then(() => reject(resumeLater()));
    });
    upload.findPreviousUploads().then(
      (previous) => {
        if (interruption.isRequested) return;
        const latest = previous.sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime))[0];
        if (latest) {
          process.stderr.write(`resuming an earlier upload of ${basename(file)}\n`);
          upload.resumeFromPreviousUpload(latest);
        } else {
          process.stderr.write(`uploading ${basename(file)} (${formatBytes(stats.size)})\n`);
        }
        upload.start();
      },
      (error) =>
        reject(
          new CliError(
            `cannot read the upload state file ${statePath} (${(error as Error).message}); remove it to go on: only the uploads it names are no longer resumed`,
          ),
        ),
    );
  });
}

/**
 * tus-js-client's Node HTTP stack, calling `onAllSent` when the body of the request carrying the file's last byte has
 * been read out: the server verifies the whole archive before it answers that request, which takes a while for a
 * large file (and tus-js-client's own progress reports are throttled, so they may not say 100 % until the answer).
 * With a test's byte limit (SNAPGRAPH_CLI_STOP_AFTER_BYTES), a body that would carry bytes past it stops there; a limit
 * of the file's size interrupts once the last byte is sent, before the server's answer. It also tells when a HEAD is
 * under way (`onHead`), and asks `mayContinue` before any other request: no request starts after a Ctrl-C. A HEAD
 * answered with a 5xx is a failed request, retried (HeadAnsweredWithServerError), never the end of the upload; one
 * answered 404 or 410 (the upload resumed is gone) is told (`onUploadGone`).
 */
function httpStackTellingWhenSent(
  file: string,
  fileSize: number,
  interruption: Interruption,
  {
    onAllSent,
    onHead,
    onUploadGone,
    mayContinue,
  }: { onAllSent: () => void; onHead: (underWay: boolean) => void; onUploadGone: () => void; mayContinue: () => boolean },
): tus.HttpStack {
  const stack = new tus.DefaultHttpStack({});
  return {
    getName: () => 'SnapgraphNodeHttpStack',
    createRequest(method, url) {
      const request = stack.createRequest(method, url);
      const send = request.send.bind(request);
      request.send = (body: unknown) => {
        if (method === 'HEAD') {
          onHead(true);
          return send(body)
            .then((response) => {
              if (response.getStatus() >= 500) throw new HeadAnsweredWithServerError(response);
              if (response.getStatus() === 404 || response.getStatus() === 410) onUploadGone();
              return response;
            })
            .finally(() => onHead(false));
        }
        if (!mayContinue()) return Promise.reject(new Error('interrupted before the request was sent'));
        if (!(body instanceof Readable)) return send(body);
        const offset = Number(request.getHeader('Upload-Offset'));
        const size = (body as Readable & { size: number }).size;
        if (offset + size === fileSize) {
          body.once('end', () => {
            onAllSent();
            interruption.count(fileSize);
          });
        }
        const limit = interruption.stopAfterBytes;
        const sent = send(limit !== null && offset < limit && limit < offset + size ? stopPartWay(body, size, limit - offset, interruption) : body);
        // The body is a stream of the file opened for this request, which tus-js-client pipes on without listening to
        // its errors: one (the file moved away since the last request) ended the command with an uncaught exception.
        return new Promise<tus.HttpResponse>((resolve, reject) => {
          body.once('error', (error: Error) => {
            reject(new FileUnreadableError(file, error));
            void request.abort().catch(() => undefined);
          });
          sent.then(resolve, reject);
        });
      };
      return request;
    },
  };
}

/** How long a body stopped part-way stays open before the interruption, so that the server has what was sent. */
const STOPPED_BODY_HOLD_MS = 500;

/**
 * A request body that sends its first `bytes` and then nothing more, its request left open until the interruption
 * it asks for aborts it: Ctrl-C in the middle of a request, at a known byte, for tests.
 */
function stopPartWay(body: Readable, size: number, bytes: number, interruption: Interruption): Readable {
  let passed = 0;
  const clipped = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const room = bytes - passed;
      passed += chunk.length;
      if (room >= chunk.length) return done(null, chunk);
      if (room > 0) this.push(chunk.subarray(0, room));
      // `done` is never called: the body stalls here, open, as a client stopped mid-request leaves it.
      setTimeout(() => interruption.request(), STOPPED_BODY_HOLD_MS);
    },
  });
  return Object.assign(body.pipe(clipped), { size });
}

/** Same file (path, size, mtime) into the same instance on the same server with the same key: the same upload. */
function fingerprintOf(client: ApiClient, { file, stats, instanceId }: UploadRequest): string {
  const parts = [resolve(file), stats.size, stats.mtimeMs, instanceId, client.url, createHash('sha256').update(client.key).digest('hex')];
  return `snapgraph-restore-${createHash('sha256').update(parts.join('\n')).digest('hex')}`;
}

/** $XDG_STATE_HOME/snapgraph, else ~/.local/state/snapgraph; a relative XDG_STATE_HOME is ignored, as the XDG spec says. */
async function urlStoragePath(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const stateHome = env.XDG_STATE_HOME?.trim();
  const dir = join(stateHome && isAbsolute(stateHome) ? stateHome : join(homedir(), '.local', 'state'), 'snapgraph');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return join(dir, 'uploads.json');
}

/**
 * The upload state file, where an upload's address that cannot be saved (its volume full, the file not writable) is
 * said, and the upload goes on without it: tus-js-client leaves that failure unhandled, and Node ended the command with
 * its own report of it, the upload just created on the server left behind.
 */
function savingMayFail(storage: tus.UrlStorage, statePath: string, say: (line: string) => void): tus.UrlStorage {
  const reason = (error: unknown) => (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return {
    findAllUploads: () => storage.findAllUploads(),
    findUploadsByFingerprint: (fingerprint) => storage.findUploadsByFingerprint(fingerprint),
    // tus-js-client's own removal at the end: it reported a failure as the upload's error after its success, and the
    // command then failed though the restore was queued. forgetUploads removes the upload again, and says a failure.
    removeUpload: (key) => storage.removeUpload(key).catch(() => undefined),
    addUpload: (fingerprint, upload) =>
      storage.addUpload(fingerprint, upload).catch((error: unknown) => {
        say(`cannot save the upload's address in ${statePath} (${reason(error)}): the upload goes on, but a rerun after it stops starts it over`);
        // No key: tus-js-client then neither saves it again nor removes it at the end.
        return '';
      }),
  };
}

/** Removes the file's saved uploads from the state file; resolves with why that failed, or null. */
async function forgetUploads(stateFile: UploadStateFile, fingerprint: string): Promise<string | null> {
  try {
    for (const upload of await stateFile.findUploadsByFingerprint(fingerprint)) await stateFile.removeUpload(upload.urlStorageKey);
    return null;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  }
}

function describeUploadError(client: ApiClient, error: UploadError): CliError {
  const response = responseOf(error);
  if (response) {
    const status = response.getStatus();
    // The first request (the creation) answered below 500 without a reason of Snapgraph's: no Snapgraph at that URL.
    if (error.originalRequest?.getMethod() === 'POST' && status < 500 && !describeErrorBody(response.getBody())) {
      return client.notSnapgraph(`HTTP ${status} to POST ${UPLOADS_PATH}`, response.getHeader('content-type'), response.getBody());
    }
    const described = describeErrorBody(response.getBody()) ?? `the upload failed: HTTP ${status} ${response.getBody().slice(0, 200)}`.trim();
    if (isRefusal(error) || nothingStored(error)) return new CliError(described);
    return new CliError(`${described}; the server keeps what it received: run the same command again to resume`);
  }
  if (error.causingError instanceof FileUnreadableError) {
    return new CliError(`${error.causingError.message}; the server keeps what it received: run the same command again, with the file readable, to resume`);
  }
  if (error.causingError) {
    // After the retries: a server away for longer (a restart that takes a while) keeps what it received all the same.
    const { message } = client.unreachable(error.causingError);
    return new CliError(`${message}; once it answers, run the same command again: the upload resumes where it stopped`);
  }
  return new CliError(`the upload failed: ${error.message}`);
}

/** What went wrong with a request that is tried again: the server's answer, or what the connection did. */
function describeTransientFailure(client: ApiClient, error: UploadError): string {
  const response = responseOf(error);
  if (!response) return client.cannotReach(error.causingError ?? error);
  const reason = describeErrorBody(response.getBody());
  return `the server answered HTTP ${response.getStatus()}${reason ? ` (${reason})` : ''}`;
}

/** Prints the restore's status and phases (and a bar while it reports bytes) until it ends; returns the last state. */
async function followRestore(client: ApiClient, operationId: string, interruption: Interruption, onInterrupt: OnInterrupt): Promise<OperationState> {
  let last: OperationState | null = null;
  let shown = '';
  let bar: ProgressBar | null = null;
  let barWanted = false;
  const show = (operation: OperationState) => {
    last = operation;
    // After Ctrl-C the interruption's handler speaks (a question on a terminal, which progress lines would break into).
    if (interruption.isRequested) return;
    const line = `restore: ${operation.status}${operation.phase ? ` (${operation.phase})` : ''}`;
    if (line !== shown) {
      bar?.finish();
      bar = null;
      shown = line;
      process.stderr.write(`${line}\n`);
      // A bar only for a phase that moves bytes (loading), not for one that starts with all of them done.
      barWanted = operation.bytesTotal !== null && operation.bytesDone < operation.bytesTotal;
    }
    if (barWanted && operation.status === 'RUNNING' && operation.bytesTotal && operation.bytesDone > 0) {
      bar ??= new ProgressBar(`  ${operation.phase ?? 'restoring'}`, { total: operation.bytesTotal });
      bar.update(operation.bytesDone);
    }
  };
  await new Promise<void>((resolveFollow, reject) => {
    interruption.onRequest(() => {
      (bar as ProgressBar | null)?.finish();
      void whenInterrupted(client, operationId, onInterrupt).then(reject, reject);
    });
    let lost = false;
    // The server answered the upload a moment ago: a connection that cannot be made now is the server going away.
    const onConnectionLost = () => {
      lost = true;
      if (interruption.isRequested) return;
      (bar as ProgressBar | null)?.finish();
      bar = null;
      shown = ''; // the state is said again once followed again
      process.stderr.write(
        `lost the connection to the server; the restore goes on there, and is followed again once the server answers (for up to ${FOLLOW_RECONNECT_MS / 60_000} minutes)\n`,
      );
    };
    client
      .subscribe<{ restoreProgress: OperationState }>(RESTORE_PROGRESS, { id: operationId }, (data) => show(data.restoreProgress), {
        reconnectForMs: FOLLOW_RECONNECT_MS,
        onConnectionLost,
      })
      // Once Ctrl-C was pressed, its handler reports the outcome (the CANCELLED it asked for is no failure).
      .then(
        () => interruption.isRequested || resolveFollow(),
        (error: Error) =>
          reject(
            lost
              ? new CliError(`lost track of operation ${operationId} (${error.message}); the restore goes on on the server: query operation(id: "${operationId}") for its outcome`)
              : error,
          ),
      );
  });
  (bar as ProgressBar | null)?.finish();
  const final = last as OperationState | null;
  if (!final || (final.status !== 'SUCCEEDED' && final.status !== 'FAILED' && final.status !== 'CANCELLED')) {
    throw new CliError(`lost track of operation ${operationId}; query operation(id: "${operationId}") for its outcome`);
  }
  return final;
}

const OPERATION_OUTCOME = `query ($id: ID!) { operation(id: $id) { id status error { code message } } }`;

/** Ctrl-C while the server restores: cancels the operation (asking first on a terminal) or leaves it running. */
export async function whenInterrupted(client: ApiClient, operationId: string, onInterrupt: OnInterrupt): Promise<CliError> {
  const leave = new Interrupted(
    `the restore continues on the server as operation ${operationId}; cancelOperation(id: "${operationId}") stops it before its swap`,
  );
  if (onInterrupt === 'leave') return leave;
  if (onInterrupt === 'ask' && !(await askToCancel())) return leave;
  try {
    const { cancelOperation } = await client.request<{ cancelOperation: OperationState }>(CANCEL_OPERATION, { id: operationId });
    if (cancelOperation.status === 'CANCELLED') {
      return new Interrupted(`restore CANCELLED (operation ${operationId}): the instance keeps its data`);
    }
    return new Interrupted(`cancellation requested; the server is stopping operation ${operationId} (now ${cancelOperation.status})`);
  } catch (error) {
    if (/^CONFLICT/.test((error as Error).message)) return tooLateToCancel(client, operationId);
    return new CliError(`could not cancel operation ${operationId}: ${(error as Error).message}`);
  }
}

/**
 * cancelOperation was refused: the restore is past its point of no return, or it ended meanwhile (while the question
 * was asked, say), and then the user is told how, not that it completes.
 */
async function tooLateToCancel(client: ApiClient, operationId: string): Promise<CliError> {
  const { operation } = await client
    .request<{ operation: OperationState | null }>(OPERATION_OUTCOME, { id: operationId })
    .catch(() => ({ operation: null }));
  switch (operation?.status) {
    case 'SUCCEEDED':
      return new Interrupted(`operation ${operationId} had already ended: SUCCEEDED; the instance holds the restored data`);
    case 'CANCELLED':
      return new Interrupted(`restore CANCELLED (operation ${operationId}): the instance keeps its data`);
    case 'FAILED': {
      const why = operation.error ? ` (${operation.error.code}: ${operation.error.message})` : '';
      return new CliError(`operation ${operationId} had already ended: FAILED${why}; the instance keeps its data`);
    }
    default:
      return new Interrupted(`too late to cancel: the restore is past its point of no return and completes on the server (operation ${operationId})`);
  }
}
