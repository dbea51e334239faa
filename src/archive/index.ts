// The snapshot archive format: see docs/archive-format.md.
export { ArchiveError, isArchiveError, type ArchiveErrorCode } from './archive-error';
export { ARCHIVE_FORMAT_VERSION, type ArchiveHeader, type ArchiveHeaderInput } from './archive-header';
export { createArchiveWriter, encodeArchive, type ArchiveWriter, type ArchiveWriterOptions } from './archive-writer';
export { openArchive, readArchiveHeader, type ArchiveReader } from './archive-reader';
export { ARCHIVE_MAGIC, SNIFF_LENGTH, archiveExtension, isNeo4jStorePath, sniffFileType, type FileType } from './file-type';
export { extractArchiveFromTar } from './tar-extract';
