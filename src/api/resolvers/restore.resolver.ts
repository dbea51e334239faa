import { Readable } from 'node:stream';
import { Arg, Ctx, ID, Mutation, Resolver } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import type { OperationEntity } from '../../entities/operation.entity';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { type FileUpload, UploadScalar } from '../scalars';
import { CreateInstanceInput, Instance } from '../types/instance.type';
import { Operation } from '../types/operation.type';

@Resolver()
export class RestoreResolver {
  @Mutation(() => Operation, {
    description: `Overwrites the data of instanceId (default: the snapshot's own instance) with the snapshot.
confirm must be exactly "RESTORE", else CONFIRMATION_REQUIRED and nothing happens.`,
  })
  restoreSnapshot(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('snapshotId', () => ID) snapshotId: string,
    @Arg('confirm') confirm: string,
    @Arg('instanceId', () => ID, { nullable: true }) instanceId: string | null,
  ): Promise<OperationEntity> {
    return services.restores.requestRestore(caller, snapshotId, confirm, instanceId ?? null);
  }

  @Mutation(() => Instance, {
    description: 'a new, separately billed instance holding the snapshot\'s data; tier and size may differ from the source',
  })
  createInstanceFromSnapshot(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('snapshotId', () => ID) snapshotId: string,
    @Arg('input', () => CreateInstanceInput) input: CreateInstanceInput,
  ): Promise<InstanceEntity> {
    return services.restores.requestCreateFromSnapshot(caller, snapshotId, input);
  }

  @Mutation(() => Operation, {
    description: 'file: a .backup or .dump archive, an APOC JSON lines or Cypher export, a .tar of neo4j-admin import CSV files, or a .tar holding one; confirm must be exactly RESTORE',
  })
  async restoreFromFile(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('file', () => UploadScalar) file: Promise<FileUpload>,
    @Arg('confirm') confirm: string,
  ): Promise<OperationEntity> {
    // restoreFromFile authorizes before it reads a byte of the file.
    return services.uploads.restoreFromFile(caller, instanceId, openUpload(await file), confirm);
  }
}

/**
 * The uploaded bytes. When createReadStream() throws (the upload has already failed), that failure becomes the
 * stream's error, which the service reports.
 */
export function openUpload(upload: FileUpload): Readable {
  try {
    return upload.createReadStream() as Readable;
  } catch (error) {
    return new Readable({
      read() {
        this.destroy(error as Error);
      },
    });
  }
}
