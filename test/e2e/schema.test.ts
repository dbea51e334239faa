import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, findBreakingChanges, type GraphQLObjectType, type GraphQLSchema } from 'graphql';
import { getMetadataStorage } from 'type-graphql';
import { renderSchemaFile, REPO_ROOT, SCHEMA_FILE } from '../../scripts/emit-schema';
import { buildApiSchema } from '../../src/api/schema';
import { OPERATION_PHASES } from '../../src/jobs/operation-phases';

// The public API contract, kept in the repository so that this check runs on every clone: the base contract and
// one file per v2 capability block. A block joins IMPLEMENTED_BLOCKS when its issue is done.
const CONTRACT_DIR = join(REPO_ROOT, 'test', 'contract');
const IMPLEMENTED_BLOCKS = ['operations', 'storage', 'point-in-time', 'neo4j-files', 'destinations'];
// Where the contract is published beside the project (development machines); the copy must not drift from it.
const PUBLISHED_CONTRACT_DIR = join(REPO_ROOT, '..', 'shared', 'api');

function contractFiles(dir: string): string[] {
  const v2 = join(dir, 'v2');
  return ['contract.graphql', ...readdirSync(v2).filter((f) => f.endsWith('.graphql')).sort().map((f) => join('v2', f))];
}

/** The first lines where two texts part ways, for a failure message a person can act on. */
function firstDifference(committed: string, emitted: string): string {
  const a = committed.split('\n');
  const b = emitted.split('\n');
  const line = a.findIndex((text, i) => text !== b[i]);
  const at = line === -1 ? Math.min(a.length, b.length) : line;
  const show = (lines: string[]) => lines.slice(Math.max(0, at - 2), at + 3).join('\n    ');
  return `first difference at line ${at + 1}:\n  committed:\n    ${show(a)}\n  from the code:\n    ${show(b)}`;
}

describe('the GraphQL schema', () => {
  let schema: GraphQLSchema;
  before(async function () {
    this.timeout(30_000);
    schema = await buildApiSchema();
  });

  it('schema/schema.graphql is what the code emits (run `npm run schema` after changing the API)', () => {
    assert.ok(existsSync(SCHEMA_FILE), `${SCHEMA_FILE} is missing: run \`npm run schema\` and commit it`);
    const committed = readFileSync(SCHEMA_FILE, 'utf8').replace(/\r\n/g, '\n');
    const emitted = renderSchemaFile(schema);
    if (committed !== emitted) {
      assert.fail(`schema/schema.graphql has drifted from the code: run \`npm run schema\` and commit the result.\n${firstDifference(committed, emitted)}`);
    }
  });

  it('implements the whole API contract and every implemented v2 block', () => {
    const files = [join(CONTRACT_DIR, 'contract.graphql'), ...IMPLEMENTED_BLOCKS.map((block) => join(CONTRACT_DIR, 'v2', `${block}.graphql`))];
    const contract = buildSchema(files.map((file) => readFileSync(file, 'utf8')).join('\n'));
    const differences = findBreakingChanges(contract, schema);
    assert.deepEqual(
      differences.map((change) => `${change.type}: ${change.description}`),
      [],
      `the schema breaks the contract in ${differences.length} place(s):\n${differences.map((c) => `  - ${c.type}: ${c.description}`).join('\n')}`,
    );
  });

  it('keeps test/contract identical to the published contract, where one is beside the project', function () {
    if (!existsSync(PUBLISHED_CONTRACT_DIR)) {
      console.log(`      (skipped: no published contract at ${PUBLISHED_CONTRACT_DIR})`);
      this.skip();
    }
    for (const file of contractFiles(PUBLISHED_CONTRACT_DIR)) {
      const copy = join(CONTRACT_DIR, file);
      assert.ok(existsSync(copy), `test/contract/${file} is missing: copy it from the published contract`);
      assert.equal(readFileSync(copy, 'utf8'), readFileSync(join(PUBLISHED_CONTRACT_DIR, file), 'utf8'), `test/contract/${file} differs from the published one`);
    }
  });

  it('lists every operation phase in the description of Operation.phase', () => {
    const phase = (schema.getType('Operation') as GraphQLObjectType).getFields().phase;
    for (const name of OPERATION_PHASES) assert.ok(phase.description?.includes(name), `${name} is missing from "${phase.description}"`);
  });

  it('resolves plain fields with the default resolver of graphql-js: every object type declares simpleResolvers', () => {
    // type-graphql otherwise wraps every field in a resolver of its own (middlewares, auth checker: neither is used),
    // a cost every field of every answer pays; computed fields are @FieldResolver methods, which it still wraps.
    const wrapped = getMetadataStorage()
      .objectTypes.filter((type) => type.simpleResolvers !== true)
      .map((type) => type.name);
    assert.deepEqual(wrapped, [], `@ObjectType({ simpleResolvers: true }) is missing on ${wrapped.join(', ')}`);
  });
});
