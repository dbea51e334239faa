// `snapgraph export <snapshotId> [-o file]`: downloads a snapshot's archive through a fresh export link into
// <file>.part, resuming a partial one with a Range request, and keeps the file only when its sha256 is the snapshot's.
// `-o -` streams it to stdout instead (for a pipe), and says after the last byte whether its sha256 was the snapshot's.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, link, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ApiClient, describeErrorBody, networkFailureReason } from './api-client';
import { CliError, Interrupted, UsageError } from './cli-error';
import { parseCommandArgs } from './command-args';
import { Interruption } from './interruption';
import { releasePidLock, takePidLock } from './pid-lock';
import { formatBytes, ProgressBar } from './progress-bar';
import { writtenOut } from './written-out';

const EXPORT_SNAPSHOT = `mutation ($id: ID!) { exportSnapshot(id: $id) { url fileName sizeBytes sha256 expiresAt } }`;

interface ExportLink {
  url: string;
  fileName: string;
  sizeBytes: number;
  sha256: string;
  expiresAt: string;
}

interface Downloaded {
  bytes: number;
  sha256: string;
}

export async function exportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { output: { type: 'string', short: 'o' } }, 1, 'export takes one snapshot id');
  const [snapshotId] = positionals;
  const toStdout = values.output === '-';
  if (toStdout && process.stdout.isTTY) {
    throw new UsageError('stdout is a terminal: the archive is binary; pipe it (-o - | …) or write a file with -o <file>');
  }
  const client = ApiClient.fromOptions(values);
  const { exportSnapshot: link } = await client.request<{ exportSnapshot: ExportLink }>(EXPORT_SNAPSHOT, { id: snapshotId });
  if (toStdout) return streamToStdout(link);
  const target = await targetPath(values.output, link.fileName);
  const part = `${target}.part`;
  const unlock = await lockPart(part);
  const interruption = new Interruption();
  try {
    // Looked at under the lock: a run that held it may have just saved the file.
    if ((await sizeOf(target)) !== null) throw new CliError(`${target} already exists; remove it or choose another name with -o`);
    const { bytes, sha256 } = await download(link, part, interruption);
    if (bytes !== link.sizeBytes || sha256 !== link.sha256) {
      await removePart(part);
      throw new CliError(
        `the download is damaged: sha256 ${sha256} (${bytes} bytes) instead of ${link.sha256} (${link.sizeBytes} bytes); ` +
          `${part} was removed, run the command again`,
      );
    }
    await saveAs(part, target);
    await unlink(archiveOf(part)).catch(() => undefined);
    process.stdout.write(`saved ${target} (${bytes} bytes, sha256 ${sha256})\n`);
    return 0;
  } finally {
    interruption.dispose();
    await unlock();
  }
}

/**
 * Holds `<part>.lock` (naming this process) while the .part is written, and returns its release. A second run into the
 * same file at once (cron runs that overlap) appended to the .part while the first still wrote it, and saved both
 * runs' bytes interleaved under a sha256 of its own stream. A lock whose process is gone (a crash) is taken over.
 */
async function lockPart(part: string): Promise<() => Promise<void>> {
  const lock = `${part}.lock`;
  // The lock sits beside the .part: what keeps it from being made keeps the .part from being written.
  const holder = await takePidLock(lock).catch((error: unknown) => Promise.reject(cannotWrite(part, error)));
  if (holder === true) return () => releasePidLock(lock);
  throw new CliError(
    `another snapgraph export (${holder === 'unnamed' ? 'a process starting' : `process ${holder}`}) is writing ${part}; wait for it to end, or stop ` +
      `it and run this again (if no export runs, remove ${lock})`,
  );
}

/**
 * `-o -`: the archive through stdout. A pipe cannot be rewound, so nothing resumes; the reader learns of a damaged or
 * cut-off stream from the exit status (with `set -o pipefail` in a shell) and the message, which say to discard it.
 */
