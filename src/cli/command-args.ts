// Arguments of the commands that talk to a server: their own options plus --url/--key, and a fixed number of
// positionals; anything else is a UsageError (the message, then the usage text).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CONNECTION_OPTIONS } from './api-client';
import { UsageError } from './cli-error';

export function parseCommandArgs<const O extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: O,
  positionals: number,
  usage: string,
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...CONNECTION_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length !== positionals) throw new UsageError(usage);
  return parsed;
}
