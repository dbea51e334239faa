// Each instance's next scheduled due time, and the indexes that let the scheduler's per-second query find the due
// instances without walking every instance of a scheduled tier. The column starts null: the scheduler fills it in (with
// its config) when it starts leading. Dialect-neutral.
import { type MigrationInterface, type QueryRunner, TableIndex } from 'typeorm';

export class ScheduleDueTimes1767100000000 implements MigrationInterface {
  name = 'ScheduleDueTimes1767100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // ALTER TABLE itself, not queryRunner.addColumn: on SQLite, TypeORM rebuilds the table, and its triggers (the
    // tenant data versions') went with the old one.
    await queryRunner.query('ALTER TABLE "instances" ADD COLUMN "nextScheduledAt" bigint');
    await queryRunner.createIndex('instances', new TableIndex({ name: 'idx_instances_next_scheduled', columnNames: ['nextScheduledAt', 'tier'] }));
    await queryRunner.createIndex('instances', new TableIndex({ name: 'idx_instances_last_scheduled', columnNames: ['lastScheduledAt'] }));
    await queryRunner.createIndex('instances', new TableIndex({ name: 'idx_instances_created', columnNames: ['createdAt'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('instances', 'idx_instances_created');
    await queryRunner.dropIndex('instances', 'idx_instances_last_scheduled');
    await queryRunner.dropIndex('instances', 'idx_instances_next_scheduled');
    await queryRunner.query('ALTER TABLE "instances" DROP COLUMN "nextScheduledAt"');
  }
}
