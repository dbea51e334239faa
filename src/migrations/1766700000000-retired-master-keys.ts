// The master keys retired by a rotation still under way (entities/retired-master-key.entity.ts). Dialect-neutral.
import { type MigrationInterface, type QueryRunner, Table } from 'typeorm';

export class RetiredMasterKeys1766700000000 implements MigrationInterface {
  name = 'RetiredMasterKeys1766700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'retired_master_keys',
        columns: [
          { name: 'keyId', type: 'varchar', length: '16', isPrimary: true },
          { name: 'retiredAt', type: 'bigint' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('retired_master_keys');
  }
}
