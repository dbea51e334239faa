import { Field, Float, ID, Int, ObjectType } from 'type-graphql';
import { OPERATION_PHASES } from '../../jobs/operation-phases';
import { OperationKindEnum, OperationStatusEnum } from '../enums';
import { DateTimeScalar } from '../scalars';
import { PageInfo } from './common.type';

@ObjectType({ simpleResolvers: true })
export class OperationError {
  @Field() code: string;
  @Field() message: string;
}

@ObjectType('Operation', { simpleResolvers: true })
export class Operation {
  @Field(() => ID) id: string;
  @Field(() => OperationKindEnum) kind: string;
  @Field(() => OperationStatusEnum) status: string;
  @Field(() => String, { nullable: true, description: `current phase, one of: ${OPERATION_PHASES.join(', ')}` })
  phase: string | null;
  @Field(() => Float) bytesDone: number;
  @Field(() => Float, { nullable: true }) bytesTotal: number | null;
  @Field(() => ID) instanceId: string;
  @Field(() => ID, { nullable: true }) snapshotId: string | null;
  @Field(() => DateTimeScalar) createdAt: number;
  @Field(() => DateTimeScalar, { nullable: true }) startedAt: number | null;
  @Field(() => DateTimeScalar, { nullable: true }) finishedAt: number | null;
  @Field(() => DateTimeScalar, { nullable: true, description: 'the point in time a point-in-time restore targets' })
  pointInTime: number | null;
  @Field(() => ID, { nullable: true, description: 'the instance whose history a point-in-time restore reads' })
  sourceInstanceId: string | null;
  @Field(() => Int, { description: '1 for the first run; higher when a restart or a lost lease made another process run it again' })
  attempt: number;
}

@ObjectType({ simpleResolvers: true })
export class OperationEdge {
  @Field() cursor: string;
  @Field(() => Operation) node: Operation;
}

@ObjectType({ simpleResolvers: true })
export class OperationConnection {
  @Field(() => [OperationEdge]) edges: OperationEdge[];
  @Field(() => PageInfo) pageInfo: PageInfo;
  @Field(() => Int) totalCount: number;
}
