import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import type { FileInspection as Inspection } from '../../services/file-inspection.service';
import type { Principal } from '../../services/principal';
import { type ApiContext, Caller } from '../context';
import { type FileUpload, UploadScalar } from '../scalars';
import { FileInspection } from '../types/file-inspection.type';
import { openUpload } from './restore.resolver';

@Resolver()
export class FileInspectionResolver {
  @Mutation(() => FileInspection, { description: 'reads an uploaded file and says what it is and what it holds; changes nothing' })
  async inspectFile(
    @Caller() _caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('file', () => UploadScalar) file: Promise<FileUpload>,
  ): Promise<Inspection> {
    return services.inspections.inspect(openUpload(await file));
  }
}
