// The chunks a collection marks live, in a scratch SQLite file rather than in a set in memory: a tenant's restore
// points list 64 bytes of chunk ids per 256 KiB of every base they keep (a 128 GiB store: 512k ids, about 50 MiB of
// heap as strings in a Set), with no bound across the tenant's instances and the bases their windows keep.
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LiveChunkSet } from '../chunks';
import { SqliteConnection } from '../graph/sqlite-connection';
import { TUNING } from '../graph/sqlite-graph-store';

/** Ids bound to one statement, as one JSON array. */
const INSERT_BATCH = 5_000;

export class ChunkMarks implements LiveChunkSet {
  /** Ids are appended as they come, and indexed (sorted once, within SQLite's cache) at the first question. */
  private indexed = false;

  private constructor(
    private readonly connection: SqliteConnection,
    private readonly path: string,
  ) {}

  /** An empty set in a file of its own under `dir` (a scratch dir that a boot clears of a crash's leftovers). */
  static async create(dir: string): Promise<ChunkMarks> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `chunk-marks-${randomUUID()}.sqlite`);
    const connection = await SqliteConnection.open(path);
    const marks = new ChunkMarks(connection, path);
    try {
      // No journal and no sync: the file is thrown away after one collection, and after a crash.
      await connection.exec(`${TUNING} PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE live (id TEXT NOT NULL);`);
      return marks;
    } catch (error) {
      await marks.remove();
      throw error;
    }
  }

  async add(ids: readonly string[]): Promise<void> {
    if (this.indexed) throw new Error('chunks are marked before the set is asked about them');
    for (let start = 0; start < ids.length; start += INSERT_BATCH) {
      await this.connection.run(`INSERT INTO live (id) SELECT value FROM json_each(?1)`, [JSON.stringify(ids.slice(start, start + INSERT_BATCH))]);
    }
  }

  /** Indexes the ids once they are all added: the last write to the file (a full volume fails it here, not later). */
  async seal(): Promise<void> {
    if (this.indexed) return;
    // An index filled as the ids came (at random places all over it) took longer: 1.2M ids, 6.1 s against 2.3 s.
    await this.connection.exec(`CREATE INDEX live_id ON live (id)`);
    this.indexed = true;
  }

  async liveAmong(ids: string[]): Promise<ReadonlySet<string>> {
    await this.seal();
    const rows = await this.connection.all<{ id: string }>(`SELECT value AS id FROM json_each(?1) WHERE value IN (SELECT id FROM live)`, [JSON.stringify(ids)]);
    return new Set(rows.map((row) => row.id));
  }

  async remove(): Promise<void> {
    await this.connection.close().catch(() => undefined);
    await rm(this.path, { force: true });
  }
}

/**
 * The same set in memory, for a collection whose scratch volume is full: a collection is what gives back the space of
 * deleted snapshots (and, with S3, of the bucket), so a full local volume must not stop it. It holds every id (about
 * 100 bytes of heap each), as collections did before ChunkMarks, and only then.
 */
export class MemoryChunkMarks implements LiveChunkSet {
  private readonly ids = new Set<string>();

  async add(ids: readonly string[]): Promise<void> {
    for (const id of ids) this.ids.add(id);
  }

  async seal(): Promise<void> {}

  async liveAmong(ids: string[]): Promise<ReadonlySet<string>> {
    return new Set(ids.filter((id) => this.ids.has(id)));
  }

  async remove(): Promise<void> {
    this.ids.clear();
  }
}
