// Errors raised by blob stores.

export class BlobStoreError extends Error {
  readonly code: string = 'BLOB_STORE_ERROR';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A key that could escape the store's root or is otherwise not a valid blob name. */
export class InvalidBlobKeyError extends BlobStoreError {
  override readonly code = 'INVALID_BLOB_KEY';
}

export class BlobNotFoundError extends BlobStoreError {
  override readonly code = 'BLOB_NOT_FOUND';

  constructor(readonly key: string) {
    super(`Blob ${key} does not exist`);
  }
}
