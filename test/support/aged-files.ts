// Files that look older than they are to node:fs/promises' stat: a claim's age is its ctime, which no call sets, and a
// test does not wait out a stale period. The modules under test call stat through its exports (as in paused-fs).
import { closeSync, openSync, statSync, type Stats } from 'node:fs';
import fsPromises = require('node:fs/promises');

export interface AgedFiles {
  /**
   * Makes the file at path look made `byMs` earlier (its ctime) under every name it has, until restore(). A file of its
   * own, not a link to another: every name of its inode looks aged. It is held open meanwhile, so that no file made
   * after it is removed takes its inode number, and looks aged too.
   */
  age(path: string, byMs: number): void;
  /** Puts stat back as it was, and closes the files held open (every test's afterEach). */
  restore(): void;
}

export function agedFiles(): AgedFiles {
  const original = fsPromises.stat;
  const aged = new Map<string, number>();
  const held: number[] = [];
  const inode = (stats: Pick<Stats, 'dev' | 'ino'>) => `${stats.dev}:${stats.ino}`;
  return {
    age(path, byMs) {
      held.push(openSync(path, 'r'));
      aged.set(inode(statSync(path)), byMs);
      (fsPromises as unknown as Record<string, unknown>).stat = async (...args: Parameters<typeof original>) => {
        const stats = (await original(...args)) as Stats;
        stats.ctimeMs -= aged.get(inode(stats)) ?? 0;
        return stats;
      };
    },
    restore() {
      (fsPromises as unknown as Record<string, unknown>).stat = original;
      aged.clear();
      for (const fd of held.splice(0)) closeSync(fd);
    },
  };
}
