export * from './errors';
export * from './chunk-store';
export * from './chunk-writer';
export * from './tenant-chunk-keys';
export type { CollectOptions, CollectResult, LiveChunkSet } from './chunk-collector';
export type { ReadOptions, VerifyReport } from './chunk-reader';
export { DEFAULT_CHUNK_WORKERS } from './chunk-worker-pool';
