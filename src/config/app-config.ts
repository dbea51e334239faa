// The server's configuration: the environment and the SNAPGRAPH_CONFIG file, parsed and validated once.
import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { CHUNK_COMPRESSIONS, type ChunkCompression, DEFAULT_CHUNK_COMPRESSION } from '../chunks/chunk-codec';
import { parseS3Url, type S3Location } from '../storage/s3-location';
import { isMasterKeyText } from '../crypto/master-key';
import { parseDuration, tooLongForConfig } from './duration';
import { resolveTierPolicies, type Tier, type TierPolicy } from './tiers';

export interface AppConfig {
  host: string;
  port: number;
  /** GraphQL introspection, over HTTP and WebSocket alike (codegen, the playground's autocompletion). */
  introspection: boolean;
  /** The GraphiQL page on GET / and GET /graphql in a browser. */
  playground: boolean;
  /** A developer's switch: internal error messages and stack traces (paths relative to the app) in responses. */
  debugErrors: boolean;
  /** Browser origins allowed to call /graphql, /uploads and export links (CORS); empty = none. */
  corsOrigins: string[];
  dataDir: string;
  /** Where snapshot data (chunks, manifests, change-log segments, uploads waiting to be restored) is kept. */
  blobStore: BlobStoreConfig;
  /** postgres://… switches metadata to PostgreSQL; undefined = embedded SQLite in dataDir. */
  databaseUrl?: string;
  /** redis://… switches PubSub to Redis; undefined = in-process. */
  redisUrl?: string;
  bootstrapToken?: string;
  /** base64 of 32 bytes; undefined = a key file generated in dataDir. Never logged. */
  masterKey?: string;
  /**
   * Retired master keys (base64 of 32 bytes each, SNAPGRAPH_PREVIOUS_MASTER_KEYS): what is still under one of them
   * reads, nothing new is written under them, and `snapgraph rotate-master-key` moves it to the current key. Never logged.
   */
  previousMasterKeys: string[];
  publicUrl?: string;
  /**
   * Hosts (host[:port], or origins such as https://a.example) this server may be reached as: a request's Host header
   * is used for export links only when it is one of them. Ignored when publicUrl is set.
   */
  allowedHosts: string[];
  /** Where partial resumable (tus) uploads are kept, encrypted (default <dataDir>/uploads). */
  uploadDir?: string;
  tiers: Record<Tier, TierPolicy>;
  maxUploadBytes: number;
  exportUrlTtlMs: number;
  /** Bytes in one "GB" of instance storage capacity; lowered in tests to reach capacity quickly. */
  bytesPerStorageGB: number;
  /** An operation whose runner has not renewed its lease for this long is failed and compensated. */
  operationLeaseMs: number;
  /** On SIGTERM/SIGINT, how long running operations may go on before they are handed back to the queue. */
  shutdownGraceMs: number;
  /** Starts an operation gets before an interruption (restart, crash, lost lease) fails it with INTERRUPTED. */
  maxAttempts: number;
  /** Operations one process runs at once (0: no limit); more wait QUEUED. */
  maxConcurrentOperations: number;
  /** Worker threads that hash, compress, encrypt and decrypt snapshot chunks (0: on the main thread). */
  chunkWorkers: number;
  /** How new backup chunks are compressed (both are read): brotli, or deflate while older replicas share the store. */
  chunkCompression: ChunkCompression;
  /** Whether new blobs are bound to their key (envelope version 2); off while older replicas, which cannot read them, share the store. */
  bindBlobNames: boolean;
  /** `snapgraph serve`: the JavaScript heap grows by at most this percentage over what is live after a full collection (0: V8 decides). */
  heapGrowthPercent: number;
  /** Backup storage nobody needs is kept this long before it is removed (a capture or restore in flight may need it). */
  collectGraceMs: number;
  /** How often every tenant's backup storage is collected (it is also collected after each deletion). */
  collectIntervalMs: number;
  /** A write reaches backup storage (the change log) at most about this long after it commits. */
  logShipDelayMs: number;
  /** How often every instance's change log is looked at even when nobody wrote (the restore window's latest moves on). */
  logShipIntervalMs: number;
  /** About this many bytes of change-log lines go in one segment blob. */
  logSegmentBytes: number;
  /** The first retry of a failed automatic export waits this long; each further retry twice as long (at most 1 h). */
  exportRetryMs: number;
  /**
   * Whether a tenant's export destination may be at a loopback, private or link-local address (an S3 service on the
   * operator's own network). Off by default: a tenant's ADMIN must not make the server send requests into its network.
   */
  allowPrivateDestinations: boolean;
  /** Drop an upload or a WebSocket connection that sends nothing for this long. */
  idleTimeoutMs: number;
  /**
   * How long a replica may answer a shown API key from memory (0: every request reads the database). A revocation
   * reaches every replica before revokeApiKey answers regardless (TenantService); this bounds other changes made to
   * the database by other means (a role, a tenant).
   */
  apiKeyCacheMs: number;
  /** Public-endpoint protection, checked before anything runs: see QueryLimits (api/query-limits.ts). */
  maxQueryDepth: number;
  maxQueryCost: number;
  maxQueryBytes: number;
  maxQueryTokens: number;
  maxQueryFields: number;
  maxQueryAliases: number;
  /** Largest JSON request body (POST /graphql without files). */
  maxBodyBytes: number;
  /** Bytes a WebSocket may have waiting to be sent before the server takes its client for one that stopped reading. */
  wsMaxBufferedBytes: number;
  /** Subscriptions one WebSocket connection may hold at once; one more is refused alone. */
  wsMaxSubscriptions: number;
  /** Subscriptions one API key may hold at once on this server, all its connections together. */
  wsMaxKeySubscriptions: number;
  /**
   * Connections (HTTP and WebSocket) held at once; one more is closed as it is accepted. Unset: derived from the
   * process's open-file limit when the server starts (connection-cap.ts).
   */
  maxConnections?: number;
  logLevel: string;
}

