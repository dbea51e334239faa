// The JSON form of an operation carried by events (the same fields the GraphQL Operation type reads).
import type { OperationEntity } from '../entities/operation.entity';

export function operationJson(operation: OperationEntity): Record<string, unknown> {
  const { params: _params, leaseOwner: _owner, leaseExpiresAt: _lease, cancelRequestedAt: _cancel, ...visible } = operation;
  return { ...visible };
}

export function isTerminal(status: string): boolean {
  return status === 'SUCCEEDED' || status === 'FAILED' || status === 'CANCELLED';
}
