// Says what a file is and what it holds, changing nothing: for inspectFile and `snapgraph inspect`.
// Reads the file once, as a stream: record counts come from reading every record, never from memory of them.
import { Readable } from 'node:stream';
import { extract as createTarExtract } from 'tar-stream';
import { ARCHIVE_MAGIC, isArchiveError, isNeo4jStorePath, openArchive, SNIFF_LENGTH, type ArchiveHeader } from '../archive';
import { isTarHeader, NEO4J_DUMP_MESSAGE } from '../archive/file-type';
import { secondFileProblem } from '../archive/tar-extract';
import { peekStream as peek } from '../archive/stream-peek';
import { describeNeo4jFile, NEO4J_HEADER_PEEK_LENGTH } from '../archive/neo4j-file-header';
import type { GraphFileFormat } from '../graph-files/graph-file-format';
import { takeCensus } from '../graph-files/graph-file-census';
import type { EngineVersion, GraphStats } from '../graph/records';

export type FileKind =
  | 'SNAPGRAPH_ARCHIVE'
  | 'APOC_JSON'
  | 'CYPHER'
  | 'GRAPHML'
  | 'NEO4J_ADMIN_CSV'
  | 'NEO4J_DUMP'
  | 'NEO4J_BACKUP'
  | 'UNKNOWN';

/** Mirrors the GraphQL FileInspection type. */
export interface FileInspection {
  kind: FileKind;
  restorable: boolean;
  contents: GraphStats | null;
  engineVersion: EngineVersion | null;
  capturedAt: string | null;
  details: Record<string, unknown> | null;
  problem: string | null;
}

/** What the service needs of a foreign format: recognising it and reading its records (graph-files/). */
export type InspectableFormat = Pick<GraphFileFormat, 'kind' | 'detect' | 'open'>;

export const UNKNOWN_FILE_PROBLEM =
  'Snapgraph cannot restore this file: it is not a Snapgraph archive (.backup or .dump) or an APOC export ' +
  '(apoc.export.json.all, apoc.export.cypher.all, apoc.export.graphml.all), nor a .tar of neo4j-admin import CSV files or holding one of them.';

export class FileInspectionService {
  constructor(private readonly formats: readonly InspectableFormat[]) {}

  /** What `input` is and holds. Takes the stream over and destroys it when done; never throws for a bad file. */
  async inspect(input: Readable): Promise<FileInspection> {
    try {
      const { head, stream } = await peek(input, NEO4J_HEADER_PEEK_LENGTH);
      if (head.length === 0) return unknown('The file is empty.');
      const inspection = await this.inspectContent(head, stream, true);
      return inspection ?? unknown(UNKNOWN_FILE_PROBLEM);
    } finally {
      input.destroy();
    }
  }

