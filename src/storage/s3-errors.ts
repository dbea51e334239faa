// What an S3 error says, without the SDK (used where the SDK may not be loaded).

/** The HTTP status of an SDK error, when it has one. */
export function s3Status(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** The S3 error code (NoSuchKey, AccessDenied, …) or the error's name. */
export function s3ErrorCode(error: unknown): string {
  const e = error as { Code?: string; name?: string; code?: string };
  return e?.Code ?? e?.name ?? e?.code ?? 'Error';
}

/** An S3 error in a few words: its code and HTTP status (SDK messages never carry credentials). */
export function describeS3Error(error: unknown): string {
  const status = s3Status(error);
  const code = s3ErrorCode(error);
  const message = error instanceof Error && error.message && error.message !== code ? `: ${error.message.slice(0, 200)}` : '';
  return `${code}${status ? ` (HTTP ${status})` : ''}${message}`;
}
