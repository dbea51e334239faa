// Why a base can no longer be read (restore_points.damage): a verification, or a read that failed, found its chunks
// damaged or missing. The restore window leaves out the moments built on it, those of its own store and those of a store
// restored from a moment built on it before that store has a base of its own (ChangeLogService.reachOf and
// anchorDamage). Dialect-neutral.
import type { MigrationInterface, QueryRunner } from 'typeorm';

export class RestorePointDamage1767300000000 implements MigrationInterface {
  name = 'RestorePointDamage1767300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('ALTER TABLE "restore_points" ADD COLUMN "damage" varchar(1000)');
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('ALTER TABLE "restore_points" DROP COLUMN "damage"');
  }
}
