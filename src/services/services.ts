// The service layer as the API sees it: one object, built once at boot by the composition root.
import type { GraphService } from './graph.service';
import type { InstanceService } from './instance.service';
import type { TenantService } from './tenant.service';

export interface Services {
  tenants: TenantService;
  instances: InstanceService;
  graph: GraphService;
}
