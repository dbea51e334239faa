// The e2e harness: real servers on free ports, GraphQL over HTTP and WebSocket, PostgreSQL when present.
//
//   describe('snapshots', () => {
//     const suite = serverPerSuite({ config: { tiers: { FREE: { maxNodes: 50 } } } }); // one server per block
//     it('…', async () => {
//       const instance = await createInstance(suite.server, { tier: 'FREE' });         // as the bootstrap ADMIN
//       const viewer = await createKey(suite.server, suite.server.adminKey, 'VIEWER');
//       expectCode(await gql(suite.server, MUTATION, { id: instance.id }, viewer.secret), 'FORBIDDEN');
//       const progress = subscribe(suite.server, suite.server.adminKey, SUBSCRIPTION, { id });
//       await progress.waitFor((result) => result.data?.operationProgress.status === 'SUCCEEDED');
//     });
//   });
//
// Servers, sockets, temp dirs and databases started inside a test are released after it; those started in a
// `before` hook are released by serverPerSuite's `after` or, at the latest, when the run ends (cleanup.ts).
// A server started with startServer() inside a test may be restarted (same data dir, new port) or killed.
export * from './archives';
export * from './cleanup';
export * from './cuttable-proxy';
export * from './graphql';
export * from './postgres';
export * from './server';
export * from './snapshots';
export * from './tus';
export * from './wait';
export * from './ws';
export * from './volumes';
export * from './s3';
export * from './replicas';
export * from './graph-files';
export * from './graphml-files';
export * from './seeded-random';
