// GraphML files for tests, in the shape apoc.export.graphml.all writes them (docs/neo4j-files.md, GraphML).
import assert from 'node:assert/strict';
import { pack as tarPack } from 'tar-stream';
import { createInstance, createNodes, expectCode, expectData } from './graphql';
import type { TestServer } from './server';
import { type Graph, graphOf, instanceState, settledOperation, uploadFile } from './snapshots';

export const GRAPHML_HEADER =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
  'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n';

/** A GraphML document: `keys` lines, then `body` lines inside <graph>; one element per line, as APOC writes. */
export function graphmlDocument(keys: string[], body: string[]): string {
  return `${GRAPHML_HEADER}${keys.map((k) => `${k}\n`).join('')}<graph id="G" edgedefault="directed">\n${body.map((b) => `${b}\n`).join('')}</graph>\n</graphml>\n`;
}

/** `<key>` as APOC declares it with useTypes (attr.list: the element type of an array property). */
export function graphmlKey(name: string, owner: 'node' | 'edge', type: string, list?: string): string {
  return `<key id="${name}" for="${owner}" attr.name="${name}" attr.type="${type}"${list ? ` attr.list="${list}"` : ''}/>`;
}

/** `<node>` with its labels (attribute and data) and data in the given order; values already XML-escaped. */
export function graphmlNode(id: string, labels: string[], data: Record<string, string> = {}): string {
  const joined = labels.map((l) => `:${l}`).join('');
  const labelled = joined ? ` labels="${joined}"><data key="labels">${joined}</data>` : '>';
  return `<node id="${id}"${labelled}${Object.entries(data).map(([k, v]) => `<data key="${k}">${v}</data>`).join('')}</node>`;
}

export function graphmlEdge(id: string, source: string, target: string, type: string, data: Record<string, string> = {}): string {
  return (
    `<edge id="${id}" source="${source}" target="${target}" label="${type}"><data key="label">${type}</data>` +
    `${Object.entries(data).map(([k, v]) => `<data key="${k}">${v}</data>`).join('')}</edge>`
  );
}

/** A .tar holding a README and `content` as `name` (a file exported from Neo4j and packed with something else). */
export async function tarWith(name: string, content: Buffer): Promise<Buffer> {
  const tar = tarPack();
  tar.entry({ name: 'README.txt' }, Buffer.from('exported from neo4j\n'));
  tar.entry({ name }, content);
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of tar as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// ---- Restoring foreign graph files in e2e tests (any format: APOC JSON, Cypher, GraphML) ----

interface Suite {
  readonly server: TestServer;
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
  let targetId: string;
  let before: Graph;

  beforeEach(async () => {
    const target = await createInstance(suite.server, { name: 'keep' });
    targetId = target.id;
    await createNodes(suite.server, targetId, [{ labels: ['Keep'], properties: { me: true } }]);
    before = await graphOf(suite.server, targetId);
  });

  async function assertUnchanged(): Promise<void> {
    assert.deepEqual(await graphOf(suite.server, targetId), before);
    assert.deepEqual(await instanceState(suite.server, targetId), { status: 'RUNNING', availability: 'AVAILABLE', currentOperation: null });
  }

  for (const [what, fileName, text, message] of atUpload) {
    it(`${what}`, async () => {
      const error = expectCode(await uploadFile(suite.server, { instanceId: targetId, file: Buffer.from(text), fileName }), 'INVALID_BACKUP_FILE');
      assert.match(error.message, message);
      await assertUnchanged();
    });
  }
  for (const [what, fileName, text, message] of byTheLoad) {
    it(`${what}`, async () => {
      const operation = await restore(targetId, Buffer.from(text), fileName);
      assert.equal(operation.status, 'FAILED');
      assert.equal(operation.error?.code, 'INVALID_BACKUP_FILE');
      assert.match(operation.error?.message ?? '', message);
      await assertUnchanged();
    });
  }
}
