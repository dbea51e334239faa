import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, findBreakingChanges, type GraphQLEnumType, type GraphQLObjectType, type GraphQLSchema } from 'graphql';
import { renderSchemaFile, REPO_ROOT, SCHEMA_FILE } from '../../scripts/emit-schema';
import { buildApiSchema } from '../../src/api/schema';
import { OPERATION_PHASES } from '../../src/jobs/operation-phases';

const CONTRACT_FILE = join(REPO_ROOT, '..', 'shared', 'api', 'contract.graphql');

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

  it('implements the whole API contract (../shared/api/contract.graphql)', function () {
    if (!existsSync(CONTRACT_FILE)) {
      console.log(`      (skipped: no contract at ${CONTRACT_FILE})`);
      this.skip();
    }
    const contract = buildSchema(readFileSync(CONTRACT_FILE, 'utf8'));
    const differences = findBreakingChanges(contract, schema);
    assert.deepEqual(
      differences.map((change) => `${change.type}: ${change.description}`),
      [],
      `the schema breaks the contract in ${differences.length} place(s):\n${differences.map((c) => `  - ${c.type}: ${c.description}`).join('\n')}`,
    );
  });

  it('implements the operations block: OperationStatus.CANCELLED, Operation.attempt: Int!, cancelOperation(id: ID!): Operation!', () => {
    const status = schema.getType('OperationStatus') as GraphQLEnumType;
    assert.deepEqual(status.getValues().map((value) => value.name), ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED']);
    const operation = schema.getType('Operation') as GraphQLObjectType;
    assert.equal(String(operation.getFields().attempt?.type), 'Int!');
    const cancel = schema.getMutationType()!.getFields().cancelOperation;
    assert.ok(cancel, 'Mutation.cancelOperation is missing');
    assert.equal(String(cancel.type), 'Operation!');
    assert.deepEqual(cancel.args.map((arg) => `${arg.name}: ${String(arg.type)}`), ['id: ID!']);
  });

  it('lists every operation phase in the description of Operation.phase', () => {
    const phase = (schema.getType('Operation') as GraphQLObjectType).getFields().phase;
    for (const name of OPERATION_PHASES) assert.ok(phase.description?.includes(name), `${name} is missing from "${phase.description}"`);
  });
});
