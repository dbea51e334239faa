// When each API key was last used (for `apiKeys`), and which key created each export link (revoking the key ends it).
import { type MigrationInterface, type QueryRunner, TableColumn } from 'typeorm';

export class ApiKeyUsage1765100000000 implements MigrationInterface {
  name = 'ApiKeyUsage1765100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('api_keys', new TableColumn({ name: 'lastUsedAt', type: 'bigint', isNullable: true }));
    // Links made before this column existed have no key: they keep working until they expire (minutes).
    await queryRunner.addColumn('export_tokens', new TableColumn({ name: 'apiKeyId', type: 'varchar', length: '36', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('export_tokens', 'apiKeyId');
    await queryRunner.dropColumn('api_keys', 'lastUsedAt');
  }
}
