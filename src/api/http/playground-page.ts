// The playground's HTML and browser script. Everything the page loads comes from this server (works offline), and
// the Content-Security-Policy says so. The script is served as a file, so no inline script is allowed.
import { PLAYGROUND_DOCUMENT, PLAYGROUND_HEADERS, PLAYGROUND_KEY_PLACEHOLDER, PLAYGROUND_VARIABLES } from './playground-examples';

export const PLAYGROUND_ASSETS_PATH = '/playground/assets';

export const PLAYGROUND_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // GraphiQL and CodeMirror set inline styles.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  // 'self' covers ws: and wss: on the same host.
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

export interface PlaygroundConfig {
  /** Path of the GraphQL endpoint (HTTP and WebSocket). */
  endpoint: string;
  keyPlaceholder: string;
  document: string;
  variables: string;
  headers: string;
}

export const defaultPlaygroundConfig = (endpoint = '/graphql'): PlaygroundConfig => ({
  endpoint,
  keyPlaceholder: PLAYGROUND_KEY_PLACEHOLDER,
  document: PLAYGROUND_DOCUMENT,
  variables: PLAYGROUND_VARIABLES,
  headers: PLAYGROUND_HEADERS,
});

/** JSON that is safe inside a <script> element: no `</script>` or `<!--` can end it early. */
const jsonInHtml = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

export function playgroundHtml(config: PlaygroundConfig): string {
  const asset = (name: string) => `${PLAYGROUND_ASSETS_PATH}/${name}`;
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Snapgraph playground</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="${asset('graphiql.min.css')}">
  <link rel="stylesheet" href="${asset('playground.css')}">
</head>
<body>
  <div id="graphiql"><p class="playground-loading">Loading the Snapgraph playground…</p></div>
  <script type="application/json" id="playground-config">${jsonInHtml(config)}</script>
  <script src="${asset('react.production.min.js')}"></script>
  <script src="${asset('react-dom.production.min.js')}"></script>
  <script src="${asset('graphiql.min.js')}"></script>
  <script src="${asset('graphql-ws.min.js')}"></script>
  <script src="${asset('playground.js')}"></script>
</body>
</html>
`;
}

export const PLAYGROUND_CSS = `html, body { margin: 0; height: 100%; }
#graphiql { height: 100vh; }
.playground-loading { font-family: system-ui, sans-serif; padding: 2rem; }
`;

/**
 * GraphiQL with one fetcher per Authorization value: HTTP requests carry the headers typed in the editor, and the
 * graphql-ws client sends the same Authorization in connection_init (the server reads it there, not from HTTP
 * headers). A new key gets a new WebSocket client. While the header still holds the placeholder, no
 * Authorization is sent, so introspection (docs, completion) works before a key is typed.
 */
export const PLAYGROUND_SCRIPT = `(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('playground-config').textContent);
  var httpUrl = new URL(config.endpoint, window.location.href);
  var wsUrl = new URL(httpUrl.href);
  wsUrl.protocol = httpUrl.protocol === 'https:' ? 'wss:' : 'ws:';

  function withoutPlaceholderKey(headers) {
    var result = {};
    Object.keys(headers || {}).forEach(function (name) {
      var value = headers[name];
      var isPlaceholder = name.toLowerCase() === 'authorization' && String(value).indexOf(config.keyPlaceholder) >= 0;
      if (!isPlaceholder) result[name] = value;
    });
    return result;
  }

  function authorizationOf(headers) {
    var names = Object.keys(headers).filter(function (name) { return name.toLowerCase() === 'authorization'; });
    return names.length > 0 ? String(headers[names[0]]) : null;
  }

  var current = null;
  function fetcherFor(authorization) {
    if (current && current.authorization === authorization) return current.fetcher;
    if (current) current.wsClient.dispose();
    var wsClient = graphqlWs.createClient({
      url: wsUrl.href,
      lazy: true,
      retryAttempts: 0,
      connectionParams: authorization === null ? {} : { authorization: authorization },
    });
    current = {
      authorization: authorization,
      wsClient: wsClient,
      fetcher: GraphiQL.createFetcher({ url: httpUrl.href, wsClient: wsClient }),
    };
    return current.fetcher;
  }

  function fetcher(params, options) {
    var headers = withoutPlaceholderKey(options && options.headers);
    return fetcherFor(authorizationOf(headers))(params, Object.assign({}, options, { headers: headers }));
  }

  // GraphiQL 3 fills the variables editor from props or storage only, not from defaultTabs: on a first visit
  // (nothing stored yet) the examples' variables are passed as the initial value.
  function isFirstVisit() {
    try {
      return window.localStorage.getItem('graphiql:tabState') === null;
    } catch (error) {
      return true;
    }
  }

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultTabs: [{ query: config.document, variables: config.variables, headers: config.headers }],
      defaultHeaders: config.headers,
      variables: isFirstVisit() ? config.variables : undefined,
      defaultEditorToolsVisibility: 'headers',
      // The key stays in this page only: not written to localStorage.
      shouldPersistHeaders: false,
    }),
  );
})();
`;
