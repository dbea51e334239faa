// Applies the tier's retention rules (retention.ts decides) to the metadata: finds the snapshots they concern with
// a few queries per sweep, and removes what they say with its blob and a snapshotUpdated event.
import { type DataSource, type EntityManager, In, MoreThan, type Repository } from 'typeorm';
import type { AppConfig } from '../config/app-config';
import { type Tier, TIERS, type TierSchedule } from '../config/tiers';
import { ExportTokenEntity } from '../entities/export-token.entity';
import { InstanceEntity } from '../entities/instance.entity';
import { OperationEntity } from '../entities/operation.entity';
import { restoreInProgressOn } from '../jobs/operation-queue';
import { replacementExists, SnapshotEntity } from '../entities/snapshot.entity';
import type { Logger } from '../logging/logger';
import type { SnapshotService } from '../services/snapshot.service';
import { type RetainedSnapshot, snapshotsToRemove, sparedOf } from './retention';
import { tierSchedules } from './tier-schedules';

/** Rows read per query: bounds memory however much history there is. */
const PAGE_ROWS = 10_000;
/** Ids per IN (…) list, well under SQLite's and PostgreSQL's bound-parameter limits. */
const ID_CHUNK = 500;

type Candidate = RetainedSnapshot & Pick<SnapshotEntity, 'instanceId' | 'expiresAt' | 'error'>;

interface Removal {
  removed: number;
  /** Chosen but still there (in use by an operation, or the delete failed): to be decided again later. */
  kept: Candidate[];
}

/**
 * What a sweep reads, one scan per rule, each a range of the (instanceId, createdAt) history index per instance, so
 * that no sweep reads a whole history; and, first, which instances a scan concerns, found in SQL through an index, so
 * that a sweep with nothing to do reads no instance's rows and does not grow with the number of instances:
 * - retention: the snapshots past it (createdAt <= now - retention), of the instances with a snapshot past its
 *   expiresAt (idx_snapshots_expiry);
 * - thinning: the SCHEDULED snapshots that crossed the thinAfter line since the last sweep, widened to whole
 *   thinInterval buckets (a bucket's keeper is its oldest member, which may have crossed earlier), of the instances
 *   with such a crossing (idx_snapshots_created). Buckets behind that window were decided by earlier sweeps of this
 *   process; the first sweep after a start reads them all, instance by instance of the tier (idx_instances_tier);
 * - keepLatestOnly: every snapshot of the instances where a settled snapshot is older than a COMPLETED one.
 * Each scan is decided on its own with the tier's full rules. That is sound because each holds, per instance,
 * either a createdAt-ordered prefix of the history or whole buckets of thinning candidates, and on such a slice
 * snapshotsToRemove chooses a subset of what it would choose on the whole history: retention is per snapshot, and
 * the latest (or oldest per bucket) of a prefix is never newer than that of the whole. The snapshots of each instance
 * that no rule removes (its newest COMPLETED one, and its newest one not known to be damaged: sparedOf) are read for
 * each page from the whole history.
 *
 * Those stay past their retention until replaced (replaces: by a newer COMPLETED snapshot not known to be damaged).
 * The sweep that finds one so sets its expiresAt to null ("kept until replaced", as the API says), so that it is not
 * read again by every sweep, and a replacement gives it its expiresAt back in the same transaction (onReplacement, a
 * hook of completions and of verification's findings), after which it goes at the next sweep. One spared by thinning
 * keeps its expiresAt: thinning does not look at its bucket again, and retention removes it then.
 */
export class RetentionSweeper {
  private readonly schedules: Record<Tier, TierSchedule>;
  private readonly snapshotRows: Repository<SnapshotEntity>;
  /** Per thinning tier: where the next sweep's thinning window starts (epoch ms): what is older was decided. */
  private readonly thinFrom = new Map<Tier, number>();
  /** Whether alignExpiry has run in this process. */
  private expiryAligned = false;

