// Builds the GraphQL schema from the resolver classes (code first); the SDL is emitted to schema/schema.graphql.
import type { GraphQLSchema } from 'graphql';
import { buildSchema } from 'type-graphql';
import { GraphResolver } from './resolvers/graph.resolver';
import { InstanceResolver } from './resolvers/instance.resolver';
import { ViewerResolver } from './resolvers/viewer.resolver';

export const RESOLVERS = [ViewerResolver, InstanceResolver, GraphResolver] as const;

export function buildApiSchema(emitSchemaFile?: string): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [...RESOLVERS],
    // Input is validated in the services, where the rules live; class-validator is not used.
    validate: false,
    emitSchemaFile: emitSchemaFile ? { path: emitSchemaFile, sortedSchema: true } : false,
  });
}
