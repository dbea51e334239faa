// The GraphQL multipart request spec (https://github.com/jaydenseric/graphql-multipart-request-spec), parsed as the
// bytes arrive: `operations` and `map` are read into memory (bounded), and the file is handed to the resolver as a
// stream that reads straight from the request, with backpressure. Nothing is spooled to disk: the upload is read
// once, by whoever consumes the file (UploadService stores and verifies it as it comes).
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { AppError } from '../../errors/app-error';
import type { FileUpload, FileUploadPromise } from '../scalars';
import { type Deferred, deferred } from '../../runtime/deferred';

export interface MultipartLimits {
  maxFileSize: number;
  maxFiles: number;
  maxFieldSize: number;
}

/**
 * A refused request: `status` is the HTTP status to answer with. A file's stream fails with one too (a body cut off
 * inside it, a file over the limit), where the resolver reading it answers with its contract code. FILE_TOO_LARGE is
 * for a file over the upload limit only (its advice is `snapgraph restore-file`); anything else is the request's.
 */
export class MultipartError extends AppError {
  constructor(
    readonly status: number,
    message: string,
    code: 'BAD_USER_INPUT' | 'FILE_TOO_LARGE' = 'BAD_USER_INPUT',
  ) {
    super(code, message);
  }
}

const EMPTY = Buffer.alloc(0);
const MAX_PART_HEADER_BYTES = 16 * 1024;
/** Large reads of the file part: fewer, bigger chunks for the encrypting and verifying consumers. */
const FILE_HIGH_WATER_MARK = 4 * 1024 * 1024;

export interface MultipartRequest {
  /** The operations, each file variable replaced by a FileUploadPromise (what the Upload scalar accepts). */
  operations: unknown;
  /** Drops whatever of the files nobody read (call it when the answer is ready): the request can then end. */
  discard(): void;
}

/**
 * Reads `operations` and `map`; the rest of the request is parsed while the resolver reads the file. Once `signal`
 * aborts, nothing more of the request is read (it is left unread, for its connection to be closed): the file being read
 * fails with the signal's reason, and so does reading the fields.
 */
export async function readMultipartRequest(req: IncomingMessage, limits: MultipartLimits, signal?: AbortSignal): Promise<MultipartRequest> {
  const boundary = boundaryOf(req.headers['content-type']);
  const parts = new PartReader(req, boundary);
  if (signal?.aborted) parts.stop(signal.reason as Error);
  signal?.addEventListener('abort', () => parts.stop(signal.reason as Error), { once: true });
  const uploads = new Map<string, Deferred<FileUpload>>();
  let operations: unknown;
  try {
    operations = parseJson(await parts.field('operations', limits.maxFieldSize), 'operations');
    const map = parseJson(await parts.field('map', limits.maxFieldSize), 'map');
    if (!map || typeof map !== 'object' || Array.isArray(map)) throw new MultipartError(400, 'Invalid type for the ‘map’ multipart field.');
    const entries = Object.entries(map as Record<string, unknown>);
    if (entries.length > limits.maxFiles) {
      throw new MultipartError(400, `The ‘map’ multipart field names ${entries.length} files; a request takes at most ${limits.maxFiles === 1 ? 'one file' : `${limits.maxFiles} files`}.`);
    }
    for (const [fieldName, paths] of entries) {
      if (!Array.isArray(paths) || paths.some((path) => typeof path !== 'string')) {
        throw new MultipartError(400, `Invalid type for the ‘map’ multipart field entry key ‘${fieldName}’ array.`);
      }
      const upload = deferred<FileUpload>();
      uploads.set(fieldName, upload);
      for (const path of paths as string[]) placeAt(operations, path, { promise: upload.promise } satisfies FileUploadPromise);
    }
  } catch (error) {
    void parts.drain();
    throw error;
  }
  void parts
    .files(uploads, limits.maxFileSize)
    .finally(() => {
      for (const upload of uploads.values()) upload.reject(new MultipartError(400, 'File missing in the request.'));
    })
    .then(() => parts.drain());
  return { operations, discard: () => parts.discard() };
}

