// Every tier's schedule in milliseconds, computed once from the validated config.
import { scheduleOf, type Tier, type TierPolicy, TIERS, type TierSchedule } from '../config/tiers';

export function tierSchedules(policies: Record<Tier, TierPolicy>): Record<Tier, TierSchedule> {
  return Object.fromEntries(TIERS.map((tier) => [tier, scheduleOf(policies[tier])])) as Record<Tier, TierSchedule>;
}
