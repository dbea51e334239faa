// Steps of processes sharing a directory, interleaved on purpose: the modules under test call node:fs/promises through
// its exports, so a change to one file's name (creating it by writeFile, removing, renaming or linking it) made under
// `who.run('paused', …)` can be held until the test lets it go on.
import { AsyncLocalStorage } from 'node:async_hooks';
import fsPromises = require('node:fs/promises');

const CHANGES = ['writeFile', 'rm', 'unlink', 'rename', 'link'] as const;
export type NameChange = (typeof CHANGES)[number];
type FsFunction = (...args: unknown[]) => Promise<unknown>;

export interface PausedFs {
  /** Runs the steps of a process: `who.run('paused', …)` is the one pauseFirstChange holds. */
  who: AsyncLocalStorage<string>;
  /** Arms the pause: `paused` waits at its first change to `path` (of the kinds in `only`) until goOn(); reached() resolves as it waits. */
  pauseFirstChange(path: string, only?: readonly NameChange[]): { reached: Promise<void>; goOn: () => void };
  /** Resolves once `who.run('waiting', …)` was refused the claim of `path` (`<path>.takeover` was held) `times` times. */
  claimRefused(path: string, times?: number): Promise<void>;
  /** Puts node:fs/promises back as it was (every test's afterEach). */
  restore(): void;
}

export function pausedFs(): PausedFs {
  const originals = Object.fromEntries(CHANGES.map((name) => [name, fsPromises[name]])) as unknown as Record<NameChange, FsFunction>;
  const who = new AsyncLocalStorage<string>();
  return {
    who,
    pauseFirstChange(path, only = CHANGES) {
      let reach!: () => void;
      const reached = new Promise<void>((resolve) => (reach = resolve));
      let goOn!: () => void;
      const gate = new Promise<void>((resolve) => (goOn = resolve));
      let armed = true;
      for (const name of CHANGES) {
        (fsPromises as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
          if (armed && who.getStore() === 'paused' && only.includes(name) && (args[0] === path || args[1] === path)) {
            armed = false;
            reach();
            await gate;
          }
          return originals[name](...args);
        };
      }
      return { reached, goOn };
    },
    claimRefused(path, times = 1) {
      const link = fsPromises.link;
      let refusals = 0;
      return new Promise((resolve) => {
        (fsPromises as unknown as Record<string, unknown>).link = async (...args: Parameters<typeof link>) => {
          try {
            return await link(...args);
          } catch (error) {
            const refused = who.getStore() === 'waiting' && args[0] === path && (error as NodeJS.ErrnoException).code === 'EEXIST';
            if (refused && (refusals += 1) === times) resolve();
            throw error;
          }
        };
      });
    },
    restore: () => void Object.assign(fsPromises, originals),
  };
}
