// The change log of every instance: each store epoch's write transactions, shipped from the store's own log table to
// backup storage as encrypted, checksummed, chained segments within about a second of commit, then trimmed from the
// store. Also reads them back in order (replays, verification) and says how far back an instance can be restored.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { Between, In, IsNull, type DataSource, type EntityManager, type Repository } from 'typeorm';
import { CryptoError, UnknownKeyError } from '../crypto/errors';
import { decodeSegment, encodeSegment, expectSegment, SegmentFormatError } from '../changelog/segment-format';
import type { InstanceEntity } from '../entities/instance.entity';
import { LogSegmentEntity } from '../entities/log-segment.entity';
import { newestBase, RestorePointEntity } from '../entities/restore-point.entity';
import { StoreEpochEntity } from '../entities/store-epoch.entity';
import { startEpoch } from '../changelog/store-epochs';
import { AppError, isAppError } from '../errors/app-error';
import type { GraphStore, LogEntry, StorePosition } from '../graph/graph-store';
import type { Logger } from '../logging/logger';
import type { EncryptedBlobStore } from '../storage/encrypted-blob-store';
import { BlobNotFoundError } from '../storage/errors';
import type { InstanceService } from './instance.service';

export interface ChangeLogOptions {
  /** A write is shipped at most this long after it commits (plus the time the shipping itself takes). */
  shipDelayMs: number;
  /** Every instance's log is looked at this often, also when nobody wrote (so that the window's latest moves on). */
  tickMs: number;
  /** About this many bytes of tuple lines go in one segment. */
  segmentBytes: number;
}

export interface RestoreWindowView {
  earliest: number;
  latest: number;
  /** Why the window starts later than the retention allows (damage, or history from before the change log). */
  reason: string | null;
}

/** A point on an instance's history: the epoch whose store held it, and the newest seq at or before it. */
export interface HistoryPosition {
  epoch: StoreEpochEntity;
  /** Entries with a commit time at or before this belong to the point (null: up to `seq`). */
  at: number | null;
}

/** A caller waiting for its shipping (a snapshot): stop between segments when aborted; bytes shipped so far. */
export interface ShipWatch {
  signal?: AbortSignal;
  progress?: (shippedBytes: number, totalBytes: number) => void;
}

/** Told after every shipped segment, with the epoch as it now stands (the base policy listens). */
export type ShippedListener = (instance: InstanceEntity, epoch: StoreEpochEntity) => void;

/** Told when damage is recorded on an epoch of the instance (the base policy listens: the window needs a base past it). */
export type DamagedListener = (instanceId: string, epoch: StoreEpochEntity) => void;

export class ChangeLogService {
  private readonly epochs: Repository<StoreEpochEntity>;
  private readonly segments: Repository<LogSegmentEntity>;
  /** One shipping at a time per instance: each call runs after the previous one has settled. */
  private readonly shipping = new Map<string, Promise<unknown>>();
  private readonly scheduled = new Map<string, NodeJS.Timeout>();
  private readonly listeners: ShippedListener[] = [];
  private readonly damageListeners: DamagedListener[] = [];
  /**
   * How far this process has seen each epoch shipped (its restore window's latest). Persisted with every shipped
   * segment, and otherwise at most every LATEST_PERSIST_MS: an idle instance's window moves on every second without a
   * metadata write every second (which would also contend with other writers of an embedded database, the CLI's).
   * What is not persisted yet is persisted when shipping stops (a graceful stop), so that the window a restart offers
   * does not start behind the one offered before it.
   */
  private readonly latest = new Map<number, { shippedThrough: number; persistedAt: number; persisted: boolean }>();
  private ticker: NodeJS.Timeout | null = null;
  private ticking = false;

  constructor(
    private readonly db: DataSource,
    private readonly blobs: EncryptedBlobStore,
    private readonly instances: InstanceService,
    private readonly logger: Logger,
    private readonly options: ChangeLogOptions,
  ) {
    this.epochs = db.getRepository(StoreEpochEntity);
    this.segments = db.getRepository(LogSegmentEntity);
  }

  onShipped(listener: ShippedListener): void {
    this.listeners.push(listener);
  }

  onDamaged(listener: DamagedListener): void {
    this.damageListeners.push(listener);
  }

  // ---- epochs -----------------------------------------------------------------------------------------------------

  /**
   * The instance's history has ended (it is being deleted): its epochs stay only as long as snapshots need them. Waits
   * for a shipping of it in flight, which may have opened its store, so that the store can be removed after this.
   */
  async endEpochs(instanceId: string, at = Date.now()): Promise<void> {
    clearTimeout(this.scheduled.get(instanceId));
    this.scheduled.delete(instanceId);
    await this.shipping.get(instanceId)?.catch(() => undefined);
    await this.epochs.update({ instanceId, endedAt: IsNull() }, { endedAt: at });
  }

  epoch(epoch: number): Promise<StoreEpochEntity | null> {
    return this.epochs.findOneBy({ epoch });
  }

  /** Newest first. */
  epochsOf(instanceId: string): Promise<StoreEpochEntity[]> {
    return this.epochs.find({ where: { instanceId }, order: { startedAt: 'DESC', epoch: 'DESC' } });
  }

  /** The epoch whose store held the instance's data at `at`. */
  async epochAt(instanceId: string, at: number): Promise<StoreEpochEntity | null> {
    for (const epoch of await this.epochsOf(instanceId)) {
      if (epoch.startedAt <= at && (epoch.endedAt === null || at < epoch.endedAt)) return epoch;
    }
    return null;
  }

  /**
   * Records that the epoch's log from `fromSeq` cannot be read: the window then starts at the first base past it. The
   * newest damage is the one kept: a base after earlier damage is no way past later damage (its replay reads it).
   */
  async recordDamage(epoch: StoreEpochEntity, fromSeq: number, message: string): Promise<void> {
    if (!(await this.saveDamage(epoch, fromSeq, message, this.db.manager))) return;
    for (const listener of this.damageListeners) listener(epoch.instanceId, epoch);
    await this.tellRestoredFromDamage(epoch.tenantId, epoch.epoch);
  }

