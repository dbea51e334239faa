// Indexes that let the leader's per-second retention sweep find what it concerns without walking every instance:
// the instances of a tier, expired snapshots, and the snapshots that crossed a time line. Dialect-neutral.
import { type MigrationInterface, type QueryRunner, TableIndex } from 'typeorm';

export class SweepIndexes1767000000000 implements MigrationInterface {
  name = 'SweepIndexes1767000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createIndex('instances', new TableIndex({ name: 'idx_instances_tier', columnNames: ['tier', 'id'] }));
    await queryRunner.createIndex('snapshots', new TableIndex({ name: 'idx_snapshots_expiry', columnNames: ['expiresAt'] }));
    await queryRunner.createIndex('snapshots', new TableIndex({ name: 'idx_snapshots_created', columnNames: ['createdAt'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('snapshots', 'idx_snapshots_created');
    await queryRunner.dropIndex('snapshots', 'idx_snapshots_expiry');
    await queryRunner.dropIndex('instances', 'idx_instances_tier');
  }
}
