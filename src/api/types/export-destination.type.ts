import { Field, ID, InputType, ObjectType } from 'type-graphql';
import { DateTimeScalar } from '../scalars';

@ObjectType('ExportDestination', { simpleResolvers: true, description: "A tenant's own S3-compatible bucket that snapshots are exported to. Its keys are never shown." })
export class ExportDestination {
  @Field(() => ID) id: string;
  @Field() name: string;
  @Field({ description: 's3://bucket/optional/prefix' }) url: string;
  @Field(() => String, { nullable: true, description: "S3 endpoint URL for S3-compatible services; null for the provider's default" })
  endpoint: string | null;
  @Field(() => String, { nullable: true }) region: string | null;
  @Field(() => [ID], { description: 'instances whose snapshots are copied there as soon as they complete' })
  autoExportInstanceIds: string[];
  @Field(() => DateTimeScalar) createdAt: number;
  @Field(() => DateTimeScalar, { nullable: true, description: 'when an export to it last succeeded' }) lastExportAt: number | null;
  @Field(() => String, {
    nullable: true,
    description: 'why the last export to it failed (cleared by the next success); failed automatic exports are retried with backoff',
  })
  lastError: string | null;
}

@InputType('ExportDestinationInput')
export class ExportDestinationInput {
  @Field() name: string;
  @Field({ description: 's3://bucket/optional/prefix' }) url: string;
  @Field(() => String, { nullable: true }) endpoint?: string | null;
  @Field(() => String, { nullable: true }) region?: string | null;
  @Field() accessKeyId: string;
  @Field() secretAccessKey: string;
  @Field(() => [ID], { nullable: true }) autoExportInstanceIds?: string[] | null;
}