  /**
   * Records that a base cannot be read (a verification, or a read that failed, found chunks of it damaged or missing).
   * Its own store, when current, gets a new base from the finder (BackupService.rebaseAfterDamage); the current stores
   * restored from a moment built on it are told here, as for damage to a log.
   */
  async recordBaseDamage(base: Pick<RestorePointEntity, 'id' | 'tenantId'>, message: string): Promise<void> {
    await this.db.getRepository(RestorePointEntity).update({ id: base.id }, { damage: message.slice(0, 1000) });
    await this.tellRestoredFromDamage(base.tenantId, null);
  }

  /**
   * Tells the base policy of the tenant's current stores restored from a moment that damage cut off (an instance's own,
   * restored over it, or another one's; not `except`, told already): until a base of them is taken, none of their
   * moments can be built either.
   */
  private async tellRestoredFromDamage(tenantId: string, except: number | null): Promise<void> {
    const restored = await this.epochs.find({ where: { tenantId, endedAt: IsNull(), anchor: 'ORIGIN' } });
    for (const dependent of restored) {
      if (dependent.epoch === except || (await this.anchorDamage(dependent)) === null) continue;
      for (const listener of this.damageListeners) listener(dependent.instanceId, dependent);
    }
  }

  /**
   * Why the epoch's start cannot be built (null: nothing recorded says so). A store restored from a moment of another
   * epoch (anchor ORIGIN) is built, up to its own first base, from that moment: the newest base of that epoch before it
   * and the log from there, or, without such a base, from that epoch's own anchor in turn. Damage recorded on a log or
   * a base that this needs makes every moment before the store's first base unreachable, though its own log is whole.
   */
  async anchorDamage(epoch: StoreEpochEntity): Promise<string | null> {
    const points = this.db.getRepository(RestorePointEntity);
    const seen = new Set<number>();
    for (let from = epoch; from.anchor === 'ORIGIN' && from.originPointId !== null && !seen.has(from.epoch); ) {
      seen.add(from.epoch);
      const origin = await points.findOneBy({ id: from.originPointId });
      // A point that is gone is the window's to say (reachOf).
      if (!origin) return null;
      // A snapshot's base (or a previous release's delta): built from the chunks of the base at its root alone.
      if (origin.kind !== 'LOG') return (await points.findOneBy({ id: origin.baseId ?? origin.id }))?.damage ?? null;
      const source = await this.epoch(origin.epoch);
      if (!source) return null;
      const base = await newestBase(points, source.epoch, origin.seq);
      const damagedThrough = await this.damagedThroughSeq(source);
      if (damagedThrough !== null && source.damagedFromSeq! <= origin.seq && (base?.seq ?? 0) < damagedThrough) return source.damage;
      if (base) return base.damage;
      from = source;
    }
    return null;
  }

  /** recordDamage without telling anyone, in `manager`'s transaction; false when damage at or after it was recorded already. */
  private async saveDamage(epoch: StoreEpochEntity, fromSeq: number, message: string, manager: EntityManager): Promise<boolean> {
    if (epoch.damagedFromSeq !== null && epoch.damagedFromSeq >= fromSeq) return false;
    // Compared as the row is, not as `epoch` was read: a replay planned before another recorded later damage (a
    // base taken after it since) overwrote it with its older one, and the window offered again the moments between,
    // which need the later damaged segment.
    const saved = await manager
      .createQueryBuilder()
      .update(StoreEpochEntity)
      .set({ damage: message.slice(0, 1000), damagedFromSeq: fromSeq })
      .where('epoch = :epoch AND ("damagedFromSeq" IS NULL OR "damagedFromSeq" < :fromSeq)', { epoch: epoch.epoch, fromSeq })
      .execute();
    if (!saved.affected) {
      const row = await manager.findOneBy(StoreEpochEntity, { epoch: epoch.epoch });
      if (row) Object.assign(epoch, { damage: row.damage, damagedFromSeq: row.damagedFromSeq });
      return false;
    }
    this.logger.error({ epoch: epoch.epoch, instanceId: epoch.instanceId, fromSeq, damage: message }, 'change log damaged');
    Object.assign(epoch, { damage: message.slice(0, 1000), damagedFromSeq: fromSeq });
    return true;
  }

  // ---- shipping ---------------------------------------------------------------------------------------------------

  /**
   * Run on each store as it is opened, before anything reads or writes it (GraphStoreProvider.onOpen). A store whose
   * seq is behind the log shipped from it lost its last commits after they were shipped: a power loss rolled them back
   * (SQLite's WAL with synchronous = NORMAL keeps every commit through a crash of the process, not of the machine), or
   * an older copy of its file was put back. Its next writes would take the shipped seqs: shipping skipped them as
   * shipped, then went on after them, and a restore to any moment from then on brought back the writes the rollback
   * undid, without those made since. The store starts a new history instead (a new epoch, adopted at once: its first
   * base is taken, as for a store that had no history), after every moment the old one offered, which keeps them.
   */
  async checkOpened(instanceId: string, store: GraphStore): Promise<void> {
    const position = await store.position();
    const epoch = await this.epochs.findOneBy({ epoch: position.epoch });
    // Only the instance's current history: another store (a generation a restore replaced) has no next writes.
    if (!epoch || epoch.endedAt !== null || position.seq >= epoch.shippedSeq) return;
    // Another replica may have shipped writes made after `position` was read: then the store holds them by now.
    const now = await store.position();
    if (now.epoch !== epoch.epoch || now.seq >= epoch.shippedSeq) return;
    this.logger.warn(
      { instanceId, epoch: epoch.epoch, storeSeq: now.seq, shippedSeq: epoch.shippedSeq },
      'the store is behind the change log shipped from it (its last commits were rolled back): it starts a new history',
    );
    const started = await store.startHistory(epoch.epoch, this.latestOf(epoch) + 1);
    const instance = await this.instances.reload(instanceId);
    // Another replica that opened the store at the same time may have started it (then it adopts it too, or did).
    if (!instance || (await this.epochs.existsBy({ epoch: started.epoch }))) return;
    const adopted = await this.adopt(instance, started, started.readAt);
    for (const listener of this.listeners) listener(instance, adopted);
  }

  /** Starts the periodic look at every instance's log. */
  start(): void {
    // A failed look (the metadata database away for a moment) is logged, and the next tick looks again.
    this.ticker = setInterval(() => void this.tick().catch((err) => this.logger.warn({ err }, 'looking for change logs to ship failed; it is retried')), this.options.tickMs);
    this.ticker.unref();
  }

