// Tenants and their API keys: creation, the first-boot bootstrap, authentication, listing, rotation.
import { hash, randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DataSource, IsNull, LessThan, type Repository } from 'typeorm';
import { ApiKeyEntity, type Role } from '../entities/api-key.entity';
import { TenantEntity } from '../entities/tenant.entity';
import { isUniqueViolation } from '../entities/data-source';
import { badInput, notFound } from '../errors/app-error';
import type { EventBus } from '../events/event-bus';
import { type Principal, requireRole } from './principal';
import { PrincipalCache } from './principal-cache';

export interface NewApiKey {
  key: ApiKeyEntity;
  /** Shown once; only its hash is stored. */
  secret: string;
}

const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** lastUsedAt is kept to this resolution: at most one write per key per minute, whatever the request rate. */
export const API_KEY_USAGE_RESOLUTION_MS = 60_000;

export const hashSecret = (secret: string) => hash('sha256', secret, 'hex');

/** Keys one replica keeps in memory at most (each entry is a few hundred bytes). */
const CACHED_KEYS = 10_000;
/**
 * How often a replica looks up whether its cached keys are still active, so that a revocation whose event was lost
 * (see revokeApiKey) reaches it all the same; the open connections of keys are looked up as often (api/key-connections).
 */
export const KEY_RECHECK_MS = 1_000;
/**
 * A cached key is answered only while a database read that found it active began less than this long ago: twice the
 * check's period, so that one slow check does not send every request to the database.
 */
const KEY_FRESH_MS = 2 * KEY_RECHECK_MS;
/** How long revokeApiKey waits for Redis to take the revocation's event before it relies on the checks instead. */
const REVOCATION_PUBLISH_TIMEOUT_MS = 1_000;
const newSecret = () => `sg_${randomBytes(32).toString('base64url')}`;

export class TenantService {
  private readonly tenants: Repository<TenantEntity>;
  private readonly keys: Repository<ApiKeyEntity>;
  private readonly principals: PrincipalCache;
  private readonly revocations?: AsyncIterator<unknown>;
  private recheck: NodeJS.Timeout | null = null;
  private checking = false;

  /**
   * `events` carries revocations to every replica (their WebSockets close, their caches forget the key); the CLI,
   * which authenticates nothing, has none, and then nothing is cached. `cacheMs` is how long a shown key's principal
   * may be answered from memory (config apiKeyCacheMs).
   */
  constructor(
    private readonly db: DataSource,
    private readonly events?: EventBus,
    { cacheMs = 0 }: { cacheMs?: number } = {},
  ) {
    this.tenants = db.getRepository(TenantEntity);
    this.keys = db.getRepository(ApiKeyEntity);
    this.principals = new PrincipalCache(events ? cacheMs : 0, CACHED_KEYS, () => events?.isDelivering() ?? false, KEY_FRESH_MS);
    if (events && cacheMs > 0) {
      events.onDeliveryLost(() => this.principals.clear());
      const revocations = events.pubSub.subscribe('api-key.revoked', 'all');
      this.revocations = revocations;
      void (async () => {
        for await (const { apiKeyId } of revocations) this.principals.forgetKey(apiKeyId);
      })();
      // Only an entry older than KEY_FRESH_MS needs the check: with a shorter cache nothing lives that long.
      if (cacheMs > KEY_FRESH_MS) this.recheck = setInterval(() => void this.recheckCachedKeys(), KEY_RECHECK_MS).unref();
    }
  }

  /** Stops following revocations (the server is closing). */
  async close(): Promise<void> {
    if (this.recheck) clearInterval(this.recheck);
    await this.revocations?.return?.();
  }

  /** Looks up whether the cached keys are still active: revoked ones are forgotten, the others stay answerable. */
  private async recheckCachedKeys(): Promise<void> {
    if (this.checking) return;
    const keys = this.principals.keyIds();
    if (keys.length === 0) return;
    this.checking = true;
    const began = performance.now();
    try {
      this.principals.confirm(keys, await this.activeKeyRoles(keys), began);
    } catch {
      // The database did not answer: the entries go stale, and requests read it themselves (and meet its error).
    } finally {
      this.checking = false;
    }
  }

