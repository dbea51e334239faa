// Recording a new store epoch: shared by instance creation and by a restore's swap.
import { type EntityManager, IsNull } from 'typeorm';
import type { InstanceEntity } from '../entities/instance.entity';
import { type EpochAnchor, StoreEpochEntity } from '../entities/store-epoch.entity';

/**
 * Records a new store as the instance's current epoch (in `manager`'s transaction: an instance's creation, a
 * restore's swap), ending the one it replaces at the same moment.
 */
export async function startEpoch(
  manager: EntityManager,
  instance: Pick<InstanceEntity, 'id' | 'tenantId'>,
  epoch: number,
  anchor: { anchor: EpochAnchor; originPointId?: string | null },
  at = Date.now(),
): Promise<void> {
  await manager.update(StoreEpochEntity, { instanceId: instance.id, endedAt: IsNull() }, { endedAt: at });
  await manager.insert(StoreEpochEntity, {
    epoch,
    tenantId: instance.tenantId,
    instanceId: instance.id,
    anchor: anchor.anchor,
    originPointId: anchor.originPointId ?? null,
    startedAt: at,
    endedAt: null,
    shippedSeq: 0,
    headSha256: null,
    // Nothing is written to it yet: the instance's history is shipped up to the moment it took over.
    shippedThrough: at - 1,
    damage: null,
    damagedFromSeq: null,
    collectedThroughSeq: null,
  } satisfies StoreEpochEntity);
}