  constructor(
    private readonly db: DataSource,
    config: Pick<AppConfig, 'tiers'>,
    private readonly snapshots: SnapshotService,
    private readonly logger: Logger,
  ) {
    this.snapshotRows = db.getRepository(SnapshotEntity);
    this.schedules = tierSchedules(config.tiers);
  }

  /**
   * Called right after one of the instance's snapshots completed (the SNAPSHOT operation's afterCapture hook), so
   * that a latest-only tier (FREE) drops the older snapshots at once rather than at the next sweep. Only that rule
   * depends on a completion alone; the others depend on time, and the leader's sweep applies them, by the leader's
   * clock (a snapshot a completion replaced as the newest, given back its expiresAt, goes at the next sweep). Never
   * throws: the snapshot has completed whatever happens here, a failure is logged, and the next sweep tries again.
   */
  async onSnapshotCompleted(instance: Pick<InstanceEntity, 'id' | 'tier'>, now = Date.now()): Promise<void> {
    const schedule = this.schedules[instance.tier];
    if (!schedule.keepLatestOnly) return;
    try {
      const snapshots = await this.snapshots.snapshotsOf(instance.id);
      await this.remove(this.decide(snapshots, schedule, now, sparedOf(snapshots)), schedule, now);
    } catch (error) {
      this.logger.error({ err: error, instanceId: instance.id }, 'could not apply retention after a snapshot');
    }
  }

  /**
   * A replacement hook (SnapshotService.onReplacement): in the transaction that records `snapshot` COMPLETED (a safety
   * snapshot's, once its restore happened), or what verification found in it, the COMPLETED snapshots of its instance
   * kept until replaced that a snapshot now replaces get back the expiresAt of their tier's retention. Those past it
   * go at the next sweep, within a second; their removal event carries the expiresAt given back.
   */
  async onReplacement(snapshot: Pick<SnapshotEntity, 'instanceId'>, manager: EntityManager): Promise<void> {
    const instance = await manager.findOne(InstanceEntity, { select: { id: true, tier: true }, where: { id: snapshot.instanceId } });
    if (!instance) return;
    const { keepLatestOnly, retentionMs } = this.schedules[instance.tier];
    if (keepLatestOnly || retentionMs === null) return;
    await manager
      .createQueryBuilder()
      .update(SnapshotEntity)
      .set({ expiresAt: () => '"createdAt" + :retentionMs' })
      .where(`"instanceId" = :instanceId AND status = 'COMPLETED' AND "expiresAt" IS NULL AND ${replacementExists('snapshots')}`)
      .setParameters({ instanceId: instance.id, retentionMs })
      .execute();
  }

  /** One pass over every instance's snapshots; returns how many were removed. */
  async sweep(now = Date.now()): Promise<number> {
    if (!this.expiryAligned) {
      await this.alignExpiry(now);
      this.expiryAligned = true;
    }
    let removed = 0;
    const expired = await this.instancesWithExpired(now);
    for (const tier of TIERS) {
      const schedule = this.schedules[tier];
      if (schedule.keepLatestOnly) removed += (await this.sweepScan(tier, schedule, now, {}, await this.instancesWithSuperseded(tier))).removed;
      if (schedule.retentionMs !== null) {
        removed += (await this.sweepScan(tier, schedule, now, { expiredAt: now - schedule.retentionMs }, expired.get(tier) ?? [])).removed;
      }
      if (schedule.thinAfterMs !== null && schedule.thinIntervalMs !== null) {
        removed += await this.sweepThinning(tier, schedule, now);
      }
    }
    return removed;
  }

