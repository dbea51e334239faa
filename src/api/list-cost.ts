// The cost limit (query-limits.ts) for a list without pages: before execution it counts as one item, since its length
// is not known; its resolver's answer says how many there are, and the operation is refused then if they take it over
// the limit. Without this, `instances { snapshots(first: 500) { … } }` cost what one instance's snapshots do, whatever
// the number of instances.
import type { MiddlewareFn } from 'type-graphql';
import { UseMiddleware } from 'type-graphql';
import type { ApiContext } from './context';
import { listCostRefusal } from './query-limits';

const costOfItems: MiddlewareFn<ApiContext> = async ({ info, context }, next) => {
  const items: unknown = await next();
  if (Array.isArray(items)) {
    const refusal = listCostRefusal(info, items.length, context.maxQueryCost);
    if (refusal) throw refusal;
  }
  return items;
};

/** On a list field without first/last: its items count in the operation's cost as a page's do. */
export const ListCost = () => UseMiddleware(costOfItems);
