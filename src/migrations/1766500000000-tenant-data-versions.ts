// A version per tenant of its rows in the versioned tables (instances and snapshots), kept by triggers: every insert,
// update or delete of such a row, whoever makes it (this server, another replica, the operator CLI, an operator's
// SQL), counts one up for the row's tenant in the same transaction. The API's response cache keeps an answer read
// from those rows only while the version it read before is still the current one (entities/tenant-data-version.ts).
import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The tables whose rows a tenant's data version counts; each has a "tenantId" column. */
const VERSIONED_TABLES = ['instances', 'snapshots'] as const;

const EVENTS = [
  ['insert', 'INSERT', 'NEW'],
  ['update', 'UPDATE', 'NEW'],
  ['delete', 'DELETE', 'OLD'],
] as const;

const FUNCTION = '"snapgraph_count_tenant_data_version"';

export class TenantDataVersions1766500000000 implements MigrationInterface {
  name = 'TenantDataVersions1766500000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE TABLE "tenant_data_versions" ("tenantId" varchar(36) PRIMARY KEY NOT NULL, "version" bigint NOT NULL)`);
    if (queryRunner.connection.options.type === 'postgres') {
      await queryRunner.query(`
        CREATE FUNCTION ${FUNCTION}() RETURNS trigger AS $$
        BEGIN
          INSERT INTO "tenant_data_versions" ("tenantId", "version")
            VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD."tenantId" ELSE NEW."tenantId" END, 1)
            ON CONFLICT ("tenantId") DO UPDATE SET "version" = "tenant_data_versions"."version" + 1;
          RETURN NULL;
        END
        $$ LANGUAGE plpgsql`);
      for (const table of VERSIONED_TABLES) {
        await queryRunner.query(`
          CREATE TRIGGER "trg_${table}_tenant_data_version" AFTER INSERT OR UPDATE OR DELETE ON "${table}"
            FOR EACH ROW EXECUTE FUNCTION ${FUNCTION}()`);
      }
      return;
    }
    for (const table of VERSIONED_TABLES) {
      for (const [name, event, row] of EVENTS) {
        await queryRunner.query(`
          CREATE TRIGGER "trg_${table}_tenant_data_version_${name}" AFTER ${event} ON "${table}" BEGIN
            INSERT INTO "tenant_data_versions" ("tenantId", "version") VALUES (${row}."tenantId", 1)
              ON CONFLICT ("tenantId") DO UPDATE SET "version" = "version" + 1;
          END`);
      }
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const postgres = queryRunner.connection.options.type === 'postgres';
    for (const table of VERSIONED_TABLES) {
      if (postgres) await queryRunner.query(`DROP TRIGGER "trg_${table}_tenant_data_version" ON "${table}"`);
      else for (const [name] of EVENTS) await queryRunner.query(`DROP TRIGGER "trg_${table}_tenant_data_version_${name}"`);
    }
    if (postgres) await queryRunner.query(`DROP FUNCTION ${FUNCTION}()`);
    await queryRunner.query(`DROP TABLE "tenant_data_versions"`);
  }
}
