import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config/app-config';
import { parseS3Url } from '../../src/storage/s3-location';

describe('choosing the blob store (SNAPGRAPH_BLOB_URL)', () => {
  it('keeps blobs in the data dir when unset', () => {
    assert.deepEqual(loadConfig({}).blobStore, { kind: 'filesystem' });
    assert.deepEqual(loadConfig({ SNAPGRAPH_BLOB_URL: ' ' }).blobStore, { kind: 'filesystem' });
  });

  it('takes an s3:// URL with an endpoint, a region and part settings', () => {
    const config = loadConfig({
      SNAPGRAPH_BLOB_URL: 's3://snapgraph-data/prod/blobs/',
      SNAPGRAPH_S3_ENDPOINT: 'http://127.0.0.1:8080/',
      AWS_REGION: 'eu-west-1',
      SNAPGRAPH_S3_PART_BYTES: String(16 * 1024 * 1024),
      SNAPGRAPH_S3_PART_CONCURRENCY: '2',
    });
    assert.deepEqual(config.blobStore, {
      kind: 's3',
      location: { bucket: 'snapgraph-data', prefix: 'prod/blobs' },
      endpoint: 'http://127.0.0.1:8080',
      region: 'eu-west-1',
      partBytes: 16 * 1024 * 1024,
      partConcurrency: 2,
    });
    assert.equal((loadConfig({ SNAPGRAPH_BLOB_URL: 's3://b-1', SNAPGRAPH_S3_REGION: 'us-east-2', AWS_REGION: 'x' }).blobStore as { region: string }).region, 'us-east-2');
  });

  it('stops the boot naming the variable for a bad URL, a missing region or a part under 5 MiB', () => {
    for (const env of [
      { SNAPGRAPH_BLOB_URL: 'https://bucket/x', AWS_REGION: 'eu-west-1' },
      { SNAPGRAPH_BLOB_URL: 's3://Bad_Bucket', AWS_REGION: 'eu-west-1' },
      { SNAPGRAPH_BLOB_URL: 's3://bucket/../up', AWS_REGION: 'eu-west-1' },
      { SNAPGRAPH_BLOB_URL: 's3://bucket' },
      { SNAPGRAPH_BLOB_URL: 's3://bucket', AWS_REGION: 'eu-west-1', SNAPGRAPH_S3_PART_BYTES: '1048576' },
      { SNAPGRAPH_BLOB_URL: 's3://bucket', SNAPGRAPH_S3_ENDPOINT: 'ftp://host' },
    ]) {
      assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_BLOB_URL/.test(error.message), JSON.stringify(env));
    }
  });

  it('parses bucket and prefix', () => {
    assert.deepEqual(parseS3Url('s3://my.bucket-1'), { bucket: 'my.bucket-1', prefix: '' });
    assert.deepEqual(parseS3Url('s3://b12/a/b_c/d-e.f'), { bucket: 'b12', prefix: 'a/b_c/d-e.f' });
    assert.throws(() => parseS3Url('s3:///prefix'));
    assert.throws(() => parseS3Url('s3://bucket//double'));
  });
});

describe('chunk compression (SNAPGRAPH_CHUNK_COMPRESSION)', () => {
  it('is brotli unless deflate is asked for (while replicas of an earlier release share the store)', () => {
    assert.equal(loadConfig({}).chunkCompression, 'brotli');
    assert.equal(loadConfig({ SNAPGRAPH_CHUNK_COMPRESSION: ' deflate ' }).chunkCompression, 'deflate');
    assert.throws(() => loadConfig({ SNAPGRAPH_CHUNK_COMPRESSION: 'zstd' }), (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_CHUNK_COMPRESSION/.test(error.message));
  });
});

describe('blob name binding (SNAPGRAPH_BIND_BLOB_NAMES)', () => {
  it('binds new blobs to their key unless turned off (while replicas of an earlier release share the store)', () => {
    assert.equal(loadConfig({}).bindBlobNames, true);
    assert.equal(loadConfig({ SNAPGRAPH_BIND_BLOB_NAMES: 'false' }).bindBlobNames, false);
    assert.throws(() => loadConfig({ SNAPGRAPH_BIND_BLOB_NAMES: 'maybe' }), (error: unknown) => error instanceof ConfigError && /SNAPGRAPH_BIND_BLOB_NAMES/.test(error.message));
  });
});
