// Snapshots stored as restore points (a base image or a delta, over the chunk store) instead of full archive blobs.
// Snapshots of the previous release keep their blobKey and stay readable through it.
import { type MigrationInterface, type QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

export class RestorePoints1766100000000 implements MigrationInterface {
  name = 'RestorePoints1766100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const id = (name: string, isNullable = false) => ({ name, type: 'varchar', length: '36', isNullable });
    const bigint = (name: string, isNullable = false) => ({ name, type: 'bigint', isNullable });
    await queryRunner.createTable(
      new Table({
        name: 'restore_points',
        columns: [
          { ...id('id'), isPrimary: true },
          id('tenantId'),
          id('instanceId'),
          { name: 'kind', type: 'varchar', length: '8' },
          id('parentId', true),
          id('baseId'),
          bigint('epoch'),
          bigint('seq'),
          { name: 'chainLength', type: 'integer' },
          bigint('chainDeltaLines'),
          bigint('chainDeltaBytes'),
          bigint('addedBytes'),
          bigint('manifestBytes'),
          { name: 'manifestKey', type: 'varchar', length: '200' },
          { name: 'stats', type: 'text' },
          bigint('createdAt'),
        ],
      }),
    );
    await queryRunner.createIndex('restore_points', new TableIndex({ name: 'idx_restore_points_epoch', columnNames: ['tenantId', 'epoch', 'seq'] }));
    await queryRunner.createIndex('restore_points', new TableIndex({ name: 'idx_restore_points_parent', columnNames: ['parentId'] }));
    await queryRunner.addColumn('snapshots', new TableColumn(id('restorePointId', true)));
    await queryRunner.addColumn('snapshots', new TableColumn(bigint('addedBytes', true)));
    await queryRunner.addColumn('snapshots', new TableColumn(bigint('verifiedAt', true)));
    // A full archive blob of the previous release added its whole stored size.
    await queryRunner.createIndex('snapshots', new TableIndex({ name: 'idx_snapshots_restore_point', columnNames: ['restorePointId'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('snapshots', 'idx_snapshots_restore_point');
    await queryRunner.dropColumn('snapshots', 'verifiedAt');
    await queryRunner.dropColumn('snapshots', 'addedBytes');
    await queryRunner.dropColumn('snapshots', 'restorePointId');
    await queryRunner.dropTable('restore_points');
  }
}
