// Errors raised by encryption at rest. Messages never contain key material.

/** Base class for failures of the envelope format or its keys. */
export class CryptoError extends Error {
  readonly code: string = 'CRYPTO_ERROR';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The stored bytes are not what was written: a flipped byte, a truncation, reordered or
 * dropped chunks, trailing garbage, or a header that does not authenticate.
 */
export class BlobIntegrityError extends CryptoError {
  override readonly code = 'BLOB_INTEGRITY';
}

/** The blob was encrypted under a master key that is not in the keyring. */
export class UnknownKeyError extends CryptoError {
  override readonly code = 'UNKNOWN_MASTER_KEY';

  constructor(readonly keyId: string) {
    super(`Blob is encrypted under master key ${keyId}, which is not configured`);
  }
}
