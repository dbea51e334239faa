// What this test process holds open, for tests that a store closes its files (Linux: /proc/self/fd).
import { readdirSync, readlinkSync } from 'node:fs';

/** Files this process holds open whose path contains `part`; a deleted one's path ends with ' (deleted)'. */
export function openFiles(part: string): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.includes(part)) targets.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return targets;
}
