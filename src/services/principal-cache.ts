// The principals of recently shown API keys, by the key's hash, so that a request costs no database read. Bounded in
// time (each entry lives `ttlMs`) and in size (the oldest entries go first). Whoever changes a key invalidates it here
// (a revocation, on every replica through the event bus); a lookup that was under way meanwhile stores nothing, so
// that a request racing a revocation cannot put the revoked key back. An event can be lost (a replica's PUBLISH to
// Redis failed while the others still listen), so an entry is also answered only while a database read that found its
// key active began less than `freshMs` ago: the entry's own read, or a later check of every cached key (confirm).
import { performance } from 'node:perf_hooks';
import type { Role } from '../entities/api-key.entity';
import type { Principal } from './principal';

interface Entry {
  principal: Principal;
  expiresAt: number;
  /** When (performance.now()) the latest database read that found the key active began. */
  checkedAt: number;
}

export class PrincipalCache {
  private readonly entries = new Map<string, Entry>();
  /**
   * Lookups under way, by key hash, with when (performance.now()) each began: concurrent requests with one key share
   * one database read, while it began less than freshMs ago (what an entry may be answered for).
   */
  private readonly pending = new Map<string, { lookup: Promise<Principal | null>; began: number }>();
  /** Bumped by every invalidation: a lookup that began before it must not store its (possibly stale) result. */
  private generation = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    /** False while invalidations may be missed (the event bus is disconnected): nothing is stored then. */
    private readonly canCache: () => boolean,
    /** How long after the start of the read that last found its key active an entry may be answered. */
    private readonly freshMs: number = Infinity,
  ) {}

  /**
   * The principal of a key hash: from memory while its entry lives, else from `read` (shared with concurrent callers
   * that ask for the same hash), stored unless something was invalidated while it ran.
   */
  async get(hash: string, read: () => Promise<Principal | null>): Promise<Principal | null> {
    if (this.ttlMs === 0) return read();
    const entry = this.entries.get(hash);
    if (entry !== undefined) {
      if (entry.expiresAt > Date.now() && performance.now() - entry.checkedAt < this.freshMs) return entry.principal;
      this.entries.delete(hash);
    }
    const under = this.pending.get(hash);
    if (under !== undefined && performance.now() - under.began < this.freshMs) return under.lookup;
    // The generation when the read began; null when the result must not be kept at all.
    const ticket = this.canCache() ? this.generation : null;
    const began = performance.now();
    const lookup = read().then(
      (principal) => {
        if (this.pending.get(hash)?.lookup === lookup) this.pending.delete(hash);
        if (principal !== null && ticket === this.generation) this.store(hash, principal, began);
        return principal;
      },
      (error: unknown) => {
        if (this.pending.get(hash)?.lookup === lookup) this.pending.delete(hash);
        throw error;
      },
    );
    this.pending.set(hash, { lookup, began });
    return lookup;
  }

  /** Forgets one key everywhere in this process; lookups under way store nothing. */
  forgetKey(apiKeyId: string): void {
    this.invalidate();
    for (const [hash, entry] of this.entries) {
      if (entry.principal.apiKeyId === apiKeyId) this.entries.delete(hash);
    }
  }

  /** The keys that have entries now: what a check (confirm) should look up. */
  keyIds(): string[] {
    return [...new Set([...this.entries.values()].map((entry) => entry.principal.apiKeyId))];
  }

  /**
   * The result of a database check of `checked` that began at `began` (performance.now()): keys not in `active` are
   * forgotten, and so are entries whose role is not the one `active` gives their key (a role changed in the database);
   * the entries of the others may be answered for freshMs from `began`.
   */
  confirm(checked: string[], active: ReadonlyMap<string, Role>, began: number): void {
    const holds = (principal: Principal) => active.get(principal.apiKeyId) === principal.role;
    const inCheck = new Set(checked);
    let forgot = checked.some((id) => !active.has(id));
    for (const [hash, entry] of this.entries) {
      if (!inCheck.has(entry.principal.apiKeyId)) continue;
      if (holds(entry.principal)) {
        entry.checkedAt = Math.max(entry.checkedAt, began);
      } else {
        this.entries.delete(hash);
        forgot = true;
      }
    }
    if (forgot) this.invalidate();
  }

  /** Forgets everything (events may have been missed); lookups under way store nothing. */
  clear(): void {
    this.invalidate();
    this.entries.clear();
  }

  private invalidate(): void {
    this.generation += 1;
    // A request that comes after the invalidation must read the database itself, not join a read from before it.
    this.pending.clear();
  }

  private store(hash: string, principal: Principal, checkedAt: number): void {
    this.entries.delete(hash);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(hash, { principal, expiresAt: Date.now() + this.ttlMs, checkedAt });
  }
}
