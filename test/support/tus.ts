// A restore-from-file upload over tus (/uploads) as any tus client sends it: the creation POST, then one PATCH
// with the whole file.

export interface TusOutcome {
  /** The final PATCH's status: 204 when the restore was queued. */
  status: number;
  /** The queued restore (Snapgraph-Operation-Id), when there is one. */
  operationId: string | null;
  /** The refusal's JSON body, when there is one. */
  body: string;
}

export async function tusUpload(
  server: { url: string; adminKey: string },
  {
    instanceId,
    file,
    confirm = 'RESTORE',
    key = server.adminKey,
    signal,
  }: { instanceId: string; file: Buffer; confirm?: string; key?: string; signal?: AbortSignal },
): Promise<TusOutcome> {
  const metadata = Object.entries({ instanceId, confirm, filename: 'graph.backup' })
    .map(([name, value]) => `${name} ${Buffer.from(value).toString('base64')}`)
    .join(',');
  const auth = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${key}` };
  const created = await fetch(`${server.url}/uploads`, {
    method: 'POST',
    headers: { ...auth, 'Upload-Length': String(file.length), 'Upload-Metadata': metadata },
    signal,
  });
  if (created.status !== 201) return { status: created.status, operationId: null, body: await created.text() };
  await created.arrayBuffer();
  const location = new URL(created.headers.get('location')!, server.url).toString();
  const patched = await fetch(location, {
    method: 'PATCH',
    headers: { ...auth, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
    body: file,
    signal,
  });
  return { status: patched.status, operationId: patched.headers.get('snapgraph-operation-id'), body: await patched.text() };
}

/** extensions.code of a refusal's first error. */
export function refusalCode(body: string): string | undefined {
  try {
    return JSON.parse(body).errors?.[0]?.extensions?.code;
  } catch {
    return undefined;
  }
}
