// What a kind of operation must provide to the runner.
import type { EntityManager } from 'typeorm';
import type { OperationEntity, OperationKind } from '../entities/operation.entity';
import type { OperationPhase } from './operation-phases';

export interface ProgressUpdate {
  phase?: OperationPhase;
  bytesDone?: number;
  bytesTotal?: number | null;
}

export interface JobContext {
  /** Records progress; the runner throttles publishing (≤ 10/s) and persisting (≤ 1/s). */
  progress(update: ProgressUpdate): void;
  /** Aborted on cancellation, shutdown or a lost lease: stop at the next step (the runner then compensates). */
  signal: AbortSignal;
  /** Records the operation's params (what compensation needs to know) under the lease; throws when it was lost. */
  saveParams(params: Record<string, unknown>): Promise<void>;
  /**
   * Runs `work` in a transaction that first writes the operation's row as this attempt holds it: what `work` writes is
   * written only while the attempt holds its lease, and a runner taking the operation over waits for it, then undoes
   * it. Throws (and aborts the signal) when the lease was lost. For what compensation must find to undo (an
   * instance's state): written outside, by an attempt that outlived its lease, it could land after the undo.
   */
  underLease<T>(work: (manager: EntityManager) => Promise<T>): Promise<T>;
  /**
   * Enters the phase POINT_OF_NO_RETURN under the lease, unless a cancellation was asked first; from then on
   * cancelOperation answers CONFLICT. Throws (and aborts the signal) when cancelled or when the lease was lost.
   */
  enterPointOfNoReturn(): Promise<void>;
}

/** What a successful run leaves for the runner to record together with the operation's SUCCEEDED. */
export interface OperationResult {
  /** Runs in the same transaction as the operation's SUCCEEDED: clients never see the result before the operation ends. */
  commit?(manager: EntityManager): Promise<void>;
  /**
   * Publishes the events of what the transaction committed (an instance's AVAILABLE, a snapshot's COMPLETED), before
   * the operation's own final state: a client sees the change happen, then the operation end.
   */
  announce?(): void;
  /** Runs once that transaction has committed and everything is announced (follow-up work); failures are logged, not fatal. */
  afterCommit?(): Promise<void>;
}

/** Why compensation runs, and whether the operation will run again. */
export interface Compensation {
  code: string;
  message: string;
  /**
   * True when the operation goes back to QUEUED for another attempt (a shutdown or a crash interrupted it): inputs
   * it needs again (an uploaded file) are kept. False when it ends (failed or cancelled): everything it owns goes.
   */
  retry: boolean;
}

export interface OperationHandler {
  readonly kind: OperationKind;
  /** Does the work. Throwing (an AppError ideally) fails the operation; compensate() is then called. */
  run(operation: OperationEntity, context: JobContext): Promise<OperationResult | void>;
  /**
   * Puts things back to where the operation started: the instance RUNNING/AVAILABLE on its old data, temp files
   * and half-written blobs removed. Must be idempotent: it may run after a crash at any step, and for a QUEUED
   * operation that never started (a cancellation). Resolves true when it finds the work had in fact been done
   * (a crash after the last step): the operation then SUCCEEDED.
   */
  compensate(operation: OperationEntity, why: Compensation): Promise<boolean | void>;
}
