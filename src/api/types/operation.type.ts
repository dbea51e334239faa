import { Field, Float, ID, Int, ObjectType } from 'type-graphql';
import { OperationKindEnum, OperationStatusEnum } from '../enums';
import { DateTimeScalar } from '../scalars';
import { PageInfo } from './common.type';

@ObjectType()
export class OperationError {
  @Field() code: string;
  @Field() message: string;
}

@ObjectType('Operation')
export class Operation {
  @Field(() => ID) id: string;
  @Field(() => OperationKindEnum) kind: string;
  @Field(() => OperationStatusEnum) status: string;
  @Field(() => String, { nullable: true, description: 'current phase in words, e.g. preparing, loading, verifying, swapping' })
  phase: string | null;
  @Field(() => Float) bytesDone: number;
  @Field(() => Float, { nullable: true }) bytesTotal: number | null;
  @Field(() => ID) instanceId: string;
  @Field(() => ID, { nullable: true }) snapshotId: string | null;
  @Field(() => DateTimeScalar) createdAt: number;
  @Field(() => DateTimeScalar, { nullable: true }) startedAt: number | null;
  @Field(() => DateTimeScalar, { nullable: true }) finishedAt: number | null;
}

@ObjectType()
export class OperationEdge {
  @Field() cursor: string;
  @Field(() => Operation) node: Operation;
}

@ObjectType()
export class OperationConnection {
  @Field(() => [OperationEdge]) edges: OperationEdge[];
  @Field(() => PageInfo) pageInfo: PageInfo;
  @Field(() => Int) totalCount: number;
}