  /**
   * The instances of a tier with a snapshot keep-latest-only removes: a settled one that a COMPLETED one replaces.
   * Decided in SQL, on the instances holding more than one snapshot (counted on the indexes alone), so that a sweep
   * reads no rows of the many instances that hold their one snapshot.
   */
  private async instancesWithSuperseded(tier: Tier): Promise<string[]> {
    const rows: { instanceId: string }[] = await this.query(
      `SELECT c."instanceId" FROM (SELECT s."instanceId" FROM instances i INNER JOIN snapshots s ON s."instanceId" = i.id ` +
        `WHERE i.tier = :tier GROUP BY s."instanceId" HAVING COUNT(*) > 1) c ` +
        `WHERE EXISTS (SELECT 1 FROM snapshots s WHERE s."instanceId" = c."instanceId" AND s.status IN ('COMPLETED', 'FAILED') ` +
        `AND ${replacementExists('s')}) ORDER BY c."instanceId"`,
      { tier },
    );
    return rows.map((row) => row.instanceId);
  }

  /**
   * Per tier, the instances with a snapshot past its expiresAt, read on idx_snapshots_expiry: only expired rows. Their
   * retention scan then decides by createdAt, as retention.ts does. expiresAt is createdAt + retention for every
   * settled snapshot once alignExpiry has run, and is set so when one settles.
   */
  private async instancesWithExpired(now: number): Promise<Map<Tier, string[]>> {
    return this.byTier(
      await this.query<{ instanceId: string; tier: Tier }>(
        `SELECT DISTINCT s."instanceId", i.tier FROM snapshots s INNER JOIN instances i ON i.id = s."instanceId" ` +
          `WHERE s."expiresAt" IS NOT NULL AND s."expiresAt" <= :now`,
        { now },
      ),
    );
  }

  /** The instances of a tier with a SCHEDULED snapshot created within [from, line], read on idx_snapshots_created. */
  private async instancesWithThinningCandidates(tier: Tier, from: number, line: number): Promise<string[]> {
    const rows = await this.query<{ instanceId: string; tier: Tier }>(
      `SELECT DISTINCT s."instanceId", i.tier FROM snapshots s INNER JOIN instances i ON i.id = s."instanceId" ` +
        `WHERE s."createdAt" >= :from AND s."createdAt" <= :line AND s.profile = 'SCHEDULED'`,
      { from, line },
    );
    return this.byTier(rows).get(tier) ?? [];
  }

  /**
   * Found by the snapshots' index, the tier is filtered here: asked for in SQL, SQLite (which has no statistics) walks
   * the tier's instances and seeks each one's history instead.
   */
  private byTier(rows: { instanceId: string; tier: Tier }[]): Map<Tier, string[]> {
    const byTier = new Map<Tier, string[]>();
    for (const { instanceId, tier } of rows) {
      const ids = byTier.get(tier);
      if (ids) ids.push(instanceId);
      else byTier.set(tier, [instanceId]);
    }
    for (const ids of byTier.values()) ids.sort();
    return byTier;
  }

  private query<T>(sql: string, parameters: Record<string, unknown>): Promise<T[]> {
    const [query, values] = this.db.driver.escapeQueryWithParameters(sql, parameters);
    return this.db.query(query, values);
  }

  /**
   * Sets the expiresAt of every settled snapshot to what this process's retention makes it (createdAt + retention, or
   * null on a tier without a time limit), once, before its first sweep. expiresAt is recorded when a snapshot settles,
   * under the config of that moment; the sweeps remove by the config of now. After a change of a tier's retention
   * (config changes apply at the next start) the API otherwise showed the old times: snapshots removed days before
   * their expiresAt, or kept past it. One or two statements per tier, writing only the rows whose expiresAt differs.
   * A snapshot already kept past that retention, not replaced since, keeps its null (kept until replaced).
   */
  private async alignExpiry(now: number): Promise<void> {
    for (const tier of TIERS) {
      const schedule = this.schedules[tier];
      const retentionMs = schedule.keepLatestOnly ? null : schedule.retentionMs;
      const ofTier = () =>
        this.snapshotRows
          .createQueryBuilder()
          .update(SnapshotEntity)
          .where('"instanceId" IN (SELECT i.id FROM instances i WHERE i.tier = :tier)', { tier });
      let affected = 0;
      if (retentionMs === null) {
        affected += (await ofTier().set({ expiresAt: null }).andWhere('"expiresAt" IS NOT NULL').execute()).affected ?? 0;
      } else {
        const align = () =>
          ofTier()
            .set({ expiresAt: () => '"createdAt" + :retentionMs' })
            .andWhere("status IN ('COMPLETED', 'FAILED')")
            .setParameters({ retentionMs, now });
        affected += (await align().andWhere('"expiresAt" IS NOT NULL AND "expiresAt" <> "createdAt" + :retentionMs').execute()).affected ?? 0;
        // Apart, so that only the rows without one (idx_snapshots_expiry) are looked at for a newer completed snapshot:
        // in one statement, PostgreSQL took 0.3 s more over 130,000 snapshots that had nothing to align.
        const keptUntilReplaced = `status = 'COMPLETED' AND "createdAt" + :retentionMs <= :now AND NOT ${replacementExists('snapshots')}`;
        affected += (await align().andWhere(`"expiresAt" IS NULL AND NOT (${keptUntilReplaced})`).execute()).affected ?? 0;
      }
      if (affected) this.logger.info({ tier, snapshots: affected, retention: retentionMs }, 'snapshot expiry aligned with the configured retention');
    }
  }

