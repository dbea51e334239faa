// Foreign graph files in e2e and unit tests (any format: APOC JSON, Cypher, GraphML, neo4j-admin CSV): tars built and
// read back entry by entry, restores of a file, and the instance a refused file must leave unchanged.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { extract as createTarExtract, pack as createTarPack } from 'tar-stream';
import { createInstance, createNodes, expectCode, expectData } from './graphql';
import type { TestServer } from './server';
import { type Graph, graphOf, instanceState, settledOperation, uploadFile } from './snapshots';

interface Suite {
  readonly server: TestServer;
}

/** A .tar of the given entries, in order (name → content). */
export async function tarOfFiles(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = createTarPack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mtime: new Date(0) }, typeof content === 'string' ? Buffer.from(content) : content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** The entries of a .tar in order: name → text. */
export async function filesOfTar(tar: Buffer): Promise<Array<{ name: string; text: string; mode: number; mtime: number }>> {
  const extract = createTarExtract();
  Readable.from([tar]).pipe(extract as unknown as NodeJS.WritableStream);
  const files: Array<{ name: string; text: string; mode: number; mtime: number }> = [];
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry as AsyncIterable<Buffer>) chunks.push(chunk);
    files.push({ name: entry.header.name, text: Buffer.concat(chunks).toString('utf8'), mode: entry.header.mode ?? 0, mtime: entry.header.mtime?.getTime() ?? 0 });
  }
  return files;
}

/** A .tar holding a README and `content` as `name` (a file exported from Neo4j and packed with something else). */
export function tarWith(name: string, content: Buffer): Promise<Buffer> {
  return tarOfFiles({ 'README.txt': 'exported from neo4j\n', [name]: content });
}

/**
 * For tests of files that must be refused: before each test, a new instance holding one node; `assertUnchanged()`
 * checks it still holds exactly that and is RUNNING and AVAILABLE with no operation under way.
 */
export function keptInstance(suite: Suite): { readonly id: string; assertUnchanged(): Promise<void> } {
  let id = '';
  let before: Graph;
  beforeEach(async () => {
    id = (await createInstance(suite.server, { name: 'keep' })).id;
    await createNodes(suite.server, id, [{ labels: ['Keep'], properties: { me: true } }]);
    before = await graphOf(suite.server, id);
  });
  return {
    get id() {
      return id;
    },
    async assertUnchanged() {
      assert.deepEqual(await graphOf(suite.server, id), before);
      assert.deepEqual(await instanceState(suite.server, id), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
    },
  };
}

/** restoreFromFile into an instance (the settled operation), or into a new one (the graph it then holds). */
export function fileRestores(suite: Suite) {
  async function restore(instanceId: string, file: Buffer, fileName: string) {
    const operation = expectData(await uploadFile(suite.server, { instanceId, file, fileName })).restoreFromFile;
    return settledOperation(suite.server, operation.id);
  }
  async function restored(file: Buffer, fileName: string): Promise<Graph> {
    const target = await createInstance(suite.server, { name: 'target' });
    const operation = await restore(target.id, file, fileName);
    assert.equal(operation.status, 'SUCCEEDED', JSON.stringify(operation.error));
    return graphOf(suite.server, target.id);
  }
  return { restore, restored };
}

/** [what, file name, content, the message expected]. */
export type BadFileCase = [string, string, string, RegExp];

/**
 * Tests (inside the caller's describe) that each bad file is INVALID_BACKUP_FILE naming the problem, refused at the
 * upload (`atUpload`) or failing the restore (`byTheLoad`), and that the instance keeps its data and stays available.
 */
export function itRefusesBadFiles(suite: Suite, { atUpload, byTheLoad }: { atUpload: BadFileCase[]; byTheLoad: BadFileCase[] }): void {
  const { restore } = fileRestores(suite);
  const target = keptInstance(suite);

  for (const [what, fileName, text, message] of atUpload) {
    it(`${what}`, async () => {
      const error = expectCode(await uploadFile(suite.server, { instanceId: target.id, file: Buffer.from(text), fileName }), 'INVALID_BACKUP_FILE');
      assert.match(error.message, message);
      await target.assertUnchanged();
    });
  }
  for (const [what, fileName, text, message] of byTheLoad) {
    it(`${what}`, async () => {
      const operation = await restore(target.id, Buffer.from(text), fileName);
      assert.equal(operation.status, 'FAILED');
      assert.equal(operation.error?.code, 'INVALID_BACKUP_FILE');
      assert.match(operation.error?.message ?? '', message);
      await target.assertUnchanged();
    });
  }
}
