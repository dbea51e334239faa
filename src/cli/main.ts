#!/usr/bin/env node
// The snapgraph command: serve, tenant administration, and (with a running server) archive transfer.
// Each command loads only what it needs: a transfer command that loaded the whole server first spent 0.7 s on it.
import { ConfigError } from '../config/app-config';
import { heapGrowth } from '../runtime/heap-growth';
import { exitAfterWorkers } from '../runtime/stoppable-worker';
import { DEFAULT_URL } from './api-client';
import { CliError, UsageError } from './cli-error';
import { writtenOut } from './written-out';

const USAGE = `usage:
  snapgraph serve                          run the server (configured by the environment; see README)
  snapgraph tenant create <name> [--json] [--init]
                                           create a tenant and print its first ADMIN API key
                                           (--init: create the metadata database if there is none)
  snapgraph tenant list [--json]           the tenants
  snapgraph apikey list [--tenant <name>] [--json]
                                           API keys that are not revoked (no secrets), with when each was last used
  snapgraph rotate-master-key              seal everything still under a key of SNAPGRAPH_PREVIOUS_MASTER_KEYS again
                                           under the current master key (servers stopped; rerun after a crash)
  snapgraph export <snapshotId> [-o file]  download a snapshot's archive (resumes <file>.part; checks its sha256)
                                           (-o is short for --output)
                                           (-o dir/: into that directory, under the server's file name, as without -o
                                           into the current one; -o -: to stdout, for a pipe; no resume, exit 1 if it was
                                           cut off or damaged)
  snapgraph inspect <file> [--json]        what a file is and holds (kind, counts by label and type, engine version,
                                           capture time, header facts), read locally without a server; changes nothing
  snapgraph restore-file <instanceId> <file> --confirm RESTORE [--chunk-size 64M] [--cancel-on-interrupt]
                                           upload a file of any size (a .backup/.dump, an APOC JSON/Cypher/GraphML
                                           export, a neo4j-admin CSV .tar, or a .tar holding one) and restore it into the
                                           instance (a rerun after Ctrl-C resumes the upload; Ctrl-C during the
                                           restore cancels it: asked on a terminal, at once with the flag);
                                           --chunk-size: the bytes per request (default 64M)

tenant and apikey work on the server's metadata database (same SNAPGRAPH_DATA_DIR or DATABASE_URL), even while
it runs; rotate-master-key on it and on the blobs (the server's environment), with the servers stopped. export and
restore-file talk to a running server:
  --url <url>   or SNAPGRAPH_URL      (default ${DEFAULT_URL})
  --key <key>   or SNAPGRAPH_API_KEY  (prefer the variable: arguments are visible to other local users)

exit status: 0 done; 1 failed (said on stderr); 2 wrong arguments; 78 invalid configuration (an environment variable or SNAPGRAPH_CONFIG);
  130 export or restore-file interrupted (Ctrl-C, SIGTERM), saying what was kept
`;