function boundaryOf(contentType: string | undefined): string {
  const match = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType ?? '');
  if (!match) throw new MultipartError(400, 'The multipart request has no boundary in its Content-Type.');
  return match[1] ?? match[2];
}

function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MultipartError(400, `Invalid JSON in the ‘${field}’ multipart field.`);
  }
}

/**
 * Puts `value` at a dotted path (`variables.file`, `0.variables.files.1`) inside the operations. Only the operations'
 * own properties are followed: `__proto__.toString` would otherwise reach Object.prototype, which every object of the
 * process shares, and replace what all of them inherit.
 */
function placeAt(operations: unknown, path: string, value: unknown): void {
  const keys = path.split('.');
  const ownObject = (value: unknown) => (value && typeof value === 'object' ? (value as Record<string, unknown>) : null);
  let target = ownObject(operations);
  for (const key of keys.slice(0, -1)) target = target && Object.hasOwn(target, key) ? ownObject(target[key]) : null;
  const last = keys[keys.length - 1];
  if (!target || !Object.hasOwn(target, last)) {
    throw new MultipartError(400, `Invalid object path for the ‘map’ multipart field entry key ‘${path}’.`);
  }
  target[last] = value;
}

interface PartHeaders {
  name: string;
  filename: string | null;
  mimetype: string;
}

