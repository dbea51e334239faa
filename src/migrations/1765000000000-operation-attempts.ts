// Resumable operations: how many times each was started, and a cancellation request the running replica observes.
import { type MigrationInterface, type QueryRunner, TableColumn } from 'typeorm';

export class OperationAttempts1765000000000 implements MigrationInterface {
  name = 'OperationAttempts1765000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('operations', new TableColumn({ name: 'attempt', type: 'integer', default: 0 }));
    await queryRunner.addColumn('operations', new TableColumn({ name: 'cancelRequestedAt', type: 'bigint', isNullable: true }));
    // Every operation that ever started ran once.
    await queryRunner.query(`UPDATE operations SET attempt = 1 WHERE "startedAt" IS NOT NULL`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('operations', 'cancelRequestedAt');
    await queryRunner.dropColumn('operations', 'attempt');
  }
}
