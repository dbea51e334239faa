// What every resolver receives: the caller (null until a valid key is shown) and the services.
import { createParameterDecorator } from 'type-graphql';
import { unauthenticated } from '../errors/app-error';
import type { Principal } from '../services/principal';
import type { Services } from '../services/services';
import type { AnswerBudget } from './answer-budget';

export interface ApiContext {
  principal: Principal | null;
  services: Services;
  requestId: string;
  /** Scheme, host and port the client used: the base of export URLs when SNAPGRAPH_PUBLIC_URL is unset. */
  origin: string;
  /** The cost limit (SNAPGRAPH_MAX_QUERY_COST), for lists whose length only their resolver knows (ListCost). */
  maxQueryCost: number;
  /** The stored data the operation's answer may still carry (graph pages, update answers). */
  answerBudget: AnswerBudget;
}

/** Injects the authenticated caller; a request without a valid API key is UNAUTHENTICATED. */
export function Caller() {
  return createParameterDecorator<ApiContext>(({ context }) => {
    if (!context.principal) throw unauthenticated();
    return context.principal;
  });
}
