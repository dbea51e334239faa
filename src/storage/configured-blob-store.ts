// Chooses the blob backend the configuration names: files under the data dir, or an S3 bucket.
import { join } from 'node:path';
import type { AppConfig } from '../config/app-config';
import { probeWritableDirectory } from '../observability/operator-endpoints';
import type { BlobStore } from './blob-store';
import { FilesystemBlobStore } from './filesystem-blob-store';
import { formatS3Url } from './s3-location';

export interface ConfiguredBlobStore {
  store: BlobStore;
  /** Readiness: the directory is writable, or the bucket answers. */
  probe(): Promise<void>;
  /** Where the blobs are, for logs (no credentials). */
  description: string;
}

/** The AWS SDK is loaded only when the blobs are in S3. */
export async function createConfiguredBlobStore(config: Pick<AppConfig, 'dataDir' | 'blobStore'>): Promise<ConfiguredBlobStore> {
  const settings = config.blobStore;
  if (settings.kind === 'filesystem') {
    const dir = join(config.dataDir, 'blobs');
    return { store: new FilesystemBlobStore(dir), probe: () => probeWritableDirectory(dir), description: dir };
  }
  const [{ createS3Client }, { S3BlobStore }] = await Promise.all([import('./s3-client.js'), import('./s3-blob-store.js')]);
  const client = createS3Client({ endpoint: settings.endpoint, region: settings.region });
  const store = new S3BlobStore(client, settings.location, { partBytes: settings.partBytes, partConcurrency: settings.partConcurrency });
  const where = formatS3Url(settings.location);
  return { store, probe: () => store.probe(), description: settings.endpoint ? `${where} at ${settings.endpoint}` : where };
}