  /** On first boot (no tenant at all): tenant `default` with an ADMIN key. Returns the secret when it was generated. */
  async bootstrap(bootstrapToken?: string): Promise<{ tenant: TenantEntity; generatedSecret?: string } | null> {
    if ((await this.tenants.count()) > 0) return null;
    const secret = bootstrapToken ?? newSecret();
    try {
      const { tenant } = await this.createTenantWithKey('default', secret);
      return { tenant, generatedSecret: bootstrapToken ? undefined : secret };
    } catch (error) {
      // Replicas starting together on an empty database: one of them made it; the others' boots failed on its name.
      if (isUniqueViolation(error) && (await this.tenants.count()) > 0) return null;
      throw error;
    }
  }

  async createTenant(name: string): Promise<{ tenant: TenantEntity; apiKey: string }> {
    if (!TENANT_NAME.test(name)) {
      throw badInput(`tenant name "${name}" must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    const exists = () => badInput(`a tenant named "${name}" already exists`);
    if (await this.tenants.exists({ where: { name } })) throw exists();
    const secret = newSecret();
    try {
      const { tenant } = await this.createTenantWithKey(name, secret);
      return { tenant, apiKey: secret };
    } catch (error) {
      // Made meanwhile (two `tenant create` runs at once): said as above, not as the database's refusal.
      if (isUniqueViolation(error) && (await this.tenants.exists({ where: { name } }))) throw exists();
      throw error;
    }
  }

  /**
   * The caller a secret stands for, or null. Answered from memory for up to `cacheMs` after a database read (which
   * also records lastUsedAt), so lastUsedAt may lag its minute by that much.
   */
  async authenticate(secret: string): Promise<Principal | null> {
    const secretHash = hashSecret(secret);
    return this.principals.get(secretHash, () => this.readPrincipal(secretHash));
  }

  private async readPrincipal(secretHash: string): Promise<Principal | null> {
    const key = await this.keys.findOne({ where: { secretHash } });
    if (!key || key.revokedAt !== null) return null;
    const tenant = await this.tenants.findOne({ where: { id: key.tenantId } });
    if (!tenant) return null;
    await this.recordUse(key);
    return { tenantId: tenant.id, tenantName: tenant.name, role: key.role, apiKeyId: key.id, apiKeyName: key.name };
  }

  /** Whether the key exists, is not revoked and its tenant exists (export links die with the key that made them). */
  async isActiveKey(id: string): Promise<boolean> {
    return (await this.activeKeyRoles([id])).has(id);
  }

  /**
   * Of the keys `ids`, those that exist, are not revoked and whose tenant exists (as authenticate() requires: a tenant
   * deleted in the database leaves its keys' rows), with their role now.
   */
  async activeKeyRoles(ids: string[]): Promise<Map<string, Role>> {
    const active = new Map<string, Role>();
    // A few hundred at a time: a statement's parameters are bounded (SQLite, PostgreSQL).
    for (let start = 0; start < ids.length; start += 500) {
      const rows = await this.keys
        .createQueryBuilder('k')
        .innerJoin(TenantEntity, 't', 't.id = k.tenantId')
        .select(['k.id', 'k.role'])
        .where('k.id IN (:...ids) AND k.revokedAt IS NULL', { ids: ids.slice(start, start + 500) })
        .getMany();
      for (const { id, role } of rows) active.set(id, role);
    }
    return active;
  }

  /** The tenant's keys, oldest first, without secrets (only their hashes are stored anyway), revoked ones left out. */
  async listApiKeys(principal: Principal): Promise<ApiKeyEntity[]> {
    requireRole(principal, 'ADMIN', 'listing API keys');
    return this.keysOf(principal.tenantId);
  }

  /** For the operator's CLI, which works on the metadata database directly. */
  async listTenants(): Promise<TenantEntity[]> {
    return this.tenants.find({ order: { createdAt: 'ASC', name: 'ASC' } });
  }

  async keysOf(tenantId: string): Promise<ApiKeyEntity[]> {
    return this.keys.find({ where: { tenantId, revokedAt: IsNull() }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  async createApiKey(principal: Principal, name: string, role: Role): Promise<NewApiKey> {
    requireRole(principal, 'ADMIN', 'creating API keys');
    const trimmed = name.trim();
    if (trimmed.length === 0 || trimmed.length > 100) throw badInput('an API key name must be 1-100 characters');
    const secret = newSecret();
    const key = await this.keys.save(this.keys.create(this.keyRow(principal.tenantId, trimmed, role, secret)));
    return { key, secret };
  }

  async revokeApiKey(principal: Principal, id: string): Promise<void> {
    requireRole(principal, 'ADMIN', 'revoking API keys');
    const key = await this.keys.findOne({ where: { id, tenantId: principal.tenantId } });
    if (!key || key.revokedAt !== null) throw notFound('API key', id);
    const at = Date.now();
    // Conditional: of several revocations at once (on one replica or several), one revokes; the others find it done.
    const revoked = await this.keys.update({ id, revokedAt: IsNull() }, { revokedAt: at });
    if (!revoked.affected) throw notFound('API key', id);
    const committed = performance.now();
    // This replica refuses the key from now on; every replica forgets it and closes its open WebSockets (export
    // links check the row themselves). The answer waits until Redis has handed the revocation to every replica.
    this.principals.forgetKey(id);
    if (this.events) {
      const payload = { tenantId: key.tenantId, apiKeyId: id, at: new Date(at).toISOString() };
      const published = await this.events.publishConfirmed('api-key.revoked', 'all', payload, REVOCATION_PUBLISH_TIMEOUT_MS).then(
        () => true,
        () => false,
      );
      // Lost on the way (Redis away from this replica, while others may still listen and cache): every replica finds
      // the revocation in the database within KEY_FRESH_MS of the commit - its cache answers no entry whose key was
      // last found active before then, and its sockets' keys are looked up every KEY_RECHECK_MS. Answered after that,
      // "revoked" stays true: the key then works nowhere.
      if (!published) await sleep(committed + KEY_FRESH_MS - performance.now());
    }
  }

  /**
   * lastUsedAt, to the minute: a conditional update, so that concurrent requests (and replicas) write it once.
   * A failure here (a full disk) must not refuse the request that was being authenticated.
   */
  private async recordUse(key: ApiKeyEntity): Promise<void> {
    const now = Date.now();
    if (key.lastUsedAt !== null && now - key.lastUsedAt < API_KEY_USAGE_RESOLUTION_MS) return;
    const stale = key.lastUsedAt === null ? IsNull() : LessThan(now - API_KEY_USAGE_RESOLUTION_MS + 1);
    await this.keys.update({ id: key.id, lastUsedAt: stale }, { lastUsedAt: now }).catch(() => undefined);
  }

  private async createTenantWithKey(name: string, secret: string): Promise<{ tenant: TenantEntity; key: ApiKeyEntity }> {
    return this.db.transaction(async (manager) => {
      const tenant = await manager.save(TenantEntity, { id: randomUUID(), name, createdAt: Date.now() });
      const key = await manager.save(ApiKeyEntity, this.keyRow(tenant.id, 'admin', 'ADMIN', secret));
      return { tenant, key };
    });
  }

  private keyRow(tenantId: string, name: string, role: Role, secret: string): ApiKeyEntity {
    return Object.assign(new ApiKeyEntity(), {
      id: randomUUID(),
      tenantId,
      name,
      role,
      secretHash: hashSecret(secret),
      createdAt: Date.now(),
      revokedAt: null,
      lastUsedAt: null,
    });
  }
}
