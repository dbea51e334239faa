import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import type { OperationEntity } from '../../entities/operation.entity';
import type { SnapshotEntity } from '../../entities/snapshot.entity';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { ReadsVersionedRows } from '../response-cache';
import { decodeAfter, encodeCursor } from '../cursor';
import { ArchiveFormatEnum } from '../enums';
import { pageInfo } from '../types/common.type';
import { Instance } from '../types/instance.type';
import { Operation } from '../types/operation.type';
import { formatOf, Snapshot, SnapshotConnection, SnapshotFilter, StorageUsage } from '../types/snapshot.type';

const cursorOf = (snapshot: SnapshotEntity) => encodeCursor({ connection: 'snapshots', instanceId: snapshot.instanceId }, [snapshot.createdAt, snapshot.id]);
/** A page's default size. An explicit `first: null` (clients send it for an unset variable) means it too. */
export const DEFAULT_SNAPSHOT_PAGE = 20;

export function decodeSnapshotCursor(instanceId: string, after: string | null | undefined): { createdAt: number; id: string } | null {
  const cursor = decodeAfter(after, { connection: 'snapshots', instanceId }, ['integer', 'string']);
  return cursor && { createdAt: cursor[0] as number, id: cursor[1] as string };
}

/** One page of an instance's history as a Relay connection (shared by Query.snapshots and Instance.snapshots). */
export async function snapshotConnection(
  context: ApiContext,
  caller: Principal,
  instanceId: string,
  first: number | null,
  after: string | null,
  filter: SnapshotFilter | null,
): Promise<SnapshotConnection> {
  const page = await context.services.snapshots.list(caller, instanceId, first ?? DEFAULT_SNAPSHOT_PAGE, decodeSnapshotCursor(instanceId, after), filter ?? {});
  return {
    edges: page.items.map((snapshot) => ({ cursor: cursorOf(snapshot), node: snapshot })),
    pageInfo: pageInfo(page.items, cursorOf, page.hasNextPage, after),
    totalCount: page.totalCount,
  };
}

@Resolver(() => Snapshot)
export class SnapshotResolver {
  @ReadsVersionedRows()
  @Query(() => Snapshot, { nullable: true })
  snapshot(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<SnapshotEntity | null> {
    return services.snapshots.find(caller, id);
  }

  @ReadsVersionedRows()
  @Query(() => SnapshotConnection, { description: 'newest first' })
  async snapshots(
    @Caller() caller: Principal,
    @Ctx() context: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('first', () => Int, { nullable: true, defaultValue: DEFAULT_SNAPSHOT_PAGE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Arg('filter', () => SnapshotFilter, { nullable: true }) filter: SnapshotFilter | null,
  ): Promise<SnapshotConnection> {
    await context.services.instances.require(caller, instanceId);
    return snapshotConnection(context, caller, instanceId, first, after, filter);
  }

  @Mutation(() => Snapshot, { description: 'on-demand snapshot; returns at once with status PENDING or IN_PROGRESS' })
  createSnapshot(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('description', () => String, { nullable: true }) description: string | null,
  ): Promise<SnapshotEntity> {
    return services.snapshots.requestSnapshot(caller, instanceId, description ?? null);
  }

  @Mutation(() => Boolean)
  async deleteSnapshot(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<boolean> {
    await services.snapshots.remove(caller, id);
    return true;
  }

  @Mutation(() => Operation, {
    description:
      'Reads every stored byte of the snapshot back, checks every checksum, and checks that it restores to exactly its recorded contents, without touching any instance. A VERIFY operation; a failure is FAILED with code INVALID_BACKUP_FILE and the snapshot\'s error says what is damaged.',
  })
  verifySnapshot(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<OperationEntity> {
    return services.verify.requestVerify(caller, id);
  }

  @Query(() => StorageUsage, { description: "the whole tenant's backup storage" })
  usage(@Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<StorageUsage> {
    return services.backups.usage({ tenantId: caller.tenantId });
  }

  @ReadsVersionedRows()
  @FieldResolver(() => Instance, { nullable: true })
  instance(@Root() snapshot: SnapshotEntity, @Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<InstanceEntity | null> {
    return services.instances.find(caller, snapshot.instanceId);
  }

  @ReadsVersionedRows()
  @FieldResolver(() => ArchiveFormatEnum)
  format(@Root() snapshot: SnapshotEntity): ArchiveFormatEnum {
    return formatOf(snapshot.engineVersion);
  }

  @ReadsVersionedRows()
  @FieldResolver(() => Boolean)
  exportable(@Root() snapshot: SnapshotEntity): boolean {
    return snapshot.status === 'COMPLETED';
  }

  @ReadsVersionedRows()
  @FieldResolver(() => Boolean, {
    description: 'true only in a snapshotUpdated event that announces the snapshot was deleted or expired',
  })
  removed(@Root() snapshot: SnapshotEntity & { removed?: boolean }): boolean {
    return snapshot.removed === true;
  }
}
