// A version per tenant of its rows in the versioned tables (instances and snapshots), kept by triggers: every insert,
// update or delete of such a row, whoever makes it (this server, another replica, the operator CLI, an operator's
// SQL), gives the row's tenant a new random version in the same transaction; a TRUNCATE (PostgreSQL) removes every
// tenant's. The API's response cache keeps an answer read from those rows only while the version it read before is
// still the current one, and keeps nothing for a tenant without a version (entities/tenant-data-version.ts).
//
// Random, not a count: a count can come back (the metadata database restored from a backup, this migration undone and
// run again, while servers run), and a kept answer would match it with other rows behind it.
// On PostgreSQL the triggers are deferred to the commit: the tenant's version row is then locked only for the
// commit's end, not from a transaction's first write on (where, taken between two row locks of the transaction's own,
// it deadlocked writers that had never deadlocked: a snapshot's insert then its instance's update, against an update
// of that instance).
import type { MigrationInterface, QueryRunner } from 'typeorm';

const VERSIONED_TABLES = ['instances', 'snapshots'] as const;

const EVENTS = [
  ['insert', 'INSERT', 'NEW'],
  ['update', 'UPDATE', 'NEW'],
  ['delete', 'DELETE', 'OLD'],
] as const;

const NEW_VERSION = '"snapgraph_new_tenant_data_version"';
const FORGET_VERSIONS = '"snapgraph_forget_tenant_data_versions"';

export class TenantDataVersions1766500000000 implements MigrationInterface {
  name = 'TenantDataVersions1766500000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE TABLE "tenant_data_versions" ("tenantId" varchar(36) PRIMARY KEY NOT NULL, "version" varchar(36) NOT NULL)`);
    if (queryRunner.connection.options.type === 'postgres') {
      await queryRunner.query(`
        CREATE FUNCTION ${NEW_VERSION}() RETURNS trigger AS $$
        BEGIN
          INSERT INTO "tenant_data_versions" ("tenantId", "version")
            VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD."tenantId" ELSE NEW."tenantId" END, gen_random_uuid()::text)
            ON CONFLICT ("tenantId") DO UPDATE SET "version" = EXCLUDED."version";
          RETURN NULL;
        END
        $$ LANGUAGE plpgsql`);
      await queryRunner.query(`
        CREATE FUNCTION ${FORGET_VERSIONS}() RETURNS trigger AS $$
        BEGIN
          DELETE FROM "tenant_data_versions";
          RETURN NULL;
        END
        $$ LANGUAGE plpgsql`);
      for (const table of VERSIONED_TABLES) {
        await queryRunner.query(`
          CREATE CONSTRAINT TRIGGER "trg_${table}_tenant_data_version" AFTER INSERT OR UPDATE OR DELETE ON "${table}"
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${NEW_VERSION}()`);
        await queryRunner.query(`
          CREATE TRIGGER "trg_${table}_truncate_tenant_data_versions" AFTER TRUNCATE ON "${table}"
            FOR EACH STATEMENT EXECUTE FUNCTION ${FORGET_VERSIONS}()`);
      }
      return;
    }
    for (const table of VERSIONED_TABLES) {
      for (const [name, event, row] of EVENTS) {
        await queryRunner.query(`
          CREATE TRIGGER "trg_${table}_tenant_data_version_${name}" AFTER ${event} ON "${table}" BEGIN
            INSERT INTO "tenant_data_versions" ("tenantId", "version") VALUES (${row}."tenantId", lower(hex(randomblob(16))))
              ON CONFLICT ("tenantId") DO UPDATE SET "version" = excluded."version";
          END`);
      }
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const postgres = queryRunner.connection.options.type === 'postgres';
    for (const table of VERSIONED_TABLES) {
      if (postgres) {
        await queryRunner.query(`DROP TRIGGER "trg_${table}_tenant_data_version" ON "${table}"`);
        await queryRunner.query(`DROP TRIGGER "trg_${table}_truncate_tenant_data_versions" ON "${table}"`);
      } else {
        for (const [name] of EVENTS) await queryRunner.query(`DROP TRIGGER "trg_${table}_tenant_data_version_${name}"`);
      }
    }
    if (postgres) {
      await queryRunner.query(`DROP FUNCTION ${NEW_VERSION}()`);
      await queryRunner.query(`DROP FUNCTION ${FORGET_VERSIONS}()`);
    }
    await queryRunner.query(`DROP TABLE "tenant_data_versions"`);
  }
}
