// Operator commands on the metadata database itself (the server's SNAPGRAPH_DATA_DIR or DATABASE_URL; they work while
// the server runs): `tenant create`, `tenant list`, `apikey list`. They never talk to a server, so they need no key:
// whoever can read the data dir can read its metadata anyway.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { DataSource } from 'typeorm';
import { type AppConfig, loadConfig } from '../config/app-config';
import { metadataDatabasePath, openMetadataDatabase, runMetadataMigrations } from '../entities/data-source';
import { TenantService } from '../services/tenant.service';
import { makeDataDirPrivate } from '../storage/private-data-dir';
import { CliError, UsageError } from './cli-error';

export async function tenantCommand([sub, ...args]: string[]): Promise<number> {
  switch (sub) {
    case 'create': {
      const { values, positionals } = parse(args, { json: { type: 'boolean' }, init: { type: 'boolean' } }, 1, 'tenant create takes one name');
      return withTenants({ init: values.init ?? false, initOption: true }, async (tenants) => {
        const { tenant, apiKey } = await tenants.createTenant(positionals[0]);
        if (values.json) print({ tenantId: tenant.id, apiKey });
        else process.stdout.write(`tenant "${tenant.name}" created (${tenant.id})\nADMIN API key (shown once): ${apiKey}\n`);
        return 0;
      });
    }
    case 'list': {
      const { values } = parse(args, { json: { type: 'boolean' } }, 0, 'tenant list takes no arguments');
      return withTenants({ init: false, initOption: false }, async (tenants) => {
        const rows = (await tenants.listTenants()).map((t) => ({ id: t.id, name: t.name, createdAt: new Date(t.createdAt).toISOString() }));
        if (values.json) print(rows);
        else table(['ID', 'NAME', 'CREATED'], rows.map((t) => [t.id, t.name, t.createdAt]));
        return 0;
      });
    }
    default:
      throw new UsageError(sub ? `unknown tenant command "${sub}"` : 'tenant needs a command: create or list');
  }
}

export async function apiKeyCommand([sub, ...args]: string[]): Promise<number> {
  if (sub !== 'list') throw new UsageError(sub ? `unknown apikey command "${sub}"` : 'apikey needs a command: list');
  const { values } = parse(args, { json: { type: 'boolean' }, tenant: { type: 'string' } }, 0, 'apikey list takes no arguments');
  return withTenants({ init: false, initOption: false }, async (tenants) => {
    const all = await tenants.listTenants();
    const chosen = values.tenant === undefined ? all : all.filter((t) => t.name === values.tenant);
    if (values.tenant !== undefined && chosen.length === 0) throw new CliError(`no tenant named "${values.tenant}"; see snapgraph tenant list`);
    const rows = [];
    for (const tenant of chosen) {
      for (const key of await tenants.keysOf(tenant.id)) {
        rows.push({
          tenant: tenant.name,
          id: key.id,
          name: key.name,
          role: key.role,
          createdAt: new Date(key.createdAt).toISOString(),
          lastUsedAt: key.lastUsedAt === null ? null : new Date(key.lastUsedAt).toISOString(),
        });
      }
    }
    if (values.json) print(rows);
    else table(['TENANT', 'ID', 'NAME', 'ROLE', 'CREATED', 'LAST USED'], rows.map((k) => [k.tenant, k.id, k.name, k.role, k.createdAt, k.lastUsedAt ?? 'never']));
    return 0;
  });
}

function parse<const O extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], options: O, positionals: number, usage: string) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length !== positionals) throw new UsageError(usage);
  return parsed;
}

/**
 * Opens the server's metadata database. One that does not exist yet is made only when asked (`--init`): a tenant
 * written into a new database of the wrong data dir would hold a key the server has never heard of. `initOption`: the
 * command takes --init (only `tenant create` does), so the refusal may name it.
 */
async function withTenants<T>(options: { init: boolean; initOption: boolean }, work: (tenants: TenantService) => Promise<T>): Promise<T> {
  return withMetadataDatabase(loadConfig(), options, (db) => work(new TenantService(db)));
}

/**
 * The server's metadata database (migrated), for `work`; refused where there is none, unless `init`. `initOption`: the
 * command has --init, and the refusal names it.
 */
export async function withMetadataDatabase<T>(
  config: AppConfig,
  { init, initOption = true }: { init: boolean; initOption?: boolean },
  work: (db: DataSource) => Promise<T>,
): Promise<T> {
  const orInit = (text: string) => (initOption ? `, or pass --init ${text}` : '');
  if (!config.databaseUrl && !init && !existsSync(metadataDatabasePath(config.dataDir))) {
    throw new CliError(
      `no metadata database in ${config.dataDir}: set SNAPGRAPH_DATA_DIR to the server's data dir ` +
        `(or DATABASE_URL to its PostgreSQL)${orInit('to create a new one there')}`,
    );
  }
  if (!config.databaseUrl) await makeDataDirPrivate(config.dataDir);
  const db: DataSource = await openMetadataDatabase(config);
  try {
    if (config.databaseUrl && !init && !(await hasMetadataTables(db))) {
      throw new CliError(`the database of DATABASE_URL holds no Snapgraph metadata: point DATABASE_URL at the server's${orInit('')}`.trimEnd());
    }
    await runMetadataMigrations(db);
    return await work(db);
  } finally {
    await db.destroy();
  }
}

async function hasMetadataTables(db: DataSource): Promise<boolean> {
  const runner = db.createQueryRunner();
  try {
    return await runner.hasTable('tenants');
  } finally {
    await runner.release();
  }
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function table(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  for (const row of [headers, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()}\n`);
}
