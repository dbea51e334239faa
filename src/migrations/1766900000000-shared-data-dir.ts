// The id of the data dir the deployment's servers share (entities/shared-data-dir.entity.ts). Dialect-neutral.
import { type MigrationInterface, type QueryRunner, Table } from 'typeorm';

export class SharedDataDir1766900000000 implements MigrationInterface {
  name = 'SharedDataDir1766900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'shared_data_dir',
        columns: [
          { name: 'slot', type: 'varchar', length: '16', isPrimary: true },
          { name: 'dataDirId', type: 'varchar', length: '36' },
          { name: 'since', type: 'bigint' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('shared_data_dir');
  }
}
