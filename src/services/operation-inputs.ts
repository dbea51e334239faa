// What an operation being queued will read, held by the transaction that queues it, against a deletion of that data.
import { type EntityManager, Not } from 'typeorm';
import { ExportDestinationEntity } from '../entities/export-destination.entity';
import { InstanceEntity } from '../entities/instance.entity';
import { SnapshotEntity } from '../entities/snapshot.entity';
import { AppError, conflict, notFound } from '../errors/app-error';
import { assertAcceptsOperations } from './instance.service';

export interface OperationInputs {
  /** The instance the operation works on: it must accept operations (RUNNING). */
  targetId?: string;
  /** An instance whose snapshot or history the operation reads: it must not be being deleted. */
  sourceInstanceId?: string;
  /** A snapshot the operation reads: it must still be there, COMPLETED. */
  snapshotId?: string;
  /** An export destination the operation writes to: it must still be there. */
  destinationId?: string;
}

/**
 * Holds the rows an operation depends on until the end of the transaction that inserts it (call it before the insert),
 * checking them again as held. A deletion writes first and looks after: deleteInstance claims the instance
 * (DESTROYING), then looks for operations on its data; deleteSnapshot (and deleteExportDestination) removes the row,
 * then looks for operations that read it (write to it) in one transaction, undone when it finds one. A request that passed its own checks just before, and
 * inserted its operation just after that look, was accepted and then FAILED with NOT_FOUND once it ran. Here the
 * request holds the rows first too (an instance by an update that changes nothing, a snapshot by a shared row lock:
 * on PostgreSQL either waits for a deletion's uncommitted write and reads the row as that left it, and a deletion waits
 * for it in turn; SQLite runs one transaction at a time): whichever comes second sees the other and refuses.
 */
export async function holdOperationInputs(manager: EntityManager, inputs: OperationInputs): Promise<void> {
  // Instances in the order of their ids: two requests holding the same two rows never wait for each other in a cycle.
  const instances = [
    ...(inputs.targetId ? [{ id: inputs.targetId, target: true }] : []),
    ...(inputs.sourceInstanceId && inputs.sourceInstanceId !== inputs.targetId ? [{ id: inputs.sourceInstanceId, target: false }] : []),
  ].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const { id, target } of instances) {
    const held = target
      ? await manager.update(InstanceEntity, { id, status: 'RUNNING' }, { status: 'RUNNING' })
      : await manager.update(InstanceEntity, { id, status: Not('DESTROYING') }, { status: () => 'status' });
    if (held.affected) continue;
    const current = await manager.findOneBy(InstanceEntity, { id });
    if (!current) throw notFound('instance', id);
    if (target) {
      assertAcceptsOperations(current);
      throw conflict(`instance ${id} changed while the operation was being queued; try again`);
    }
    throw conflict(`instance ${id}, whose data the operation would read, is being deleted; nothing was queued`);
  }
  if (inputs.snapshotId) await holdSnapshotForReading(manager, inputs.snapshotId);
  if (inputs.destinationId) {
    const held = await manager.update(ExportDestinationEntity, { id: inputs.destinationId }, { name: () => 'name' });
    if (!held.affected) throw notFound('export destination', inputs.destinationId);
  }
}

/**
 * Holds a COMPLETED snapshot against its deletion until the end of the transaction (an operation's input, an export
 * link), without writing it: PostgreSQL, a shared row lock, which a deletion's write waits for and which waits for a
 * deletion's uncommitted write (the row then read as that left it); SQLite runs one transaction at a time. A write that
 * changes nothing held it as well, but announced a change of the tenant's data (its response cache's version).
 */
export async function holdSnapshotForReading(manager: EntityManager, snapshotId: string): Promise<void> {
  const query = manager.createQueryBuilder(SnapshotEntity, 's').select(['s.id', 's.status']).where('s.id = :snapshotId', { snapshotId });
  if (manager.connection.options.type === 'postgres') query.setLock('pessimistic_read');
  const held = await query.getOne();
  if (!held) throw notFound('snapshot', snapshotId);
  if (held.status !== 'COMPLETED') throw new AppError('SNAPSHOT_NOT_READY', `snapshot ${held.id} is ${held.status}, not COMPLETED`);
}
