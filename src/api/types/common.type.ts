import { Field, Float, Int, ObjectType } from 'type-graphql';
import { ReadsVersionedRows } from '../response-cache';

@ObjectType({ simpleResolvers: true })
export class PageInfo {
  @ReadsVersionedRows()
  @Field() hasNextPage: boolean;
  @ReadsVersionedRows()
  @Field() hasPreviousPage: boolean;
  @ReadsVersionedRows()
  @Field(() => String, { nullable: true }) startCursor: string | null;
  @ReadsVersionedRows()
  @Field(() => String, { nullable: true }) endCursor: string | null;
}

@ObjectType({ simpleResolvers: true })
export class LabelCount {
  @ReadsVersionedRows()
  @Field() name: string;
  @ReadsVersionedRows()
  @Field(() => Int) count: number;
}

@ObjectType({ simpleResolvers: true })
export class GraphStats {
  @ReadsVersionedRows()
  @Field(() => Int) nodeCount: number;
  @ReadsVersionedRows()
  @Field(() => Int) relationshipCount: number;
  @ReadsVersionedRows()
  @Field(() => [LabelCount]) labels: LabelCount[];
  @ReadsVersionedRows()
  @Field(() => [LabelCount]) relationshipTypes: LabelCount[];
  @ReadsVersionedRows()
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