async function streamToStdout(link: ExportLink): Promise<number> {
  process.stderr.write(`downloading ${formatBytes(link.sizeBytes)} to stdout\n`);
  const interruption = new Interruption();
  const controller = new AbortController();
  interruption.onRequest(() => controller.abort());
  const hash = createHash('sha256');
  const progress = new ProgressBar('downloading', { total: link.sizeBytes });
  let done = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      hash.update(chunk);
      done += chunk.length;
      progress.update(done);
      next(null, chunk);
    },
  });
  const discard = () => `stdout got ${done} of ${link.sizeBytes} bytes: discard them and run the command again`;
  const interrupted = new Promise<never>((_, reject) => interruption.onRequest(() => reject(new Error('interrupted'))));
  interrupted.catch(() => undefined);
  try {
    const { body } = await openDownload(link, 0, controller.signal);
    // stdout stays open: the process writes its last line to stderr and exits with the status that says how it went.
    await pipeline(body, counted, process.stdout, { end: false });
    // The pipeline is done once stdout took the last bytes, not once they reached the reader: a pipe writes later.
    // A Ctrl-C while a reader that stalls holds them up ends the wait (the download it aborts is over by then).
    await Promise.race([writtenOut(process.stdout), interrupted]);
  } catch (error) {
    if (interruption.isRequested) throw new Interrupted(discard());
    if (error instanceof CliError) throw error;
    const { code, message } = error as NodeJS.ErrnoException;
    // EPIPE: the reader closed the pipe (`| head`), which wanted no more.
    throw new CliError(code === 'EPIPE' ? `the reader of stdout closed it; ${discard()}` : `the download was cut off (${message}); ${discard()}`);
  } finally {
    progress.finish(done);
    interruption.dispose();
  }
  const sha256 = hash.digest('hex');
  if (done !== link.sizeBytes || sha256 !== link.sha256) {
    throw new CliError(`the archive written to stdout is damaged: sha256 ${sha256} (${done} bytes) instead of ${link.sha256} (${link.sizeBytes} bytes); discard it and run the command again`);
  }
  process.stderr.write(`wrote the archive to stdout (${done} bytes, sha256 ${sha256})\n`);
  return 0;
}

/**
 * -o as given, or inside -o when it is a directory, else the API's file name in the current directory. An -o that ends
 * with a / names a directory, never a file of that name.
 */
async function targetPath(output: string | undefined, fileName: string): Promise<string> {
  const safeName = basename(fileName);
  if (!safeName || safeName !== fileName || safeName.startsWith('.')) {
    throw new CliError(`the server suggested an unusable file name "${fileName}"; choose one with -o <file>`);
  }
  if (!output) return resolve(safeName);
  const stats = await stat(output).catch(() => null);
  if (stats?.isDirectory()) return resolve(join(output, safeName));
  if (output.endsWith(sep) || output.endsWith('/')) throw new CliError(`${output} is not a directory: create it first, or leave out the trailing /`);
  return resolve(output);
}

/**
 * Gives the checked .part its name. Never over a file that appeared there during the download (the check before it
 * began is long past): a hard link fails where a file exists, where a rename replaced it without a word. A volume
 * without hard links gets the check and the rename.
 */
async function saveAs(part: string, target: string): Promise<void> {
  const appeared = () =>
    new CliError(`${target} appeared during the download; the archive is kept in ${part}: move it, or remove ${target} and run the command again`);
  try {
    await link(part, target);
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    if (code === 'EEXIST') throw appeared();
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw cannotWrite(target, error);
    if ((await sizeOf(target)) !== null) throw appeared();
    await rename(part, target);
    return;
  }
  await unlink(part);
}

/**
 * The file beside a .part that names the archive its bytes are the start of (`<file>.part.sha256`: its sha256). A
 * rerun into the same file for another snapshot (a cron job's fixed -o, or two snapshots in one second under the
 * default name) resumed the .part all the same, sending the new archive's own sha256 as If-Range, which always
 * matched: it spliced the new archive onto the old one's start, and failed at the end as damaged. One of another
 * archive is started over at once (one of the same size was even taken as complete, and failed likewise).
 */
const archiveOf = (part: string) => `${part}.sha256`;

