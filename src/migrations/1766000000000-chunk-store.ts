// The chunk store's index: per-tenant chunk keys, pack blobs and the chunks in them. Dialect-neutral.
import { type MigrationInterface, type QueryRunner, Table, TableIndex } from 'typeorm';

const tenantId = { name: 'tenantId', type: 'varchar', length: '36', isPrimary: true };
const bigint = (name: string) => ({ name, type: 'bigint' });

export class ChunkStore1766000000000 implements MigrationInterface {
  name = 'ChunkStore1766000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'chunk_keys',
        columns: [
          tenantId,
          { name: 'masterKeyId', type: 'varchar', length: '16' },
          { name: 'sealedKeys', type: 'varchar', length: '200' },
          bigint('createdAt'),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'chunk_packs',
        columns: [
          tenantId,
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'state', type: 'varchar', length: '16' },
          bigint('sizeBytes'),
          { name: 'chunkCount', type: 'integer' },
          bigint('createdAt'),
          bigint('touchedAt'),
        ],
        indices: [new TableIndex({ name: 'idx_chunk_packs_state', columnNames: ['tenantId', 'state'] })],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'chunks',
        columns: [
          tenantId,
          { name: 'id', type: 'varchar', length: '64', isPrimary: true },
          { name: 'packId', type: 'varchar', length: '32' },
          bigint('offset'),
          { name: 'length', type: 'integer' },
          { name: 'plainLength', type: 'integer' },
          bigint('touchedAt'),
        ],
        indices: [new TableIndex({ name: 'idx_chunks_pack', columnNames: ['tenantId', 'packId'] })],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('chunks');
    await queryRunner.dropTable('chunk_packs');
    await queryRunner.dropTable('chunk_keys');
  }
}
