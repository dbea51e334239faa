// The file an upload holds: the upload itself, or the one archive or graph file inside a tar. The check of an upload
// and the restore of one kept as it came (a resumable upload, possibly a tar) both read it through here.
import type { Readable } from 'node:stream';
import { extractArchiveFromTar, SNIFF_LENGTH, sniffFileType } from '../archive';
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

export async function unwrapUploadedFile(input: Readable): Promise<UploadedFile> {
  const { head, stream } = await peek(input, SNIFF_LENGTH);
  if (head.length === 0) throw new AppError('INVALID_BACKUP_FILE', 'the file is empty: it is neither a Snapgraph archive nor a graph file');
  const type = sniffFileType(head);
  if (type === 'snapgraph-archive') return { stream, format: null, inTar: false };
  const format = detectGraphFileFormat(head);
  if (format || type !== 'tar') return { stream, format: format ?? null, inTar: false };
  const inner = await peek(await extractArchiveFromTar(stream, (entryHead) => detectGraphFileFormat(entryHead) !== undefined), SNIFF_LENGTH);
  const innerFormat = sniffFileType(inner.head) === 'snapgraph-archive' ? null : (detectGraphFileFormat(inner.head) ?? null);
  return { stream: inner.stream, format: innerFormat, inTar: true };
}
