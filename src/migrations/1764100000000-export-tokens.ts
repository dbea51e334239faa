// Export download links (hashed tokens with an expiry).
import { type MigrationInterface, type QueryRunner, Table, TableIndex } from 'typeorm';

export class ExportTokens1764100000000 implements MigrationInterface {
  name = 'ExportTokens1764100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'export_tokens',
        columns: [
          { name: 'id', type: 'varchar', length: '36', isPrimary: true },
          { name: 'tenantId', type: 'varchar', length: '36' },
          { name: 'snapshotId', type: 'varchar', length: '36' },
          { name: 'tokenHash', type: 'varchar', length: '64', isUnique: true },
          { name: 'fileName', type: 'varchar', length: '300' },
          { name: 'createdAt', type: 'bigint' },
          { name: 'expiresAt', type: 'bigint' },
        ],
        indices: [new TableIndex({ name: 'idx_export_tokens_expiry', columnNames: ['expiresAt'] })],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('export_tokens');
  }
}
