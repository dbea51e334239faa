// Errors raised by the chunk store.

export class ChunkStoreError extends Error {
  readonly code: string = 'CHUNK_STORE_ERROR';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Stored bytes are not what was written: a chunk or a pack trailer that does not authenticate, a chunk whose content
 * does not match its keyed id, a truncated or missing pack. Names the pack (and the chunk, when one is known).
 */
export class ChunkIntegrityError extends ChunkStoreError {
  override readonly code = 'CHUNK_INTEGRITY';

  constructor(
    readonly packId: string | null,
    readonly chunkId: string | null,
    readonly reason: string,
  ) {
    super(
      `${chunkId ? `chunk ${chunkId} ` : ''}${packId ? `${chunkId ? 'in ' : ''}pack ${packId} ` : ''}is damaged: ${reason}`,
    );
  }
}

/** A chunk a caller asked for has no index row: the snapshot refers to data the store does not hold. */
export class ChunkNotFoundError extends ChunkStoreError {
  override readonly code = 'CHUNK_NOT_FOUND';

  constructor(readonly chunkId: string) {
    super(`chunk ${chunkId} is not in the chunk store`);
  }
}