/** `snapgraph inspect`'s bound on heap growth between full collections (heapGrowth.limit); the server's default. */
const INSPECT_HEAP_GROWTH_PERCENT = 50;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `snapgraph <command> --help` is a question, not a wrong argument (before `--`, which ends the options).
  const options = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (command !== undefined && options.some((arg) => arg === '-h' || arg === '--help')) return help();
  switch (command) {
    case undefined:
      process.stderr.write(`snapgraph: a command is needed (\`snapgraph serve\` runs the server)\n${USAGE}`);
      return 2;
    case 'serve':
      // Configured by the environment alone: an option given here would otherwise be ignored by a server that starts.
      if (rest.length > 0) throw new UsageError('serve takes no arguments: it is configured by the environment (PORT, HOST, SNAPGRAPH_*; see README)');
      return serve();
    case 'tenant':
      return (await tenantCommands()).tenantCommand(rest);
    case 'apikey':
      return (await tenantCommands()).apiKeyCommand(rest);
    case 'rotate-master-key':
      await import('reflect-metadata');
      return (await import('./rotate-master-key-command.js')).rotateMasterKeyCommand(rest);
    case 'export':
      return (await import('./export-command.js')).exportCommand(rest);
    case 'restore-file':
      return (await import('./restore-file-command.js')).restoreFileCommand(rest);
    case 'inspect':
      // What it holds stays small (a few MiB live whatever the file's size), but V8 would let garbage of the records
      // read pile up to several times that between full collections: peak RSS then grows with the file.
      heapGrowth.limit(INSPECT_HEAP_GROWTH_PERCENT);
      return (await import('./inspect-command.js')).inspectCommand(rest);
    case '-h':
    case '--help':
    case 'help':
      return help();
    default:
      process.stderr.write(`snapgraph: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

function help(): number {
  process.stdout.write(USAGE);
  return 0;
}

/** The tenant and apikey commands work on the metadata database through TypeORM's entities. */
async function tenantCommands() {
  await import('reflect-metadata');
  return import('./tenant-commands.js');
}

async function serve(): Promise<number> {
  // The configuration first: a wrong one is refused before the server's modules load (1.4 s of CPU).
  const { loadConfig } = await import('../config/app-config.js');
  const config = loadConfig();
  await import('reflect-metadata');
  const { createLogger } = await import('../logging/logger.js');
  const { installProcessErrorHandlers, installSignalHandlers, startServer, warnAboutMallocArenas } = await import('../server.js');
  const logger = createLogger(config.logLevel);
  installProcessErrorHandlers(logger);
  heapGrowth.limit(config.heapGrowthPercent);
  warnAboutMallocArenas(logger);
  const started = startServer(config, logger);
  installSignalHandlers(started, config, logger);
  await started;
  return -1; // keep running
}

// What stops stdout or stderr (EPIPE: the reader closed the pipe) whenever it comes, kept for the exit to tell: with
// no listener, a write failing while a command still works (a database closing, a rotation saying its progress) ended
// the process with a stack trace.
let stdoutFailure: Error | null = null;
process.stdout.on('error', (error: Error) => (stdoutFailure ??= error));
process.stderr.on('error', () => undefined);

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) void exitOnceWrittenOut(code);
  },
  (error) => {
    if (error instanceof UsageError) {
      process.stderr.write(`snapgraph: ${error.message}\n${USAGE}`);
      return exitOnceWrittenOut(error.exitCode);
    }
    if (error instanceof CliError) {
      process.stderr.write(`snapgraph: ${error.message}\n`);
      return exitOnceWrittenOut(error.exitCode);
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`snapgraph: ${error.message}\n`);
      return exitOnceWrittenOut(78);
    }
    process.stderr.write(`snapgraph: ${error instanceof Error ? error.message : String(error)}\n`);
    return exitOnceWrittenOut(1);
  },
);

/**
 * Exits once stdout and stderr have handed what the command wrote to the system: into a pipe, process.exit() would
 * drop what they still hold (a `tenant list` into a slow reader lost its end). A command whose output could not all
 * be written (its reader closed the pipe) did not succeed. An interrupted command (130) does not wait for its reader,
 * nor does any at Ctrl-C or SIGTERM meanwhile (a reader that stalls): a command that had succeeded then exits 130.
 */
async function exitOnceWrittenOut(code: number): Promise<void> {
  const signals = ['SIGINT', 'SIGTERM'] as const;
  let onSignal: () => void = () => undefined;
  const signalled = new Promise<'signalled'>((resolve) => (onSignal = () => resolve('signalled')));
  for (const signal of signals) process.on(signal, onSignal);
  let status = code;
  try {
    if (code !== 130) {
      const written = await Promise.race([writtenOut(process.stdout).then(() => stdoutFailure ?? ('written' as const), (error: Error) => error), signalled]);
      if (written === 'signalled') status = code === 0 ? 130 : code;
      else if (written instanceof Error && code === 0) {
        process.stderr.write(`snapgraph: stdout could not take all of the output (${written.message})\n`);
        status = 1;
      }
    }
    await Promise.race([writtenOut(process.stderr).catch(() => undefined), signalled]);
  } finally {
    // Signals from here on are the default's again: a Ctrl-C while workers stop ends the process at once.
    for (const signal of signals) process.off(signal, onSignal);
  }
  exitAfterWorkers(status);
}
