// The master key the deployment's servers write under (entities/current-master-key.entity.ts). Dialect-neutral.
import { type MigrationInterface, type QueryRunner, Table } from 'typeorm';

export class CurrentMasterKey1766800000000 implements MigrationInterface {
  name = 'CurrentMasterKey1766800000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'current_master_key',
        columns: [
          { name: 'slot', type: 'varchar', length: '16', isPrimary: true },
          { name: 'keyId', type: 'varchar', length: '16' },
          { name: 'since', type: 'bigint' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('current_master_key');
  }
}