/** Walks the parts of a multipart body, reading the request only as fast as its parts are consumed. */
class PartReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private readonly delimiter: Buffer;
  /** Bytes read from the request and not yet parsed. */
  private head: Buffer = EMPTY;
  /** Whether bytes of the current part (or the preamble) are still to be read up to the next delimiter. */
  private inPart = true;
  private finished = false;
  private discarded = false;
  /** Why reading stopped for good (stop()), if it did. */
  private stopped: Error | null = null;
  private file: FileStream | null = null;

  constructor(source: Readable, boundary: string) {
    this.chunks = source[Symbol.asyncIterator]();
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    // The body starts with a delimiter without its CRLF (a preamble before it is allowed and skipped).
    this.head = Buffer.from('\r\n', 'latin1');
  }

  /** The next part, which must be the field `name`, read whole (at most maxBytes). */
  async field(name: string, maxBytes: number): Promise<string> {
    const part = await this.nextPart();
    if (!part || part.name !== name || part.filename !== null) {
      throw new MultipartError(400, `Misordered multipart fields; expected ‘${name}’ (the GraphQL multipart request spec).`);
    }
    const pieces: Buffer[] = [];
    let size = 0;
    for await (const piece of this.body()) {
      size += piece.length;
      if (size > maxBytes) throw new MultipartError(413, `The ‘${name}’ multipart field value exceeds the ${maxBytes} byte size limit.`);
      pieces.push(piece);
    }
    return Buffer.concat(pieces).toString('utf8');
  }

  /**
   * The file parts: each one the map names becomes its upload's stream; any other is read and dropped. A file's stream
   * ends only once the next part is not another of its name, and the last file's once the request has ended well (its
   * closing delimiter): what reads it (a restore queued at its end) never takes a file from a request that then breaks
   * off, or that sends two files for one entry of the map.
   */
  async files(uploads: Map<string, Deferred<FileUpload>>, maxFileSize: number): Promise<void> {
    const delivered = new Set<string>();
    /** The file read to the end of its part, its stream not yet ended. */
    let unended: FileStream | null = null;
    try {
      for (let part = await this.nextPart(); part; part = await this.nextPart()) {
        if (delivered.has(part.name)) {
          throw new MultipartError(400, `The multipart request has two parts named ‘${part.name}’: send one file for each entry of the ‘map’ field.`);
        }
        // A file still to come is read by its resolver only once this one has ended.
        if (uploads.size > 0) {
          unended?.push(null);
          unended = null;
        }
        const named = uploads.get(part.name);
        uploads.delete(part.name);
        const upload = part.filename !== null && !this.discarded ? named : undefined;
        if (!upload) {
          // Settled, or its resolver would wait for good: a part the map names without a filename is a plain field
          // (what `curl -F 0=<file` sends), not a file.
          named?.reject(
            part.filename === null
              ? new MultipartError(400, `The multipart field ‘${part.name}’ is not a file: send it with a filename (curl: -F ${part.name}=@<file>).`)
              : new MultipartError(400, 'File missing in the request.'),
          );
          for await (const _ of this.body());
          continue;
        }
        const file = new FileStream();
        // Its reader sees a broken-off body where it reads; until the resolver starts reading (after authorising,
        // a database read), an 'error' with no listener would end the process.
        file.on('error', () => undefined);
        this.file = file;
        upload.resolve({ filename: part.filename!, mimetype: part.mimetype, encoding: '7bit', createReadStream: () => file });
        await this.streamInto(file, maxFileSize);
        delivered.add(part.name);
        unended = file;
      }
      unended?.push(null);
    } catch (error) {
      // The request broke off or is malformed: a file in progress already carries the error, and so does one whose
      // stream was still to end; the rest is dropped.
      unended?.destroy(error as Error);
    }
  }

  /** Streams the file part's bytes into `file`, leaving it to the caller to end. */
  private async streamInto(file: FileStream, maxFileSize: number): Promise<void> {
    let size = 0;
    try {
      for await (const piece of this.body()) {
        size += piece.length;
        if (size > maxFileSize) throw new MultipartError(413, `File truncated as it exceeds the ${maxFileSize} byte size limit.`, 'FILE_TOO_LARGE');
        await file.write(piece);
      }
    } catch (error) {
      file.destroy(error as Error);
      throw error;
    }
  }

  /** From now on file parts are dropped, the one being read included. */
  discard(): void {
    this.discarded = true;
    this.file?.destroy();
  }

  /** Reads nothing more of the request: the file being read, and whatever waits on the request, fail with `error`. */
  stop(error: Error): void {
    this.stopped ??= error;
    this.file?.destroy(error);
  }

  /**
   * Reads the rest of the request and drops it, so that it ends (and the answer, held until then, leaves). Reading it
   * through the same iterator matters: while a reader listens for 'readable', resume() does not make it flow.
   */
  async drain(): Promise<void> {
    if (this.stopped) return;
    this.finished = true;
    this.head = EMPTY;
    try {
      while (await this.nextChunk());
    } catch {
      // the request broke off: it has ended too
    }
  }

  /** Moves past the next delimiter and reads its part's headers; null after the closing delimiter. */
  private async nextPart(): Promise<PartHeaders | null> {
    if (this.finished) return null;
    if (this.inPart) for await (const _ of this.body()); // skips what is left of the current part (or the preamble)
    await this.fill(2);
    if (this.head.subarray(0, 2).toString('latin1') === '--') {
      this.finished = true;
      return null;
    }
    let end = this.head.indexOf('\r\n\r\n');
    while (end < 0) {
      if (this.head.length > MAX_PART_HEADER_BYTES) throw new MultipartError(400, 'A multipart part has oversized headers.');
      if (!(await this.more())) throw new MultipartError(400, 'The multipart request ended in the headers of a part.');
      end = this.head.indexOf('\r\n\r\n');
    }
    const text = this.head.toString('utf8', 0, end);
    this.head = this.head.subarray(end + 4);
    this.inPart = true;
    return parseHeaders(text);
  }

  /**
   * The current part's bytes up to the next delimiter, as zero-copy views of the request's chunks wherever possible;
   * `head` is left just after the delimiter.
   */
  private async *body(): AsyncGenerator<Buffer> {
    const delimiter = this.delimiter;
    const keep = delimiter.length - 1;
    let pending = this.head;
    this.head = EMPTY;
    for (;;) {
      const at = pending.indexOf(delimiter);
      if (at >= 0) {
        if (at > 0) yield pending.subarray(0, at);
        this.head = pending.subarray(at + delimiter.length);
        this.inPart = false;
        return;
      }
      // Only the last `keep` bytes can start a delimiter that the next chunk completes.
      if (pending.length > keep) {
        yield pending.subarray(0, pending.length - keep);
        pending = pending.subarray(pending.length - keep);
      }
      const next = await this.nextChunk();
      if (!next) throw new MultipartError(400, 'The multipart request ended in the middle of a part.');
      if (pending.length === 0) {
        pending = next;
      } else if (next.length < keep) {
        pending = Buffer.concat([pending, next]);
      } else {
        // Joined only where a delimiter could straddle the two chunks; the chunk itself is not copied.
        const joint = Buffer.concat([pending, next.subarray(0, keep)]);
        const straddle = joint.indexOf(delimiter);
        if (straddle >= 0 && straddle < pending.length) {
          if (straddle > 0) yield joint.subarray(0, straddle);
          this.head = Buffer.concat([joint.subarray(straddle + delimiter.length), next.subarray(keep)]);
          this.inPart = false;
          return;
        }
        yield pending;
        pending = next;
      }
    }
  }

  private async fill(length: number): Promise<void> {
    while (this.head.length < length) {
      if (!(await this.more())) throw new MultipartError(400, 'The multipart request ended before its closing delimiter.');
    }
  }

  private async more(): Promise<boolean> {
    const next = await this.nextChunk();
    if (!next) return false;
    this.head = this.head.length === 0 ? next : Buffer.concat([this.head, next]);
    return true;
  }

  private async nextChunk(): Promise<Buffer | null> {
    if (this.stopped) throw this.stopped;
    let next: IteratorResult<Buffer>;
    try {
      next = await this.chunks.next();
    } catch {
      if (this.stopped) throw this.stopped;
      // The request itself failed: its client went away ('aborted'), which is the request's fault, not the server's.
      throw new MultipartError(400, 'The client closed the connection before the multipart request ended.');
    }
    // A chunk read before the stop is dropped with the rest.
    if (this.stopped) throw this.stopped;
    return next.done ? null : next.value;
  }
}

