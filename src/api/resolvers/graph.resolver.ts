import { type FragmentDefinitionNode, type GraphQLResolveInfo, Kind, type SelectionSetNode } from 'graphql';
import { Arg, Ctx, ID, Info, Int, Mutation, Query, Resolver } from 'type-graphql';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { type CursorList, decodeAfter, encodeCursor } from '../cursor';
import { pageInfo } from '../types/common.type';
import {
  GraphNode,
  GraphRelationship,
  NodeConnection,
  NodeInput,
  NodeUpdateInput,
  RelationshipConnection,
  RelationshipInput,
} from '../types/graph.type';

// An explicit `first: null` (clients send it for an unset variable) means the default, as an omitted one does.
const DEFAULT_PAGE = 100;
const cursorsOf = (list: CursorList) => (item: { id: string }) => encodeCursor(list, [item.id]);
const afterId = (list: CursorList, after: string | null) => decodeAfter(after, list, ['string'])?.[0] as string | undefined;

@Resolver()
export class GraphResolver {
  @Query(() => NodeConnection)
  async nodes(
    @Caller() caller: Principal,
    @Ctx() { services, answerBudget }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('label', () => String, { nullable: true }) label: string | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: DEFAULT_PAGE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
  ): Promise<NodeConnection> {
    const list: CursorList = { connection: 'nodes', instanceId };
    const page = await answerBudget.spend(async (maxBytes) => {
      const read = await services.graph.nodes(caller, instanceId, label ?? undefined, first ?? DEFAULT_PAGE, afterId(list, after), maxBytes);
      return { value: read, bytes: read.bytes };
    });
    const cursorOf = cursorsOf(list);
    return {
      edges: page.items.map((node) => ({ cursor: cursorOf(node), node })),
      pageInfo: pageInfo(page.items, cursorOf, page.hasNextPage, after),
      totalCount: page.totalCount,
    };
  }

  @Query(() => RelationshipConnection)
  async relationships(
    @Caller() caller: Principal,
    @Ctx() { services, answerBudget }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('type', () => String, { nullable: true }) type: string | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: DEFAULT_PAGE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
  ): Promise<RelationshipConnection> {
    const list: CursorList = { connection: 'relationships', instanceId };
    const page = await answerBudget.spend(async (maxBytes) => {
      const read = await services.graph.relationships(caller, instanceId, type ?? undefined, first ?? DEFAULT_PAGE, afterId(list, after), maxBytes);
      return { value: read, bytes: read.bytes };
    });
    const cursorOf = cursorsOf(list);
    return {
      edges: page.items.map((node) => ({ cursor: cursorOf(node), node })),
      pageInfo: pageInfo(page.items, cursorOf, page.hasNextPage, after),
      totalCount: page.totalCount,
    };
  }

  @Mutation(() => [GraphNode])
  createNodes(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('nodes', () => [NodeInput]) nodes: NodeInput[],
  ): Promise<GraphNode[]> {
    return services.graph.createNodes(caller, instanceId, nodes);
  }

  @Mutation(() => [GraphNode], { description: 'replaces labels and/or properties of existing nodes; all or nothing (NOT_FOUND names a missing id)' })
  async updateNodes(
    @Caller() caller: Principal,
    @Ctx() { services, answerBudget }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('nodes', () => [NodeUpdateInput]) nodes: NodeUpdateInput[],
    @Info() info: GraphQLResolveInfo,
  ): Promise<GraphNode[]> {
    const withProperties = info.fieldNodes.some((field) => field.selectionSet && selects(field.selectionSet, 'properties', info.fragments));
    if (!withProperties) return (await services.graph.updateNodes(caller, instanceId, nodes, { withProperties })).nodes;
    return answerBudget.spend(async (maxAnswerBytes) => {
      const { nodes: updated, bytes } = await services.graph.updateNodes(caller, instanceId, nodes, { withProperties, maxAnswerBytes });
      return { value: updated, bytes };
    });
  }

  @Mutation(() => [GraphRelationship])
  createRelationships(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('relationships', () => [RelationshipInput]) relationships: RelationshipInput[],
  ): Promise<GraphRelationship[]> {
    return services.graph.createRelationships(caller, instanceId, relationships);
  }

  @Mutation(() => Int, { description: 'deletes the nodes and their relationships; returns how many nodes were deleted' })
  deleteNodes(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('ids', () => [ID]) ids: string[],
  ): Promise<number> {
    return services.graph.deleteNodes(caller, instanceId, ids);
  }
}

/** Whether a selection set asks for the field `name` (directly, or in a fragment; @skip and @include are not weighed). */
function selects(set: SelectionSetNode, name: string, fragments: Record<string, FragmentDefinitionNode>): boolean {
  return set.selections.some((selection) => {
    if (selection.kind === Kind.FIELD) return selection.name.value === name;
    const fragment = selection.kind === Kind.INLINE_FRAGMENT ? selection : fragments[selection.name.value];
    return fragment !== undefined && selects(fragment.selectionSet, name, fragments);
  });
}