/** Blobs under `<dataDir>/blobs`, or in an S3 bucket (credentials from the SDK's standard chain: AWS_ACCESS_KEY_ID, …). */
export type BlobStoreConfig =
  | { kind: 'filesystem' }
  | { kind: 's3'; location: S3Location; endpoint?: string; region?: string; partBytes: number; partConcurrency: number };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const GIB = 1024 ** 3;
/** More chunk workers than this is a mistake: each is a thread with up to 36 MiB of heap (docs/operations.md, Memory). */
const MAX_CHUNK_WORKERS = 64;
const FILE_KEYS = new Set(['tiers', 'maxUploadBytes', 'exportUrlTtl', 'bytesPerStorageGB']);

/** Parses and validates the environment; throws ConfigError listing every bad variable (never its secret value). */
/** Where partial uploads are kept: SNAPGRAPH_UPLOAD_DIR, or <data dir>/uploads. */
export function uploadDirectory(config: Pick<AppConfig, 'dataDir' | 'uploadDir'>): string {
  return config.uploadDir ?? join(config.dataDir, 'uploads');
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const problems: string[] = [];
  const check = <T>(name: string, parse: () => T, fallback: T): T => {
    try {
      return parse();
    } catch (error) {
      problems.push(`${name}: ${(error as Error).message}`);
      return fallback;
    }
  };

  // An empty variable counts as unset, as for every other variable.
  const port = check('PORT', () => parsePort(env.PORT?.trim() || '4000'), 4000);
  const host = env.HOST?.trim() || '127.0.0.1';
  const dataDir = resolve(env.SNAPGRAPH_DATA_DIR?.trim() || './data');
  const databaseUrl = check('DATABASE_URL', () => optionalUrl(env.DATABASE_URL, ['postgres:', 'postgresql:']), undefined);
  const redisUrl = check('REDIS_URL', () => optionalUrl(env.REDIS_URL, ['redis:', 'rediss:']), undefined);
  const blobStore = check('SNAPGRAPH_BLOB_URL', () => parseBlobStore(env), { kind: 'filesystem' } as BlobStoreConfig);
  const uploadDir = env.SNAPGRAPH_UPLOAD_DIR?.trim() ? resolve(env.SNAPGRAPH_UPLOAD_DIR.trim()) : undefined;
  const publicUrl = check('SNAPGRAPH_PUBLIC_URL', () => optionalUrl(env.SNAPGRAPH_PUBLIC_URL, ['http:', 'https:']), undefined);
  const allowedHosts = check('SNAPGRAPH_ALLOWED_HOSTS', () => parseAllowedHosts(env.SNAPGRAPH_ALLOWED_HOSTS), []);
  const masterKey = check('SNAPGRAPH_MASTER_KEY', () => optionalMasterKey(env.SNAPGRAPH_MASTER_KEY), undefined);
  const previousMasterKeys = check('SNAPGRAPH_PREVIOUS_MASTER_KEYS', () => previousMasterKeyList(env.SNAPGRAPH_PREVIOUS_MASTER_KEYS), []);
  const bootstrapToken = check('SNAPGRAPH_BOOTSTRAP_TOKEN', () => optionalToken(env.SNAPGRAPH_BOOTSTRAP_TOKEN), undefined);
  const file = check('SNAPGRAPH_CONFIG', () => readConfigFile(env.SNAPGRAPH_CONFIG), {} as Record<string, unknown>);
  const tiers = check('SNAPGRAPH_CONFIG', () => resolveTierPolicies(file.tiers ?? {}), resolveTierPolicies({}));
  const maxUploadBytes = check('SNAPGRAPH_CONFIG', () => positiveInteger('maxUploadBytes', file.maxUploadBytes, 4 * GIB), 4 * GIB);
  const exportUrlTtlMs = check('SNAPGRAPH_CONFIG', () => durationField('exportUrlTtl', file.exportUrlTtl, 'PT15M'), 15 * 60_000);
  const bytesPerStorageGB = check('SNAPGRAPH_CONFIG', () => positiveInteger('bytesPerStorageGB', file.bytesPerStorageGB, GIB), GIB);
  // Renewed every third of it, at most every 250 ms: a shorter lease runs out before its first renewal comes back, and
  // every operation then stops as "lease lost" until it fails.
  const operationLeaseMs = check('SNAPGRAPH_OPERATION_LEASE_MS', () => integerFrom(1_000, 86_400_000, numeric(env.SNAPGRAPH_OPERATION_LEASE_MS), 30_000), 30_000);
  const shutdownGraceMs = check('SNAPGRAPH_SHUTDOWN_GRACE_MS', () => nonNegativeInteger(numeric(env.SNAPGRAPH_SHUTDOWN_GRACE_MS), 25_000), 25_000);
  const maxAttempts = check('SNAPGRAPH_MAX_ATTEMPTS', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_ATTEMPTS), 3), 3);
  const collectGraceMs = check('SNAPGRAPH_COLLECT_GRACE_MS', () => nonNegativeInteger(numeric(env.SNAPGRAPH_COLLECT_GRACE_MS), 3_600_000), 3_600_000);
  const collectIntervalMs = check('SNAPGRAPH_COLLECT_INTERVAL_MS', () => positiveInteger('value', numeric(env.SNAPGRAPH_COLLECT_INTERVAL_MS), 600_000), 600_000);
  const heapGrowthPercent = check('SNAPGRAPH_HEAP_GROWTH_PERCENT', () => nonNegativeInteger(numeric(env.SNAPGRAPH_HEAP_GROWTH_PERCENT), 50), 50);
  // Each worker is a thread with a heap of its own: a typo (1000) must not start a thousand of them.
  const chunkWorkers = check('SNAPGRAPH_CHUNK_WORKERS', () => integerFrom(0, MAX_CHUNK_WORKERS, numeric(env.SNAPGRAPH_CHUNK_WORKERS), 2), 2);
  const bindBlobNames = check('SNAPGRAPH_BIND_BLOB_NAMES', () => flag(env.SNAPGRAPH_BIND_BLOB_NAMES, true), true);
  const chunkCompression = check(
    'SNAPGRAPH_CHUNK_COMPRESSION',
    () => oneOf(env.SNAPGRAPH_CHUNK_COMPRESSION?.trim() || DEFAULT_CHUNK_COMPRESSION, [...CHUNK_COMPRESSIONS]) as ChunkCompression,
    DEFAULT_CHUNK_COMPRESSION,
  );
  const maxConcurrentOperations = check('SNAPGRAPH_MAX_CONCURRENT_OPERATIONS', () => nonNegativeInteger(numeric(env.SNAPGRAPH_MAX_CONCURRENT_OPERATIONS), 0), 0);
  const logShipDelayMs = check('SNAPGRAPH_LOG_SHIP_DELAY_MS', () => positiveInteger('value', numeric(env.SNAPGRAPH_LOG_SHIP_DELAY_MS), 250), 250);
  const logShipIntervalMs = check('SNAPGRAPH_LOG_SHIP_INTERVAL_MS', () => positiveInteger('value', numeric(env.SNAPGRAPH_LOG_SHIP_INTERVAL_MS), 1_000), 1_000);
  const logSegmentBytes = check('SNAPGRAPH_LOG_SEGMENT_BYTES', () => positiveInteger('value', numeric(env.SNAPGRAPH_LOG_SEGMENT_BYTES), 4 * 1024 ** 2), 4 * 1024 ** 2);
  const exportRetryMs = check('SNAPGRAPH_EXPORT_RETRY_MS', () => positiveInteger('value', numeric(env.SNAPGRAPH_EXPORT_RETRY_MS), 60_000), 60_000);
  const allowPrivateDestinations = check('SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS', () => flag(env.SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS, false), false);
  const idleTimeoutMs = check('SNAPGRAPH_IDLE_TIMEOUT_MS', () => positiveInteger('value', numeric(env.SNAPGRAPH_IDLE_TIMEOUT_MS), 120_000), 120_000);
  const apiKeyCacheMs = check('SNAPGRAPH_API_KEY_CACHE_MS', () => integerFrom(0, 60_000, numeric(env.SNAPGRAPH_API_KEY_CACHE_MS), 1_000), 1_000);
  const maxQueryDepth = check('SNAPGRAPH_MAX_QUERY_DEPTH', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_QUERY_DEPTH), 12), 12);
  const maxQueryCost = check('SNAPGRAPH_MAX_QUERY_COST', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_QUERY_COST), 100_000), 100_000);
  const maxQueryBytes = check('SNAPGRAPH_MAX_QUERY_BYTES', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_QUERY_BYTES), 100_000), 100_000);
  const maxQueryTokens = check('SNAPGRAPH_MAX_QUERY_TOKENS', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_QUERY_TOKENS), 10_000), 10_000);
  const maxQueryFields = check('SNAPGRAPH_MAX_QUERY_FIELDS', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_QUERY_FIELDS), 1_000), 1_000);
  const maxQueryAliases = check('SNAPGRAPH_MAX_QUERY_ALIASES', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_QUERY_ALIASES), 50), 50);
  const maxBodyBytes = check('SNAPGRAPH_MAX_BODY_BYTES', () => positiveInteger('value', numeric(env.SNAPGRAPH_MAX_BODY_BYTES), 64 * 1024 ** 2), 64 * 1024 ** 2);
  const wsMaxBufferedBytes = check('SNAPGRAPH_WS_MAX_BUFFERED_BYTES', () => positiveInteger('value', numeric(env.SNAPGRAPH_WS_MAX_BUFFERED_BYTES), 64 * 1024 ** 2), 64 * 1024 ** 2);
  const wsMaxSubscriptions = check('SNAPGRAPH_WS_MAX_SUBSCRIPTIONS', () => positiveInteger('value', numeric(env.SNAPGRAPH_WS_MAX_SUBSCRIPTIONS), 100), 100);
  const wsMaxKeySubscriptions = check('SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS', () => positiveInteger('value', numeric(env.SNAPGRAPH_WS_MAX_KEY_SUBSCRIPTIONS), 20_000), 20_000);
  // Unset: derived from the open-file limit when the server starts.
  const maxConnectionsText = numeric(env.SNAPGRAPH_MAX_CONNECTIONS);
  const maxConnections = check('SNAPGRAPH_MAX_CONNECTIONS', () => (maxConnectionsText === undefined ? undefined : positiveInteger('value', maxConnectionsText, 1)), undefined);
  const introspection = check('SNAPGRAPH_INTROSPECTION', () => flag(env.SNAPGRAPH_INTROSPECTION, true), true);
  const playground = check('SNAPGRAPH_PLAYGROUND', () => flag(env.SNAPGRAPH_PLAYGROUND, true), true);
  const debugErrors = check('SNAPGRAPH_DEBUG_ERRORS', () => flag(env.SNAPGRAPH_DEBUG_ERRORS, false), false);
  const corsOrigins = check('SNAPGRAPH_CORS_ORIGINS', () => originList(env.SNAPGRAPH_CORS_ORIGINS), []);
  const logLevel = check('LOG_LEVEL', () => oneOf(env.LOG_LEVEL?.trim() || 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), 'info');

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    host,
    port,
    introspection,
    playground,
    debugErrors,
    corsOrigins,
    dataDir,
    blobStore,
    databaseUrl,
    redisUrl,
    bootstrapToken,
    masterKey,
    previousMasterKeys,
    publicUrl,
    allowedHosts,
    uploadDir,
    tiers,
    maxUploadBytes,
    exportUrlTtlMs,
    bytesPerStorageGB,
    operationLeaseMs,
    shutdownGraceMs,
    maxAttempts,
    maxConcurrentOperations,
    chunkWorkers,
    chunkCompression,
    bindBlobNames,
    heapGrowthPercent,
    collectGraceMs,
    collectIntervalMs,
    logShipDelayMs,
    logShipIntervalMs,
    logSegmentBytes,
    exportRetryMs,
    allowPrivateDestinations,
    idleTimeoutMs,
    apiKeyCacheMs,
    maxQueryDepth,
    maxQueryCost,
    maxQueryBytes,
    maxQueryTokens,
    maxQueryFields,
    maxQueryAliases,
    maxBodyBytes,
    wsMaxBufferedBytes,
    wsMaxSubscriptions,
    wsMaxKeySubscriptions,
    maxConnections,
    logLevel,
  };
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new Error(`"${text}" is not a port number (0-65535)`);
  return port;
}

