import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { ExportDestinationEntity } from '../../entities/export-destination.entity';
import type { OperationEntity } from '../../entities/operation.entity';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { ExportDestination, ExportDestinationInput } from '../types/export-destination.type';
import { Operation } from '../types/operation.type';

@Resolver(() => ExportDestination)
export class ExportDestinationResolver {
  @Query(() => [ExportDestination], { description: "ADMIN. The tenant's export destinations." })
  exportDestinations(@Caller() caller: Principal, @Ctx() { services }: ApiContext): Promise<ExportDestinationEntity[]> {
    return services.destinations.list(caller);
  }

  @Mutation(() => ExportDestination, {
    description:
      'ADMIN. The credentials are checked first (a probe object is written and deleted), then stored\nencrypted under the master key; they are never returned or logged.',
  })
  createExportDestination(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('input', () => ExportDestinationInput) input: ExportDestinationInput,
  ): Promise<ExportDestinationEntity> {
    return services.destinations.create(caller, input);
  }

  @Mutation(() => Boolean, { description: 'ADMIN. Exports already copied stay in the bucket.' })
  deleteExportDestination(@Caller() caller: Principal, @Ctx() { services }: ApiContext, @Arg('id', () => ID) id: string): Promise<boolean> {
    return services.destinations.remove(caller, id);
  }

  @Mutation(() => Operation, {
    description:
      "ADMIN. Copies the snapshot's archive (the same bytes as its exportSnapshot download) to the\ndestination as <prefix>/<fileName>, with its sha256 and snapshot id in the object's metadata: an EXPORT operation.\nWhen another snapshot of the tenant has that fileName (instance names alike once made safe, taken in one second), or\nan object holding other bytes is there, the name is <instance-name>-<stamp>-<snapshot id>.backup: no copy overwrites another.",
  })
  exportSnapshotTo(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('snapshotId', () => ID) snapshotId: string,
    @Arg('destinationId', () => ID) destinationId: string,
  ): Promise<OperationEntity> {
    return services.destinations.exportSnapshotTo(caller, snapshotId, destinationId);
  }
}
