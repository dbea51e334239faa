// Cleanup that cannot be forgotten: everything a test starts (servers, temp dirs, databases) registers a disposer
// here, and root hooks run them, as graphql-ws's own tests do with their `leftovers`.
//
// Disposers registered while a test body or a beforeEach hook runs belong to that test and run after it; disposers
// registered in a `before` hook belong to the suite (whose `after` hook should release them, e.g. through
// `serverPerSuite`), and whatever is still registered when the run (a parallel run's file) ends is released by the root
// `afterAll` hook.

import { appendFileSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

export type Disposer = () => Promise<void>;

interface Registration {
  dispose: Disposer;
  scope: 'test' | 'run';
}

const registrations = new Set<Registration>();
let insideTest = false;

/**
 * Registers a disposer; returns a function that runs it once and unregisters it (for explicit early release). Its scope
 * is the test or the run, as it is registered inside a test or not, unless given.
 */
export function registerCleanup(dispose: Disposer, scope: Registration['scope'] = insideTest ? 'test' : 'run'): Disposer {
  const registration: Registration = { dispose, scope };
  registrations.add(registration);
  let released: Promise<void> | null = null;
  return () =>
    (released ??= (async () => {
      registrations.delete(registration);
      await dispose();
    })());
}

/** Unregisters without running: the owner released the resource itself. */
export function forgetCleanup(dispose: Disposer): void {
  for (const registration of registrations) if (registration.dispose === dispose) registrations.delete(registration);
}

async function drain(scope: 'test' | 'run' | 'all'): Promise<void> {
  // Newest first: a server registered after its temp dir must stop before the dir goes.
  const due = [...registrations].filter((r) => scope === 'all' || r.scope === scope).reverse();
  const failures: unknown[] = [];
  for (const registration of due) {
    registrations.delete(registration);
    await registration.dispose().catch((error) => failures.push(error));
  }
  if (failures.length > 0) {
    throw new AggregateError(failures, `${failures.length} cleanup step(s) failed: ${failures.map(String).join('; ')}`);
  }
}

/**
 * Mocha's root hooks (exported by test/setup.ts as `mochaHooks`): they run around every test of every file, in a serial
 * run and in each worker of a parallel one, where module state outlives a file and hooks declared while a module loads
 * would belong to the first file that loaded it only.
 */
export const cleanupHooks = {
  beforeAll(this: Mocha.Context): void {
    fileStartedAt = Date.now();
    if (process.env.SNAPGRAPH_TEST_TIMINGS) fileCpuAtStart = cpuMs();
    fileName = this.test?.parent?.suites[0]?.file;
  },
  beforeEach(): void {
    insideTest = true;
  },
  async afterEach(): Promise<void> {
    insideTest = false;
    await drain('test');
  },
  /** After each file: a parallel run's worker goes on to other files. */
  async afterAll(): Promise<void> {
    await drain('all');
    recordFileTime();
  },
};

let fileStartedAt = 0;
let fileCpuAtStart = 0;
let fileName: string | undefined;

/**
 * With SNAPGRAPH_TEST_TIMINGS set to a path, each file's wall time (its hooks included) and CPU time are appended there
 * as `<ms>\t<cpu ms>\t<file>`: the way to find the files that make the suite long (`sort -n` the file after a run).
 * The suite is bound by CPU on two cores, so the CPU column is the one that says what a file costs the others.
 */
function recordFileTime(): void {
  const path = process.env.SNAPGRAPH_TEST_TIMINGS;
  if (path && fileName) appendFileSync(path, `${Date.now() - fileStartedAt}\t${cpuMs() - fileCpuAtStart}\t${relative(process.cwd(), fileName)}\n`);
}

/**
 * CPU milliseconds of this process and of the children it has reaped (the servers and CLIs its tests ran), from
 * /proc/self/stat (utime, stime, cutime, cstime, in clock ticks of 10 ms); this process's own alone where there is no
 * /proc.
 */
function cpuMs(): number {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
    return fields.slice(11, 15).reduce((sum, ticks) => sum + Number(ticks) * 10, 0);
  } catch {
    const { user, system } = process.cpuUsage();
    return Math.round((user + system) / 1000);
  }
}

/** Releases everything still registered (for scripts that run outside mocha). */
export function releaseAll(): Promise<void> {
  return drain('all');
}