  /**
   * The thinning scan, and where the next one starts: past what is decided, but not past what must be seen again. In
   * a narrow window (every sweep after the first, unless something waits to be decided again) only the instances with
   * a candidate in it are read (idx_snapshots_created), each from the start of the window's first bucket; a wider one
   * (the first sweep reads every bucket) reads each instance of the tier in turn.
   */
  private async sweepThinning(tier: Tier, schedule: TierSchedule, now: number): Promise<number> {
    const from = this.thinFrom.get(tier) ?? 0;
    const line = now - schedule.thinAfterMs!;
    const window = { from: bucketStart(from, schedule.thinIntervalMs!), line };
    const instances = line - from <= schedule.thinIntervalMs! ? await this.instancesWithThinningCandidates(tier, from, line) : null;
    let revisitFrom = line;
    const { removed, complete } = await this.sweepScan(tier, schedule, now, { thinning: window }, instances, (rows, kept) => {
      // Not settled yet (a bucket's keeper may be among them), or chosen but not removed: decide them again.
      for (const row of [...rows.filter(isUnsettled), ...kept]) revisitFrom = Math.min(revisitFrom, row.createdAt);
    });
    if (complete) this.thinFrom.set(tier, revisitFrom);
    return removed;
  }

  /**
   * Reads one scan page by page (instances in id order, each instance's rows oldest first), decides each instance's
   * rows and removes what is chosen: over the given instances, or every instance of the tier (null). Incomplete when an
   * instance had more rows than a page holds: its oldest rows were decided, the rest wait for the next sweep.
   */
  private async sweepScan(
    tier: Tier,
    schedule: TierSchedule,
    now: number,
    scan: Scan,
    instances: string[] | null,
    observe?: (rows: Candidate[], kept: Candidate[]) => void,
  ): Promise<{ removed: number; complete: boolean }> {
    let removed = 0;
    let complete = true;
    const groups = instances === null ? [null] : chunks(instances, ID_CHUNK);
    for (const group of groups) {
      let afterInstance: string | null = null;
      for (;;) {
        const page = splitPage(await this.readPage(group === null ? { tier } : { instances: group }, scan, afterInstance));
        complete &&= page.complete;
        const rows = [...page.byInstance.values()];
        const outcome = await this.remove(await this.decidePage(rows, schedule, now, scan), schedule, now);
        removed += outcome.removed;
        observe?.(rows.flat(), outcome.kept);
        if (page.next === null) break;
        afterInstance = page.next;
      }
    }
    return { removed, complete };
  }

