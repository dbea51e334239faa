// A restore-from-file upload over tus (/uploads) as any tus client sends it: the creation POST, then PATCHes (one
// with the whole file, for tusUpload).

export interface TusOutcome {
  /** The final PATCH's status: 204 when the restore was queued. */
  status: number;
  /** The queued restore (Snapgraph-Operation-Id), when there is one. */
  operationId: string | null;
  /** The refusal's JSON body, when there is one. */
  body: string;
}

/** An upload created by its POST: where it is, and the headers every later request on it needs. */
export interface TusCreation {
  status: number;
  body: string;
  /** Absolute URL of the upload; null when the creation was refused. */
  location: string | null;
  auth: Record<string, string>;
}

/** What every tus request of `key` carries. */
const tusAuth = (key: string): Record<string, string> => ({ 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${key}` });

/** The headers of the creation POST of an upload of `length` bytes restoring into `instanceId`. */
export function tusCreationHeaders({ instanceId, length, confirm = 'RESTORE', key }: { instanceId: string; length: number; confirm?: string; key: string }): Record<string, string> {
  const metadata = Object.entries({ instanceId, confirm, filename: 'graph.backup' })
    .map(([name, value]) => `${name} ${Buffer.from(value).toString('base64')}`)
    .join(',');
  return { ...tusAuth(key), 'Upload-Length': String(length), 'Upload-Metadata': metadata };
}

/** The creation POST of an upload of `length` bytes restoring into `instanceId`. */
export async function createTusUpload(
  server: { url: string; adminKey: string },
  {
    instanceId,
    length,
    confirm = 'RESTORE',
    key = server.adminKey,
    signal,
  }: { instanceId: string; length: number; confirm?: string; key?: string; signal?: AbortSignal },
): Promise<TusCreation> {
  const created = await fetch(`${server.url}/uploads`, { method: 'POST', headers: tusCreationHeaders({ instanceId, length, confirm, key }), signal });
  const location = created.status === 201 ? new URL(created.headers.get('location')!, server.url).toString() : null;
  return { status: created.status, body: await created.text(), location, auth: tusAuth(key) };
}

/** A PATCH of `bytes` at `offset` to the upload at `url` (which may be on another replica than its creation). */
export async function patchTusUpload(url: string, auth: Record<string, string>, offset: number, bytes: Buffer, signal?: AbortSignal): Promise<TusOutcome> {
  const patched = await fetch(url, {
    method: 'PATCH',
    headers: { ...auth, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
    body: bytes,
    signal,
  });
  return { status: patched.status, operationId: patched.headers.get('snapgraph-operation-id'), body: await patched.text() };
}

export async function tusUpload(
  server: { url: string; adminKey: string },
  options: { instanceId: string; file: Buffer; confirm?: string; key?: string; signal?: AbortSignal },
): Promise<TusOutcome> {
  const created = await createTusUpload(server, { ...options, length: options.file.length });
  if (!created.location) return { status: created.status, operationId: null, body: created.body };
  return patchTusUpload(created.location, created.auth, 0, options.file, options.signal);
}

/** extensions.code of a refusal's first error. */
export function refusalCode(body: string): string | undefined {
  try {
    return JSON.parse(body).errors?.[0]?.extensions?.code;
  } catch {
    return undefined;
  }
}
