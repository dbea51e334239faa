// A small keep-alive HTTP load generator, run as its own process by the benchmarks: N connections, each sending one
// request, reading its answer and sending the next, for a fixed time after a warm-up. Raw sockets and a minimal
// HTTP/1.1 response parser, so that the client spends far less CPU per request than the servers it measures.
//
//   node load-generator.js '<json LoadSpec>'    → prints one line of JSON LoadResult
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LoadSpec {
  /** http://host:port/path */
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
  /** A string every 200 answer must contain (checked on each connection's first answer, and counted on all). */
  expect: string;
}

export interface LoadResult {
  /** Answers in the measured time. */
  requests: number;
  /** Answers in all, the warm-up's included. */
  answered: number;
  seconds: number;
  requestsPerSecond: number;
  p50ms: number;
  p99ms: number;
  /** Answers that were not 200 or did not contain `expect`, and sockets that failed. */
  errors: number;
  firstError: string | null;
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** One answer parsed off the front of `buffer`, or null while it is incomplete. */
function parseResponse(buffer: Buffer): { status: number; body: Buffer; length: number } | null {
  const headerEnd = buffer.indexOf(HEADER_END);
  if (headerEnd < 0) return null;
  const head = buffer.toString('latin1', 0, headerEnd);
  const status = Number(head.slice(9, 12));
  const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (!lengthMatch) {
    if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return parseChunked(buffer, headerEnd + 4, status);
    throw new Error(`an answer with neither Content-Length nor chunked encoding: ${head.slice(0, 200)}`);
  }
  const bodyStart = headerEnd + 4;
  const length = bodyStart + Number(lengthMatch[1]);
  if (buffer.length < length) return null;
  return { status, body: buffer.subarray(bodyStart, length), length };
}

function parseChunked(buffer: Buffer, start: number, status: number): { status: number; body: Buffer; length: number } | null {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = buffer.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(buffer.toString('latin1', at, lineEnd), 16);
    const dataStart = lineEnd + 2;
    if (buffer.length < dataStart + size + 2) return null;
    if (size === 0) {
      // No trailers are expected: the last chunk is followed by an empty line.
      return { status, body: Buffer.concat(parts), length: dataStart + 2 };
    }
    parts.push(buffer.subarray(dataStart, dataStart + size));
    at = dataStart + size + 2;
  }
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const body = Buffer.from(spec.body, 'utf8');
  const headerLines = Object.entries({ host: url.host, ...spec.headers, ...(spec.method === 'POST' ? { 'content-length': String(body.length) } : {}) })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const request = Buffer.concat([Buffer.from(`${spec.method} ${url.pathname}${url.search} HTTP/1.1\r\n${headerLines}\r\n`, 'latin1'), body]);

  const latencies: number[] = [];
  let answered = 0;
  let measuring = false;
  let running = true;
  let errors = 0;
  let firstError: string | null = null;
  const fail = (message: string) => {
    errors += 1;
    firstError ??= message;
  };

  const connection = (): Promise<void> =>
    new Promise((done) => {
      const socket: Socket = connect({ host: url.hostname, port: Number(url.port), noDelay: true });
      let pending: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      let checked = false;
      const send = () => {
        sentAt = performance.now();
        socket.write(request);
      };
      socket.once('connect', send);
      socket.on('data', (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        for (;;) {
          let answer;
          try {
            answer = parseResponse(pending);
          } catch (error) {
            fail((error as Error).message);
            socket.destroy();
            return;
          }
          if (!answer) return;
          pending = pending.subarray(answer.length);
          answered += 1;
          if (measuring) latencies.push(performance.now() - sentAt);
          if (answer.status !== 200) {
            fail(`HTTP ${answer.status}: ${answer.body.toString('utf8', 0, 300)}`);
          } else if (!checked || !measuring) {
            checked = true;
            if (!answer.body.includes(spec.expect)) fail(`the answer lacks ${JSON.stringify(spec.expect)}: ${answer.body.toString('utf8', 0, 300)}`);
          }
          if (running) send();
          else socket.end();
        }
      });
      socket.on('error', (error) => fail(`socket: ${error.message}`));
      socket.on('close', () => done());
    });

  const sockets = Array.from({ length: spec.connections }, connection);
  await new Promise((resolve) => setTimeout(resolve, spec.warmupSeconds * 1000));
  measuring = true;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, spec.seconds * 1000));
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  running = false;
  await Promise.all(sockets);

  latencies.sort((a, b) => a - b);
  const at = (p: number) => (latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)]);
  return {
    requests: latencies.length,
    answered,
    seconds,
    requestsPerSecond: latencies.length / seconds,
    p50ms: at(0.5),
    p99ms: at(0.99),
    errors,
    firstError,
  };
}

if (require.main === module) {
  runLoad(JSON.parse(process.argv[2]) as LoadSpec).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
