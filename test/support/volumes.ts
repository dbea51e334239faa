// Small real volumes for disk-full tests: a tmpfs mounted for the test, filled on demand, unmounted in cleanup.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, rmSync, statfsSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { registerCleanup } from './cleanup';
import { makeTempDir } from './server';

export interface SmallVolume {
  readonly path: string;
  /** Writes a filler file until the volume is full, then gives back `leaveBytes` of it. */
  fill(leaveBytes?: number): void;
  /** Removes the filler: the space returns. */
  release(): void;
  availableBytes(): number;
}

/**
 * Mounts a tmpfs of `sizeBytes` (root only); returns why not when mounting is not permitted here, so the caller
 * can skip with that reason.
 */
export function mountSmallVolume(sizeBytes: number): SmallVolume | { unavailable: string } {
  const path = makeTempDir('snapgraph-e2e-volume-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', path], { stdio: 'pipe' });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return { unavailable: `cannot mount a tmpfs here (${stderr || (error as Error).message}); run the tests as root to include them` };
  }
  // Lazy: a server that outlived its cleanup must not keep the mount (or the run) hanging.
  registerCleanup(async () => void execFileSync('umount', ['-l', path], { stdio: 'pipe' }));
  const filler = join(path, '.filler');
  return {
    path,
    fill(leaveBytes = 0) {
      const chunk = Buffer.alloc(256 * 1024, 0xa5);
      const fd = openSync(filler, 'a');
      try {
        // A write that only partly fits returns short; the next one throws.
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        closeSync(fd);
      }
      if (leaveBytes > 0) truncateSync(filler, Math.max(0, statSync(filler).size - leaveBytes));
    },
    release() {
      rmSync(filler, { force: true });
    },
    availableBytes() {
      const stats = statfsSync(path);
      return stats.bavail * stats.bsize;
    },
  };
}
