import { strict as assert } from 'node:assert';
import { HeaderMap, type GraphQLRequestContext, type GraphQLRequestListener } from '@apollo/server';
import { getOperationAST, type GraphQLSchema, parse } from 'graphql';
import type { ApiContext } from '../../src/api/context';
import { ResponseCache, responseCachePlugin, readsVersionedRowsOnly } from '../../src/api/response-cache';
import { buildApiSchema } from '../../src/api/schema';

describe('the response cache', () => {
  describe('which queries it may keep (the API schema)', () => {
    let schema: GraphQLSchema;
    before(async () => {
      schema = await buildApiSchema();
    });
    const qualifies = (query: string, operationName?: string) => {
      const document = parse(query);
      const operation = getOperationAST(document, operationName);
      return operation ? readsVersionedRowsOnly(schema, document, operation) : false;
    };

    it('a query of marked fields, with __typename, fragments on the type itself and variables', () => {
      assert.equal(qualifies('{ instances { id name tier status availability createdAt } }'), true);
      assert.equal(qualifies('query ($id: ID!) { instance(id: $id) { __typename id ...more } } fragment more on Instance { memoryGB storageGB }'), true);
      assert.equal(qualifies('{ instances { ... on Instance { engineVersion } } }'), true);
      const history = `query ($id: ID!, $after: String) {
        snapshots(instanceId: $id, first: 5, after: $after, filter: { profile: SCHEDULED }) {
          totalCount pageInfo { hasNextPage endCursor }
          edges { cursor node { id status createdAt expiresAt format exportable contents { nodeCount labels { name count } } instance { name } } }
        }
      }`;
      assert.equal(qualifies(history), true);
      assert.equal(qualifies('{ instances { id sourceSnapshot { id } snapshots(first: 1) { totalCount } } }'), true);
    });

    it('not a field that reads anything else: an instance store, another table, the principal, the schema', () => {
      assert.equal(qualifies('{ instances { id stats { nodeCount } } }'), false);
      assert.equal(qualifies('{ instances { id stats { labels { name } } } }'), false, 'GraphStats is marked, but reached through stats here');
      assert.equal(qualifies('{ instances { id snapshots { edges { node { instance { schedule { enabled } } } } } } }'), false);
      assert.equal(qualifies('{ usage { snapshotCount } }'), false);
      assert.equal(qualifies('{ instances { id ...s } } fragment s on Instance { backupStorage { storedBytes } }'), false);
      assert.equal(qualifies('{ instances { id currentOperation { id } } }'), false);
      assert.equal(qualifies('{ viewer { role } }'), false);
      assert.equal(qualifies('{ instances { id } viewer { role } }'), false);
      assert.equal(qualifies('{ __schema { queryType { name } } }'), false);
    });

    it('not a mutation or a subscription, and only the operation named', () => {
      assert.equal(qualifies('mutation { deleteInstance(id: "x") }'), false);
      assert.equal(qualifies('subscription { instanceAvailabilityChanged { instanceId } }'), false);
      const two = 'query list { instances { id } } query who { viewer { role } }';
      assert.equal(qualifies(two, 'list'), true);
      assert.equal(qualifies(two, 'who'), false);
      assert.equal(qualifies(two), false);
    });
  });

  describe('ResponseCache', () => {
    const answer = (text: string) => ({ data: { text } });

    it('gives an answer back only at the version it was kept at, and drops it at another', () => {
      const cache = new ResponseCache();
      cache.set('k', '1', answer('a'));
      assert.deepEqual(cache.get('k', '1'), answer('a'));
      assert.equal(cache.get('k', '2'), undefined);
      assert.equal(cache.size, 0);
      assert.equal(cache.get('k', '1'), undefined, 'dropped for good: a version never comes back');
    });

    it('is bounded in answers and bytes, least recently used out first, and keeps no answer over its size', () => {
      const cache = new ResponseCache({ maxEntries: 3, maxBytes: 200, maxEntryBytes: 100 });
      for (const key of ['a', 'b', 'c']) cache.set(key, '1', answer(key));
      cache.get('a', '1');
      cache.set('d', '1', answer('d'));
      assert.deepEqual(['a', 'b', 'c', 'd'].map((key) => cache.get(key, '1') !== undefined), [true, false, true, true]);
      cache.set('big', '1', answer('x'.repeat(120)));
      assert.equal(cache.get('big', '1'), undefined);
      cache.set('e', '1', answer('y'.repeat(60)));
      cache.set('f', '1', answer('z'.repeat(60)));
      assert.ok(cache.size <= 3);
      assert.ok(cache.get('f', '1'), 'the newest is kept');
      assert.equal(cache.get('c', '1'), undefined, 'older answers left to make room in bytes');
    });
  });

  describe('the plugin', () => {
    let schema: GraphQLSchema;
    before(async () => {
      schema = await buildApiSchema();
    });

    const LIST = '{ instances { id } }';
    const principal = { tenantId: 't1', apiKeyId: 'key-1', tenantName: 'default', role: 'VIEWER' as const, apiKeyName: 'k' };

    /** One request through the plugin: what it answered before execution, and what the execution would have been. */
    async function request(
      plugin: ReturnType<typeof responseCachePlugin>,
      {
        query = LIST,
        operationName = undefined as string | undefined,
        executed = { data: { instances: [{ id: 'i1' }] } } as Record<string, unknown>,
        context = { principal } as Partial<ApiContext>,
        status = 200,
      } = {},
    ) {
      const document = documents.get(query) ?? parse(query);
      documents.set(query, document);
      const requestContext = {
        schema,
        document,
        operation: getOperationAST(document, operationName) ?? undefined,
        request: { query, operationName, variables: {} },
        queryHash: query,
        contextValue: context,
        response: { http: { status, headers: new HeaderMap() }, body: { kind: 'single', singleResult: executed } },
      } as unknown as GraphQLRequestContext<ApiContext>;
      const listener = (await plugin.requestDidStart!(requestContext as never)) as GraphQLRequestListener<ApiContext>;
      const answered = await listener.responseForOperation?.(requestContext as never);
      if (!answered) await listener.willSendResponse?.(requestContext as never);
      return answered ? answered.body : null;
    }
    const documents = new Map<string, ReturnType<typeof parse>>();
    const counter = () => {
      const counts = { hit: 0, miss: 0 };
      return { counts, inc: ({ outcome }: { outcome: 'hit' | 'miss' }) => void (counts[outcome] += 1) };
    };

    it('answers the second request at an unchanged version, and executes at a new one', async () => {
      let version = '1';
      const counts = counter();
      const plugin = responseCachePlugin(new ResponseCache(), async () => version, counts);
      assert.equal(await request(plugin), null);
      assert.deepEqual(await request(plugin), { kind: 'single', singleResult: { data: { instances: [{ id: 'i1' }] } } });
      version = '2';
      assert.equal(await request(plugin), null);
      assert.deepEqual(counts.counts, { hit: 1, miss: 2 });
    });

    it('keeps no answer with errors or a status other than 200', async () => {
      const plugin = responseCachePlugin(new ResponseCache(), async () => '1', counter());
      await request(plugin, { executed: { data: { instances: null }, errors: [{ message: 'failed' }] } });
      assert.equal(await request(plugin, { executed: { data: { instances: null }, errors: [{ message: 'failed' }] } }), null);
      await request(plugin, { status: 500 });
      assert.equal(await request(plugin, { status: 500 }), null);
    });

    it('is not used without a principal, or while the version cannot be read', async () => {
      const counts = counter();
      const unreadable = responseCachePlugin(new ResponseCache(), async () => null, counts);
      await request(unreadable);
      assert.equal(await request(unreadable), null);
      const plugin = responseCachePlugin(new ResponseCache(), async () => '1', counts);
      await request(plugin, { context: { principal: null } });
      assert.equal(await request(plugin, { context: { principal: null } }), null);
      assert.deepEqual(counts.counts, { hit: 0, miss: 0 });
    });

    it('is not used for an operation name the document does not have (Apollo refuses it after)', async () => {
      const counts = counter();
      const plugin = responseCachePlugin(new ResponseCache(), async () => '1', counts);
      const named = 'query list { instances { id } }';
      await request(plugin, { query: named, operationName: 'list' });
      assert.ok(await request(plugin, { query: named, operationName: 'list' }));
      assert.equal(await request(plugin, { query: named, operationName: 'x'.repeat(10_000) }), null);
      assert.deepEqual(counts.counts, { hit: 1, miss: 1 });
    });

    it("never answers one key with another key's answer", async () => {
      const plugin = responseCachePlugin(new ResponseCache(), async () => '1', counter());
      await request(plugin);
      const other = { principal: { ...principal, apiKeyId: 'key-2' } };
      assert.equal(await request(plugin, { context: other }), null);
    });
  });
});
