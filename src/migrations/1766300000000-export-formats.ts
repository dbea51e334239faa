// Export links in other formats than the archive (exportSnapshotAs): the format, and the file's size and digest (an
// archive's are the snapshot's).
import { type MigrationInterface, type QueryRunner, TableColumn } from 'typeorm';

export class ExportFormats1766300000000 implements MigrationInterface {
  name = 'ExportFormats1766300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('export_tokens', [
      new TableColumn({ name: 'format', type: 'varchar', length: '20', default: "'ARCHIVE'" }),
      new TableColumn({ name: 'sizeBytes', type: 'bigint', isNullable: true }),
      new TableColumn({ name: 'sha256', type: 'varchar', length: '64', isNullable: true }),
    ]);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumns('export_tokens', ['sha256', 'sizeBytes', 'format']);
  }
}