  /** True for the start of a file a restore reads: a Snapgraph archive or a graph file. */
  private isRestorable(head: Buffer): boolean {
    const start = head.subarray(0, SNIFF_LENGTH);
    return start.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC) || this.formats.some((format) => format.detect(start));
  }

  /** The inspection of a file starting with `head`, or undefined when nothing recognises it. */
  private async inspectContent(head: Buffer, stream: Readable, mayBeTar: boolean): Promise<FileInspection | undefined> {
    if (head.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC)) return inspectArchive(stream);
    const neo4j = describeNeo4jFile(head);
    if (neo4j) {
      return { ...neo4j, restorable: false, contents: null, problem: NEO4J_DUMP_MESSAGE };
    }
    const format = this.formats.find((candidate) => candidate.detect(head.subarray(0, SNIFF_LENGTH)));
    if (format) return inspectForeign(format, stream);
    if (mayBeTar && isTarHeader(head)) return this.inspectTar(stream);
    return undefined;
  }

  /** A tar is reported as the first entry in it that is something we recognise. */
  private async inspectTar(input: Readable): Promise<FileInspection> {
    let found: { name: string; inspection: FileInspection } | undefined;
    const extract = createTarExtract();
    input.on('error', (error) => extract.destroy(error));
    input.pipe(extract as unknown as NodeJS.WritableStream);
    try {
      for await (const entry of extract) {
        const name = entry.header.name;
        if (isNeo4jStorePath(name)) {
          return {
            kind: 'NEO4J_DUMP',
            restorable: false,
            contents: null,
            engineVersion: null,
            capturedAt: null,
            details: { format: 'tar of a Neo4j store directory', storeFile: name },
            problem: NEO4J_DUMP_MESSAGE,
          };
        }
        if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
          entry.resume();
          continue;
        }
        const { head, stream } = await peek(Readable.from(entry), NEO4J_HEADER_PEEK_LENGTH);
        if (found) {
          // A restore reads one file: a second one makes the restore refuse the tar (extractArchiveFromTar).
          if (this.isRestorable(head)) return { ...found.inspection, restorable: false, problem: secondFileProblem(found.name, name) };
        } else {
          const inspection = await this.inspectContent(head, stream, false);
          if (inspection) {
            found = { name, inspection: { ...inspection, details: { ...inspection.details, tarEntry: name } } };
            if (!inspection.restorable) return found.inspection;
          }
        }
        // The entry read through (a recognised file was), or the rest of it skipped, before the next one comes.
        if (!stream.readableEnded && !stream.destroyed) {
          stream.resume();
          await new Promise((resolve) => stream.on('end', resolve).on('close', resolve));
        }
      }
      return found?.inspection ?? unknown(`The tar file holds nothing Snapgraph can restore. ${UNKNOWN_FILE_PROBLEM}`);
    } catch (error) {
      // Broken off or damaged after a recognised entry that was read whole: a restore reads that entry and stops
      // looking there (extractArchiveFromTar), so the inspection is that entry's too.
      if (found) return found.inspection;
      return unknown(`The file is not a readable tar file (${error instanceof Error ? error.message : String(error)}).`);
    } finally {
      extract.destroy();
      input.destroy();
    }
  }
}

/** A Snapgraph archive: its header, and the counts it announces once every frame and the digest checked out. */
async function inspectArchive(input: Readable): Promise<FileInspection> {
  const reader = openArchive(input);
  let header: ArchiveHeader | undefined;
  try {
    header = await reader.header;
    // Checked here, in the server's event loop (not on a verifier thread as an upload is): a frame of a few KiB may hold
    // 64 MiB of records, seconds of checking, so the loop turns between slices of them as well as between frames.
    await reader.verify(undefined, { takeTurns: true });
    return { ...archiveFacts(header), restorable: true, contents: header.stats, problem: null };
  } catch (error) {
    if (!isArchiveError(error)) throw error;
    const facts = header ? archiveFacts(header) : { kind: 'SNAPGRAPH_ARCHIVE' as const, engineVersion: null, capturedAt: null, details: null };
    return { ...facts, restorable: false, contents: null, problem: error.message };
  }
}

function archiveFacts(header: ArchiveHeader) {
  return {
    kind: 'SNAPGRAPH_ARCHIVE' as const,
    engineVersion: header.engineVersion,
    capturedAt: header.capturedAt,
    details: {
      formatVersion: header.formatVersion,
      sourceInstanceId: header.sourceInstanceId,
      sourceInstanceName: header.sourceInstanceName,
    },
  };
}

/** A foreign graph file: every record read and checked as a restore reads it, and counted. */
async function inspectForeign(format: InspectableFormat, input: Readable): Promise<FileInspection> {
  const base = { kind: format.kind, engineVersion: null, capturedAt: null, details: null };
  try {
    const census = await takeCensus(format.open(input));
    // A foreign file says nothing about the store it will make.
    return { ...base, restorable: true, contents: { ...census, storeSizeBytes: 0 }, problem: null };
  } catch (error) {
    if (!isArchiveError(error)) throw error;
    return { ...base, restorable: false, contents: null, problem: error.message };
  }
}

function unknown(problem: string): FileInspection {
  return { kind: 'UNKNOWN', restorable: false, contents: null, engineVersion: null, capturedAt: null, details: null, problem };
}
