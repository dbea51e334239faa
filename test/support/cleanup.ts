// Cleanup that cannot be forgotten: everything a test starts (servers, temp dirs, databases) registers a disposer
// here, and root hooks run them, as graphql-ws's own tests do with their `leftovers`.
//
// Disposers registered while a test body or a beforeEach hook runs belong to that test and run after it; disposers
// registered in a `before` hook belong to the suite (whose `after` hook should release them, e.g. through
// `serverPerSuite`), and whatever is still registered when the run ends is released by the root `after` hook.

export type Disposer = () => Promise<void>;

interface Registration {
  dispose: Disposer;
  scope: 'test' | 'run';
}

const registrations = new Set<Registration>();
let insideTest = false;

/** Registers a disposer; returns a function that runs it once and unregisters it (for explicit early release). */
export function registerCleanup(dispose: Disposer): Disposer {
  const registration: Registration = { dispose, scope: insideTest ? 'test' : 'run' };
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

// Root hooks: this module is first imported while mocha loads spec files, when the current suite is the root suite.
// Outside mocha (scripts/bench) the globals are absent and callers release what they start.
if (typeof beforeEach === 'function' && typeof afterEach === 'function' && typeof after === 'function') {
  beforeEach(function markTestScope() {
    insideTest = true;
  });
  afterEach(async function releaseWhatTheTestStarted() {
    insideTest = false;
    await drain('test');
  });
  after(async function releaseEverythingLeft() {
    await drain('all');
  });
}

/** Releases everything still registered (for scripts that run outside mocha). */
export function releaseAll(): Promise<void> {
  return drain('all');
}
