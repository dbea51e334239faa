// S3 locations (`s3://bucket/optional/prefix`). No SDK here: the configuration parses these at every boot.

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing '/', '' for the bucket's root. */
  prefix: string;
}


// DNS-compatible bucket names, as S3 requires of new buckets (3-63 characters).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/**
 * Parses `s3://bucket/optional/prefix`.
 * @throws Error with a message that names what is wrong (never anything but the URL's shape)
 */
export function parseS3Url(text: string): S3Location {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(text.trim());
  if (!match) throw new Error('must look like s3://bucket or s3://bucket/prefix');
  const [, bucket, rawPrefix = ''] = match;
  if (!BUCKET.test(bucket)) throw new Error(`"${bucket}" is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')`);
  const prefix = rawPrefix.replace(/\/+$/, '');
  if (prefix !== '' && !prefix.split('/').every((segment) => PREFIX_SEGMENT.test(segment))) {
    throw new Error(`the prefix "${prefix.slice(0, 100)}" must be '/'-separated names of letters, digits, '.', '_' and '-'`);
  }
  return { bucket, prefix };
}

export function formatS3Url({ bucket, prefix }: S3Location): string {
  return prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}`;
}

/** `prefix/name`, or `name` at the bucket's root. */
export function keyUnder(prefix: string, name: string): string {
  return prefix ? `${prefix}/${name}` : name;
}
