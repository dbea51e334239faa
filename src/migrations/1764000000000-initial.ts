// The first schema: tenants, API keys, instances, snapshots, operations. Dialect-neutral (SQLite and PostgreSQL).
import { type MigrationInterface, type QueryRunner, Table, TableIndex, type TableColumnOptions } from 'typeorm';

const id = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'varchar', length: '36', isNullable: nullable });
const text = (name: string, length: number, nullable = false): TableColumnOptions => ({
  name,
  type: 'varchar',
  length: String(length),
  isNullable: nullable,
});
const bigint = (name: string, nullable = false, defaultValue?: number): TableColumnOptions => ({
  name,
  type: 'bigint',
  isNullable: nullable,
  default: defaultValue,
});
const integer = (name: string, defaultValue?: number): TableColumnOptions => ({ name, type: 'integer', default: defaultValue });
const primary = (name: string): TableColumnOptions => ({ ...id(name), isPrimary: true });

export class Initial1764000000000 implements MigrationInterface {
  name = 'Initial1764000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'tenants',
        columns: [primary('id'), { ...text('name', 100), isUnique: true }, bigint('createdAt')],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'api_keys',
        columns: [
          primary('id'),
          id('tenantId'),
          text('name', 100),
          text('role', 10),
          { ...text('secretHash', 64), isUnique: true },
          bigint('createdAt'),
          bigint('revokedAt', true),
        ],
        indices: [new TableIndex({ name: 'idx_api_keys_tenant', columnNames: ['tenantId'] })],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'instances',
        columns: [
          primary('id'),
          id('tenantId'),
          text('name', 100),
          text('tier', 32),
          integer('memoryGB'),
          integer('storageGB'),
          text('engineVersion', 2),
          text('status', 16),
          text('availability', 16),
          id('sourceSnapshotId', true),
          integer('storeGeneration', 1),
          bigint('createdAt'),
          bigint('lastScheduledAt', true),
        ],
        indices: [new TableIndex({ name: 'idx_instances_tenant', columnNames: ['tenantId', 'createdAt'] })],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'snapshots',
        columns: [
          primary('id'),
          id('tenantId'),
          id('instanceId'),
          text('profile', 16),
          text('status', 16),
          bigint('createdAt'),
          bigint('completedAt', true),
          bigint('expiresAt', true),
          text('description', 500, true),
          bigint('sizeBytes', true),
          text('sha256', 64, true),
          text('engineVersion', 2),
          { name: 'contents', type: 'text', isNullable: true },
          text('error', 1000, true),
          text('blobKey', 200, true),
        ],
        indices: [
          new TableIndex({ name: 'idx_snapshots_history', columnNames: ['instanceId', 'createdAt', 'id'] }),
          new TableIndex({ name: 'idx_snapshots_tenant', columnNames: ['tenantId', 'createdAt'] }),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'operations',
        columns: [
          primary('id'),
          id('tenantId'),
          id('instanceId'),
          text('kind', 32),
          text('status', 16),
          text('phase', 64, true),
          bigint('bytesDone', false, 0),
          bigint('bytesTotal', true),
          id('snapshotId', true),
          { name: 'params', type: 'text', isNullable: true },
          text('errorCode', 32, true),
          text('errorMessage', 1000, true),
          bigint('createdAt'),
          bigint('startedAt', true),
          bigint('finishedAt', true),
          text('leaseOwner', 64, true),
          bigint('leaseExpiresAt', true),
        ],
        indices: [
          new TableIndex({ name: 'idx_operations_instance', columnNames: ['instanceId', 'createdAt', 'id'] }),
          new TableIndex({ name: 'idx_operations_status', columnNames: ['status'] }),
          new TableIndex({
            name: 'uq_operations_active',
            columnNames: ['instanceId'],
            isUnique: true,
            where: `status IN ('QUEUED', 'RUNNING')`,
          }),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['operations', 'snapshots', 'instances', 'api_keys', 'tenants']) {
      await queryRunner.dropTable(table);
    }
  }
}
