import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { RoleEnum } from '../enums';
import { ApiKey, ApiKeyWithSecret, Viewer } from '../types/viewer.type';

@Resolver()
export class ViewerResolver {
  @Query(() => Viewer)
  viewer(@Caller() caller: Principal): Viewer {
    return { tenantId: caller.tenantId, tenantName: caller.tenantName, role: caller.role, apiKeyName: caller.apiKeyName };
  }

  @Query(() => [ApiKey], { description: "ADMIN: the tenant's API keys, without secrets" })
  async apiKeys(@Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<ApiKey[]> {
    const keys = await services.tenants.listApiKeys(caller);
    return keys.map(({ id, name, role, createdAt, lastUsedAt }) => ({ id, name, role, createdAt, lastUsedAt }));
  }

  @Mutation(() => ApiKeyWithSecret)
  async createApiKey(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('name') name: string,
    @Arg('role', () => RoleEnum) role: RoleEnum,
  ): Promise<ApiKeyWithSecret> {
    const { key, secret } = await services.tenants.createApiKey(caller, name, role);
    return { id: key.id, name: key.name, role: key.role, secret };
  }

  @Mutation(() => Boolean)
  async revokeApiKey(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<boolean> {
    await services.tenants.revokeApiKey(caller, id);
    return true;
  }
}
