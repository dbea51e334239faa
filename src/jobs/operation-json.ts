// The JSON form of an operation carried by events (the same fields the GraphQL Operation type reads).
import type { OperationEntity } from '../entities/operation.entity';

/** A running operation as its runner holds it: the row's fields as they are now, and its attempt's revision. */
export type LiveOperation = OperationEntity & { revision: number };

export function operationJson(operation: OperationEntity): Record<string, unknown> {
  const { params: _params, leaseOwner: _owner, leaseExpiresAt: _lease, cancelRequestedAt: _cancel, ...visible } = operation;
  return { ...visible };
}

export function isTerminal(status: string): boolean {
  return status === 'SUCCEEDED' || status === 'FAILED' || status === 'CANCELLED';
}
