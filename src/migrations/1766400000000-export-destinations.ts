// Export destinations (a tenant's own S3 buckets), and EXPORT operations beside an instance's other work: an export
// only reads a snapshot, so it no longer counts as the one operation an instance may have in progress.
import { type MigrationInterface, type QueryRunner, Table, TableIndex } from 'typeorm';

const ACTIVE_INDEX = 'uq_operations_active';

export class ExportDestinations1766400000000 implements MigrationInterface {
  name = 'ExportDestinations1766400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const id = (name: string, isNullable = false) => ({ name, type: 'varchar', length: '36', isNullable });
    const bigint = (name: string, isNullable = false) => ({ name, type: 'bigint', isNullable });
    const text = (name: string, length: number, isNullable = false) => ({ name, type: 'varchar', length: String(length), isNullable });
    await queryRunner.createTable(
      new Table({
        name: 'export_destinations',
        columns: [
          { ...id('id'), isPrimary: true },
          id('tenantId'),
          text('name', 100),
          text('url', 600),
          text('endpoint', 500, true),
          text('region', 64, true),
          { name: 'autoExportInstanceIds', type: 'text' },
          text('masterKeyId', 64),
          { name: 'sealedCredentials', type: 'text' },
          bigint('createdAt'),
          bigint('lastExportAt', true),
          text('lastError', 1000, true),
        ],
        indices: [new TableIndex({ name: 'idx_export_destinations_tenant', columnNames: ['tenantId', 'createdAt'] })],
      }),
    );
    await queryRunner.dropIndex('operations', ACTIVE_INDEX);
    await queryRunner.createIndex(
      'operations',
      new TableIndex({ name: ACTIVE_INDEX, columnNames: ['instanceId'], isUnique: true, where: `status IN ('QUEUED', 'RUNNING') AND kind <> 'EXPORT'` }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DELETE FROM operations WHERE kind = 'EXPORT'`);
    await queryRunner.dropIndex('operations', ACTIVE_INDEX);
    await queryRunner.createIndex(
      'operations',
      new TableIndex({ name: ACTIVE_INDEX, columnNames: ['instanceId'], isUnique: true, where: `status IN ('QUEUED', 'RUNNING')` }),
    );
    await queryRunner.dropTable('export_destinations');
  }
}