  private readPage(of: { tier: Tier } | { instances: string[] }, scan: Scan, afterInstance: string | null): Promise<Candidate[]> {
    const query = this.snapshotRows.createQueryBuilder('s').select(['s.id', 's.instanceId', 's.createdAt', 's.status', 's.profile', 's.expiresAt', 's.error']);
    // Ordered by i.id (idx_instances_tier), not s.instanceId: the database then walks the tier's instances and seeks
    // each one's range of the history index, instead of walking the whole history index to avoid a sort.
    const instance = 'tier' in of ? 'i.id' : 's.instanceId';
    if ('tier' in of) query.innerJoin(InstanceEntity, 'i', 'i.id = s.instanceId').where('i.tier = :tier', { tier: of.tier });
    else query.where('s.instanceId IN (:...instances)', { instances: of.instances });
    // Separate scans rather than one OR: each condition stays a range on the history index.
    if (scan.expiredAt !== undefined) query.andWhere('s.createdAt <= :expiredAt', { expiredAt: scan.expiredAt });
    if (scan.thinning) {
      query.andWhere("s.profile = 'SCHEDULED' AND s.createdAt >= :thinFrom AND s.createdAt <= :thinLine", {
        thinFrom: scan.thinning.from,
        thinLine: scan.thinning.line,
      });
    }
    if (afterInstance !== null) query.andWhere(`${instance} > :afterInstance`, { afterInstance });
    return query.orderBy(instance).addOrderBy('s.createdAt').addOrderBy('s.id').limit(PAGE_ROWS).getMany();
  }

  /** One instance's rows (a slice of its history): those the rules remove. `spared`: its snapshots no rule removes. */
  private decide(snapshots: Candidate[], schedule: TierSchedule, now: number, spared: readonly string[]): Candidate[] {
    const ids = new Set(snapshotsToRemove(snapshots, schedule, now, spared));
    return snapshots.filter((s) => ids.has(s.id));
  }

  /**
   * What the rules remove from a page, each instance's rows a slice of its history. No rule removes the snapshots an
   * instance spares (sparedOf), which a slice may not hold: they are read for the instances where the rules choose
   * something (most instances of a first thinning scan have nothing to thin). The rows of a retention scan are all past
   * the retention: those spared among them are kept until replaced.
   */
  private async decidePage(rows: Candidate[][], schedule: TierSchedule, now: number, scan: Scan): Promise<Candidate[]> {
    // Decided as if the spared were elsewhere, the rules choose what they would, the spared too when they are among
    // them: sparing them is the last step (snapshotsToRemove).
    const concerned = rows
      .map((instanceRows) => ({ instanceRows, byRules: this.decide(instanceRows, schedule, now, []) }))
      .filter(({ byRules }) => byRules.length > 0);
    const spared = await this.sparedIn(concerned.map(({ instanceRows }) => instanceRows[0].instanceId));
    const chosen: Candidate[] = [];
    for (const { instanceRows, byRules } of concerned) {
      const ids = spared.get(instanceRows[0].instanceId) ?? [];
      chosen.push(...byRules.filter((row) => !ids.includes(row.id)));
      if (scan.expiredAt === undefined) continue;
      // Already kept so when another row of its instance brings it into the scan: nothing to write.
      for (const row of instanceRows) if (ids.includes(row.id) && row.expiresAt !== null) await this.keepUntilReplaced(row);
    }
    return chosen;
  }

  /**
   * Per instance, the ids of its snapshots no rule removes (sparedOf) in the whole history (absent: none), each on the
   * history index: its newest COMPLETED snapshot, and its newest one not known to be damaged.
   */
  private async sparedIn(instanceIds: string[]): Promise<Map<string, string[]>> {
    const spared = new Map<string, string[]>();
    const newest = (sound: string) =>
      `(SELECT s.id FROM snapshots s WHERE s."instanceId" = i.id AND s.status = 'COMPLETED'${sound} ORDER BY s."createdAt" DESC, s.id DESC LIMIT 1)`;
    for (const group of chunks(instanceIds, ID_CHUNK)) {
      const rows = await this.query<{ instanceId: string; newest: string | null; newestSound: string | null }>(
        `SELECT i.id AS "instanceId", ${newest('')} AS newest, ${newest(' AND s.error IS NULL')} AS "newestSound" ` +
          `FROM instances i WHERE i.id IN (:...group)`,
        { group },
      );
      for (const row of rows) {
        const ids = [...new Set([row.newest, row.newestSound])].filter((id): id is string => id !== null);
        if (ids.length > 0) spared.set(row.instanceId, ids);
      }
    }
    return spared;
  }

