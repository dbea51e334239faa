import { Field, Float, Int, ObjectType } from 'type-graphql';

@ObjectType({ simpleResolvers: true })
export class PageInfo {
  @Field() hasNextPage: boolean;
  @Field() hasPreviousPage: boolean;
  @Field(() => String, { nullable: true }) startCursor: string | null;
  @Field(() => String, { nullable: true }) endCursor: string | null;
}

@ObjectType({ simpleResolvers: true })
export class LabelCount {
  @Field() name: string;
  @Field(() => Int) count: number;
}

@ObjectType({ simpleResolvers: true })
export class GraphStats {
  @Field(() => Int) nodeCount: number;
  @Field(() => Int) relationshipCount: number;
  @Field(() => [LabelCount]) labels: LabelCount[];
  @Field(() => [LabelCount]) relationshipTypes: LabelCount[];
  @Field(() => Float, { description: "bytes the data takes in the instance's store" }) storeSizeBytes: number;
}

/** Builds a Relay PageInfo for a forward page. */
export function pageInfo<T>(items: T[], cursorOf: (item: T) => string, hasNextPage: boolean, after?: string | null): PageInfo {
  return {
    hasNextPage,
    hasPreviousPage: Boolean(after),
    startCursor: items.length > 0 ? cursorOf(items[0]) : null,
    endCursor: items.length > 0 ? cursorOf(items[items.length - 1]) : null,
  };
}
