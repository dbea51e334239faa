// The CLI's connection to a running server: GraphQL over HTTP, subscriptions over graphql-ws, and the URLs and
// credentials of the transfer endpoints. Every failure becomes a CliError whose message names the cause.
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { CliError, UsageError } from './cli-error';

export const DEFAULT_URL = 'http://127.0.0.1:4000';

/** The first wait before a lost subscription's connection is tried again, doubled each time up to the second. */
const RECONNECT_WAIT_MS = 500;
const MAX_RECONNECT_WAIT_MS = 5_000;

/** The global options every server command takes (node:util parseArgs format). */
export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
} as const;

export interface GraphQLErrorJson {
  message: string;
  extensions?: { code?: string };
}

/** `CODE: message` for the first error of a GraphQL-style error body; null when the body is not one. */
export function describeErrorBody(body: string): string | null {
  try {
    const { errors } = JSON.parse(body) as { errors?: GraphQLErrorJson[] };
    if (!Array.isArray(errors) || errors.length === 0) return null;
    return errors.map(describeGraphQLError).join('; ');
  } catch {
    return null;
  }
}

/** What a network failure (fetch's TypeError with a cause, or a socket error) did: its code (ECONNREFUSED), else its message. */
export function networkFailureReason(error: unknown): string {
  const { cause } = error as { cause?: unknown };
  const { code, message } = (cause ?? error ?? {}) as { code?: unknown; message?: string };
  return typeof code === 'string' ? code : (message ?? String(error));
}

const describeGraphQLError = (error: GraphQLErrorJson) =>
  error.extensions?.code ? `${error.extensions.code}: ${error.message}` : error.message;

export class ApiClient {
  readonly url: string;
  readonly key: string;

