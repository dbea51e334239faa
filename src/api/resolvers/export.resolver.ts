import { Arg, Ctx, ID, Mutation, Resolver } from 'type-graphql';
import type { ExportLink } from '../../services/export.service';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { SnapshotExport } from '../types/snapshot.type';
import { ExportFormatEnum } from '../enums';

@Resolver()
export class ExportResolver {
  @Mutation(() => SnapshotExport)
  exportSnapshot(
    @Caller() caller: Principal,
    @Ctx() { services, origin }: ApiContext,
    @Arg('id', () => ID) id: string,
  ): Promise<ExportLink> {
    return services.exports.createLink(caller, id, origin);
  }

  @Mutation(() => SnapshotExport, { description: 'the snapshot in another format; exportSnapshot(id) stays and equals exportSnapshotAs(id, ARCHIVE)' })
  exportSnapshotAs(
    @Caller() caller: Principal,
    @Ctx() { services, origin }: ApiContext,
    @Arg('id', () => ID) id: string,
    @Arg('format', () => ExportFormatEnum) format: ExportFormatEnum,
  ): Promise<ExportLink> {
    return services.exports.createLink(caller, id, origin, format);
  }
}
