import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DocumentNode, Kind, type OperationDefinitionNode, parse, print } from 'graphql';
import type { BrowserContext, Page } from 'playwright-core';
import { PLAYGROUND_DOCUMENT } from '../../src/api/http/playground-examples';
import { eventually, expectData, gql, metricsValue, serverPerSuite, subscribe } from '../support';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-quic',
  '--disable-component-update',
  '--disable-sync',
];

/** One named operation of the playground's document, alone (what GraphiQL sends with operationName). */
function exampleOperation(name: string): string {
  const document: DocumentNode = parse(PLAYGROUND_DOCUMENT);
  const operation = document.definitions.find(
    (definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION && definition.name?.value === name,
  );
  assert.ok(operation, `the playground has no operation named ${name}`);
  return print({ kind: Kind.DOCUMENT, definitions: [operation] });
}

function statusOf(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { headers }, (response) => {
      response.resume();
      resolve(response.statusCode!);
    }).on('error', reject);
  });
}

describe('playground', () => {
  const suite = serverPerSuite();

  describe('GET /graphql in a browser', () => {
    it('is a GraphiQL page whose every asset comes from this server', async () => {
      const { server } = suite;
      for (const path of ['/graphql', '/']) {
        const response = await fetch(`${server.url}${path}`, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
        assert.equal(response.status, 200, path);
        assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
        assert.match(response.headers.get('content-security-policy') ?? '', /script-src 'self'/);
        const html = await response.text();
        assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no asset from another host');
        const assets = [...html.matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((match) => match[1]);
        assert.ok(assets.some((asset) => asset.endsWith('graphiql.min.js')));
        for (const asset of assets) {
          const served = await fetch(`${server.url}${asset}`);
          assert.equal(served.status, 200, asset);
          assert.ok((await served.arrayBuffer()).byteLength > 0, asset);
        }
      }
    });

    it('revalidates the page and every asset by ETag (304), while GraphQL answers carry none', async () => {
      const { server } = suite;
      const html = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
      const page = await fetch(`${server.url}/graphql`, { headers: html });
      const assets = [...(await page.text()).matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((match) => match[1]);
      assert.ok(assets.some((asset) => asset.endsWith('playground.js')), 'a generated asset is among them');
      for (const [path, headers] of [['/graphql', html], ...assets.map((asset) => [asset, {}] as const)] as const) {
        const first = await fetch(`${server.url}${path}`, { headers });
        const etag = first.headers.get('etag');
        assert.ok(etag, `${path} has an ETag`);
        assert.equal((await fetch(`${server.url}${path}`, { headers })).headers.get('etag'), etag, `${path}: the same ETag again`);
        // node:http, not fetch: fetch adds Cache-Control: no-cache to a conditional request, which asks for the body.
        assert.equal(await statusOf(`${server.url}${path}`, { ...headers, 'if-none-match': etag }), 304, path);
      }
      const answer = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}` },
        body: JSON.stringify({ query: '{ viewer { role } }' }),
      });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('etag'), null);
    });

    it('leaves API clients alone: POST, and GET asking for JSON, reach GraphQL as before', async () => {
      const { server } = suite;
      expectData(await gql(server, '{ viewer { role } }'));
      const get = await fetch(`${server.graphqlUrl}?query=${encodeURIComponent('{ __typename }')}`, {
        headers: { accept: 'application/json', authorization: `Bearer ${server.adminKey}`, 'apollo-require-preflight': 'true' },
      });
      assert.match(get.headers.get('content-type') ?? '', /json/);
      assert.deepEqual(await get.json(), { data: { __typename: 'Query' } });
      const curlLike = await fetch(server.graphqlUrl, { headers: { accept: '*/*' } });
      assert.doesNotMatch(curlLike.headers.get('content-type') ?? '', /html/);
    });
  });

  describe('the example operations', () => {
    it('run in order: instance, data, snapshot, history, export, restore with its progress', async function () {
      this.timeout(60_000);
      const { server } = suite;
      const run = async (name: string, variables: Record<string, unknown> = {}) => expectData(await gql(server, exampleOperation(name), variables));

      assert.equal((await run('Viewer')).viewer.role, 'ADMIN');
      const instanceId: string = (await run('CreateInstance')).createInstance.id;
      assert.equal((await run('WriteData', { instanceId })).createNodes.length, 2);
      assert.equal((await run('ReadData', { instanceId })).nodes.totalCount, 2);

      const snapshots = subscribe(server, server.adminKey, exampleOperation('WatchSnapshots'), { instanceId });
      await eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) >= 1, { what: 'the subscription to start' });
      const snapshotId: string = (await run('TakeSnapshot', { instanceId })).createSnapshot.id;
      await snapshots.waitFor((event) => event.data?.snapshotUpdated.id === snapshotId && event.data.snapshotUpdated.status === 'COMPLETED', 30_000);
      await snapshots.close();

      const history = (await run('SnapshotHistory', { instanceId, after: null })).snapshots;
      assert.equal(history.totalCount, 1);
      assert.equal(history.edges[0].node.id, snapshotId);
      assert.equal(history.edges[0].node.contents.nodeCount, 2);

      const link = (await run('ExportSnapshot', { snapshotId })).exportSnapshot;
      const download = await fetch(link.url);
      assert.equal(download.status, 200);
      assert.equal((await download.arrayBuffer()).byteLength, link.sizeBytes);

      const availability = subscribe(server, server.adminKey, exampleOperation('WatchAvailability'), { instanceId });
      await eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) >= 1, { what: 'the subscription to start' });
      const operationId: string = (await run('RestoreSnapshot', { snapshotId })).restoreSnapshot.id;
      const progress = subscribe(server, server.adminKey, exampleOperation('WatchRestore'), { operationId });
      await progress.complete;
      const states = progress.results.map((result) => result.data?.restoreProgress);
      assert.equal(states.at(-1)?.status, 'SUCCEEDED');
      states.reduce((previous, state) => {
        assert.ok(state.progress >= previous, `progress went back: ${JSON.stringify(states)}`);
        return state.progress;
      }, 0);
      const changes = await eventually(() => {
        const seen = availability.results.map((result) => result.data?.instanceAvailabilityChanged.availability);
        return seen.includes('AVAILABLE') && seen;
      });
      assert.deepEqual(changes, ['READ_ONLY', 'UNAVAILABLE', 'AVAILABLE']);
    });
  });

  describe('in Chromium', () => {
    let context: BrowserContext | undefined;
    let userDataDir: string | undefined;

    before(async function () {
      this.timeout(60_000);
      if (!existsSync(CHROMIUM)) {
        console.warn(`    skipped: ${CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)`);
        this.skip();
      }
      const { chromium } = await import('playwright-core');
      userDataDir = mkdtempSync(join(tmpdir(), 'snapgraph-chromium-'));
      context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    });

    after(async () => {
      await context?.close();
      if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    });

    it('runs a query and a subscription with the key typed into the headers editor', async function () {
      this.timeout(90_000);
      const { server } = suite;
      const page = await context!.newPage();
      const problems: string[] = [];
      const foreignRequests: string[] = [];
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(`console: ${message.text()}`);
      });
      page.on('request', (request) => {
        const url = new URL(request.url());
        if (url.host !== new URL(server.url).host && url.protocol !== 'data:') foreignRequests.push(request.url());
      });

      await page.goto(server.graphqlUrl);
      await page.waitForSelector('.graphiql-query-editor .CodeMirror');
      assert.match(await editorValue(page, HEADERS_EDITOR), /"Authorization": "Bearer <key>"/);
      assert.match(await editorValue(page, QUERY_EDITOR), /mutation RestoreSnapshot/);

      // The headers editor, typed into as a user would.
      await page.click(`${HEADERS_EDITOR} .CodeMirror-lines`);
      await page.keyboard.press('ControlOrMeta+A');
      await page.keyboard.insertText(`{"Authorization": "Bearer ${server.adminKey}"}`);
      assert.equal(await editorValue(page, HEADERS_EDITOR), `{"Authorization": "Bearer ${server.adminKey}"}`);

      await setQuery(page, 'query WhoAmI { viewer { tenantName role } }', 'WhoAmI');
      await page.click('.graphiql-execute-button');
      await waitForResponse(page, (text) => text.includes('"tenantName": "default"') && text.includes('"role": "ADMIN"'));

      const instanceId = expectData(await gql(server, `mutation { createInstance(input: { name: "browser", tier: FREE }) { id } }`)).createInstance.id;
      await setEditor(page, VARIABLES_EDITOR, JSON.stringify({ instanceId }));
      await setQuery(page, 'subscription Snapshots($instanceId: ID) { snapshotUpdated(instanceId: $instanceId) { id status } }', 'Snapshots');
      await page.click('.graphiql-execute-button');
      // The server acknowledges only a connection_init carrying a valid key: a live subscription proves it got one.
      await eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) >= 1, {
        what: 'the page to subscribe',
        timeoutMs: 15_000,
      });
      const snapshotId = expectData(await gql(server, `mutation ($id: ID!) { createSnapshot(instanceId: $id) { id } }`, { id: instanceId }))
        .createSnapshot.id;
      await waitForResponse(page, (text) => text.includes(snapshotId) && text.includes('"status": "COMPLETED"'));
      await page.click('.graphiql-execute-button'); // stop
      await eventually(async () => (await metricsValue(server, 'snapgraph_subscriptions_active')) === 0, { what: 'the page to unsubscribe' });

      assert.deepEqual(foreignRequests, [], 'the page works offline: nothing is fetched from another host');
      assert.deepEqual(problems, []);
      await page.close();
    });
  });
});

const QUERY_EDITOR = '.graphiql-query-editor';
const HEADERS_EDITOR = 'section.graphiql-editor-tool .graphiql-editor:not(.hidden)';
const VARIABLES_EDITOR = 'section.graphiql-editor-tool .graphiql-editor:nth-child(1)';
const RESPONSE_PANE = 'section.result-window';

/** The text of the CodeMirror editor inside `selector`. */
function editorValue(page: Page, selector: string): Promise<string> {
  return page.$eval(`${selector} .CodeMirror`, (element) => (element as unknown as { CodeMirror: { getValue(): string } }).CodeMirror.getValue());
}

async function setEditor(page: Page, selector: string, text: string): Promise<void> {
  await page.$eval(
    `${selector} .CodeMirror`,
    (element, value) => (element as unknown as { CodeMirror: { setValue(text: string): void } }).CodeMirror.setValue(value),
    text,
  );
}

/** Replaces the query and waits until GraphiQL has parsed it (it stores the operation's name), so ▶ runs it. */
async function setQuery(page: Page, query: string, operationName: string): Promise<void> {
  await setEditor(page, QUERY_EDITOR, query);
  await page.waitForFunction(
    (name) => (globalThis as unknown as { localStorage: { getItem(key: string): string | null } }).localStorage.getItem('graphiql:operationName') === name,
    operationName,
  );
}

async function waitForResponse(page: Page, matches: (text: string) => boolean, timeoutMs = 30_000): Promise<string> {
  return eventually(
    async () => {
      const text = await editorValue(page, RESPONSE_PANE);
      return matches(text) ? text : false;
    },
    { timeoutMs, intervalMs: 100, what: 'the expected result in the response pane' },
  ).catch(async (error) => {
    throw new Error(`${(error as Error).message}\nresponse pane:\n${await editorValue(page, RESPONSE_PANE).catch(() => '?')}`);
  });
}