function optionalUrl(text: string | undefined, protocols: string[]): string | undefined {
  if (!text?.trim()) return undefined;
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new Error('is not a URL');
  }
  if (!protocols.includes(url.protocol)) throw new Error(`must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  return text.trim().replace(/\/+$/, '');
}

/** A comma-separated list of host[:port] or http(s) origins, each turned into an origin (http:// by default). */
function parseAllowedHosts(text: string | undefined): string[] {
  if (!text?.trim()) return [];
  return text.split(',').map((entry) => {
    const trimmed = entry.trim();
    let url: URL;
    try {
      url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`);
    } catch {
      throw new Error(`"${trimmed}" is not a host[:port] or an http(s) origin`);
    }
    if (!['http:', 'https:'].includes(url.protocol) || url.pathname !== '/' || url.search || url.username || !url.host) {
      throw new Error(`"${trimmed}" is not a host[:port] or an http(s) origin`);
    }
    return url.origin;
  });
}

/** SNAPGRAPH_BLOB_URL=s3://bucket/prefix with SNAPGRAPH_S3_* beside it; unset = the data dir. */
function parseBlobStore(env: NodeJS.ProcessEnv): BlobStoreConfig {
  const url = env.SNAPGRAPH_BLOB_URL?.trim();
  if (!url) return { kind: 'filesystem' };
  const location = parseS3Url(url);
  const problems: string[] = [];
  const endpoint = (() => {
    try {
      return optionalUrl(env.SNAPGRAPH_S3_ENDPOINT, ['http:', 'https:']);
    } catch (error) {
      problems.push(`SNAPGRAPH_S3_ENDPOINT ${(error as Error).message}`);
    }
  })();
  const region = env.SNAPGRAPH_S3_REGION?.trim() || env.AWS_REGION?.trim() || undefined;
  if (!region && !endpoint) problems.push('SNAPGRAPH_S3_REGION (or AWS_REGION) is needed without SNAPGRAPH_S3_ENDPOINT');
  const partBytes = Number(env.SNAPGRAPH_S3_PART_BYTES?.trim() || 8 * 1024 ** 2);
  if (!Number.isSafeInteger(partBytes) || partBytes < 5 * 1024 ** 2) problems.push('SNAPGRAPH_S3_PART_BYTES must be an integer of at least 5242880 (5 MiB, S3\'s smallest part)');
  const partConcurrency = Number(env.SNAPGRAPH_S3_PART_CONCURRENCY?.trim() || 4);
  if (!Number.isSafeInteger(partConcurrency) || partConcurrency < 1 || partConcurrency > 64) problems.push('SNAPGRAPH_S3_PART_CONCURRENCY must be an integer from 1 to 64');
  if (problems.length > 0) throw new Error(problems.join('; '));
  return { kind: 's3', location, endpoint, region, partBytes, partConcurrency };
}

