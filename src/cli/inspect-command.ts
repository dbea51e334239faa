// `snapgraph inspect <file>`: what a file is and holds, read locally (no server, no key, any size); changes nothing.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { GRAPH_FILE_FORMATS } from '../graph-files/graph-file-formats';
import { type FileInspection, FileInspectionService } from '../services/file-inspection.service';
import { CliError, UsageError } from './cli-error';

export async function inspectCommand(args: string[], service = new FileInspectionService(GRAPH_FILE_FORMATS)): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length !== 1) throw new UsageError('inspect takes one file');
  const path = parsed.positionals[0];
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${path}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
  });
  if (!info.isFile()) throw new CliError(`cannot read ${path}: not a file`);
  const inspection = await service.inspect(createReadStream(path));
  process.stdout.write(parsed.values.json ? `${JSON.stringify(inspection, null, 2)}\n` : describe(path, info.size, inspection));
  return 0;
}

/** The inspection as a few lines for people. */
function describe(path: string, size: number, inspection: FileInspection): string {
  const lines = [`${path}: ${inspection.kind} (${size} bytes)`];
  lines.push(`restorable: ${inspection.restorable ? 'yes' : 'no'}`);
  if (inspection.engineVersion) lines.push(`engine version: ${inspection.engineVersion}`);
  if (inspection.capturedAt) lines.push(`captured at: ${inspection.capturedAt}`);
  const contents = inspection.contents;
  if (contents) {
    lines.push(`nodes: ${contents.nodeCount}`);
    for (const { name, count } of contents.labels) lines.push(`  :${name}  ${count}`);
    lines.push(`relationships: ${contents.relationshipCount}`);
    for (const { name, count } of contents.relationshipTypes) lines.push(`  [:${name}]  ${count}`);
  }
  for (const [key, value] of Object.entries(inspection.details ?? {})) {
    lines.push(`${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  }
  if (inspection.problem) lines.push(`problem: ${inspection.problem}`);
  return `${lines.join('\n')}\n`;
}
