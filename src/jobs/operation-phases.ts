// The phases an operation reports, in the order a restore goes through them. One list: handlers are typed by it,
// the schema's `phase` description and docs/api.md list it, and tests check every emitted phase is in it.
export const OPERATION_PHASES = [
  /** Waiting for a runner (also after a restart handed the operation back). */
  'queued',
  /** Restores: the instance turns READ_ONLY, its store is frozen and the safety snapshot starts. */
  'preparing',
  /** Snapshots: the instance's data is read into a restore point (a base image, or the rows changed since the last). */
  'capturing',
  /** Restores: the snapshot's base and changes (or an uploaded archive) are written into a shadow store. */
  'loading',
  /** Restores: the shadow store is checked against what the source recorded. Verifications: everything is read back. */
  'verifying',
  /** Restores: waiting for the PRE_RESTORE safety snapshot to complete. */
  'pre-restore snapshot',
  /** Exports: the snapshot's archive is streamed to the destination bucket. */
  'uploading',
  /**
   * The point of no return (cancel answers CONFLICT). Restores: the instance is switched to the new data. Exports:
   * every byte is sent and the object is made visible in the bucket.
   */
  'swapping',
  /** SUCCEEDED. */
  'done',
] as const;

export type OperationPhase = (typeof OPERATION_PHASES)[number];

/** From this phase on, an operation can no longer be cancelled. */
export const POINT_OF_NO_RETURN: OperationPhase = 'swapping';

export function isOperationPhase(value: unknown): value is OperationPhase {
  return (OPERATION_PHASES as readonly unknown[]).includes(value);
}