  /**
   * From --url/--key, else SNAPGRAPH_URL/SNAPGRAPH_API_KEY, else the default URL (the key is required). The URL is the
   * server's base; its GraphQL endpoint (…/graphql, which the server logs and the README name) is taken for it.
   */
  static fromOptions(values: { url?: string; key?: string }, env: NodeJS.ProcessEnv = process.env): ApiClient {
    const url = (values.url ?? env.SNAPGRAPH_URL ?? DEFAULT_URL).trim();
    const key = (values.key ?? env.SNAPGRAPH_API_KEY ?? '').trim();
    if (!URL.canParse(url)) {
      // Said without what may stand before an @ (a password): fetch's own message repeated the URL whole.
      throw new UsageError(`the server URL "${url.replace(/^([^:/?#]*:\/\/)[^/?#]*@/, '$1…@')}" is not a valid URL (http://host:port)`);
    }
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      // fetch refuses such a URL, and its message repeats it, password and all: said here without them.
      throw new UsageError(
        `the server URL must not hold a user name or password (${parsed.protocol}//…@${parsed.host}${parsed.pathname}): ` +
          'the API key (SNAPGRAPH_API_KEY or --key) is the only credential the command sends',
      );
    }
    if (!/^https?:\/\/[^/]/i.test(url)) throw new UsageError(`the server URL "${url}" must start with http:// or https://`);
    if (!key) throw new UsageError('an API key is required: set SNAPGRAPH_API_KEY (or pass --key)');
    if (!/^[\x21-\x7e\xa1-\xff]+$/.test(key)) {
      // An HTTP header cannot carry it (Latin-1 at most: a bootstrap token may hold é), and fetch's refusal repeated the
      // key whole, as a server it "cannot reach".
      throw new UsageError(
        'the API key holds a character a key never has (a line break, a space, or one beyond Latin-1 such as a typographic quote): ' +
          'give the key alone, as `snapgraph tenant create` or createApiKey printed it',
      );
    }
    return new ApiClient(url.replace(/\/+$/, '').replace(/\/graphql$/i, ''), key);
  }

  constructor(url: string, key: string) {
    this.url = url;
    this.key = key;
  }

  get authorization(): string {
    return `Bearer ${this.key}`;
  }

  endpoint(path: string): string {
    return `${this.url}${path}`;
  }

  /** One query or mutation; resolves with its data, or throws a CliError with the error code and message. */
  async request<TData>(query: string, variables: Record<string, unknown>): Promise<TData> {
    const response = await this.fetch(this.endpoint('/graphql'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: this.authorization },
      body: JSON.stringify({ query, variables }),
    });
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      // The connection went while the answer came: fetch's own "terminated" said neither where nor why.
      throw new CliError(`the connection to the Snapgraph server at ${this.url} broke off in its answer (${networkFailureReason(error)}); what was asked may have been done`);
    }
    const described = describeErrorBody(text);
    if (described) throw new CliError(described);
    const answered = () => new CliError(`the server answered HTTP ${response.status}: ${text.slice(0, 200)}`);
    let body: { data?: TData };
    try {
      body = JSON.parse(text) as { data?: TData };
    } catch {
      // A proxy's 5xx while the server behind it is away is the server's trouble, said as such.
      if (response.status >= 500) throw answered();
      // Another service at the URL (a proxy's sign-in page, another app on the port) answers 200 with HTML, and a path
      // it does not serve (the prefix a proxy serves Snapgraph under, left out) a 404 of its own.
      throw this.notSnapgraph(`HTTP ${response.status}`, response.headers.get('content-type'), text);
    }
    if (!response.ok) throw answered();
    if (!body?.data) throw new CliError(`the server answered without data: ${text.slice(0, 200)}`);
    return body.data;
  }

  /** fetch, with a network failure said in words (the URL, and what the connection did). */
  async fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init);
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw this.unreachable(error);
    }
  }

  /** An answer that is none of Snapgraph's (`answer`: its status, and to what), as a CliError naming the URL. */
  notSnapgraph(answer: string, contentType: string | null | undefined, text: string): CliError {
    const type = contentType?.split(';')[0] ?? 'no content type';
    return new CliError(`${this.url} does not answer as a Snapgraph server (${answer}, ${type}: ${text.slice(0, 80)}); set SNAPGRAPH_URL or --url`);
  }

  /** A network failure (fetch's TypeError with a cause, or a socket error) as a CliError naming the server. */
  unreachable(error: unknown): CliError {
    return new CliError(`${this.cannotReach(error)}; set SNAPGRAPH_URL or --url`);
  }

  /** What a network failure did, naming the server: "cannot reach the Snapgraph server at <url> (ECONNREFUSED)". */
  cannotReach(error: unknown): string {
    return `cannot reach the Snapgraph server at ${this.url} (${networkFailureReason(error)})`;
  }

  /**
   * A subscription over graphql-ws: calls onNext with each result's data; resolves when the server completes it.
   * GraphQL errors and refused or lost connections reject with a CliError. With `reconnectForMs`, a connection that
   * cannot be made or is lost is tried again (the subscription with it) for that long since it went, whatever the
   * error (a restarting server refuses connections for a while), and `onConnectionLost` is told each time it goes.
   */
  async subscribe<TData>(
    query: string,
    variables: Record<string, unknown>,
    onNext: (data: TData) => void,
    { reconnectForMs = 0, onConnectionLost }: { reconnectForMs?: number; onConnectionLost?: () => void } = {},
  ): Promise<void> {
    let settled = false;
    /** Since when there has been no connection; null while connected. */
    let lostAt: number | null = null;
    const markLost = () => {
      if (settled || lostAt !== null) return;
      lostAt = Date.now();
      onConnectionLost?.();
    };
    const reconnection = {
      // graphql-ws counts the attempts since the last connection: these stop at the deadline instead.
      retryAttempts: Number.MAX_SAFE_INTEGER,
      retryWait: (retries: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.min(RECONNECT_WAIT_MS * 2 ** retries, MAX_RECONNECT_WAIT_MS))),
      // graphql-ws retries only a closed socket by default: a refused connection (a server restarting) ended it.
      shouldRetry: () => {
        markLost();
        return lostAt === null || Date.now() - lostAt < reconnectForMs;
      },
      on: {
        connected: () => void (lostAt = null),
        closed: markLost,
      },
    };
    const client: Client = createClient({
      url: this.endpoint('/graphql').replace(/^http/i, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: this.authorization },
      ...(reconnectForMs > 0 ? reconnection : { retryAttempts: 3 }),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        client.subscribe<TData>(
          { query, variables },
          {
            next: (result) => {
              if (result.errors?.length) reject(new CliError(result.errors.map(describeGraphQLError).join('; ')));
              else if (result.data) onNext(result.data);
            },
            error: (error) => reject(this.describeSocketError(error)),
            complete: resolve,
          },
        );
      });
    } finally {
      settled = true;
      await client.dispose();
    }
  }

  private describeSocketError(error: unknown): CliError {
    if (Array.isArray(error)) return new CliError(error.map(describeGraphQLError).join('; '));
    if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'number') {
      const { code, reason } = error as { code: number; reason?: string };
      if (code === 4401) return new CliError('UNAUTHENTICATED: the server refused the API key');
      return new CliError(`the connection to ${this.url} closed (${code}${reason ? ` ${reason}` : ''})`);
    }
    return this.unreachable(error);
  }
}
