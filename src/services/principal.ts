// Who is calling: resolved from the API key of every request and WebSocket connection.
import { forbidden } from '../errors/app-error';
import type { Role } from '../entities/api-key.entity';

export interface Principal {
  tenantId: string;
  tenantName: string;
  role: Role;
  apiKeyId: string;
  apiKeyName: string;
}

const RANK: Record<Role, number> = { VIEWER: 0, MEMBER: 1, ADMIN: 2 };

export function hasRole(principal: Principal, needed: Role): boolean {
  return RANK[principal.role] >= RANK[needed];
}

export function requireRole(principal: Principal, needed: Role, action: string): void {
  if (!hasRole(principal, needed)) throw forbidden(`${action} needs the ${needed} role; this API key is ${principal.role}`);
}
