// Where resumable uploads are sent, and the header that names the restore a finished one queued: shared by the server
// (tus-uploads.ts) and its client (`snapgraph restore-file`), which must not load the server to know them.
export const UPLOADS_PATH = '/uploads';
export const OPERATION_ID_HEADER = 'Snapgraph-Operation-Id';
