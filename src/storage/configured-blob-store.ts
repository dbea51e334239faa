// Chooses the blob backend the configuration names: files under the data dir, or an S3 bucket.
import { join } from 'node:path';
import type { AppConfig } from '../config/app-config';
import { probeWritableDirectory } from '../observability/operator-endpoints';
import type { BlobStore } from './blob-store';
import { FilesystemBlobStore } from './filesystem-blob-store';
import { S3BlobStore } from './s3-blob-store';
import { createS3Client } from './s3-location';

export interface ConfiguredBlobStore {
  store: BlobStore;
  /** Readiness: the directory is writable, or the bucket answers. */
  probe(): Promise<void>;
  /** Where the blobs are, for logs (no credentials). */
  description: string;
}

export function createConfiguredBlobStore(config: Pick<AppConfig, 'dataDir' | 'blobStore'>): ConfiguredBlobStore {
  const settings = config.blobStore;
  if (settings.kind === 'filesystem') {
    const dir = join(config.dataDir, 'blobs');
    return { store: new FilesystemBlobStore(dir), probe: () => probeWritableDirectory(dir), description: dir };
  }
  const client = createS3Client({ endpoint: settings.endpoint, region: settings.region });
  const store = new S3BlobStore(client, settings.location, { partBytes: settings.partBytes, partConcurrency: settings.partConcurrency });
  const where = settings.location.prefix ? `s3://${settings.location.bucket}/${settings.location.prefix}` : `s3://${settings.location.bucket}`;
  return { store, probe: () => store.probe(), description: settings.endpoint ? `${where} at ${settings.endpoint}` : where };
}