  /**
   * A snapshot its instance spares (sparedOf), past its retention: its expiresAt goes to null (kept until replaced), so
   * that the sweeps do not read it again, unless it has been replaced since it was read (that completion, or
   * verification's finding, gave back the expiresAt of what it replaced, and this one goes at the next sweep). The
   * instance's snapshots still being taken, and its completed ones newer than this one (verification may find one
   * whole again), are locked first: a completion or a verification commits before the look (which then sees it), or
   * after this transaction (its hook, onReplacement, then gives back the expiresAt set here). Unlocked, on PostgreSQL
   * a completion that committed during the statement was not seen by it, and had looked before the null was set: the
   * replaced snapshot showed "kept until replaced" for as long as its replacement's retention. A failure is logged;
   * the next sweep tries again.
   */
  private async keepUntilReplaced(spared: Candidate): Promise<void> {
    const { id: snapshotId, instanceId } = spared;
    try {
      const kept = await this.db.transaction(async (manager) => {
        await manager
          .createQueryBuilder()
          .update(SnapshotEntity)
          .set({ status: () => 'status' })
          .where(
            `"instanceId" = :instanceId AND (status IN ('PENDING', 'IN_PROGRESS') OR (status = 'COMPLETED' AND ("createdAt" > :createdAt OR ("createdAt" = :createdAt AND id > :id))))`,
            { instanceId, createdAt: spared.createdAt, id: snapshotId },
          )
          .execute();
        const { affected } = await manager
          .createQueryBuilder()
          .update(SnapshotEntity)
          .set({ expiresAt: null })
          .where(`id = :id AND status = 'COMPLETED' AND "expiresAt" IS NOT NULL AND NOT ${replacementExists('snapshots')}`, { id: snapshotId })
          .execute();
        return affected ? manager.findOneBy(SnapshotEntity, { id: snapshotId }) : null;
      });
      if (!kept) return;
      this.snapshots.publish(kept);
      this.logger.info({ snapshotId, instanceId, tenantId: kept.tenantId }, 'snapshot kept past its retention until replaced: no newer completed snapshot of its instance is known to be sound');
    } catch (error) {
      this.logger.error({ err: error, snapshotId, instanceId }, 'could not keep a snapshot until replaced; the next sweep tries again');
    }
  }

