// neo4j-admin import CSV bundles for tests: tars built entry by entry, a bundle's files read back, and an instance that
// a refused file must leave unchanged.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { extract as createTarExtract, pack as createTarPack } from 'tar-stream';
import { createInstance, createNodes } from './graphql';
import type { TestServer } from './server';
import { type Graph, graphOf, instanceState } from './snapshots';

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

/** The movies example of the neo4j-admin import documentation: ID spaces, typed columns, arrays, :LABEL lists. */
export const DOCS_EXAMPLE = {
  'movies.csv': 'movieId:ID(Movie),title,year:int,genres:string[],:LABEL\n' + 'tt0133093,"The Matrix",1999,Action;Sci-Fi,Movie\n' + 'tt0234215,"The Matrix Reloaded",2003,Action,Movie;Sequel\n' + 'tt0242653,"The Matrix Revolutions",2003,,Movie;Sequel\n',
  'actors.csv': 'personId:ID(Actor),name,born:date,ratings:double[],:LABEL\n' + 'keanu,"Keanu Reeves",1964-09-02,9.5;8,Actor\n' + 'laurence,"Laurence Fishburne",,,Actor\n' + 'carrieanne,"Carrie-Anne Moss",1967-08-21,7.25,Actor\n',
  'roles.csv': ':START_ID(Actor),role,:END_ID(Movie),:TYPE\n' + 'keanu,"Neo",tt0133093,ACTED_IN\n' + 'keanu,"Neo",tt0234215,ACTED_IN\n' + 'laurence,"Morpheus",tt0133093,ACTED_IN\n' + 'carrieanne,"Trinity",tt0242653,ACTED_IN\n',
};

/**
 * For tests of files that must be refused: before each test, a new instance holding one node; `assertUnchanged()`
 * checks it still holds exactly that and is RUNNING and AVAILABLE with no operation under way.
 */
export function keptInstance(suite: { readonly server: TestServer }): { readonly id: string; assertUnchanged(): Promise<void> } {
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
