import { Arg, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { GraphStats } from '../types/common.type';
import { CreateInstanceInput, Instance, SnapshotSchedule } from '../types/instance.type';

@Resolver(() => Instance)
export class InstanceResolver {
  @Query(() => [Instance])
  instances(@Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<InstanceEntity[]> {
    return services.instances.list(caller);
  }

  @Query(() => Instance, { nullable: true, description: 'null when missing or owned by another tenant' })
  instance(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('id', () => ID) id: string,
  ): Promise<InstanceEntity | null> {
    return services.instances.find(caller, id);
  }

  @Mutation(() => Instance)
  createInstance(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('input', () => CreateInstanceInput) input: CreateInstanceInput,
  ): Promise<InstanceEntity> {
    return services.instances.create(caller, input);
  }

  @Mutation(() => Boolean)
  async deleteInstance(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<boolean> {
    await services.instances.remove(caller, id);
    return true;
  }

  @FieldResolver(() => GraphStats)
  stats(@Root() instance: InstanceEntity, @Ctx() { services }: ApiContext): Promise<GraphStats> {
    return services.instances.stats(instance);
  }

  @FieldResolver(() => SnapshotSchedule)
  schedule(@Root() instance: InstanceEntity, @Ctx() { services }: ApiContext): SnapshotSchedule {
    return services.instances.schedule(instance);
  }
}
