// The change log: store epochs, shipped log segments, LOG restore points (a position on the log), point-in-time
// operations. Stores of the previous release get an epoch row (anchor NONE) when the log shipper first sees them.
import { type MigrationInterface, type QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

export class ChangeLog1766200000000 implements MigrationInterface {
  name = 'ChangeLog1766200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const id = (name: string, isNullable = false) => ({ name, type: 'varchar', length: '36', isNullable });
    const bigint = (name: string, isNullable = false) => ({ name, type: 'bigint', isNullable });
    await queryRunner.createTable(
      new Table({
        name: 'store_epochs',
        columns: [
          { ...bigint('epoch'), isPrimary: true },
          id('tenantId'),
          id('instanceId'),
          { name: 'anchor', type: 'varchar', length: '8' },
          id('originPointId', true),
          bigint('startedAt'),
          bigint('endedAt', true),
          { ...bigint('shippedSeq'), default: 0 },
          { name: 'headSha256', type: 'varchar', length: '64', isNullable: true },
          bigint('shippedThrough', true),
          { name: 'damage', type: 'varchar', length: '1000', isNullable: true },
          bigint('damagedFromSeq', true),
        ],
      }),
    );
    await queryRunner.createIndex('store_epochs', new TableIndex({ name: 'idx_store_epochs_instance', columnNames: ['instanceId', 'startedAt'] }));
    await queryRunner.createTable(
      new Table({
        name: 'log_segments',
        columns: [
          { ...id('id'), isPrimary: true },
          id('tenantId'),
          id('instanceId'),
          bigint('epoch'),
          bigint('firstSeq'),
          bigint('lastSeq'),
          bigint('firstAt'),
          bigint('lastAt'),
          bigint('lines'),
          bigint('plainBytes'),
          bigint('storedBytes'),
          { name: 'sha256', type: 'varchar', length: '64' },
          { name: 'prevSha256', type: 'varchar', length: '64', isNullable: true },
          { name: 'blobKey', type: 'varchar', length: '300' },
          bigint('createdAt'),
        ],
      }),
    );
    await queryRunner.createIndex('log_segments', new TableIndex({ name: 'uq_log_segments_epoch_first', columnNames: ['epoch', 'firstSeq'], isUnique: true }));
    await queryRunner.createIndex('log_segments', new TableIndex({ name: 'idx_log_segments_tenant', columnNames: ['tenantId'] }));
    await queryRunner.addColumn('restore_points', new TableColumn(bigint('at', true)));
    await setNullable(queryRunner, 'manifestKey', new TableColumn({ name: 'manifestKey', type: 'varchar', length: '200', isNullable: true }));
    await setNullable(queryRunner, 'baseId', new TableColumn(id('baseId', true)));
    await queryRunner.addColumn('operations', new TableColumn(bigint('pointInTime', true)));
    await queryRunner.addColumn('operations', new TableColumn(id('sourceInstanceId', true)));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('operations', 'sourceInstanceId');
    await queryRunner.dropColumn('operations', 'pointInTime');
    await queryRunner.query(`DELETE FROM restore_points WHERE kind = 'LOG'`);
    await setNullable(queryRunner, 'baseId', new TableColumn({ name: 'baseId', type: 'varchar', length: '36' }));
    await setNullable(queryRunner, 'manifestKey', new TableColumn({ name: 'manifestKey', type: 'varchar', length: '200' }));
    await queryRunner.dropColumn('restore_points', 'at');
    await queryRunner.dropTable('log_segments');
    await queryRunner.dropTable('store_epochs');
  }
}

/**
 * Makes a restore_points column nullable or not, keeping its values. On PostgreSQL, TypeORM's changeColumn drops and
 * adds the column again whenever the type it reads back ("character varying") differs from the one given ("varchar"):
 * every restore point recorded before this migration then lost its manifest key and base, and its snapshot could no
 * longer be restored. SQLite's changeColumn copies the table, values included.
 */
async function setNullable(queryRunner: QueryRunner, name: string, column: TableColumn): Promise<void> {
  if (queryRunner.connection.options.type !== 'postgres') {
    await queryRunner.changeColumn('restore_points', name, column);
    return;
  }
  await queryRunner.query(`ALTER TABLE "restore_points" ALTER COLUMN "${name}" ${column.isNullable ? 'DROP' : 'SET'} NOT NULL`);
}
