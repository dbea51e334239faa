import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import type { OperationEntity } from '../../entities/operation.entity';
import type { SnapshotEntity } from '../../entities/snapshot.entity';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { ListCost } from '../list-cost';
import { ReadsVersionedRows } from '../response-cache';
import { GraphStats } from '../types/common.type';
import { CreateInstanceInput, Instance, SnapshotSchedule } from '../types/instance.type';
import { Operation } from '../types/operation.type';
import { Snapshot, SnapshotConnection, SnapshotFilter, StorageUsage } from '../types/snapshot.type';
import { DEFAULT_SNAPSHOT_PAGE, snapshotConnection } from './snapshot.resolver';

@Resolver(() => Instance)
export class InstanceResolver {
  @ReadsVersionedRows()
  @ListCost()
  @Query(() => [Instance])
  instances(@Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<InstanceEntity[]> {
    return services.instances.list(caller);
  }

  @ReadsVersionedRows()
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

  @FieldResolver(() => StorageUsage, { description: "the instance's snapshots and change history, as stored" })
  backupStorage(@Root() instance: InstanceEntity, @Ctx() { services }: ApiContext): Promise<StorageUsage> {
    return services.backups.usage({ tenantId: instance.tenantId, instanceId: instance.id });
  }

  @FieldResolver(() => SnapshotSchedule)
  schedule(@Root() instance: InstanceEntity, @Ctx() { services }: ApiContext): SnapshotSchedule {
    return services.instances.schedule(instance);
  }

  @ReadsVersionedRows()
  @FieldResolver(() => Snapshot, { nullable: true, description: 'set when the instance was created from a snapshot' })
  sourceSnapshot(
    @Root() instance: InstanceEntity,
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
  ): Promise<SnapshotEntity | null> | null {
    return instance.sourceSnapshotId ? services.snapshots.find(caller, instance.sourceSnapshotId) : null;
  }

  @FieldResolver(() => Operation, { nullable: true, description: 'the operation running on or queued for this instance, if any' })
  currentOperation(@Root() instance: InstanceEntity, @Ctx() { services }: ApiContext): Promise<OperationEntity | null> {
    return services.operations.current(instance.id);
  }

  @ReadsVersionedRows()
  @FieldResolver(() => SnapshotConnection, { description: 'newest first' })
  snapshots(
    @Root() instance: InstanceEntity,
    @Caller() caller: Principal,
    @Ctx() context: ApiContext,
    @Arg('first', () => Int, { nullable: true, defaultValue: DEFAULT_SNAPSHOT_PAGE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Arg('filter', () => SnapshotFilter, { nullable: true }) filter: SnapshotFilter | null,
  ): Promise<SnapshotConnection> {
    return snapshotConnection(context, caller, instance.id, first, after, filter);
  }
}
