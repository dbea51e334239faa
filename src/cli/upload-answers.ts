// How `snapgraph restore-file` takes an answer of the /uploads endpoint that tus-js-client reports as an error: tried
// again, waited out (the instance is busy), or a refusal that ends the upload.
import type * as tus from 'tus-js-client';
import { describeErrorBody } from './api-client';

export type UploadError = Error & { originalRequest?: tus.HttpRequest | null; originalResponse?: tus.HttpResponse | null; causingError?: Error | null };

/**
 * A HEAD (the look that resumes an upload) answered with a 5xx: by the server in trouble, or by a reverse proxy while
 * the server behind it restarts (nginx answers 502). tus-js-client takes any answer to that HEAD other than 2xx and 423
 * as "no such upload" and creates a new one, sending the file again from its first byte while the server keeps the
 * bytes it has for a day; the HTTP stack throws this instead, which tus-js-client retries as a failed request.
 */
export class HeadAnsweredWithServerError extends Error {
  constructor(readonly response: tus.HttpResponse) {
    super(`the server answered HTTP ${response.getStatus()} to the look at the upload`);
    this.name = 'HeadAnsweredWithServerError';
  }
}

/**
 * The file could not be read while a request sent it (moved or deleted between two requests, each of which opens it
 * again by its name; a read error of its volume). Not retried: the server keeps what it received, and a rerun with
 * the file readable again resumes from there.
 */
export class FileUnreadableError extends Error {
  constructor(file: string, cause: Error) {
    super(`cannot read ${file}: ${cause.message}`, { cause });
    this.name = 'FileUnreadableError';
  }
}

/** The answer the failed request got: tus-js-client's, or the one a HEAD that threw carried. */
export function responseOf(error: UploadError): tus.HttpResponse | null {
  if (error.originalResponse) return error.originalResponse;
  return error.causingError instanceof HeadAnsweredWithServerError ? error.causingError.response : null;
}

/**
 * An answer from Snapgraph itself saying why (a contract error code) in which the server refused the file or the
 * request (a 4xx): saying it again changes nothing, and the upload is gone. Not a 409 or 423 to a request on an upload
 * (transient, below), although their bodies carry a code too (CONFLICT, INSTANCE_UNAVAILABLE); to the creating POST
 * they are a refusal like any other (the instance is busy or not running: nothing was created, and retrying the
 * creation for seconds, then saying that the server keeps what it received, was wrong on both counts). A 5xx is the
 * server's own trouble (a full disk, a bucket or database error): it keeps what it received, complete or not, and the
 * upload is retried, or resumed by running the command again.
 */
export function isRefusal(error: UploadError): boolean {
  const response = responseOf(error);
  if (!response) return false;
  const creation = error.originalRequest?.getMethod() === 'POST';
  if (!creation && isConflictOrLocked(response.getStatus())) return false;
  return response.getStatus() < 500 && Boolean(describeErrorBody(response.getBody()));
}

/**
 * Retried by tus-js-client: network trouble, the server's own trouble (unless it had no room for a new upload:
 * nothingStored), and a 409 of a PATCH: the tus protocol's
 * offset conflict (this client resumed on another replica while the first still writes a PATCH that broke off), which
 * the retry's HEAD resolves by saying where to resume. Never a refusal (it would say the same again), nor a 423,
 * which waits longer (waitsForInstance).
 *
 * How the two are told apart: the server answers 423 (Locked, with CONFLICT or INSTANCE_UNAVAILABLE) for a complete
 * upload whose restore cannot be queued yet because of the instance's running operation, whether on the final PATCH or
 * a HEAD; an offset conflict is a 409. It also answers 423 (rarely) when another request held the upload for longer
 * than it waits for it to let go: waiting and resuming with a HEAD is right for that as well.
 */
export function isTransient(error: UploadError): boolean {
  if (error.causingError instanceof FileUnreadableError) return false;
  const response = responseOf(error);
  if (!response) return true;
  const status = response.getStatus();
  if (status === 423 || nothingStored(error) || isRefusal(error)) return false;
  return status === 409 || status >= 500;
}

/** The upload is complete and kept on the server, and waits for the instance's running operation (see isTransient). */
export function waitsForInstance(error: UploadError): boolean {
  return error.originalResponse?.getStatus() === 423;
}

const isConflictOrLocked = (status: number) => status === 409 || status === 423;

/**
 * The server had no room for the upload when it was created (507 to the creating POST: the free space of its upload
 * volume is less than the file): nothing was stored, and asking again within the retries' seconds changes nothing.
 */
export function nothingStored(error: UploadError): boolean {
  return error.originalRequest?.getMethod() === 'POST' && error.originalResponse?.getStatus() === 507;
}