async function removePart(part: string): Promise<void> {
  await unlink(part).catch(() => undefined);
  await unlink(archiveOf(part)).catch(() => undefined);
}

/** Appends to (or starts) the .part file; returns its size and sha256 over every byte, old and new. */
async function download(link: ExportLink, part: string, interruption: Interruption): Promise<Downloaded> {
  let hash = createHash('sha256');
  let offset = (await sizeOf(part)) ?? 0;
  // A .part an earlier release left names no archive: taken as this one's start, as then (its sha256 checks it at the end).
  const startOf = offset > 0 ? (await readFile(archiveOf(part), 'utf8').catch(() => null))?.trim() : undefined;
  if (startOf !== undefined && startOf !== link.sha256) {
    process.stderr.write(`${part} holds the start of another archive (sha256 ${startOf}); starting over\n`);
    await removePart(part);
    offset = 0;
  }
  if (offset > link.sizeBytes) {
    await removePart(part);
    offset = 0;
  }
  if (offset > 0) {
    process.stderr.write(`resuming at byte ${offset} of ${link.sizeBytes} (${formatBytes(offset)} already in ${part})\n`);
    await hashFile(part, hash);
    if (offset === link.sizeBytes) return { bytes: offset, sha256: hash.digest('hex') };
  } else {
    process.stderr.write(`downloading ${formatBytes(link.sizeBytes)} to ${part}\n`);
  }

  const controller = new AbortController();
  interruption.onRequest(() => controller.abort());
  const { body, from } = await openDownload(link, offset, controller.signal).catch(async (error) => {
    if (interruption.isRequested) throw resumeHint(offset, link, part);
    if (error instanceof RangeNotSatisfiable) {
      await removePart(part);
      throw new CliError(`${part} does not match the export (HTTP 416); it was removed, run the command again`);
    }
    throw error;
  });
  if (from === 0 && offset > 0) {
    process.stderr.write('the server sent the whole file; starting over\n');
    hash = createHash('sha256');
  }
  if (from === 0) await nameArchive(part, link.sha256, body);
  const bytes = await appendBody(body, part, from, hash, link.sizeBytes, interruption);
  if (interruption.isRequested) throw resumeHint(bytes, link, part);
  if (bytes < link.sizeBytes) {
    throw new CliError(`the download stopped at byte ${bytes} of ${link.sizeBytes}; run the same command again to resume`);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Records (archiveOf) which archive the .part about to be started from its first byte holds. */
async function nameArchive(part: string, sha256: string, body: Readable): Promise<void> {
  try {
    await writeFile(archiveOf(part), `${sha256}\n`, { mode: 0o600 });
  } catch (error) {
    body.destroy();
    throw cannotWrite(archiveOf(part), error);
  }
}

/** GET the link, with Range + If-Range when resuming; `from` is where the body starts (0 when the server sent all). */
async function openDownload(link: ExportLink, offset: number, signal: AbortSignal): Promise<{ body: Readable; from: number }> {
  // If-Range: the export changed since the partial file was begun (its archive produced again) gets the whole file.
  const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-`, 'if-range': `"${link.sha256}"` } : {};
  const response = await fetch(link.url, { headers, signal }).catch((error: Error) => {
    if (error.name === 'AbortError') throw error;
    // The link's address is the server's SNAPGRAPH_PUBLIC_URL when set (a proxy's public name, say), else one of its
    // SNAPGRAPH_ALLOWED_HOSTS, else the address it listens on: never necessarily the one this command reached. Its path
    // holds the token, which is a secret until the link expires.
    throw new CliError(
      `cannot reach the export link's address ${new URL(link.url).origin} (${networkFailureReason(error)}); the server builds it ` +
        `from its SNAPGRAPH_PUBLIC_URL, else from its SNAPGRAPH_ALLOWED_HOSTS, else from the address it listens on (HOST, PORT): ` +
        `set SNAPGRAPH_PUBLIC_URL to an address this machine reaches`,
    );
  });
  if (response.ok && response.body) {
    // Listened to at once: the stream fails as soon as the connection does (or a Ctrl-C aborts it), maybe before the
    // caller reads it, a few awaits later (its .part file opened). The caller's read meets that error all the same.
    const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>).on('error', () => undefined);
    if (response.status !== 206) return { body, from: 0 };
    const start = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')?.[1];
    if (Number(start) === offset) return { body, from: offset };
    body.destroy();
    throw new CliError(`the server answered a different range (${response.headers.get('content-range')}); run the command again`);
  }
  const text = await response.text().catch(() => '');
  const reason = describeErrorBody(text);
  switch (response.status) {
    case 410:
      throw new CliError(
        `the export link expired (HTTP 410): run the command again for a fresh link${offset > 0 ? '; the partial download is kept' : ''}`,
      );
    case 404:
      throw new CliError(`the export link was refused (HTTP 404: ${reason ?? 'not found'}); the snapshot may have been deleted`);
    case 416:
      throw new RangeNotSatisfiable();
    default:
      throw new CliError(`the download failed: HTTP ${response.status}${reason ? ` (${reason})` : ''}`);
  }
}

