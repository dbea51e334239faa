/** A byte range `[start, end)`, like `Buffer.subarray`: `end` is exclusive. */
export interface ByteRange {
  /** First byte; default 0. */
  start?: number;
  /** One past the last byte; default: the end of the data. */
  end?: number;
}

/** @throws RangeError unless start and end are non-negative safe integers with start <= end. */
export function assertValidByteRange({ start, end }: ByteRange): void {
  for (const [name, value] of [['start', start], ['end', end]] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new RangeError(`${name} must be a non-negative integer`);
    }
  }
  if (start !== undefined && end !== undefined && end < start) {
    throw new RangeError('end must not be before start');
  }
}
