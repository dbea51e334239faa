// What a kind of operation must provide to the runner.
import type { EntityManager } from 'typeorm';
import type { OperationEntity, OperationKind } from '../entities/operation.entity';

export interface ProgressUpdate {
  phase?: string;
  bytesDone?: number;
  bytesTotal?: number | null;
}

export interface JobContext {
  /** Records progress; the runner throttles publishing (≤ 10/s) and persisting (≤ 1/s). */
  progress(update: ProgressUpdate): void;
  /** Aborted when the runner loses the lease or shuts down: stop at the next step. */
  signal: AbortSignal;
  /** Renews the lease now, and throws when it was lost: call it right before an irreversible step. */
  confirmLease(): Promise<void>;
}

/** What a successful run leaves for the runner to record together with the operation's SUCCEEDED. */
export interface OperationResult {
  /** Runs in the same transaction as the operation's SUCCEEDED: clients never see the result before the operation ends. */
  commit?(manager: EntityManager): Promise<void>;
  /** Runs once that transaction has committed (events, follow-up work); failures are logged, not fatal. */
  afterCommit?(): Promise<void>;
}

export interface OperationHandler {
  readonly kind: OperationKind;
  /** Does the work. Throwing (an AppError ideally) fails the operation; compensate() is then called. */
  run(operation: OperationEntity, context: JobContext): Promise<OperationResult | void>;
  /**
   * Puts things back after a failure, a crash or an expired lease: the instance RUNNING/AVAILABLE on its old
   * data, temp files and half-written blobs removed. Must be idempotent: it may run after a crash at any step.
   * Resolves true when it finds the work had in fact been done (a crash after the last step): the operation then
   * SUCCEEDED rather than FAILED.
   */
  compensate(operation: OperationEntity, error: { code: string; message: string }): Promise<boolean | void>;
}
