// Every GraphQL response says `Cache-Control: no-store`: what it shows is one caller's and changes at any moment.
// Apollo's cache-control plugin said the same (no field has a cache hint), but it wrapped every field's resolver to
// work that out, on every request; this says it once per response.
import type { ApolloServerPlugin, GraphQLRequestListener } from '@apollo/server';

const noStore: GraphQLRequestListener<object> = {
  willSendResponse: async ({ response }) => {
    response.http.headers.set('cache-control', 'no-store');
  },
};

export function uncacheableResponses(): ApolloServerPlugin<object> {
  return { requestDidStart: async () => noStore };
}
