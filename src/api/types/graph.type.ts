import { Field, ID, InputType, Int, ObjectType } from 'type-graphql';
import type { PropertyMap } from '../../graph/records';
import { JSONObjectScalar } from '../scalars';
import { PageInfo } from './common.type';

@ObjectType('Node', { simpleResolvers: true })
export class GraphNode {
  @Field(() => ID) id: string;
  @Field(() => [String]) labels: string[];
  @Field(() => JSONObjectScalar) properties: PropertyMap;
}

@ObjectType('Relationship', { simpleResolvers: true })
export class GraphRelationship {
  @Field(() => ID) id: string;
  @Field() type: string;
  @Field(() => ID) startNodeId: string;
  @Field(() => ID) endNodeId: string;
  @Field(() => JSONObjectScalar) properties: PropertyMap;
}

@ObjectType({ simpleResolvers: true })
export class NodeEdge {
  @Field() cursor: string;
  @Field(() => GraphNode) node: GraphNode;
}

@ObjectType({ simpleResolvers: true })
export class NodeConnection {
  @Field(() => [NodeEdge]) edges: NodeEdge[];
  @Field(() => PageInfo) pageInfo: PageInfo;
  @Field(() => Int) totalCount: number;
}

@ObjectType({ simpleResolvers: true })
export class RelationshipEdge {
  @Field() cursor: string;
  @Field(() => GraphRelationship) node: GraphRelationship;
}

@ObjectType({ simpleResolvers: true })
export class RelationshipConnection {
  @Field(() => [RelationshipEdge]) edges: RelationshipEdge[];
  @Field(() => PageInfo) pageInfo: PageInfo;
  @Field(() => Int) totalCount: number;
}

@InputType()
export class NodeInput {
  @Field(() => [String]) labels: string[];
  @Field(() => JSONObjectScalar, { nullable: true }) properties?: PropertyMap | null;
}

@InputType({ description: 'labels and properties replace the node\'s own when given; null or absent keeps them' })
export class NodeUpdateInput {
  @Field(() => ID) id: string;
  @Field(() => [String], { nullable: true }) labels?: string[] | null;
  @Field(() => JSONObjectScalar, { nullable: true }) properties?: PropertyMap | null;
}

@InputType()
export class RelationshipInput {
  @Field() type: string;
  @Field(() => ID) startNodeId: string;
  @Field(() => ID) endNodeId: string;
  @Field(() => JSONObjectScalar, { nullable: true }) properties?: PropertyMap | null;
}
