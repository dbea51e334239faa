// The Prometheus metrics of one server (GET /metrics): one Registry per App, so servers booted side by side never
// share counters. Call sites stay one-liners: `metrics.bytesArchived.inc(n)`, `metrics.recordOperation(...)`.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { OPERATION_KINDS } from '../entities/operation.entity';

export const AVAILABILITIES = ['AVAILABLE', 'READ_ONLY', 'UNAVAILABLE'] as const;
export type InstanceCounts = Partial<Record<(typeof AVAILABILITIES)[number], number>>;

const OUTCOMES = ['succeeded', 'failed', 'cancelled'] as const;
type OperationOutcome = (typeof OUTCOMES)[number];

/** How long a scrape waits for the instance count (a Prometheus scrape times out after 10 s by default). */
const INSTANCE_COUNT_TIMEOUT_MS = 3_000;

/** prom-client defaults whose cost grows with the open sockets (see the constructor). */
const PER_HANDLE_METRICS = ['nodejs_active_handles', 'nodejs_active_handles_total', 'nodejs_active_resources', 'nodejs_active_resources_total'];

export class Metrics {
  readonly registry = new Registry();

  readonly operations = new Counter({
    name: 'snapgraph_operations_total',
    help: 'Operations finished, by kind and outcome (succeeded, failed, cancelled)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly operationDuration = new Histogram({
    name: 'snapgraph_operation_duration_seconds',
    help: 'Time from an operation starting to run until it finished, by kind and outcome',
    labelNames: ['kind', 'outcome'] as const,
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    registers: [this.registry],
  });

  readonly bytesArchived = this.byteCounter('snapgraph_archived_bytes_total', 'Archive bytes written to backup storage: export archives produced from snapshots');
  readonly graphFileBytesWritten = this.byteCounter(
    'snapgraph_graph_file_bytes_total',
    'Bytes of foreign graph files (exportSnapshotAs APOC_JSON, CYPHER, GRAPHML, NEO4J_ADMIN_CSV) written to backup storage',
  );
  readonly storeBases = new Counter({
    name: 'snapgraph_store_bases_total',
    help: 'Bases (page images) of instance stores written to the chunk store: by the base policy, by snapshots after a long change log, by restores',
    registers: [this.registry],
  });
  readonly replayedLogBytes = this.byteCounter(
    'snapgraph_replayed_log_bytes_total',
    'Change-log bytes restores applied record by record on top of a base (the rest of what they loaded is page images)',
  );
  readonly bytesRestored = this.byteCounter('snapgraph_restored_bytes_total', 'Bytes loaded into instance stores by restores (a restore point\'s base and deltas, or an archive)');
  readonly bytesExported = this.byteCounter('snapgraph_exported_bytes_total', 'Archive bytes sent by export downloads');
  readonly bytesUploaded = this.byteCounter('snapgraph_uploaded_bytes_total', 'Archive bytes received by uploads and stored after verification');

  readonly graphqlRequests = new Counter({
    name: 'snapgraph_graphql_requests_total',
    help: 'GraphQL requests over HTTP, by operation type and outcome (ok, or the first error code)',
    labelNames: ['operation_type', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly graphqlResponseCache = new Counter({
    name: 'snapgraph_graphql_response_cache_total',
    help: "Queries that read only a tenant's instances and snapshots, by outcome: hit (answered from the response cache) or miss (executed)",
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly webSocketConnections = new Gauge({
    name: 'snapgraph_websocket_connections',
    help: 'Open WebSocket connections on /graphql',
    registers: [this.registry],
  });

  readonly droppedConnections = new Counter({
    name: 'snapgraph_connections_dropped_total',
    help: 'Connections closed as they were accepted: the server held SNAPGRAPH_MAX_CONNECTIONS already',
    registers: [this.registry],
  });

  readonly activeSubscriptions = new Gauge({
    name: 'snapgraph_subscriptions_active',
    help: 'GraphQL subscriptions currently delivering events',
    registers: [this.registry],
  });

  private countInstances: () => Promise<InstanceCounts> = async () => ({});
  private onCountFailure: (error: unknown) => void = () => undefined;
  /** The count a scrape started and nobody has had an answer to yet (see collectInstances). */
  private countUnderWay: Promise<InstanceCounts> | null = null;

  constructor() {
    const metrics = this;
    new Gauge({
      name: 'snapgraph_instances',
      help: 'Instances by availability, read from the metadata database at scrape time (the same on every replica)',
      labelNames: ['availability'] as const,
      registers: [this.registry],
      // A count that fails or waits (the database away, the table locked) leaves this gauge out of the scrape rather
      // than failing or holding it: every other metric is what an operator needs most just then.
      collect: async function collectInstances(this: Gauge<'availability'>) {
        let timer: NodeJS.Timeout | undefined;
        // A count that waits goes on after its scrape gives up, holding a database connection: the next scrapes wait
        // for that one instead of each starting another, which would take the pool (10) from the requests in a minute.
        const counting = (metrics.countUnderWay ??= metrics.countInstances().finally(() => (metrics.countUnderWay = null)));
        try {
          const counts = await Promise.race([
            counting,
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer within ${INSTANCE_COUNT_TIMEOUT_MS} ms`)), INSTANCE_COUNT_TIMEOUT_MS);
            }),
          ]);
          for (const availability of AVAILABILITIES) this.set({ availability }, counts[availability] ?? 0);
        } catch (error) {
          this.reset();
          metrics.onCountFailure(error);
        } finally {
          clearTimeout(timer);
        }
      },
    });
    collectDefaultMetrics({ register: this.registry });
    // Each of these walks every handle of the process, twice, at every scrape: with 10,000 WebSockets open, they held
    // the event loop about 15-30 ms per scrape (of 35-50 ms). snapgraph_websocket_connections counts what they mostly
    // would.
    for (const name of PER_HANDLE_METRICS) this.registry.removeSingleMetric(name);
    // Every series exists from the start at 0, so rate() and increase() see the first operation of each kind.
    for (const kind of OPERATION_KINDS) {
      for (const outcome of OUTCOMES) {
        this.operations.inc({ kind, outcome }, 0);
        this.operationDuration.zero({ kind, outcome });
      }
    }
  }

  /** Where the instance gauge reads its numbers at scrape time, and who hears when it cannot. */
  countInstancesWith(count: () => Promise<InstanceCounts>, onFailure: (error: unknown) => void): void {
    this.countInstances = count;
    this.onCountFailure = onFailure;
  }

  recordOperation(kind: string, status: string, durationMs: number): void {
    const outcome: OperationOutcome = status === 'SUCCEEDED' ? 'succeeded' : status === 'CANCELLED' ? 'cancelled' : 'failed';
    const labels = { kind, outcome };
    this.operations.inc(labels);
    this.operationDuration.observe(labels, Math.max(0, durationMs) / 1000);
  }

  /** Prometheus text exposition of every metric. */
  expose(): Promise<{ contentType: string; body: string }> {
    return this.registry.metrics().then((body) => ({ contentType: this.registry.contentType, body }));
  }

  private byteCounter(name: string, help: string): Counter {
    return new Counter({ name, help, registers: [this.registry] });
  }
}
