// The contract's enums, registered with type-graphql. Values equal the strings stored in the database.
import { registerEnumType } from 'type-graphql';

export enum TierEnum { FREE = 'FREE', PROFESSIONAL = 'PROFESSIONAL', BUSINESS_CRITICAL = 'BUSINESS_CRITICAL', VIRTUAL_DEDICATED_CLOUD = 'VIRTUAL_DEDICATED_CLOUD' }
export enum EngineVersionEnum { V4 = 'V4', V5 = 'V5' }
export enum InstanceStatusEnum { CREATING = 'CREATING', RUNNING = 'RUNNING', RESTORING = 'RESTORING', DESTROYING = 'DESTROYING', FAILED = 'FAILED' }
export enum AvailabilityEnum { AVAILABLE = 'AVAILABLE', READ_ONLY = 'READ_ONLY', UNAVAILABLE = 'UNAVAILABLE' }
export enum SnapshotProfileEnum { SCHEDULED = 'SCHEDULED', ON_DEMAND = 'ON_DEMAND', PRE_RESTORE = 'PRE_RESTORE' }
export enum SnapshotStatusEnum { PENDING = 'PENDING', IN_PROGRESS = 'IN_PROGRESS', COMPLETED = 'COMPLETED', FAILED = 'FAILED' }
export enum ArchiveFormatEnum { BACKUP = 'BACKUP', DUMP = 'DUMP' }
export enum ExportFormatEnum {
  ARCHIVE = 'ARCHIVE',
  APOC_JSON = 'APOC_JSON',
  CYPHER = 'CYPHER',
  GRAPHML = 'GRAPHML',
  NEO4J_ADMIN_CSV = 'NEO4J_ADMIN_CSV',
}
export enum OperationKindEnum {
  SNAPSHOT = 'SNAPSHOT',
  RESTORE = 'RESTORE',
  CREATE_FROM_SNAPSHOT = 'CREATE_FROM_SNAPSHOT',
  RESTORE_FROM_FILE = 'RESTORE_FROM_FILE',
  VERIFY = 'VERIFY',
  RESTORE_TO_POINT_IN_TIME = 'RESTORE_TO_POINT_IN_TIME',
  CREATE_FROM_POINT_IN_TIME = 'CREATE_FROM_POINT_IN_TIME',
  EXPORT = 'EXPORT',
}
export enum OperationStatusEnum { QUEUED = 'QUEUED', RUNNING = 'RUNNING', SUCCEEDED = 'SUCCEEDED', FAILED = 'FAILED', CANCELLED = 'CANCELLED' }
export enum RoleEnum { ADMIN = 'ADMIN', MEMBER = 'MEMBER', VIEWER = 'VIEWER' }

registerEnumType(TierEnum, { name: 'Tier' });
registerEnumType(EngineVersionEnum, { name: 'EngineVersion', description: 'V5 instances export .backup archives; V4 instances export .dump archives' });
registerEnumType(InstanceStatusEnum, { name: 'InstanceStatus' });
registerEnumType(AvailabilityEnum, {
  name: 'Availability',
  description: 'READ_ONLY: reads work, writes fail with INSTANCE_UNAVAILABLE (a restore is being prepared)',
});
registerEnumType(SnapshotProfileEnum, {
  name: 'SnapshotProfile',
  description: 'PRE_RESTORE: the safety snapshot taken automatically right before a restore overwrites data',
});
registerEnumType(SnapshotStatusEnum, { name: 'SnapshotStatus' });
registerEnumType(ArchiveFormatEnum, { name: 'ArchiveFormat' });
registerEnumType(ExportFormatEnum, {
  name: 'ExportFormat',
  description: `ARCHIVE: the snapshot archive (.backup for V5, .dump for V4). APOC_JSON: JSON lines as
apoc.export.json.all writes them (.json). CYPHER: a script as apoc.export.cypher.all writes it
(.cypher). GRAPHML: as apoc.export.graphml.all writes it (.graphml). NEO4J_ADMIN_CSV: a .tar of
header-carrying CSV files that \`neo4j-admin database import full\` loads (.tar).`,
});
registerEnumType(OperationKindEnum, { name: 'OperationKind' });
registerEnumType(OperationStatusEnum, {
  name: 'OperationStatus',
  description:
    'QUEUED (again after a restart handed it back) → RUNNING → SUCCEEDED, FAILED or CANCELLED (cancelOperation; error.code CANCELLED)',
});
registerEnumType(RoleEnum, {
  name: 'Role',
  description: 'ADMIN: everything in the tenant. MEMBER: all but restores, deletes and API keys. VIEWER: read only.',
});
