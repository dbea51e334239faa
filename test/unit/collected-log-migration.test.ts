// The migration that records how far collection removed each epoch's change log (store_epochs.collectedThroughSeq),
// on SQLite and PostgreSQL: epochs collected before it existed get it from the segments they still list.
import assert from 'node:assert/strict';
import { describeMigration, undoThrough } from '../support/migrations';

describeMigration('the collected-log migration', (current) => {
  it('records for each epoch the seq before the last stretch of log it still holds without a break', async () => {
    const db = current();
    await db.runMigrations({ transaction: 'each' });
    await undoThrough(db, 'CollectedLog1766600000000');
    // Epochs as the previous release left them: [shipped seq, segments still listed as [firstSeq, lastSeq]].
    const epochs: Record<number, [number, [number, number][]]> = {
      1: [5, [[1, 2], [3, 5]]], // all held
      2: [9, [[6, 8], [9, 9]]], // 1–5 collected
      3: [9, [[1, 2], [6, 7], [8, 9]]], // 3–5 collected, 1–2 kept (a snapshot's)
      4: [9, []], // all collected
      5: [9, [[1, 3]]], // 4–9 collected, 1–3 kept
      6: [0, []], // nothing shipped yet
    };
    for (const [epoch, [shippedSeq, segments]] of Object.entries(epochs)) {
      await db.query(
        `INSERT INTO "store_epochs" ("epoch", "tenantId", "instanceId", "anchor", "startedAt", "shippedSeq")
         VALUES (${epoch}, 'tenant', 'instance-${epoch}', 'EMPTY', 1000, ${shippedSeq})`,
      );
      for (const [firstSeq, lastSeq] of segments) {
        await db.query(
          `INSERT INTO "log_segments" ("id", "tenantId", "instanceId", "epoch", "firstSeq", "lastSeq", "firstAt", "lastAt", "lines",
             "plainBytes", "storedBytes", "sha256", "blobKey", "createdAt")
           VALUES ('${epoch}-${firstSeq}', 'tenant', 'instance-${epoch}', ${epoch}, ${firstSeq}, ${lastSeq}, 1, 1, 1, 1, 1, 'sha', 'key-${epoch}-${firstSeq}', 1)`,
        );
      }
    }
    await db.runMigrations({ transaction: 'each' });
    const rows: { epoch: string | number; collectedThroughSeq: string | number | null }[] = await db.query(
      `SELECT "epoch", "collectedThroughSeq" FROM "store_epochs" ORDER BY "epoch"`,
    );
    assert.deepEqual(
      rows.map((row) => [Number(row.epoch), row.collectedThroughSeq === null ? null : Number(row.collectedThroughSeq)]),
      [[1, null], [2, 5], [3, 5], [4, 9], [5, 9], [6, null]],
    );
    await undoThrough(db, 'CollectedLog1766600000000');
    const columns: { name?: string; column_name?: string }[] =
      db.options.type !== 'postgres'
        ? await db.query(`PRAGMA table_info("store_epochs")`)
        : await db.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'store_epochs'`);
    assert.ok(!columns.some((column) => (column.name ?? column.column_name) === 'collectedThroughSeq'), 'down() leaves the column');
  });
});