  /**
   * Removes the chosen snapshots with their blobs and events, except those an operation is reading or writing (a
   * restore from an expiring snapshot must not lose its source), those with an export link still valid (the link says
   * it works until its expiresAt, and a download resumes with Range until then), and every snapshot of an instance being
   * restored: they stay until a later sweep. A restore's safety snapshot is COMPLETED as soon as it is taken, before the
   * restore's load; were it the latest, a keep-latest-only tier would lose every older snapshot, and a restore that
   * then fails or is cancelled removes its safety snapshot too, leaving the instance no backup at all.
   * Both are looked at again as each row goes, and, for a COMPLETED snapshot (any snapshot on a keep-latest-only tier),
   * that a snapshot that replaces it is still there: the choice rests on rows read before, and a restore that failed
   * since took the safety snapshot that superseded the others with it (the look before found no restore, and the
   * instance's only snapshot went), a user deleted the newer one, or verification found it damaged.
   */
  private async remove(chosen: Candidate[], schedule: Pick<TierSchedule, 'keepLatestOnly'>, now: number): Promise<Removal> {
    const outcome: Removal = { removed: 0, kept: [] };
    const operations = this.db.getRepository(OperationEntity);
    for (let i = 0; i < chosen.length; i += ID_CHUNK) {
      const batch = chosen.slice(i, i + ID_CHUNK);
      const ids = batch.map((s) => s.id);
      const reading = await operations.find({ select: { snapshotId: true }, where: { snapshotId: In(ids), status: In(['QUEUED', 'RUNNING']) } });
      const restoring = await operations.find({ select: { instanceId: true }, where: restoreInProgressOn([...new Set(batch.map((s) => s.instanceId))]) });
      const linked = await this.db
        .getRepository(ExportTokenEntity)
        .find({ select: { snapshotId: true }, where: { snapshotId: In(ids), expiresAt: MoreThan(now) } });
      const busyInstances = new Set(restoring.map((operation) => operation.instanceId));
      const busy = new Set([
        ...reading.map((operation) => operation.snapshotId),
        ...linked.map((link) => link.snapshotId),
        ...batch.filter((s) => busyInstances.has(s.instanceId)).map((s) => s.id),
      ]);
      // Rows gone since the query were removed by someone else (a user, another sweep): nothing to do for them.
      const free = ids.filter((id) => !busy.has(id));
      const rows = free.length > 0 ? await this.snapshotRows.findBy({ id: In(free) }) : [];
      outcome.kept.push(...batch.filter((s) => busy.has(s.id)));
      for (const snapshot of rows) {
        try {
          // Looked at again as the row goes: a restore from it (or of its instance) may have been queued since the look
          // above, or the snapshot that superseded it gone.
          // Only while a snapshot that replaces it is still there, for a COMPLETED one: no rule removes what is spared.
          const supersededOnly = schedule.keepLatestOnly || snapshot.status === 'COMPLETED';
          const removal = await this.snapshots.deleteUnlessRead(snapshot, { unlessRestoring: true, unlessLinked: true, supersededOnly });
          if (removal === 'read' || removal === 'needed') outcome.kept.push(batch.find((s) => s.id === snapshot.id)!);
          if (removal === 'deleted') {
            outcome.removed += 1;
            const { id: snapshotId, instanceId, tenantId, profile } = snapshot;
            this.logger.info({ snapshotId, instanceId, tenantId, profile }, 'snapshot removed by retention');
          }
        } catch (error) {
          outcome.kept.push(batch.find((s) => s.id === snapshot.id)!);
          this.logger.error({ err: error, snapshotId: snapshot.id, instanceId: snapshot.instanceId }, 'could not remove snapshot');
        }
      }
    }
    return outcome;
  }
}

/** Which rows of a tier one scan reads: all of them ({}), the expired ones, or a thinning window. */
interface Scan {
  expiredAt?: number;
  /** SCHEDULED snapshots with from <= createdAt <= line (line: now - thinAfter). */
  thinning?: { from: number; line: number };
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The bucket grid retention.ts thins on: epoch multiples of thinInterval. */
function bucketStart(at: number, intervalMs: number): number {
  return Math.floor(at / intervalMs) * intervalMs;
}

function isUnsettled(s: RetainedSnapshot): boolean {
  return s.status === 'PENDING' || s.status === 'IN_PROGRESS';
}

/**
 * Groups a page by instance. A full page may have cut the last instance's rows short: that instance is left for
 * the next page, which starts at it, unless it is the page's only instance (more rows than a page holds); then its
 * oldest rows are decided now (a prefix decides a subset, see above) and the scan is incomplete.
 */
function splitPage(page: Candidate[]): { byInstance: Map<string, Candidate[]>; next: string | null; complete: boolean } {
  const byInstance = new Map<string, Candidate[]>();
  for (const row of page) {
    const rows = byInstance.get(row.instanceId);
    if (rows) rows.push(row);
    else byInstance.set(row.instanceId, [row]);
  }
  if (page.length < PAGE_ROWS) return { byInstance, next: null, complete: true };
  const instances = [...byInstance.keys()];
  const last = instances[instances.length - 1];
  if (instances.length === 1) return { byInstance, next: last, complete: false };
  byInstance.delete(last);
  return { byInstance, next: instances[instances.length - 2], complete: true };
}
