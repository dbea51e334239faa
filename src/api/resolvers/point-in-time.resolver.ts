import { Arg, Ctx, FieldResolver, ID, Mutation, Resolver, Root } from 'type-graphql';
import type { InstanceEntity } from '../../entities/instance.entity';
import type { OperationEntity } from '../../entities/operation.entity';
import type { Principal } from '../../services/principal';
import type { RestoreWindowView } from '../../services/change-log.service';
import { type ApiContext, Caller } from '../context';
import { DateTimeScalar } from '../scalars';
import { CreateInstanceInput, Instance, RestoreWindow } from '../types/instance.type';
import { Operation } from '../types/operation.type';

@Resolver(() => Instance)
export class PointInTimeResolver {
  @FieldResolver(() => RestoreWindow, {
    nullable: true,
    description:
      'null where the tier has no point-in-time restore (FREE), and for the seconds until a window opens: before the change log is first shipped, and after damage or a new history until the base that follows is stored',
  })
  restoreWindow(@Root() instance: InstanceEntity, @Ctx() { services }: ApiContext): Promise<RestoreWindowView | null> {
    return services.changeLog.restoreWindow(instance, services.instances.restoreWindowMs(instance));
  }

  @Mutation(() => Operation, {
    description: `Overwrites targetInstanceId (default: instanceId) with instanceId's data exactly as it was at
\`at\`: every write committed at or before it, none after. confirm must be exactly "RESTORE".
OUT_OF_RESTORE_WINDOW when \`at\` is outside instanceId's restoreWindow.`,
  })
  restoreToPointInTime(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('at', () => DateTimeScalar) at: Date,
    @Arg('confirm') confirm: string,
    @Arg('targetInstanceId', () => ID, { nullable: true }) targetInstanceId: string | null,
  ): Promise<OperationEntity> {
    return services.restores.requestRestoreToPointInTime(caller, instanceId, at, confirm, targetInstanceId ?? null);
  }

  @Mutation(() => Instance, { description: "a new instance holding instanceId's data exactly as it was at `at`" })
  createInstanceFromPointInTime(
    @Caller() caller: Principal,
    @Ctx() { services }: ApiContext,
    @Arg('instanceId', () => ID) instanceId: string,
    @Arg('at', () => DateTimeScalar) at: Date,
    @Arg('input', () => CreateInstanceInput) input: CreateInstanceInput,
  ): Promise<InstanceEntity> {
    return services.restores.requestCreateFromPointInTime(caller, instanceId, at, input);
  }
}
