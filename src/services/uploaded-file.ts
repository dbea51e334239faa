// The file an upload holds: the upload itself, or the one archive or graph file inside a tar. The check of an upload
// and the restore of one kept as it came (a resumable upload, possibly a tar) both read it through here.
import type { Readable } from 'node:stream';
import { extractArchiveFromTar, SNIFF_LENGTH, sniffFileType } from '../archive';
import { foreignFileError } from '../archive/file-type';
import { peekStream as peek } from '../archive/stream-peek';
import { AppError } from '../errors/app-error';
import type { GraphFileFormat } from '../graph-files/graph-file-format';
import { detectGraphFileFormat } from '../graph-files/graph-file-formats';

export interface UploadedFile {
  stream: Readable;
  /** The graph file's format; null for a Snapgraph archive, or something the archive reader will name. */
  format: GraphFileFormat | null;
  /** It was found inside a tar. */
  inTar: boolean;
}

const EMPTY_FILE = 'the file is empty: it is neither a Snapgraph archive nor a graph file';

export async function unwrapUploadedFile(input: Readable): Promise<UploadedFile> {
  const { head, stream } = await peek(input, SNIFF_LENGTH);
  if (head.length === 0) throw new AppError('INVALID_BACKUP_FILE', EMPTY_FILE);
  const type = sniffFileType(head);
  if (type === 'snapgraph-archive') return { stream, format: null, inTar: false };
  const format = detectGraphFileFormat(head);
  if (format || type !== 'tar') return { stream, format: format ?? null, inTar: false };
  const inner = await peek(await extractArchiveFromTar(stream, (entryHead) => detectGraphFileFormat(entryHead) !== undefined), SNIFF_LENGTH);
  const innerFormat = sniffFileType(inner.head) === 'snapgraph-archive' ? null : (detectGraphFileFormat(inner.head) ?? null);
  return { stream: inner.stream, format: innerFormat, inTar: true };
}

/**
 * Why the file whose first SNIFF_LENGTH bytes are `head` is refused when uploaded (INVALID_BACKUP_FILE), as
 * unwrapUploadedFile and the archive reader after it decide from those bytes alone; null when only the rest can tell
 * (an archive, a graph file, a tar). For `snapgraph restore-file`, which then says so before sending the file.
 */
export function refusalOfFileStart(head: Buffer): string | null {
  if (head.length === 0) return EMPTY_FILE;
  const type = sniffFileType(head);
  if (type === 'snapgraph-archive' || type === 'tar' || detectGraphFileFormat(head)) return null;
  return foreignFileError(head).message;
}