/** The server refused the Range of a resumed download: the partial file is not a start of this export. */
class RangeNotSatisfiable extends Error {
  constructor() {
    super('HTTP 416');
    this.name = 'RangeNotSatisfiable';
  }
}

/**
 * Streams the body into the file in constant memory, hashing and showing progress; returns the file's size once every
 * byte is on disk (fsynced). A file that cannot be written is a CliError at once, never a silent stop.
 */
async function appendBody(
  body: Readable,
  part: string,
  from: number,
  hash: Hash,
  total: number,
  interruption: Interruption,
): Promise<number> {
  let handle: FileHandle;
  try {
    // The archive holds the graph unencrypted: readable by its owner only, as the server's data dir keeps it.
    handle = await open(part, from > 0 ? 'a' : 'w', 0o600);
    // The mode applies only to a file open() creates: a .part an earlier release left readable by all is resumed too.
    await handle.chmod(0o600);
  } catch (error) {
    body.destroy();
    throw cannotWrite(part, error);
  }
  const progress = new ProgressBar('downloading', { total, start: from });
  let done = from;
  let failure: unknown = null;
  let writeFailure: unknown = null;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      const piece = interruption.clip(chunk, done);
      hash.update(piece);
      try {
        await writeAll(handle, piece);
      } catch (error) {
        writeFailure = error;
        break;
      }
      done += piece.length;
      progress.update(done);
      if (interruption.isRequested) break;
    }
    if (!writeFailure) await handle.sync().catch((error) => (writeFailure = error));
  } catch (error) {
    // A Ctrl-C aborts the request: not a failure, the bytes so far are kept.
    if (!interruption.isRequested) failure = error;
  } finally {
    body.destroy();
    await handle.close().catch((error) => (writeFailure ??= error));
    progress.finish(done);
  }
  if (writeFailure) throw cannotWrite(part, writeFailure);
  if (failure) {
    throw new CliError(`the download was cut off at byte ${done} (${(failure as Error).message}); run the same command again to resume`);
  }
  return done;
}

/**
 * Writes every byte of `bytes`. A write that only partly fits (a volume filling up) returns short instead of failing
 * (POSIX): the rest is written again, and that write fails (ENOSPC) if there is still no room.
 */
async function writeAll(handle: FileHandle, bytes: Buffer): Promise<void> {
  for (let written = 0; written < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, written);
    if (bytesWritten <= 0) throw new Error(`a write of ${bytes.length - written} bytes wrote none`);
    written += bytesWritten;
  }
}

function cannotWrite(path: string, error: unknown): CliError {
  const { code, message } = error as NodeJS.ErrnoException;
  return new CliError(`cannot write ${path}: ${code ?? message}; nothing was saved`);
}

function resumeHint(bytes: number, link: ExportLink, part: string): Interrupted {
  return new Interrupted(`${bytes} of ${link.sizeBytes} bytes are in ${part}; run the same command again to resume`);
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

async function sizeOf(path: string): Promise<number | null> {
  const stats = await stat(path).catch(() => null);
  return stats ? stats.size : null;
}
