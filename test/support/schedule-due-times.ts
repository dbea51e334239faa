// What the scheduler stores for its per-tick query (InstanceEntity.nextScheduledAt), checked against retention.ts.
import assert from 'node:assert/strict';
import type { DataSource } from 'typeorm';
import type { Tier, TierPolicy } from '../../src/config/tiers';
import { InstanceEntity } from '../../src/entities/instance.entity';
import { scheduleGridDueAt } from '../../src/scheduler/retention';
import { tierSchedules } from '../../src/scheduler/tier-schedules';

/** Every instance's nextScheduledAt is scheduleGridDueAt under `tiers` (the database computes it). */
export async function assertGridDueTimesStored(db: DataSource, tiers: Record<Tier, TierPolicy>): Promise<void> {
  const schedules = tierSchedules(tiers);
  for (const instance of await db.getRepository(InstanceEntity).find()) {
    const expected = scheduleGridDueAt(schedules[instance.tier], instance.lastScheduledAt, instance.createdAt);
    assert.equal(instance.nextScheduledAt, expected, `${instance.tier} created at ${instance.createdAt}, last scheduled at ${instance.lastScheduledAt}`);
  }
}

