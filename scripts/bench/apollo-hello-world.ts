// The baselines of bench:api, run as their own process: a bare Apollo Server 5 on express 5
// (@as-integrations/express5) answering `{ hello }`, and `{ instances { … } }` from a list held in memory, shaped as
// Snapgraph's (the same fields, enums and a DateTime scalar serialising a Date), with nothing else: no
// authentication, no database, no limits, no logging.
//
//   node apollo-hello-world.js [instances]    → prints "listening <port>" once it serves on 127.0.0.1
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import { GraphQLScalarType } from 'graphql';

const typeDefs = `
  scalar DateTime
  enum Tier { FREE PROFESSIONAL BUSINESS_CRITICAL VIRTUAL_DEDICATED_CLOUD }
  enum InstanceStatus { CREATING RUNNING RESTORING DELETING }
  enum Availability { AVAILABLE READ_ONLY UNAVAILABLE }
  type Instance { id: ID! name: String! tier: Tier! status: InstanceStatus! availability: Availability! createdAt: DateTime! }
  type Query { hello: String! instances: [Instance!]! }
`;

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 20);
  const instances = Array.from({ length: count }, (_, i) => ({
    id: `6f1c2a9e-3b4d-4e5f-8a7b-${i.toString(16).padStart(12, '0')}`,
    name: `eu-west-graph-${i}`,
    tier: 'PROFESSIONAL',
    status: 'RUNNING',
    availability: 'AVAILABLE',
    createdAt: new Date(Date.UTC(2026, 11, 1, 9, 0, i)),
  }));
  const DateTime = new GraphQLScalarType({ name: 'DateTime', serialize: (value) => (value as Date).toISOString() });
  const apollo = new ApolloServer({ typeDefs, resolvers: { DateTime, Query: { hello: () => 'world', instances: () => instances } } });
  await apollo.start();
  const app = express();
  app.use('/graphql', express.json(), expressMiddleware(apollo));
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