/** As the key file is read (isMasterKeyText): what an operator pastes from it is taken here too. */
function optionalMasterKey(text: string | undefined): string | undefined {
  if (!text?.trim()) return undefined;
  if (!isMasterKeyText(text)) throw new Error('must be the base64 encoding of exactly 32 bytes (e.g. `openssl rand -base64 32`)');
  return text.trim();
}

/**
 * Comma-separated keys, each checked as SNAPGRAPH_MASTER_KEY is; blank entries (a trailing comma) are skipped. A bad
 * one is named by its position, never by its text: the other entries are secrets too.
 */
function previousMasterKeyList(text: string | undefined): string[] {
  if (!text?.trim()) return [];
  const keys: string[] = [];
  text.split(',').forEach((entry, index) => {
    if (!entry.trim()) return;
    try {
      keys.push(optionalMasterKey(entry)!);
    } catch (error) {
      throw new Error(`entry ${index + 1} ${(error as Error).message}`);
    }
  });
  return keys;
}

function optionalToken(text: string | undefined): string | undefined {
  if (text === undefined || text === '') return undefined;
  if (text.length < 16 || /\s/.test(text)) throw new Error('must be at least 16 characters without whitespace');
  return text;
}

function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path?.trim()) return {};
  const file = isAbsolute(path) ? path : resolve(path);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read ${file} as JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${file} must hold a JSON object`);
  const unknownKeys = Object.keys(parsed).filter((key) => !FILE_KEYS.has(key));
  if (unknownKeys.length > 0) throw new Error(`unknown field(s) ${unknownKeys.join(', ')}; known: ${[...FILE_KEYS].join(', ')}`);
  return parsed as Record<string, unknown>;
}

/**
 * A numeric variable's value: undefined when unset or blank (Number(' ') would be 0: a blank grace period meant none),
 * a decimal integer's value, else NaN, which the caller refuses naming the variable (`1e4`, `0x10`, `30s`, `-0`).
 */
function numeric(text: string | undefined): unknown {
  const trimmed = text?.trim();
  if (!trimmed) return undefined;
  return /^\d+$/.test(trimmed) ? Number(trimmed) : NaN;
}

function positiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer`);
  }
  return value;
}

