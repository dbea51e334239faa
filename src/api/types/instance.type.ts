import { Field, ID, InputType, Int, ObjectType } from 'type-graphql';
import { ReadsVersionedRows } from '../response-cache';
import { DateTimeScalar } from '../scalars';
import { DEFAULT_ENGINE_VERSION, DEFAULT_MEMORY_GB } from '../../services/instance.service';
import { AvailabilityEnum, EngineVersionEnum, InstanceStatusEnum, TierEnum } from '../enums';

@ObjectType({ simpleResolvers: true })
export class RestoreWindow {
  @Field(() => DateTimeScalar, { description: 'the earliest point in time a restore can reach' })
  earliest: number;
  @Field(() => DateTimeScalar, { description: 'the latest: every write acknowledged before it is recoverable' })
  latest: number;
  @Field(() => String, {
    nullable: true,
    description: "why the window starts later than the tier's pointInTimeWindow allows (a damaged change log, or history from before it existed)",
  })
  reason: string | null;
}

@ObjectType({ simpleResolvers: true })
export class SnapshotSchedule {
  @Field({ description: 'false on FREE: on-demand snapshots only' }) enabled: boolean;
  @Field(() => String, { nullable: true, description: 'ISO-8601 duration between scheduled snapshots (P1D, PT1H); null when not enabled' })
  interval: string | null;
  @Field(() => String, { nullable: true, description: 'ISO-8601 duration a snapshot is kept (P7D, P30D, P60D); null on FREE' })
  retention: string | null;
  @Field({ description: 'FREE: only the most recent snapshot is kept' }) keepLatestOnly: boolean;
  @Field(() => DateTimeScalar, { nullable: true }) nextSnapshotAt: number | null;
}

/** Resolved from an InstanceEntity; computed fields live in InstanceResolver. */
@ObjectType('Instance', { simpleResolvers: true })
export class Instance {
  @ReadsVersionedRows()
  @Field(() => ID) id: string;
  @ReadsVersionedRows()
  @Field() name: string;
  @ReadsVersionedRows()
  @Field(() => TierEnum) tier: string;
  @ReadsVersionedRows()
  @Field(() => Int) memoryGB: number;
  @ReadsVersionedRows()
  @Field(() => Int, {
    description: 'capacity: the data the instance can hold; restores and writes beyond it fail with CAPACITY_EXCEEDED',
  })
  storageGB: number;
  @ReadsVersionedRows()
  @Field(() => EngineVersionEnum) engineVersion: string;
  @ReadsVersionedRows()
  @Field(() => InstanceStatusEnum) status: string;
  @ReadsVersionedRows()
  @Field(() => AvailabilityEnum) availability: string;
  @ReadsVersionedRows()
  @Field(() => DateTimeScalar) createdAt: number;
}

@InputType()
export class CreateInstanceInput {
  @Field() name: string;
  @Field(() => TierEnum) tier: TierEnum;
  // Null, as an explicit null overrides these defaults, means the default too (InstanceService.validateInput).
  @Field(() => Int, { nullable: true, defaultValue: DEFAULT_MEMORY_GB }) memoryGB: number | null;
  @Field(() => EngineVersionEnum, { nullable: true, defaultValue: DEFAULT_ENGINE_VERSION }) engineVersion: EngineVersionEnum | null;
}

@ObjectType({ simpleResolvers: true })
export class InstanceAvailabilityEvent {
  @Field(() => ID) instanceId: string;
  @Field(() => AvailabilityEnum) availability: string;
  @Field(() => AvailabilityEnum, { nullable: true }) previousAvailability: string | null;
  @Field(() => InstanceStatusEnum) status: string;
  @Field(() => String, { nullable: true }) reason: string | null;
  @Field(() => DateTimeScalar) at: string;
}
