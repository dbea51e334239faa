// The DataSource the TypeORM CLI uses: `npx typeorm migration:run -d dist/ormconfig.js` (same env as the server).
import 'reflect-metadata';
import { resolve } from 'node:path';
import { createMetadataDataSource } from './src/entities/data-source';

export default createMetadataDataSource({
  dataDir: resolve(process.env.SNAPGRAPH_DATA_DIR?.trim() || './data'),
  databaseUrl: process.env.DATABASE_URL?.trim() || undefined,
});
