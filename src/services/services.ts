// The service layer as the API sees it: one object, built once at boot by the composition root.
import type { EventBus } from '../events/event-bus';
import type { BackupService } from './backup.service';
import type { ChangeLogService } from './change-log.service';
import type { ExportDestinationService } from './export-destination.service';
import type { ExportService } from './export.service';
import type { FileInspectionService } from './file-inspection.service';
import type { GraphService } from './graph.service';
import type { InstanceService } from './instance.service';
import type { OperationService } from './operation.service';
import type { RestoreService } from './restore.service';
import type { SnapshotService } from './snapshot.service';
import type { TenantService } from './tenant.service';
import type { UploadService } from './upload.service';
import type { VerifyService } from './verify.service';

export interface Services {
  tenants: TenantService;
  instances: InstanceService;
  graph: GraphService;
  snapshots: SnapshotService;
  operations: OperationService;
  restores: RestoreService;
  exports: ExportService;
  destinations: ExportDestinationService;
  uploads: UploadService;
  inspections: FileInspectionService;
  backups: BackupService;
  verify: VerifyService;
  events: EventBus;
  changeLog: ChangeLogService;
}
