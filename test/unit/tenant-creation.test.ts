// Tenants made at the same moment by two processes on one PostgreSQL database: replicas starting together on an empty
// database (the first boot's tenant `default`), and two `snapgraph tenant create` runs with one name.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { TenantEntity } from '../../src/entities/tenant.entity';
import { TenantService } from '../../src/services/tenant.service';
import { createMigratedTestDatabase, describePostgres, type TestDatabase } from '../support/postgres';

describePostgres('tenants made at the same moment by two processes', (postgres) => {
  let dir: string;
  let database: TestDatabase;
  let sources: DataSource[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-tenant-creation-'));
    database = await createMigratedTestDatabase(postgres.adminUrl());
    sources = [0, 1].map(() => createMetadataDataSource({ dataDir: dir, databaseUrl: database.url }));
    for (const source of sources) await source.initialize();
  });

  afterEach(async () => {
    for (const source of sources) await source.destroy();
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('boots both replicas on an empty database: one makes tenant default, the other finds it', async () => {
    for (let round = 0; round < 5; round++) {
      await sources[0].query('DELETE FROM api_keys; DELETE FROM tenants');
      const [first, second] = sources.map((source) => new TenantService(source));
      const outcomes = await Promise.all([first.bootstrap(), second.bootstrap()]);
      assert.equal(outcomes.filter((outcome) => outcome !== null).length, 1, `round ${round}: ${JSON.stringify(outcomes)}`);
      assert.equal(await sources[0].getRepository(TenantEntity).count(), 1);
    }
  });

  it('tells the second of two creations of one name that it exists, not the database refusal', async () => {
    for (let round = 0; round < 5; round++) {
      const name = `racing-${round}`;
      const outcomes = await Promise.allSettled(sources.map((source) => new TenantService(source).createTenant(name)));
      const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
      assert.ok(refused.length <= 1, `round ${round}: both refused`);
      for (const outcome of refused) assert.match(String(outcome.reason), new RegExp(`a tenant named "${name}" already exists`));
    }
  });
});
