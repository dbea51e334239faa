// What the upload benchmarks send: an archive of random text, and restoreFromFile through curl -F.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createArchiveWriter } from '../../src/archive';
import { ADMIN_KEY, type Server } from './server-process';

const run = promisify(execFile);

export const curl = (args: string[]) => run('curl', ['-sS', '--fail-with-body', ...args], { maxBuffer: 16 * 1024 * 1024 });

/** The properties of node `id` of writeRandomTextArchive: 768 random bytes as base64, and two small fields. */
export const randomTextProperties = (id: number) => ({ name: `blob-${id}`, size: id % 4096, payload: randomBytes(768).toString('base64') });

/**
 * An archive of about `sizeBytes` whose nodes' properties are mostly random text (1 KiB of random bytes as base64,
 * plus a few small fields): deflate saves about a quarter, so the archive is about as large as the data it restores.
 * Returns its node count.
 */
export async function writeRandomTextArchive(path: string, sizeBytes: number): Promise<number> {
  const nodes = Math.ceil(sizeBytes / 800);
  const writer = createArchiveWriter({
    engineVersion: 'V5',
    sourceInstanceId: 'bench',
    sourceInstanceName: 'bench',
    capturedAt: new Date().toISOString(),
    stats: { nodeCount: nodes, relationshipCount: 0, labels: [{ name: 'Blob', count: nodes }], relationshipTypes: [], storeSizeBytes: 0 },
  });
  const written = pipeline(writer.stream, createWriteStream(path));
  for (let start = 1; start <= nodes; start += 2_000) {
    const lines: string[] = [];
    for (let id = start; id < Math.min(start + 2_000, nodes + 1); id++) {
      lines.push(JSON.stringify(['N', String(id), ['Blob'], randomTextProperties(id)]));
    }
    await writer.writeEncoded({ kind: 'node', lines });
  }
  await writer.end();
  await written;
  return nodes;
}

/** restoreFromFile of `archive` over the instance, sent by curl -F (GraphQL multipart request spec); the operation's id once accepted. */
export async function curlRestoreFromFile(server: Server, archive: string, instanceId: string): Promise<string> {
  const operations = JSON.stringify({
    query: `mutation($id: ID!, $file: Upload!) { restoreFromFile(instanceId: $id, file: $file, confirm: "RESTORE") { id } }`,
    variables: { id: instanceId, file: null },
  });
  const { stdout } = await curl([
    '-H', `Authorization: Bearer ${ADMIN_KEY}`, '-H', 'Apollo-Require-Preflight: true',
    '-F', `operations=${operations}`, '-F', 'map={"0":["variables.file"]}', '-F', `0=@${archive}`, `${server.url}/graphql`,
  ]);
  const body = JSON.parse(stdout) as { data?: { restoreFromFile: { id: string } }; errors?: unknown };
  if (body.errors || !body.data) throw new Error(JSON.stringify(body.errors));
  return body.data.restoreFromFile.id;
}