  /** Stops shipping and lets what is running finish (the rest ships at the next start: it is in the stores). */
  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    for (const timer of this.scheduled.values()) clearTimeout(timer);
    this.scheduled.clear();
    await Promise.allSettled([...this.shipping.values()]);
    await this.persistLatest().catch((err) => this.logger.warn({ err }, 'could not record how far the change logs were shipped'));
  }

  /**
   * Records the latest this process offered of each epoch where only its memory holds it: else a restart offered a
   * window ending up to LATEST_PERSIST_MS earlier (until its first look), and refused a restore to a moment the window
   * had offered before. Never moves a recorded one back (another replica may have recorded a later one).
   */
  private async persistLatest(): Promise<void> {
    for (const [epoch, seen] of this.latest) {
      if (seen.persisted) continue;
      await this.recordShippedThrough(epoch, seen.shippedThrough);
      seen.persisted = true;
    }
  }

  /** Records `shippedThrough` as the epoch's latest, unless another replica recorded a later one. */
  private async recordShippedThrough(epoch: number, shippedThrough: number): Promise<void> {
    await this.epochs
      .createQueryBuilder()
      .update()
      .set({ shippedThrough })
      .where('epoch = :epoch AND ("shippedThrough" IS NULL OR "shippedThrough" < :shippedThrough)', { epoch, shippedThrough })
      .execute();
  }

  /** A write committed on the instance: ship it soon. */
  notify(instance: InstanceEntity): void {
    if (this.scheduled.has(instance.id) || !this.ticker) return;
    const timer = setTimeout(() => {
      this.scheduled.delete(instance.id);
      void this.ship(instance.id).catch((err) => this.logger.warn({ err, instanceId: instance.id }, 'shipping the change log failed; it is retried'));
    }, this.options.shipDelayMs);
    timer.unref();
    this.scheduled.set(instance.id, timer);
  }

  /**
   * Ships everything the instance's store has logged and returns the store's position as read first: every write up
   * to it is then in a recorded segment. (A snapshot is this position; so is a restore's safety point.)
   */
  async flush(instance: InstanceEntity, watch: ShipWatch = {}): Promise<{ position: StorePosition; epoch: StoreEpochEntity }> {
    const shipped = await this.ship(instance.id, instance, watch);
    if (!shipped) throw new AppError('INSTANCE_UNAVAILABLE', `instance ${instance.id} has no store to read its change log from`);
    return shipped;
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const current = await this.epochs.find({ select: { instanceId: true }, where: { endedAt: IsNull() } });
      const known = new Set(current.map((row) => row.instanceId));
      // Stores older than the change log get their epoch row at their first look.
      const running = await this.instances.runningIds();
      for (const instanceId of new Set([...known, ...running])) {
        await this.ship(instanceId).catch((err) => this.logger.warn({ err, instanceId }, 'shipping the change log failed; it is retried'));
      }
    } finally {
      this.ticking = false;
    }
  }

  private ship(
    instanceId: string,
    known?: InstanceEntity,
    watch: ShipWatch = {},
  ): Promise<{ position: StorePosition; epoch: StoreEpochEntity } | null> {
    const previous = this.shipping.get(instanceId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.shipNow(instanceId, known, watch));
    this.shipping.set(instanceId, next);
    void next.finally(() => {
      if (this.shipping.get(instanceId) === next) this.shipping.delete(instanceId);
    }).catch(() => undefined);
    return next;
  }

  private async shipNow(
    instanceId: string,
    known: InstanceEntity | undefined,
    watch: ShipWatch,
  ): Promise<{ position: StorePosition; epoch: StoreEpochEntity } | null> {
    const instance = (await this.instances.reload(instanceId)) ?? known;
    if (!instance || (instance.status !== 'RUNNING' && instance.status !== 'RESTORING')) return null;
    return this.instances.withStore(instance, async (store) => {
      const position = await store.position();
      let epoch = await this.epochs.findOneBy({ epoch: position.epoch });
      // A store adopted now wants its first base at once (the base policy hears of it like of a shipped segment).
      let shippedAny = !epoch;
      epoch ??= await this.adopt(instance, position);
      // Up to the position read, not on after it: under steady writes this round would never end, and `latest` is
      // only moved at its end. Later writes are the next round's.
      let shippedBytes = 0;
      const totalBytes = watch.progress && epoch.shippedSeq < position.seq ? await store.logBytesAfter(epoch.shippedSeq) : 0;
      while (epoch.shippedSeq < position.seq) {
        watch.signal?.throwIfAborted();
        const entries = await store.readLog(epoch.shippedSeq, this.options.segmentBytes);
        if (entries.length === 0 || entries[0].seq !== epoch.shippedSeq + 1) {
          // Another replica writing to the same store may have shipped (and trimmed) these entries meanwhile.
          if (await this.caughtUp(epoch)) continue;
          // Otherwise they are lost: up to the first entry the store still holds or, when it holds none after them, up
          // to the position read (its seq was taken by them). Left waiting for a later write to find them, an idle
          // store's window stood still, offering moments whose writes no listed segment holds.
          if (!(await this.skipLostEntries(epoch, entries[0]?.seq ?? position.seq + 1))) {
            if (await this.caughtUp(epoch)) continue;
            throw new AppError('CONFLICT', `the change log of epoch ${epoch.epoch} was shipped by another process meanwhile`);
          }
          // The base policy hears of the damage at the end of this round, as of a shipped segment.
          shippedAny = true;
          if (entries.length === 0) continue;
        }
        try {
          shippedBytes += await this.writeSegment(instance, epoch, entries);
        } catch (error) {
          if (isAppError(error) && error.code === 'CONFLICT' && (await this.caughtUp(epoch))) continue;
          throw error;
        }
        await store.trimLog(epoch.shippedSeq);
        shippedAny = true;
        watch.progress?.(shippedBytes, Math.max(totalBytes, shippedBytes));
      }
      // Every write with a commit time before readAt is at or below position.seq, which is now shipped.
      if (epoch.shippedSeq >= position.seq) await this.advanceLatest(epoch, position.readAt - 1, shippedAny);
      if (shippedAny) for (const listener of this.listeners) listener(instance, epoch);
      return { position, epoch };
    });
  }

  /**
   * The store no longer holds entries that were never shipped (the metadata lost its last commits, say): nothing can
   * restore across them. The damage is recorded and shipping goes on from `firstHeldSeq`, both in one transaction and
   * on condition that nobody shipped meanwhile: the next segment is recorded only where the epoch's row stands right
   * before it, so a skip made in memory alone would stop shipping for good. False when another process got there first.
   */
  private async skipLostEntries(epoch: StoreEpochEntity, firstHeldSeq: number): Promise<boolean> {
    const fromSeq = epoch.shippedSeq + 1;
    const skipped = await this.db.transaction(async (manager) => {
      const moved = await manager.update(StoreEpochEntity, { epoch: epoch.epoch, shippedSeq: epoch.shippedSeq }, { shippedSeq: firstHeldSeq - 1 });
      if (!moved.affected) return false;
      // Nobody is told here: the round that skipped tells the base policy, with the damage on the epoch.
      await this.saveDamage(epoch, fromSeq, `log entries ${fromSeq}–${firstHeldSeq - 1} were lost before they were shipped`, manager);
      return true;
    });
    if (skipped) epoch.shippedSeq = firstHeldSeq - 1;
    return skipped;
  }

  /** Whether another process shipped more of the epoch than `epoch` says; if so, `epoch` is brought up to date. */
  private async caughtUp(epoch: StoreEpochEntity): Promise<boolean> {
    const row = await this.epochs.findOneBy({ epoch: epoch.epoch });
    if (!row || row.shippedSeq <= epoch.shippedSeq) return false;
    Object.assign(epoch, { shippedSeq: row.shippedSeq, headSha256: row.headSha256 });
    return true;
  }

  private async advanceLatest(epoch: StoreEpochEntity, shippedThrough: number, persistNow: boolean): Promise<void> {
    const seen = this.latest.get(epoch.epoch);
    if (seen && seen.shippedThrough >= shippedThrough) return;
    const now = Date.now();
    const persist = persistNow || !seen || now - seen.persistedAt >= LATEST_PERSIST_MS;
    this.latest.set(epoch.epoch, { shippedThrough, persistedAt: persist ? now : seen!.persistedAt, persisted: persist });
    epoch.shippedThrough = Math.max(epoch.shippedThrough ?? -1, shippedThrough);
    // Never back: another replica shipping the epoch may have recorded a later one since `epoch` was read.
    if (persist) await this.recordShippedThrough(epoch.epoch, epoch.shippedThrough);
  }

  /** Returns the segment's plain bytes. */
  private async writeSegment(instance: InstanceEntity, epoch: StoreEpochEntity, entries: LogEntry[]): Promise<number> {
    const segment = encodeSegment({ instanceId: instance.id, epoch: epoch.epoch, prevSha256: epoch.headSha256 }, entries);
    const { header } = segment;
    // The key is the segment's place and content: two replicas shipping the same entries at once (each reads the log
    // as far as it has got) write two blobs and record one, so neither can overwrite the blob the other recorded.
    const blobKey = segmentKeyOf(instance.tenantId, instance.id, epoch.epoch, header.firstSeq, segment.sha256);
    const { storedBytes } = await this.blobs.write(blobKey, Readable.from([segment.plaintext]));
    await this.recordSegment(instance, epoch, segment, blobKey, storedBytes).catch(async (error) => {
      // Not recorded (another process shipped these entries first): the blob goes, unless that process shipped the
      // very same segment (same entries, same key) and recorded it.
      if (!(await this.segments.existsBy({ blobKey }).catch(() => true))) await this.blobs.delete(blobKey).catch(() => undefined);
      throw error;
    });
    epoch.shippedSeq = header.lastSeq;
    epoch.headSha256 = segment.sha256;
    return segment.plaintext.length;
  }

  private async recordSegment(
    instance: InstanceEntity,
    epoch: StoreEpochEntity,
    segment: ReturnType<typeof encodeSegment>,
    blobKey: string,
    storedBytes: number,
  ): Promise<void> {
    const { header } = segment;
    await this.db.transaction(async (manager) => {
      const moved = await manager.update(
        StoreEpochEntity,
        { epoch: epoch.epoch, shippedSeq: header.firstSeq - 1 },
        { shippedSeq: header.lastSeq, headSha256: segment.sha256 },
      );
      if (!moved.affected) throw new AppError('CONFLICT', `the change log of epoch ${epoch.epoch} was shipped by another process meanwhile`);
      await manager.insert(LogSegmentEntity, {
        id: randomUUID(),
        tenantId: instance.tenantId,
        instanceId: instance.id,
        epoch: epoch.epoch,
        firstSeq: header.firstSeq,
        lastSeq: header.lastSeq,
        firstAt: header.firstAt,
        lastAt: header.lastAt,
        lines: header.lines,
        plainBytes: segment.plaintext.length,
        storedBytes,
        sha256: segment.sha256,
        prevSha256: header.prevSha256,
        blobKey,
        createdAt: Date.now(),
      } satisfies LogSegmentEntity);
    });
  }

  /**
   * A store no epoch row knows: one written before the change log existed (or whose row a crash lost). Its history
   * so far is unknown (anchor NONE) until its first base; its log from now on ships as usual.
   *
   * The epoch starts at the store's last commit when it has one (a write this release made before its first look,
   * just after the upgrade): the data the store holds now has been there since, and its first base carries that
   * moment, which the restore window then offers; an epoch starting later would hold none of those moments. A store
   * that started a new history for a rollback (checkOpened) gives its start instead: its readAt then.
   */
  private async adopt(
    instance: InstanceEntity,
    position: StorePosition,
    startedAt = Math.min(position.at ?? Date.now(), Date.now()),
  ): Promise<StoreEpochEntity> {
    // Shipped through its position from the start, in the same transaction: set after, it moved back what another
    // replica shipped of the store in between, and the next read found a gap, recorded as damage.
    await this.db.transaction(async (manager) => {
      await startEpoch(manager, instance, position.epoch, { anchor: 'NONE' }, startedAt);
      await manager.update(StoreEpochEntity, { epoch: position.epoch }, { shippedSeq: position.seq });
    });
    this.logger.info({ instanceId: instance.id, epoch: position.epoch }, 'change log started for a store that had none');
    return (await this.epochs.findOneByOrFail({ epoch: position.epoch }));
  }

  // ---- reading ----------------------------------------------------------------------------------------------------

  /**
   * The epoch's entries after `afterSeq`, in order, up to `until.seq` (default: all shipped), read from their segments
   * and checked: each is the segment recorded (sha256), in an unbroken chain. A damaged or missing segment is recorded
   * on the epoch and thrown as INVALID_BACKUP_FILE; one a collection removed after the read was planned (its row is gone
   * too) is retention, not damage: OUT_OF_RESTORE_WINDOW, and nothing is recorded.
   */
  async *entries(
    epoch: StoreEpochEntity,
    afterSeq: number,
    until: { seq?: number },
    signal?: AbortSignal,
    onRead?: (plainBytes: number) => void,
  ): AsyncGenerator<LogEntry> {
    const lastSeq = until.seq ?? epoch.shippedSeq;
    if (lastSeq <= afterSeq) return;
    let expectedSeq = afterSeq + 1;
    let previous: LogSegmentEntity | null = null;
    for await (const row of this.segmentsToRead(epoch.epoch, afterSeq, lastSeq)) {
      signal?.throwIfAborted();
      if (row.firstSeq > expectedSeq) await this.missing(epoch, expectedSeq, row.firstSeq - 1);
      if (previous && row.prevSha256 !== previous.sha256) await this.damaged(epoch, row.firstSeq, `segment ${row.firstSeq}–${row.lastSeq} does not follow the one before it`);
      previous = row;
      const segment = await this.readSegment(epoch, row);
      onRead?.(row.plainBytes);
      for (const entry of segment.entries) {
        if (entry.seq < expectedSeq) continue;
        if (entry.seq > lastSeq) return;
        yield entry;
        expectedSeq = entry.seq + 1;
      }
    }
    if (expectedSeq <= lastSeq) await this.missing(epoch, expectedSeq, lastSeq);
  }

  /**
   * The epoch's segments holding seqs after `afterSeq` up to `lastSeq`, in order, a page at a time: a replay from a
   * base taken long ago (bases could not be stored for days: backup storage out of reach) may span hundreds of
   * thousands of them, too many rows to hold at once.
   */
  private async *segmentsToRead(epoch: number, afterSeq: number, lastSeq: number): AsyncGenerator<LogSegmentEntity> {
    for (let afterFirstSeq = -1; ; ) {
      const page = await this.segments
        .createQueryBuilder('s')
        .where('s.epoch = :epoch AND s.lastSeq > :afterSeq AND s.firstSeq <= :lastSeq AND s.firstSeq > :afterFirstSeq', { epoch, afterSeq, lastSeq, afterFirstSeq })
        .orderBy('s.firstSeq', 'ASC')
        .take(SEGMENT_PAGE)
        .getMany();
      yield* page;
      if (page.length < SEGMENT_PAGE) return;
      afterFirstSeq = page[page.length - 1].firstSeq;
    }
  }

  /**
   * No segment holds the epoch's seqs fromSeq–untilSeq. Collection may have removed them after the read was planned (a
   * restore writes its base back before it lists the log to replay): then the moment has left the window, and that is
   * no damage. Otherwise it is.
   */
  private async missing(epoch: StoreEpochEntity, fromSeq: number, untilSeq: number): Promise<never> {
    const message = `no segment holds seqs ${fromSeq}–${untilSeq}`;
    const current = await this.epochs.findOneBy({ epoch: epoch.epoch });
    if (current?.collectedThroughSeq != null && current.collectedThroughSeq >= fromSeq) {
      throw new AppError('OUT_OF_RESTORE_WINDOW', `${message} of instance ${epoch.instanceId}: they were collected (retention), and the moment they serve is no longer in the restore window`);
    }
    return this.damaged(epoch, fromSeq, message);
  }

  private async readSegment(epoch: StoreEpochEntity, row: LogSegmentEntity): Promise<{ entries: LogEntry[] }> {
    const place = `change-log segment ${row.firstSeq}–${row.lastSeq} of instance ${row.instanceId}`;
    try {
      const pieces: Buffer[] = [];
      for await (const piece of await this.blobs.read(row.blobKey)) pieces.push(piece as Buffer);
      const decoded = decodeSegment(Buffer.concat(pieces));
      expectSegment(decoded, { instanceId: row.instanceId, epoch: row.epoch, firstSeq: row.firstSeq, lastSeq: row.lastSeq, sha256: row.sha256, prevSha256: row.prevSha256 });
      return decoded;
    } catch (error) {
      if (error instanceof AppError) throw error;
      if (error instanceof BlobNotFoundError && !(await this.segments.existsBy({ id: row.id }))) {
        // A collection removed it (its row, then its blob) while it was read: retention moved the window past the moment
        // this read serves. That is no damage: the log still listed is whole, and the window must not shrink for it.
        throw new AppError('OUT_OF_RESTORE_WINDOW', `${place} was collected (retention) while it was being read: the moment it serves is no longer in the restore window`);
      }
      const why = error instanceof BlobNotFoundError ? 'is missing' : `is damaged (${(error as Error).message})`;
      // A segment sealed under a master key this server is not given is no damage: configured again, it reads.
      if (error instanceof UnknownKeyError) throw error;
      if (error instanceof BlobNotFoundError || error instanceof SegmentFormatError || error instanceof CryptoError) {
        return this.damaged(epoch, row.firstSeq, `${place} ${why}`);
      }
      throw error;
    }
  }

  private async damaged(epoch: StoreEpochEntity, fromSeq: number, message: string): Promise<never> {
    await this.recordDamage(epoch, fromSeq, message);
    throw new AppError('INVALID_BACKUP_FILE', message);
  }

  /**
   * The newest seq of the epoch committed at or before `at` (0 when none was): at least that of the newest base taken
   * by then (collection keeps the log only from the newest base at or before the window's start, so the segments
   * alone would not know the seqs before their first one), and the newest seq of the stored log after it.
   */
  async seqAt(epoch: StoreEpochEntity, at: number): Promise<number> {
    const base = await this.db
      .getRepository(RestorePointEntity)
      .createQueryBuilder('p')
      .where("p.epoch = :epoch AND p.kind = 'BASE' AND COALESCE(p.at, :startedAt) <= :at", { epoch: epoch.epoch, startedAt: epoch.startedAt, at })
      .orderBy('p.seq', 'DESC')
      .getOne();
    const fromBase = base?.seq ?? 0;
    const row = await this.segments
      .createQueryBuilder('s')
      .where('s.epoch = :epoch AND s.firstAt <= :at', { epoch: epoch.epoch, at })
      .orderBy('s.firstSeq', 'DESC')
      .getOne();
    if (!row) return fromBase;
    if (row.lastAt <= at) return Math.max(fromBase, row.lastSeq);
    let seq = row.firstSeq - 1;
    for (const entry of (await this.readSegment(epoch, row)).entries) {
      if (entry.at > at) break;
      seq = entry.seq;
    }
    return Math.max(fromBase, seq);
  }

  /**
   * The newest seq the epoch's recorded damage makes unreadable (null: none recorded): the end of the damaged segment
   * holding its first seq, or the seq before the next segment stored (entries lost or missing). A restore past the
   * damage needs a base at that seq or later: one inside the damaged segment would replay the rest of it.
   */
  async damagedThroughSeq(epoch: StoreEpochEntity): Promise<number | null> {
    const from = epoch.damagedFromSeq;
    if (from === null) return null;
    const holding = await this.segments
      .createQueryBuilder('s')
      .where('s.epoch = :epoch AND s.firstSeq <= :from AND s.lastSeq >= :from', { epoch: epoch.epoch, from })
      .getOne();
    if (holding) return holding.lastSeq;
    const next = await this.segments
      .createQueryBuilder('s')
      .where('s.epoch = :epoch AND s.firstSeq > :from', { epoch: epoch.epoch, from })
      .orderBy('s.firstSeq', 'ASC')
      .getOne();
    return next ? next.firstSeq - 1 : Math.max(from, epoch.shippedSeq);
  }

  /**
   * Whether the epoch's log right after `afterSeq` is still stored: a recorded segment holds afterSeq + 1, or nothing
   * after afterSeq was shipped. False once collection removed it (or its row was never recorded).
   */
  async holdsLogAfter(epoch: StoreEpochEntity, afterSeq: number): Promise<boolean> {
    if (epoch.shippedSeq <= afterSeq) return true;
    return this.segments
      .createQueryBuilder('s')
      .where('s.epoch = :epoch AND s.firstSeq <= :next AND s.lastSeq > :afterSeq', { epoch: epoch.epoch, next: afterSeq + 1, afterSeq })
      .getExists();
  }

  // ---- the restore window -----------------------------------------------------------------------------------------

  /**
   * How far back the instance can be restored: from the oldest moment its retained history reaches without a break
   * (and no further back than `windowMs`) to the newest moment whose writes are all shipped. Null without a window,
   * while nothing is shipped yet, or while the current epoch's damage has no base after it yet (the base policy takes
   * one as soon as damage is recorded): no moment from the damage on can be reached until then, and `earliest` cannot
   * be left out.
   */
  async restoreWindow(instance: Pick<InstanceEntity, 'id'>, windowMs: number | null, now = Date.now()): Promise<RestoreWindowView | null> {
    if (windowMs === null) return null;
    const epochs = await this.epochsOf(instance.id);
    const current = epochs.find((epoch) => epoch.endedAt === null);
    const latest = current ? this.latestOf(current) : -1;
    if (!current || latest < 0) return null;
    const floor = now - windowMs;
    let earliest: number | null = null;
    let reason: string | null = null;
    // Why the oldest epoch reached from its start reaches no further: a store adopted without history (written
    // before the change log existed) begins at its adoption, not at the instance's creation, also when its first
    // base was taken at that moment. An older epoch that reaches further back makes it moot.
    let startUnknown: string | null = null;
    for (const epoch of epochs) {
      if (epoch.endedAt !== null && epoch.endedAt <= floor) break;
      const reach = await this.reachOf(epoch);
      if (reach.from === null) {
        reason ??= reach.reason;
        break;
      }
      earliest = reach.from;
      if (reach.from > epoch.startedAt) {
        reason ??= reach.reason;
        break;
      }
      startUnknown = epoch.anchor === 'NONE' ? reach.reason : null;
    }
    reason ??= startUnknown;
    if (earliest === null || Math.max(earliest, floor) > latest) return null;
    return { earliest: Math.max(earliest, floor), latest, reason: earliest > floor ? reason : null };
  }

  /**
   * The newest moment the instance's current store has offered as restorable (its window's latest; -1: none). A store
   * that replaces it starts its history after it (a restore's swap): with the clock stepped back behind it, a start at
   * the clock's now would put moments already offered from this store into the next one's history.
   */
  async offeredThrough(instanceId: string): Promise<number> {
    const current = await this.currentEpoch(instanceId);
    return current ? this.latestOf(current) : -1;
  }

  /** The epoch of the instance's current store (null: none yet, or the instance is gone). */
  currentEpoch(instanceId: string): Promise<StoreEpochEntity | null> {
    return this.epochs.findOneBy({ instanceId, endedAt: IsNull() });
  }

  private latestOf(epoch: StoreEpochEntity): number {
    return Math.max(epoch.shippedThrough ?? -1, this.latest.get(epoch.epoch)?.shippedThrough ?? -1);
  }

  /** The oldest moment of the epoch a restore can reach (null: none), and why not its start. */
  private async reachOf(epoch: StoreEpochEntity): Promise<{ from: number | null; reason: string | null }> {
    const points = this.db.getRepository(RestorePointEntity);
    // A base found damaged is no way to any moment.
    const firstBaseFrom = async (seq: number) =>
      points
        .createQueryBuilder('p')
        .where("p.epoch = :epoch AND p.kind = 'BASE' AND p.seq >= :seq AND p.damage IS NULL", { epoch: epoch.epoch, seq })
        .orderBy('p.seq', 'ASC')
        .getOne();
    // The newest damage: to the log, or to a base (every moment built on it, up to the next base, is out of reach too).
    const damagedThrough = await this.damagedThroughSeq(epoch);
    const damagedBase = await points
      .createQueryBuilder('p')
      .where("p.epoch = :epoch AND p.kind = 'BASE' AND p.damage IS NOT NULL", { epoch: epoch.epoch })
      .orderBy('p.seq', 'DESC')
      .getOne();
    const damaged =
      damagedBase && (damagedThrough === null || damagedBase.seq > damagedThrough)
        ? { seq: damagedBase.seq, reason: damagedBase.damage }
        : damagedThrough !== null
          ? { seq: damagedThrough, reason: epoch.damage }
          : null;
    // Collection keeps the log from the newest base at or before the window's start on (or before a queued or running
    // restore's moment, when that is earlier): under a window configured
    // longer since, the moments before that base are gone, whatever the window's length says.
    const collectedThrough = epoch.collectedThroughSeq ?? 0;
    if (damaged !== null && damaged.seq >= collectedThrough) {
      const base = await firstBaseFrom(damaged.seq);
      return { from: base ? base.at ?? epoch.startedAt : null, reason: damaged.reason };
    }
    // A restored store whose anchor the damage of another epoch's log or base cut off reaches back to its first base only.
    const anchorDamage = epoch.anchor === 'ORIGIN' ? await this.anchorDamage(epoch) : null;
    const anchored =
      epoch.anchor === 'EMPTY' ||
      epoch.anchor === 'BASE' ||
      (epoch.anchor === 'ORIGIN' && anchorDamage === null && epoch.originPointId !== null && (await points.existsBy({ id: epoch.originPointId })));
    if (anchored && collectedThrough === 0) return { from: epoch.startedAt, reason: null };
    const base = await firstBaseFrom(collectedThrough);
    const beforeChangeLog = !anchored && (await firstBaseFrom(0))?.id === base?.id;
    return {
      from: base ? base.at ?? epoch.startedAt : null,
      reason:
        anchorDamage && (await firstBaseFrom(0))?.id === base?.id
          ? `the store was restored from a moment whose base or change log is damaged: ${anchorDamage}`
          : beforeChangeLog
            ? 'the history before the first base of this store was written before the change log existed'
            : 'the change log before this moment was removed by retention, under a shorter pointInTimeWindow than now',
    };
  }

  // ---- storage and collection -------------------------------------------------------------------------------------

  async storedBytes(where: { tenantId: string; instanceId?: string }): Promise<number> {
    return (await this.segments.sum('storedBytes', where)) ?? 0;
  }

  /** Stored bytes of the epoch's segments that hold seqs in (afterSeq, untilSeq]: what a point there makes needed. */
  async storedBytesBetween(epoch: number, afterSeq: number, untilSeq: number): Promise<number> {
    const row = await this.segments
      .createQueryBuilder('s')
      .select('COALESCE(SUM(s.storedBytes), 0)', 'bytes')
      .where('s.epoch = :epoch AND s.lastSeq > :afterSeq AND s.firstSeq <= :untilSeq', { epoch, afterSeq, untilSeq })
      .getRawOne<{ bytes: string | number }>();
    return Number(row?.bytes ?? 0);
  }

  /**
   * What is recorded of the instance's counts nearest before `at` (null: nothing says): the counts of the newest restore
   * point of that moment's epoch at or before it (or the epoch's start), and how many lines of the log lie between the
   * two (each changes one row: see assertMayStillFit). No data is read (at most the segment that holds the moment), so
   * a restore of that moment that cannot fit its target is refused before anything is built.
   */
  async recordedCountsAt(instanceId: string, at: number): Promise<{ nodeCount: number; relationshipCount: number; linesSince: number } | null> {
    const epoch = await this.epochAt(instanceId, at);
    if (!epoch) return null;
    const seq = await this.seqAt(epoch, at);
    const points = this.db.getRepository(RestorePointEntity);
    const point = await points
      .createQueryBuilder('p')
      .where('p.epoch = :epoch AND p.seq <= :seq', { epoch: epoch.epoch, seq })
      .orderBy('p.seq', 'DESC')
      .addOrderBy('p.createdAt', 'DESC')
      .getOne();
    let known: { seq: number; nodeCount: number; relationshipCount: number };
    if (point) known = { seq: point.seq, ...point.stats };
    else if (epoch.anchor === 'EMPTY') known = { seq: 0, nodeCount: 0, relationshipCount: 0 };
    else if (epoch.anchor === 'ORIGIN' && epoch.originPointId) {
      const origin = await points.findOneBy({ id: epoch.originPointId });
      if (!origin) return null;
      known = { seq: 0, ...origin.stats };
    } else return null;
    const { lines } = seq > known.seq ? await this.sizeAfter(epoch.epoch, known.seq, seq) : { lines: 0 };
    return { nodeCount: known.nodeCount, relationshipCount: known.relationshipCount, linesSince: lines };
  }

  /** Plain bytes and lines of the epoch's log after afterSeq (up to untilSeq): what a replay of it reads. */
  async sizeAfter(epoch: number, afterSeq: number, untilSeq = Number.MAX_SAFE_INTEGER): Promise<{ plainBytes: number; lines: number }> {
    const row = await this.segments
      .createQueryBuilder('s')
      .select('COALESCE(SUM(s.plainBytes), 0)', 'plainBytes')
      .addSelect('COALESCE(SUM(s.lines), 0)', 'lines')
      .where('s.epoch = :epoch AND s.lastSeq > :afterSeq AND s.firstSeq <= :untilSeq', { epoch, afterSeq, untilSeq })
      .getRawOne<{ plainBytes: string | number; lines: string | number }>();
    return { plainBytes: Number(row?.plainBytes ?? 0), lines: Number(row?.lines ?? 0) };
  }

  epochsOfTenant(tenantId: string): Promise<StoreEpochEntity[]> {
    return this.epochs.find({ where: { tenantId } });
  }

  async tenantsWithLogs(): Promise<string[]> {
    const rows = await this.epochs.createQueryBuilder('e').select('DISTINCT e."tenantId"', 'tenantId').getRawMany<{ tenantId: string }>();
    return rows.map((row) => row.tenantId);
  }

  /**
   * For one collection: which of these segment blobs can never be listed (collection may delete them): no row names
   * one, and none ever will, since its epoch is gone or has shipped past its first seq (a segment is recorded only right
   * after the epoch's shipped seq; a process shipping the same entries late gets CONFLICT and removes its blob itself).
   * Each epoch's row is read once, at its first blob: a segment recorded after that starts past the shipped seq read,
   * so it is never taken for an orphan. The rows of the blobs asked about are looked up by their places, all at once
   * (an epoch's log may be millions of segments: their keys are not held at once, nor looked up one by one).
   */
  orphanSegmentCheck(): (blobKeys: string[]) => Promise<string[]> {
    const shipped = new Map<number, Promise<number | null>>();
    const shippedSeqOf = (epochNumber: number) => {
      if (!shipped.has(epochNumber)) shipped.set(epochNumber, this.epochs.findOneBy({ epoch: epochNumber }).then((epoch) => epoch?.shippedSeq ?? null));
      return shipped.get(epochNumber)!;
    };
    return async (blobKeys) => {
      const orphans: string[] = [];
      const listedByEpoch = new Map<number, { blobKey: string; firstSeq: number }[]>();
      for (const blobKey of blobKeys) {
        const place = SEGMENT_KEY.exec(blobKey);
        if (!place) continue;
        const [epochNumber, firstSeq] = [Number(place[1]), Number(place[2])];
        const shippedSeq = await shippedSeqOf(epochNumber);
        if (shippedSeq === null) orphans.push(blobKey);
        else if (firstSeq <= shippedSeq) {
          const blobs = listedByEpoch.get(epochNumber) ?? [];
          blobs.push({ blobKey, firstSeq });
          listedByEpoch.set(epochNumber, blobs);
        }
      }
      for (const [epoch, blobs] of listedByEpoch) {
        const rows = await this.segments.find({ select: { blobKey: true }, where: { epoch, firstSeq: In(blobs.map((blob) => blob.firstSeq)) } });
        const listed = new Set(rows.map((row) => row.blobKey));
        orphans.push(...blobs.filter((blob) => !listed.has(blob.blobKey)).map((blob) => blob.blobKey));
      }
      return orphans;
    };
  }

  /**
   * Of the tenant's epochs a mark `examined`, removes those that are not in `live` (with all their segments), and the
   * segments of live epochs that hold no seq of their `ranges` ((afterSeq, untilSeq] stretches). An epoch begun since
   * the mark (an instance created, restored or adopted meanwhile) is left alone: not among the live, it lost its log
   * from its first entry on, and its snapshots completed unrestorable. Each row goes before its blob: a crash in
   * between leaves an unlisted blob, never a listed segment without its data. Returns how many segments went.
   */
  async sweep(tenantId: string, examined: Set<number>, live: Set<number>, ranges: Map<number, [number, number][]>): Promise<number> {
    let removed = 0;
    for (const epoch of await this.epochsOfTenant(tenantId)) {
      if (!examined.has(epoch.epoch)) continue;
      const unneeded = (row: SegmentPlace) =>
        !live.has(epoch.epoch) || !(ranges.get(epoch.epoch) ?? []).some(([afterSeq, untilSeq]) => row.lastSeq > afterSeq && row.firstSeq <= untilSeq);
      // Recorded first: the window then never offers a moment whose log goes next (a crash after this keeps rows the
      // window no longer offers, which the next collection removes).
      let collectedThrough = 0;
      for await (const row of this.segmentPlaces(epoch.epoch)) if (unneeded(row)) collectedThrough = Math.max(collectedThrough, row.lastSeq);
      if (collectedThrough > (epoch.collectedThroughSeq ?? 0)) {
        await this.epochs
          .createQueryBuilder()
          .update()
          .set({ collectedThroughSeq: collectedThrough })
          .where('epoch = :epoch AND ("collectedThroughSeq" IS NULL OR "collectedThroughSeq" < :collectedThrough)', { epoch: epoch.epoch, collectedThrough })
          .execute();
      }
      // Only those found above: a segment shipped since starts past them.
      for await (const row of collectedThrough > 0 ? this.segmentPlaces(epoch.epoch, collectedThrough) : []) {
        if (!unneeded(row)) continue;
        await this.segments.delete({ id: row.id });
        await this.blobs.delete(row.blobKey);
        removed += 1;
      }
      if (!live.has(epoch.epoch) && epoch.endedAt !== null) {
        await this.epochs.delete({ epoch: epoch.epoch });
        this.latest.delete(epoch.epoch); // else kept for every store this process ever shipped, walked at each shutdown
      }
    }
    return removed;
  }

  /**
   * The epoch's segments starting at or before `untilSeq`, in seq order, read a page at a time: an epoch's log may be
   * millions of segments (a busy instance ships a few a second, for all of its window), too many rows to hold at once.
   */
  private async *segmentPlaces(epoch: number, untilSeq = Number.MAX_SAFE_INTEGER): AsyncGenerator<SegmentPlace> {
    for (let after = -1; ; ) {
      const page = await this.segments.find({
        select: { id: true, firstSeq: true, lastSeq: true, blobKey: true },
        where: { epoch, firstSeq: Between(after + 1, untilSeq) },
        order: { firstSeq: 'ASC' },
        take: SEGMENT_PAGE,
      });
      yield* page;
      if (page.length < SEGMENT_PAGE) return;
      after = page[page.length - 1].firstSeq;
    }
  }
}

/** See ChangeLogService.latest. */
const LATEST_PERSIST_MS = 10_000;
/** Segment rows a collection reads at once (see ChangeLogService.segmentPlaces). */
const SEGMENT_PAGE = 1_000;

type SegmentPlace = Pick<LogSegmentEntity, 'id' | 'firstSeq' | 'lastSeq' | 'blobKey'>;

// `<first seq>-<first 16 hex digits of its sha256>.seg`; segments written before replicas were supported are named
// `<first seq>.seg`. Either is read through its row's blobKey.
export const segmentKeyOf = (tenantId: string, instanceId: string, epoch: number, firstSeq: number, sha256: string) =>
  `tenants/${tenantId}/log/${instanceId}/${epoch}/${String(firstSeq).padStart(16, '0')}-${sha256.slice(0, 16)}.seg`;
/** A segment key's epoch and first seq (either naming). */
const SEGMENT_KEY = /\/log\/[^/]+\/(\d+)\/(\d+)(?:-[0-9a-f]{16})?\.seg$/;

