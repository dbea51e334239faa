// When a deletion claimed its instance (made it DESTROYING) and has not yet committed to it, so that a claim its replica
// left behind (it died, or lost the database, in between) is finished by another one (InstanceService.remove).
// Dialect-neutral.
import type { MigrationInterface, QueryRunner } from 'typeorm';

export class DeletionClaims1767200000000 implements MigrationInterface {
  name = 'DeletionClaims1767200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // ALTER TABLE itself, not queryRunner.addColumn: on SQLite, TypeORM rebuilds the table, and its triggers (the
    // tenant data versions') went with the old one.
    await queryRunner.query('ALTER TABLE "instances" ADD COLUMN "deletionClaimedAt" bigint');
    // A claim the release before left (DESTROYING, not yet UNAVAILABLE) counts as made now: finished a lease from now
    // unless its deletion gives it back first.
    const now = queryRunner.connection.options.type === 'postgres' ? 'floor(extract(epoch from clock_timestamp()) * 1000)::bigint' : String(Date.now());
    await queryRunner.query(`UPDATE "instances" SET "deletionClaimedAt" = ${now} WHERE "status" = 'DESTROYING' AND "availability" <> 'UNAVAILABLE'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('ALTER TABLE "instances" DROP COLUMN "deletionClaimedAt"');
  }
}
