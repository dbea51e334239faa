// Builds the GraphQL schema from the resolver classes (code first); the SDL is emitted to schema/schema.graphql.
import type { GraphQLSchema } from 'graphql';
import { createPubSub } from '@graphql-yoga/subscription';
import { buildSchema } from 'type-graphql';
import { ExportDestinationResolver } from './resolvers/export-destination.resolver';
import { ExportResolver } from './resolvers/export.resolver';
import { FileInspectionResolver } from './resolvers/file-inspection.resolver';
import { GraphResolver } from './resolvers/graph.resolver';
import { InstanceResolver } from './resolvers/instance.resolver';
import { OperationResolver } from './resolvers/operation.resolver';
import { PointInTimeResolver } from './resolvers/point-in-time.resolver';
import { RestoreResolver } from './resolvers/restore.resolver';
import { SnapshotResolver } from './resolvers/snapshot.resolver';
import { AvailabilityEventResolver, SubscriptionResolver } from './resolvers/subscription.resolver';
import { ViewerResolver } from './resolvers/viewer.resolver';

export const RESOLVERS = [
  ViewerResolver,
  InstanceResolver,
  GraphResolver,
  SnapshotResolver,
  OperationResolver,
  RestoreResolver,
  PointInTimeResolver,
  ExportResolver,
  FileInspectionResolver,
  ExportDestinationResolver,
  SubscriptionResolver,
  AvailabilityEventResolver,
] as const;

export function buildApiSchema(emitSchemaFile?: string): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [...RESOLVERS],
    // Input is validated in the services, where the rules live; class-validator is not used.
    validate: false,
    // Every subscription brings its own `subscribe` (services/watch.ts); type-graphql still insists on a PubSub.
    pubSub: createPubSub(),
    emitSchemaFile: emitSchemaFile ? { path: emitSchemaFile, sortedSchema: true } : false,
  });
}
