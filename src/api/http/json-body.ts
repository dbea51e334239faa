// The JSON body of a GraphQL POST. Nearly every request is small, UTF-8, unencoded and says its length: those are
// read here, in a few lines, and parsed with JSON.parse. express.json (body-parser) reads everything else, as before:
// a compressed body, another charset, a body without a Content-Length, one over the limit. Its errors are the same
// either way (http-errors.ts answers them by their `type`).
//
// Why: in a bench:api profile of `{ viewer { role } }`, body-parser was 12% of the server's CPU per request (raw-body's
// listeners, type-is, iconv), more than the GraphQL execution.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';

/** What body-parser's strict mode accepts: an object or an array (its first character after JSON whitespace). */
const STRICT_START = /^[\x20\x09\x0a\x0d]*[[{]/;

export function jsonBody(limitBytes: number): RequestHandler {
  const parser = express.json({ limit: limitBytes });
  return (req: Request, res: Response, next: NextFunction) => {
    const length = plainJsonLength(req, limitBytes);
    // A body already read (by a parser before this one) is left to express.json, which passes it by.
    if (length === null || (req.complete && !req.readable)) return parser(req, res, next);
    readBody(req, length, (error, body) => {
      if (error) return next(error);
      try {
        req.body = parse(body!);
      } catch (parseError) {
        return next(bodyError('entity.parse.failed', (parseError as Error).message));
      }
      next();
    });
  };
}

/** The body's length when this reader takes it: JSON in UTF-8, not encoded, of a stated length within the limit. */
function plainJsonLength(req: Request, limitBytes: number): number | null {
  const { 'content-type': type, 'content-length': stated, 'content-encoding': encoding } = req.headers;
  if (stated === undefined || (encoding !== undefined && encoding.toLowerCase() !== 'identity')) return null;
  if (type === undefined || !/^application\/json\s*(;\s*charset="?utf-8"?\s*)?$/i.test(type)) return null;
  const length = Number(stated);
  return Number.isSafeInteger(length) && length >= 0 && length <= limitBytes ? length : null;
}

function readBody(req: Request, length: number, done: (error: Error | null, body?: string) => void): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let settled = false;
  const finish = (error: Error | null) => {
    if (settled) return;
    settled = true;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onAborted);
    if (error) {
      // What is left of a body refused on the way is read and dropped, so the client gets the answer, not a reset.
      req.resume();
      return done(error);
    }
    done(null, (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received)).toString('utf8'));
  };
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    if (received > length) return finish(sizeMismatch());
    chunks.push(chunk);
  };
  const onEnd = () => finish(received === length ? null : sizeMismatch());
  const onAborted = () => finish(bodyError('request.aborted', 'request aborted'));
  // A client that goes away mid-body destroys the request with an error ("aborted"), as Node has done since 15.
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onAborted);
}

/** As body-parser's strict JSON: a leading BOM dropped, an empty body `{}`, anything but an object or array refused. */
function parse(text: string): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (body.length === 0) return {};
  if (!STRICT_START.test(body)) throw new SyntaxError('the body is not a JSON object or array');
  return JSON.parse(body);
}

const sizeMismatch = () => bodyError('request.size.invalid', 'request size did not match content length');
/** A refused body, as body-parser's (every one of them a 400). */
const bodyError = (type: string, message: string) => Object.assign(new Error(message), { status: 400, statusCode: 400, type, expose: true });