function parseHeaders(text: string): PartHeaders {
  let disposition = '';
  let mimetype = 'application/octet-stream';
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-disposition') disposition = value;
    else if (name === 'content-type') mimetype = value;
  }
  const name = dispositionParameter(disposition, 'name');
  if (!/^form-data\b/i.test(disposition) || name === null) throw new MultipartError(400, 'A multipart part has no form-data name.');
  return { name, filename: dispositionParameter(disposition, 'filename'), mimetype };
}

function dispositionParameter(disposition: string, parameter: string): string | null {
  const match = new RegExp(`;\\s*${parameter}=(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]*))`, 'i').exec(disposition);
  if (!match) return null;
  return match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : match[2];
}

/** The file part as a stream: written by the parser, which waits whenever the consumer has enough buffered. */
class FileStream extends Readable {
  private wanted: (() => void) | null = null;

  constructor() {
    super({ highWaterMark: FILE_HIGH_WATER_MARK });
  }

  override _read(): void {
    const wanted = this.wanted;
    this.wanted = null;
    wanted?.();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this._read(); // a parser waiting on a consumer that went away carries on (and drops the rest)
    callback(error);
  }

  /** Pushes `bytes`; resolves once the consumer wants more. Throws once the consumer has gone away. */
  async write(bytes: Buffer): Promise<void> {
    if (this.destroyed) throw new Error('the upload was abandoned');
    if (this.push(bytes)) return;
    await new Promise<void>((resolve) => (this.wanted = resolve));
  }
}
