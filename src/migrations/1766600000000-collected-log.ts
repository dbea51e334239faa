// How far collection has removed each store epoch's change log (store_epochs.collectedThroughSeq): the restore window
// starts no earlier than the first base at or after it, whatever length the window is configured to have now (a window
// lengthened after collection would otherwise offer moments whose log is gone). Epochs collected before this column
// existed get it from the segments they still list: the seq before the last stretch held without a break, or the
// shipped seq when nothing after their last segment is held.
import { type MigrationInterface, type QueryRunner, TableColumn } from 'typeorm';

export class CollectedLog1766600000000 implements MigrationInterface {
  name = 'CollectedLog1766600000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('store_epochs', new TableColumn({ name: 'collectedThroughSeq', type: 'bigint', isNullable: true }));
    // A segment starts right after the one before it (the previous by firstSeq, found through the unique index on
    // epoch and firstSeq): one that does not starts a stretch held after a removed one.
    await queryRunner.query(`
      UPDATE "store_epochs" SET "collectedThroughSeq" = (
        SELECT MAX(s."firstSeq") - 1 FROM "log_segments" s
        WHERE s."epoch" = "store_epochs"."epoch" AND s."firstSeq" > 1
          AND COALESCE((
            SELECT p."lastSeq" FROM "log_segments" p
            WHERE p."epoch" = s."epoch" AND p."firstSeq" < s."firstSeq"
            ORDER BY p."firstSeq" DESC LIMIT 1), 0) <> s."firstSeq" - 1)`);
    await queryRunner.query(`
      UPDATE "store_epochs" SET "collectedThroughSeq" = "shippedSeq"
      WHERE "shippedSeq" > COALESCE((SELECT MAX(s."lastSeq") FROM "log_segments" s WHERE s."epoch" = "store_epochs"."epoch"), 0)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('store_epochs', 'collectedThroughSeq');
  }
}
