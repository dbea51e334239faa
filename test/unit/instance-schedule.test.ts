// Instance.schedule as the API shows it: nextSnapshotAt says when the scheduler will take the next snapshot, so it is
// null for an instance the scheduler never snapshots (its creation FAILED, or it is being deleted).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import type { InstanceEntity, InstanceStatus } from '../../src/entities/instance.entity';
import { type InstanceServiceBed, instanceServiceBed } from '../support/instance-services';

describe('Instance.schedule', () => {
  let bed: InstanceServiceBed;
  const HOUR = 3600_000;
  const createdAt = Date.UTC(2026, 0, 1);

  before(async () => {
    bed = await instanceServiceBed('snapgraph-instance-schedule-');
  });

  after(() => bed.close());

  const instance = (status: InstanceStatus) =>
    ({ id: randomUUID(), tier: 'BUSINESS_CRITICAL', status, createdAt, lastScheduledAt: null }) as InstanceEntity;

  it('shows when the next scheduled snapshot is due on an instance the scheduler snapshots', () => {
    for (const status of ['CREATING', 'RUNNING', 'RESTORING'] as const) {
      assert.equal(bed.instances.schedule(instance(status), createdAt + 10 * 60_000).nextSnapshotAt, createdAt + HOUR, status);
    }
  });

  it('shows no next snapshot on an instance whose creation failed or that is being deleted: none will be taken', () => {
    for (const status of ['FAILED', 'DESTROYING'] as const) {
      const schedule = bed.instances.schedule(instance(status), createdAt + 5 * HOUR);
      assert.equal(schedule.nextSnapshotAt, null, `${status}: nextSnapshotAt ${schedule.nextSnapshotAt && new Date(schedule.nextSnapshotAt).toISOString()}`);
      assert.equal(schedule.interval, 'PT1H', 'the tier still has its schedule');
    }
  });
});