function nonNegativeInteger(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Error('value must be an integer of 0 or more');
  return value;
}

function integerFrom(min: number, max: number, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`value must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** A positive ISO-8601 duration in milliseconds (exportUrlTtl: a link that expires at once is of no use). */
function durationField(name: string, value: unknown, fallback: string): number {
  const text = value === undefined ? fallback : value;
  if (typeof text !== 'string') throw new Error(`${name} must be an ISO-8601 duration string`);
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}`);
  }
  if (ms === 0) throw new Error(`${name}: ${JSON.stringify(text)} must be longer than zero`);
  const tooLong = tooLongForConfig(text, ms);
  if (tooLong) throw new Error(`${name}: ${tooLong}`);
  return ms;
}

function flag(text: string | undefined, fallback: boolean): boolean {
  const value = text?.trim().toLowerCase();
  if (!value) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new Error(`"${text}" is not true or false`);
}

/** "https://a.example, http://localhost:3000": exact origins (scheme, host, port), as browsers send them. */
function originList(text: string | undefined): string[] {
  if (!text?.trim()) return [];
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => {
      let url: URL;
      try {
        url = new URL(item);
      } catch {
        throw new Error(`"${item}" is not an origin (e.g. https://dashboard.example.com)`);
      }
      if (!['http:', 'https:'].includes(url.protocol) || url.origin !== item.replace(/\/$/, '')) {
        throw new Error(`"${item}" is not an origin: scheme, host and optional port only (e.g. https://dashboard.example.com)`);
      }
      return url.origin;
    });
}

function oneOf(value: string, allowed: string[]): string {
  if (!allowed.includes(value)) throw new Error(`"${value}" is not one of ${allowed.join(', ')}`);
  return value;
}
