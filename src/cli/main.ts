#!/usr/bin/env node
// The snapgraph command: serve, tenant administration, and (with a running server) archive transfer.
import 'reflect-metadata';
import { ConfigError, loadConfig } from '../config/app-config';
import { createMetadataDataSource } from '../entities/data-source';
import { createLogger } from '../logging/logger';
import { installProcessErrorHandlers, installSignalHandlers, startServer } from '../server';
import { TenantService } from '../services/tenant.service';
import { DEFAULT_URL } from './api-client';
import { CliError, UsageError } from './cli-error';
import { exportCommand } from './export-command';
import { restoreFileCommand } from './restore-file-command';

const USAGE = `usage:
  snapgraph serve                          run the server (configured by the environment; see README)
  snapgraph tenant create <name> [--json]  create a tenant and print its first ADMIN API key
  snapgraph export <snapshotId> [-o file]  download a snapshot's archive (resumes <file>.part; checks its sha256)
  snapgraph restore-file <instanceId> <file> --confirm RESTORE [--chunk-size 64M]
                                           upload a .backup/.dump/.tar of any size and restore it into the
                                           instance (a rerun after Ctrl-C resumes the upload)

export and restore-file talk to a running server:
  --url <url>   or SNAPGRAPH_URL      (default ${DEFAULT_URL})
  --key <key>   or SNAPGRAPH_API_KEY  (prefer the variable: arguments are visible to other local users)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
    case undefined:
      return serve();
    case 'tenant':
      return tenant(rest);
    case 'export':
      return exportCommand(rest);
    case 'restore-file':
      return restoreFileCommand(rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`snapgraph: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

async function serve(): Promise<number> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  installProcessErrorHandlers(logger);
  const server = await startServer(config, logger);
  installSignalHandlers(server, logger);
  return -1; // keep running
}

async function tenant(args: string[]): Promise<number> {
  const [sub, name, ...flags] = args;
  if (sub !== 'create' || !name || flags.some((flag) => flag !== '--json')) {
    process.stderr.write(USAGE);
    return 2;
  }
  const config = loadConfig();
  const db = createMetadataDataSource(config);
  await db.initialize();
  try {
    await db.runMigrations({ transaction: 'each' });
    const { tenant: created, apiKey } = await new TenantService(db).createTenant(name);
    if (flags.includes('--json')) {
      process.stdout.write(`${JSON.stringify({ tenantId: created.id, apiKey })}\n`);
    } else {
      process.stdout.write(`tenant "${created.name}" created (${created.id})\nADMIN API key (shown once): ${apiKey}\n`);
    }
    return 0;
  } finally {
    await db.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error) => {
    if (error instanceof UsageError) {
      process.stderr.write(`snapgraph: ${error.message}\n${USAGE}`);
      process.exit(error.exitCode);
    }
    if (error instanceof CliError) {
      process.stderr.write(`snapgraph: ${error.message}\n`);
      process.exit(error.exitCode);
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`snapgraph: ${error.message}\n`);
      process.exit(78);
    }
    process.stderr.write(`snapgraph: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
